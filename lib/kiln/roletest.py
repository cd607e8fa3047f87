"""Molecule role tests: find, run and scaffold the scenario of each Ansible role (molecule/<role>/).

Scenarios run offline against throwaway systemd containers (see molecule/_shared/create.yml).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import jinja2

from kiln.errors import DefinitionError, RenderError, TestFailure, ToolError
from kiln.tools import stop_process

__all__ = [
    "RoleTestFailure",
    "RoleTestReport",
    "new_role",
    "role_scenarios",
    "test_all_roles",
    "test_role",
]

#: A role name that Ansible, Galaxy (role_name) and a variable prefix all accept.
ROLE_NAME = re.compile(r"[a-z][a-z0-9_]*")
#: How many lines of Molecule's output a failure message and a report carry.
TAIL_LINES = 20
#: The label create.yml puts on every instance of one run, so that a run can reap its own.
RUN_LABEL = "kiln.molecule.run"
#: Scaffold parts and where each one lands; "{name}" is the new role's name.
SCAFFOLD_PARTS = {"role": "roles/{name}", "molecule": "molecule/{name}"}

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# Molecule 26 announces each step as "INFO     [web > converge] Executing" and closes it with
# "... Executed: Successful" or "Executed: Failed"; with colours on it writes "web ➜ converge: ...".
_STEP = re.compile(
    r"(?:\[(?P<s1>[^\]]+?) > (?P<a1>[\w-]+)\]|(?P<s2>\S+) ➜ (?P<a2>[\w-]+):)"
    r" (?P<what>Executing|Executed: (?P<result>\w+))"
)

_FAILED_TASK = re.compile(r"(?:fatal|failed): \[")

_F = TypeVar("_F", bound=Callable[..., object])


def _not_a_pytest_test(func: _F) -> _F:
    # test_role and test_all_roles are library functions: a test module that imports them by
    # name must not have pytest collect them as tests.
    func.__test__ = False  # type: ignore[attr-defined]
    return func


@dataclass(frozen=True)
class RoleTestReport:
    """The outcome of one ``molecule test`` run."""

    __test__ = False  # not a pytest test class

    name: str
    passed: bool
    duration_s: float
    #: The last TAIL_LINES lines of Molecule's output, without colour codes.
    output_tail: str
    #: The Molecule step that failed (create, converge, idempotence, verify...), if it can be told.
    failed_step: str | None = None
    #: The failed Ansible tasks and Molecule's own errors, when the run failed.
    failure_detail: str = ""
    returncode: int = 0


class RoleTestFailure(TestFailure):
    """One or more role scenarios failed; ``reports`` holds the report of every scenario run."""

    def __init__(self, message: str, reports: Sequence[RoleTestReport]) -> None:
        super().__init__(message)
        self.reports = tuple(reports)


def role_scenarios(project_root: Path) -> list[str]:
    """Names of the roles in roles/ that have a Molecule scenario at molecule/<role>/."""
    roles = project_root / "roles"
    if not roles.is_dir():
        return []
    return sorted(
        path.name
        for path in roles.iterdir()
        if path.is_dir() and (project_root / "molecule" / path.name / "molecule.yml").is_file()
    )


@_not_a_pytest_test
def test_role(
    name: str,
    *,
    project_root: Path,
    image: str | None = None,
    on_line: Callable[[str], None] | None = None,
) -> RoleTestReport:
    """Run ``molecule test -s NAME`` from the project root and report; raise on failure.

    ``image`` overrides the instance image (KILN_TEST_IMAGE). ``on_line`` receives every line of
    Molecule's output as it arrives. Raises RoleTestFailure (a TestFailure) when the scenario
    fails, DefinitionError when the role has no scenario, ToolError when molecule or docker is
    missing.
    """
    known = role_scenarios(project_root)
    if name not in known:
        raise DefinitionError(
            f"role {name!r} has no Molecule scenario (needs roles/{name}/ and "
            f"molecule/{name}/molecule.yml under {project_root}); "
            f"roles with a scenario: {', '.join(known) or 'none'}"
        )
    report = _run_molecule(name, project_root=project_root, image=image, on_line=on_line)
    if not report.passed:
        raise RoleTestFailure(_failure_message(report, project_root), [report])
    return report


@_not_a_pytest_test
def test_all_roles(
    *,
    project_root: Path,
    image: str | None = None,
    names: Sequence[str] | None = None,
    on_line: Callable[[str], None] | None = None,
    on_report: Callable[[RoleTestReport], None] | None = None,
) -> list[RoleTestReport]:
    """Run every role's scenario (or those in ``names``), one after another; raise if any failed.

    Every scenario runs even when an earlier one fails. ``on_report`` receives each report as
    soon as its scenario ends. The RoleTestFailure raised at the end names every failed scenario
    and carries all the reports.
    """
    known = role_scenarios(project_root)
    selected = list(names) if names is not None else known
    unknown = [name for name in selected if name not in known]
    if unknown:
        raise DefinitionError(
            f"no Molecule scenario for {', '.join(map(repr, unknown))}; "
            f"roles with a scenario: {', '.join(known) or 'none'}"
        )
    reports: list[RoleTestReport] = []
    failures: list[str] = []
    for name in selected:
        report = _run_molecule(name, project_root=project_root, image=image, on_line=on_line)
        reports.append(report)
        if not report.passed:
            failures.append(_failure_message(report, project_root))
        if on_report is not None:
            on_report(report)
    if failures:
        failed = [report.name for report in reports if not report.passed]
        raise RoleTestFailure(
            f"{len(failed)} of {len(reports)} role scenarios failed: {', '.join(failed)}\n\n"
            + "\n\n".join(failures),
            reports,
        )
    return reports


def new_role(name: str, *, project_root: Path) -> list[Path]:
    """Create roles/NAME/ and molecule/NAME/ from templates/scaffold/; return the files written.

    The new role passes ``molecule test -s NAME`` as generated. Raises DefinitionError for a bad
    or taken name, or when the project lacks the scaffold or the shared Molecule playbooks.
    """
    if not ROLE_NAME.fullmatch(name):
        raise DefinitionError(
            f"invalid role name {name!r}: use lowercase letters, digits and underscores, "
            "starting with a letter (for example 'redis' or 'app_server')"
        )
    for taken in (project_root / "roles" / name, project_root / "molecule" / name):
        if taken.exists():
            raise DefinitionError(
                f"role {name!r} already exists ({taken.relative_to(project_root)}); "
                f"existing roles: {', '.join(_existing_roles(project_root)) or 'none'}"
            )
    scaffold = project_root / "templates" / "scaffold"
    missing = [
        path
        for path in (
            *(scaffold / part for part in SCAFFOLD_PARTS),
            project_root / "molecule" / "_shared" / "create.yml",
            project_root / "molecule" / "_shared" / "destroy.yml",
        )
        if not path.exists()
    ]
    if missing:
        raise DefinitionError(
            f"cannot scaffold role {name!r}: {', '.join(str(p) for p in missing)} missing"
        )

    # Render everything before writing anything, so a broken template leaves no half-made role.
    env = _scaffold_environment(scaffold)
    rendered: list[tuple[Path, str]] = []
    for part, target in SCAFFOLD_PARTS.items():
        for source in sorted((scaffold / part).rglob("*")):
            if not source.is_file():
                continue
            template_name = source.relative_to(scaffold).as_posix()
            try:
                text = env.get_template(template_name).render(name=name)
            except jinja2.TemplateError as exc:
                raise RenderError(
                    f"scaffold template {template_name} failed to render for role {name!r}: {exc}"
                ) from exc
            relative = source.relative_to(scaffold / part).as_posix().replace("__name__", name)
            rendered.append((project_root / target.format(name=name) / relative, text))

    for path, text in rendered:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return [path for path, _ in rendered]


def _scaffold_environment(scaffold: Path) -> jinja2.Environment:
    # Square brackets, because the scaffolded files are full of Ansible's own {{ ... }}.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(scaffold),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        variable_start_string="[[",
        variable_end_string="]]",
        block_start_string="[%",
        block_end_string="%]",
        comment_start_string="[#",
        comment_end_string="#]",
    )


def _existing_roles(project_root: Path) -> list[str]:
    roles = project_root / "roles"
    return sorted(p.name for p in roles.iterdir() if p.is_dir()) if roles.is_dir() else []


def _molecule_executable() -> Path:
    # The molecule next to this interpreter, so tests use the venv's molecule and ansible.
    molecule = Path(sys.executable).parent / "molecule"
    if not molecule.is_file():
        raise ToolError(
            f"molecule is not installed next to {sys.executable}; "
            "install the dev extras (pip install -e '.[dev]')"
        )
    if shutil.which("docker") is None:
        raise ToolError("docker is not on PATH; Molecule scenarios run in Docker containers")
    return molecule


def _run_molecule(
    name: str,
    *,
    project_root: Path,
    image: str | None,
    on_line: Callable[[str], None] | None,
) -> RoleTestReport:
    molecule = _molecule_executable()
    run_id = uuid.uuid4().hex[:12]
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    steps = _StepTracker()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kiln-molecule-") as home:
        env = _molecule_env(Path(home), run_id=run_id, image=image)
        try:
            proc = subprocess.Popen(
                [str(molecule), "test", "--scenario-name", name],
                cwd=project_root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                encoding="utf-8",
                errors="replace",
            )
        except OSError as exc:
            raise ToolError(f"cannot start {molecule}: {exc}") from exc
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = _ANSI.sub("", raw.rstrip("\r\n"))
                tail.append(line)
                steps.feed(line)
                if on_line is not None:
                    on_line(line)
            returncode = proc.wait()
        finally:
            stop_process(proc)  # interrupted: stop molecule before reaping its containers
            _reap_instances(run_id)
    passed = returncode == 0
    return RoleTestReport(
        name=name,
        passed=passed,
        duration_s=round(time.monotonic() - started, 3),
        output_tail="\n".join(tail),
        failed_step=None if passed else steps.failed_step,
        failure_detail="" if passed else "\n".join(steps.detail),
        returncode=returncode,
    )


def _molecule_env(home: Path, *, run_id: str, image: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
            # Molecule's ephemeral state, ansible-compat's cache and Ansible's own files all stay
            # in a temporary home instead of /root/.ansible and /root/.cache.
            "HOME": str(home),
            "ANSIBLE_HOME": str(home / ".ansible"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "KILN_MOLECULE_RUN": run_id,
            "NO_COLOR": "1",
            "PY_COLORS": "0",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if image is not None:
        env["KILN_TEST_IMAGE"] = image
    return env


def _reap_instances(run_id: str) -> None:
    # destroy.yml normally removes the instances; this covers an interrupted or crashed molecule.
    try:
        found = subprocess.run(
            ["docker", "ps", "--all", "--quiet", f"--filter=label={RUN_LABEL}={run_id}"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        ids = found.stdout.split()
        if ids:
            subprocess.run(
                ["docker", "rm", "--force", "--volumes", *ids],
                capture_output=True,
                check=False,
                timeout=120,
            )
    except (OSError, subprocess.TimeoutExpired):
        pass  # best effort: a failure here must not hide the test's own result


class _StepTracker:
    """Follows Molecule's output to tell which step failed and why."""

    #: At most this many lines of failure detail (failed Ansible tasks, Molecule's own errors).
    MAX_DETAIL = 12

    def __init__(self) -> None:
        self.current: str | None = None
        self.failed: str | None = None
        self.detail: list[str] = []
        self._task: str | None = None
        self._task_start = 0
        self._listing = False

    def feed(self, line: str) -> None:
        match = _STEP.search(line)
        if match is not None:
            self._listing = False
            step = match["a1"] or match["a2"]
            if match["what"] == "Executing":
                if self.current is not None and self.failed is None:
                    self.failed = self.current  # the previous step never reported its end
                self.current = step
            elif match["result"] == "Failed" and self.failed is None:
                self.failed = step
            elif self.current == step:
                self.current = None
            return
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            self._task = line.rstrip(" *")
            self._task_start = len(self.detail)
        elif _FAILED_TASK.match(line) or line.startswith(("[ERROR]: ", "Origin: ")):
            if self._task is not None:  # name the task once, before its first error line
                self._note(self._task)
                self._task = None
            self._note(_summarize_failure(line) if _FAILED_TASK.match(line) else line[:300])
        elif line.strip() == "...ignoring":
            del self.detail[self._task_start :]  # an ignored failure is no failure
        elif line.startswith("CRITICAL") and "glob failed" not in line:
            self._note(line)
            self._listing = True  # e.g. the tasks that broke idempotence, one "* " line each
        elif self._listing and line.startswith("* "):
            self._note(line)
        else:
            self._listing = False

    def _note(self, line: str) -> None:
        if len(self.detail) < self.MAX_DETAIL:
            self.detail.append(line)

    @property
    def failed_step(self) -> str | None:
        return self.failed or self.current


