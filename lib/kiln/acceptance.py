"""Acceptance tests: the gate between a baked version and a tested one.

A throwaway instance of the new image runs kiln's base battery and the role's declared tests
(testinfra files, Ansible verify playbooks); the verdict and its output go to the registry.
Real runs: tests/integration/test_acceptance_gate.py and test_acceptance_real.py.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from kiln import tools
from kiln.console import Reporter
from kiln.docker import Instance, throwaway_instance
from kiln.errors import DefinitionError, RegistryError, TestFailure
from kiln.guard import ansible_environment, audit_playbook, raise_for_findings
from kiln.model import Node, Project, Role
from kiln.paths import relative_to
from kiln.registry import Registry, Version, utc_now
from kiln.targets.base import ANSIBLE_ENV_STATIC, CALLBACK_DIR

__all__ = [
    "BATTERY_DIR",
    "SUITE",
    "AcceptanceResult",
    "Suite",
    "TestCase",
    "baked_variables",
    "discover_suites",
    "failure_message",
    "record_result",
    "retest",
    "run_acceptance",
]

SUITE = "acceptance"
BATTERY_DIR = Path(__file__).resolve().parent / "batteries" / "base"
BATTERY_LABEL = "kiln base battery"
PLUGIN = "kiln.batteries.plugin"
TIMEOUT_S = 600
#: How many lines of a failing test's message the bake prints (the whole output is recorded).
MESSAGE_LINES = 8
# pytest parametrises testinfra tests by host ("test_x[docker://kiln-test-1a2b]"): the instance
# name changes every run, so reports drop it.
_HOST_PARAM = re.compile(r"\[(docker|ansible|local|ssh|paramiko)://[^\]]*\]$")

Redact = Callable[[str], str]


@dataclass(frozen=True)
class Suite:
    """One declared test file: a testinfra module or an Ansible verify playbook."""

    kind: Literal["testinfra", "playbook"]
    path: Path
    label: str


@dataclass(frozen=True)
class TestCase:
    """One test's outcome; message is the assertion (or failed task) tail for failures."""

    __test__ = False  # not a pytest test class

    name: str
    outcome: Literal["passed", "failed", "skipped"]
    message: str = ""
    duration_s: float = 0.0


@dataclass(frozen=True)
class AcceptanceResult:
    """The verdict on one version: every test case, the full output and the time it took."""

    role: str
    version: int
    cases: tuple[TestCase, ...]
    output: str
    started_at: str
    duration_s: float
    boot_s: float

    @property
    def failures(self) -> list[TestCase]:
        return [c for c in self.cases if c.outcome == "failed"]

    @property
    def passed(self) -> bool:
        return bool(self.cases) and not self.failures

    def count(self, outcome: str) -> int:
        return sum(1 for c in self.cases if c.outcome == outcome)

    @property
    def summary(self) -> str:
        """One line: the counts, and for a failure the failing tests with their first line."""
        if not self.cases:
            return "no test ran"
        counts = ", ".join(
            f"{n} {outcome}"
            for outcome in ("passed", "failed", "skipped")
            if (n := self.count(outcome))
        )
        if self.passed:
            return counts
        failed = "; ".join(
            f"{c.name}: {_first_line(c.message) or 'failed'}" for c in self.failures[:5]
        )
        more = f" (+{len(self.failures) - 5} more)" if len(self.failures) > 5 else ""
        return f"{counts}. Failed: {failed}{more}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "version": self.version,
            "passed": self.passed,
            "summary": self.summary,
            "duration_s": round(self.duration_s, 3),
            "boot_s": round(self.boot_s, 3),
            "cases": [
                {
                    "name": c.name,
                    "outcome": c.outcome,
                    "message": c.message,
                    "duration_s": round(c.duration_s, 3),
                }
                for c in self.cases
            ],
        }


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


# -- what to run ------------------------------------------------------------------------------
def discover_suites(project: Project, node: Node) -> list[Suite]:
    """The base battery, then the tests node declares (files, or directories searched for them).

    A directory contributes test_*.py / *_test.py files (testinfra) and *.yml / *.yaml files
    (verify playbooks); files starting with '_' or '.' and conftest.py are left to pytest.
    """
    suites = [
        Suite("testinfra", path, BATTERY_LABEL) for path in sorted(BATTERY_DIR.glob("test_*.py"))
    ]
    declared = node.tests if isinstance(node, Role) else ()
    for rel in declared:
        path = project.root / rel
        if not path.exists():
            raise DefinitionError(f"role {node.name!r}: test path {rel!r} does not exist")
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        found = [s for s in (_suite_for(project, p) for p in files) if s is not None]
        if path.is_file() and not found:
            raise DefinitionError(
                f"role {node.name!r}: test {rel!r} is neither a testinfra file (test_*.py) "
                "nor an Ansible playbook (*.yml)"
            )
        suites += found
    return suites


def _suite_for(project: Project, path: Path) -> Suite | None:
    name = path.name
    if name.startswith((".", "_")) or "__pycache__" in path.parts:
        return None
    label = relative_to(path.resolve(), project.root)
    if name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py")):
        return Suite("testinfra", path, label)
    if name.endswith((".yml", ".yaml")):
        return Suite("playbook", path, label)
    return None


def baked_variables(registry: Registry, version: Version) -> dict[str, Any]:
    """The non-secret variables version was baked with, its ancestors' included (nearest wins).

    They come from the registry, not from tasks.py, so that retesting an old version checks it
    against what it was built from.
    """
    chain: list[Version] = []
    node: Version | None = version
    while node is not None and len(chain) < 64:
        chain.append(node)
        if node.parent_role is None or node.parent_version is None:
            break
        node = registry.get(node.parent_role, node.parent_version)
    merged: dict[str, Any] = {}
    for item in reversed(chain):
        definition = item.inputs.get("definition")
        if isinstance(definition, Mapping):
            merged.update(definition.get("variables") or {})
    return merged


# -- running ----------------------------------------------------------------------------------
def run_acceptance(
    project: Project,
    node: Node,
    version: Version,
    *,
    registry: Registry,
    reporter: Reporter | None = None,
    redact: Redact = str,
    target: str = "docker",
) -> AcceptanceResult:
    """Start a throwaway instance of version's image, run every suite on it, and remove it.

    Failing tests are a result, not an exception; an instance that does not boot is a failure
    too. Only infrastructure trouble (docker not answering) raises.
    """
    artifact = version.artifact(target)
    if artifact is None or artifact.deleted_at is not None:
        raise RegistryError(f"{version.label} has no {target} image left to test")
    suites = discover_suites(project, node)
    variables = baked_variables(registry, version)
    started_at = utc_now()
    started = time.monotonic()
    labels = {"kiln.role": version.role, "kiln.version": str(version.version)}
    cases: list[TestCase] = []
    outputs: list[str] = []
    boot_s = 0.0
    with tempfile.TemporaryDirectory(prefix="kiln-acceptance-") as tmp:
        work = Path(tmp)
        vars_file = work / "vars.json"
        vars_file.write_text(json.dumps(variables, sort_keys=True, ensure_ascii=False))
        env = _test_env(project, version, vars_file, target)
        try:
            with throwaway_instance(artifact.ref, purpose="test", labels=labels) as instance:
                boot_s = time.monotonic() - started
                if reporter is not None:
                    reporter.phase(
                        version.role,
                        "tests",
                        f"{len(suites)} suite(s) on {instance.name} (booted in {boot_s:.1f}s)",
                    )
                testinfra = [s for s in suites if s.kind == "testinfra"]
                if testinfra:
                    got, text = _run_testinfra(project, testinfra, instance, env, work)
                    cases += got
                    outputs.append(text)
                for index, suite in enumerate(s for s in suites if s.kind == "playbook"):
                    got, text = _run_playbook(project, suite, instance, env, work, index)
                    cases += got
                    outputs.append(text)
        except TestFailure as exc:  # the image did not boot: that is its verdict
            cases.append(TestCase("boot", "failed", str(exc)))
            outputs.append(str(exc))
    return AcceptanceResult(
        role=version.role,
        version=version.version,
        cases=tuple(replace(c, message=redact(c.message)) for c in cases),
        output=redact("\n".join(outputs)),
        started_at=started_at,
        duration_s=time.monotonic() - started,
        boot_s=boot_s,
    )


def _test_env(project: Project, version: Version, vars_file: Path, target: str) -> dict[str, str]:
    env, _dropped = ansible_environment(os.environ)
    env.update(
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        KILN_ROLE=version.role,
        KILN_VERSION=str(version.version),
        KILN_TARGET=target,
        KILN_VARS_FILE=str(vars_file),
        KILN_PROJECT_ROOT=str(project.root),
        PYTHONDONTWRITEBYTECODE="1",
        # Only the plugins kiln names: a stray plugin in the environment cannot change a verdict.
        PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
    )
    return env