def _summarize_failure(line: str) -> str:
    # "fatal: [instance]: FAILED! => {json}" carries the whole module result; keep what a reader
    # needs (msg, stderr) instead of the first few hundred characters of it.
    head, sep, payload = line.partition(" => ")
    try:
        result = json.loads(payload) if sep else None
    except ValueError:
        result = None
    if isinstance(result, dict):
        parts = [str(result[key]).strip()[:300] for key in ("msg", "stderr") if result.get(key)]
        if parts:
            return f"{head} => {' | '.join(parts)}"
    return line[:300]


_MOLECULE_HINT = Path(sys.executable).parent / "molecule"


def _failure_message(report: RoleTestReport, project_root: Path) -> str:
    step = f" at step {report.failed_step!r}" if report.failed_step else ""
    detail = "".join(f"  {line}\n" for line in report.failure_detail.splitlines())
    tail = "".join(f"  | {line}\n" for line in report.output_tail.splitlines())
    return (
        f"Molecule scenario {report.name!r} failed{step} (exit code {report.returncode}, "
        f"{report.duration_s:.1f} s).\n"
        + (f"What failed:\n{detail}" if detail else "")
        + f"Last {TAIL_LINES} lines of output:\n{tail}"
        f"Rerun it with: cd {project_root} && {_MOLECULE_HINT} test -s {report.name}"
    )