def _run_testinfra(
    project: Project, suites: Sequence[Suite], instance: Instance, env: dict[str, str], work: Path
) -> tuple[list[TestCase], str]:
    """All testinfra files in one pytest process; the verdict per test comes from its JUnit XML."""
    report = work / "junit.xml"
    ini = work / "pytest.ini"
    ini.write_text("[pytest]\njunit_family = xunit1\n")
    declared = [s.path for s in suites if s.label != BATTERY_LABEL]
    # conftest.py files inside the declared test directories count; the project's own do not.
    confcut = Path(os.path.commonpath([p.parent for p in declared])) if declared else BATTERY_DIR
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "testinfra.plugin",
        "-p",
        PLUGIN,
        "-p",
        "no:cacheprovider",
        "-c",
        str(ini),
        "--rootdir",
        str(project.root),
        "--confcutdir",
        str(confcut),
        "--import-mode=importlib",
        f"--hosts=docker://{instance.name}",
        f"--junitxml={report}",
        "--tb=short",
        "-q",
        "-rfE",
        "--color=no",
        *[str(s.path) for s in suites],
    ]
    proc = tools.run(argv, check=False, timeout=TIMEOUT_S, cwd=project.root, env=env)
    output = f"$ pytest --hosts=docker://{instance.name} {' '.join(s.label for s in suites)}\n"
    output += proc.stdout + proc.stderr
    cases = parse_junit(report, project.root) if report.exists() else []
    if proc.returncode not in (0, 1) or not cases:
        # 2-5: interrupted, internal or usage error, nothing collected. Say so as a test.
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-MESSAGE_LINES:])
        cases.append(TestCase("pytest", "failed", f"pytest exited {proc.returncode}\n{tail}"))
    return cases, output


def parse_junit(path: Path, root: Path) -> list[TestCase]:
    """Test cases from pytest's JUnit XML (xunit1, which names each test's file)."""
    try:
        tree = ET.parse(path)
    except ET.ParseError:
        return []
    cases = []
    for element in tree.iter("testcase"):
        name = _HOST_PARAM.sub("", element.get("name", "?"))
        file = element.get("file")
        if file:
            label = BATTERY_LABEL if _is_battery(root / file) else Path(file).as_posix()
            name = f"{label}::{name}"
        elif element.get("classname"):
            name = f"{element.get('classname')}::{name}"
        duration = float(element.get("time") or 0)
        problem = element.find("failure")
        if problem is None:
            problem = element.find("error")
        if problem is not None:
            cases.append(TestCase(name, "failed", _assertion_tail(problem), duration))
        elif element.find("skipped") is not None:
            skipped = element.find("skipped")
            reason = skipped.get("message", "") if skipped is not None else ""
            cases.append(TestCase(name, "skipped", reason, duration))
        else:
            cases.append(TestCase(name, "passed", "", duration))
    return cases


def _is_battery(path: Path) -> bool:
    try:
        path.resolve().relative_to(BATTERY_DIR)
    except (ValueError, OSError):
        return False
    return True


def _assertion_tail(problem: ET.Element) -> str:
    """The lines that say why: pytest's 'E ' lines, else the message attribute."""
    text = problem.text or ""
    explained = [line[1:].strip() for line in text.splitlines() if line.startswith("E ")]
    lines = explained or [line for line in problem.get("message", "").splitlines() if line]
    lines = lines or text.strip().splitlines()[-MESSAGE_LINES:]
    return "\n".join(lines[:MESSAGE_LINES])


def _run_playbook(
    project: Project,
    suite: Suite,
    instance: Instance,
    env: dict[str, str],
    work: Path,
    index: int,
) -> tuple[list[TestCase], str]:
    """One verify playbook against exactly the one test instance, read through kiln's events."""
    # The guard holds for tests too: a verify playbook may only touch the instance it is given.
    raise_for_findings(
        audit_playbook(suite.path, roles_path=project.content),
        f"{env['KILN_ROLE']} (acceptance test {suite.label})",
    )
    events_file = work / f"events-{index}.jsonl"
    playbook_env = dict(env)
    playbook_env.update(item.partition("=")[::2] for item in ANSIBLE_ENV_STATIC)
    playbook_env.update(
        ANSIBLE_CALLBACK_PLUGINS=str(CALLBACK_DIR),
        ANSIBLE_ROLES_PATH=project.content.roles_path_env(),
        ANSIBLE_COLLECTIONS_PATH=project.content.collections_path_env(),
        ANSIBLE_LOCAL_TEMP=str(work / "ansible-tmp"),
        KILN_EVENTS_FILE=str(events_file),
        KILN_PASS="verify",
    )
    argv = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        f"{instance.name},",
        "--limit",
        instance.name,
        "-e",
        "ansible_connection=community.docker.docker",
        "-e",
        "ansible_python_interpreter=/usr/bin/python3",
        "-e",
        f"@{env['KILN_VARS_FILE']}",
        "-e",
        json.dumps({"kiln_role": env["KILN_ROLE"], "kiln_version": int(env["KILN_VERSION"])}),
        str(suite.path),
    ]
    started = time.monotonic()
    proc = tools.run(argv, check=False, timeout=TIMEOUT_S, cwd=project.root, env=playbook_env)
    took = time.monotonic() - started
    output = f"$ ansible-playbook {suite.label} (on {instance.name})\n{proc.stdout}{proc.stderr}"
    if proc.returncode == 0:
        return [TestCase(suite.label, "passed", "", took)], output
    events = _read_events(events_file)
    failed = [
        e
        for e in events
        if e.get("event") == "task_result" and e.get("status") in ("failed", "unreachable")
    ]
    if not failed:
        tail = "\n".join(output.strip().splitlines()[-MESSAGE_LINES:])
        return [TestCase(suite.label, "failed", f"exit {proc.returncode}\n{tail}", took)], output
    cases = []
    for event in failed:
        detail = "\n".join(
            part for part in (event.get("msg"), event.get("stderr"), event.get("stdout")) if part
        )
        spot = Path(str(event.get("path", "")).rsplit(":", 1)[0])
        where = relative_to(spot.resolve(), project.root)
        line = str(event.get("path", "")).rpartition(":")[2]
        message = f"task {event.get('task')!r} at {where}:{line}\n{detail}".strip()
        name = f"{suite.label}::{event.get('task')}"
        cases.append(TestCase(name, "failed", "\n".join(message.splitlines()[:MESSAGE_LINES])))
    return cases, output


def _read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


# -- the verdict ------------------------------------------------------------------------------
def record_result(registry: Registry, version: Version, result: AcceptanceResult) -> Version:
    """Record the run and set the status (tested or failed); returns the updated version.

    A revoked version keeps its status: a passing retest does not bring it back.
    """
    status: str | None = "tested" if result.passed else "failed"
    if version.status == "revoked":
        status = None
    registry.record_test_run(
        version.role,
        version.version,
        suite=SUITE,
        passed=result.passed,
        summary=result.summary,
        output=result.output,
        started_at=result.started_at,
        duration_s=round(result.duration_s, 3),
        status=status,
    )
    if status is None:
        return version
    return replace(version, status=status, status_reason=None if result.passed else result.summary)


def failure_message(result: AcceptanceResult, *, log: str | None = None) -> str:
    """What a user reads when the gate closes: each failing test, why, and what to do next."""
    lines = [
        f"{result.role} v{result.version} failed its acceptance tests "
        f"({len(result.failures)} of {len(result.cases)} failed, {result.duration_s:.1f}s):"
    ]
    for case in result.failures:
        lines.append(f"  FAILED {case.name}")
        lines += [f"      {line}" for line in case.message.splitlines()[:MESSAGE_LINES]]
    lines.append(
        f"{result.role} v{result.version} is marked failed: it is never used as a parent or "
        "promoted. Fix the role (or the test) and bake again; if the failure was transient, "
        f"rerun the tests with `invoke test {result.role} --version {result.version}`."
    )
    if log:
        lines.append(f"Full output: {log}")
    return "\n".join(lines)


def write_log(project: Project, result: AcceptanceResult) -> Path:
    """Keep the whole output next to the version's bake logs; returns its path."""
    log_dir = project.state_path / "logs" / result.role / str(result.version)
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / "acceptance.log"
    path.write_text(f"{result.summary}\n\n{result.output}")
    return path


def retest(
    project: Project,
    registry: Registry,
    role: str,
    version: int | None = None,
    *,
    reporter: Reporter | None = None,
    target: str = "docker",
    raise_on_failure: bool = True,
) -> tuple[Version, AcceptanceResult]:
    """Rerun the acceptance tests of a recorded version (default: the newest) and set its status.

    When a test fails the verdict is recorded first, then TestFailure is raised (unless
    raise_on_failure is False: then the caller reads result.passed).
    """
    node = project.get(role)
    found = registry.get(role, version) if version else registry.latest(role, target=target)
    if found is None:
        which = f"version {version}" if version else "any version"
        raise RegistryError(f"{role} has no recorded {which}; run `invoke bake {role}` first")
    result = run_acceptance(project, node, found, registry=registry, reporter=reporter)
    updated = record_result(registry, found, result)
    log = write_log(project, result)
    if raise_on_failure and not result.passed:
        raise TestFailure(failure_message(result, log=relative_to(log.resolve(), project.root)))
    return updated, result
