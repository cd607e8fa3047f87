"""Molecule role tests: find, run and scaffold the scenarios of Ansible roles.

kiln's own scenario of a role lives in molecule/<role>/; a role may also ship its own in
roles/<role>/molecule/<scenario>/, which kiln adapts (kiln.role_scenarios). Both run offline
against throwaway systemd containers (see molecule/_shared/create.yml).
"""

from __future__ import annotations

import dataclasses
import json
import os
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

import yaml

from kiln import role_scenarios as shipped
from kiln import tools
from kiln.controller import molecule as sandboxed_ansible
from kiln.errors import DefinitionError, RoleTestFailure, ToolError
from kiln.molecule_output import ANSI, StepTracker
from kiln.resources import MOLECULE_SHARED_DIR
from kiln.role_scaffold import new_role
from kiln.tools import stop_process
from kiln.watchdog import Lease, watchdog

__all__ = [
    "RoleTestFailure",
    "RoleTestReport",
    "new_role",
    "role_scenarios",
    "test_all_roles",
    "test_role",
]

#: How many lines of Molecule's output a failure message and a report carry.
TAIL_LINES = 20
#: The label create.yml puts on every instance of one run, so that a run can reap its own.
RUN_LABEL = "kiln.molecule.run"

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
    #: The role-shipped scenario run (roles/<role>/molecule/<scenario>/); None for kiln's own.
    scenario: str | None = None
    #: How kiln adapted a role-shipped scenario (driver, images replaced, steps skipped).
    adaptation: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """The role, and the role-shipped scenario if one ran: ``web``, ``acme.chrony:default``."""
        return self.name if self.scenario is None else f"{self.name}:{self.scenario}"


@dataclass(frozen=True)
class _Plan:
    """One scenario to run: kiln's own (scenario None) or one the role ships."""

    role: str
    scenario: str | None = None
    role_path: Path | None = None


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
    scenario: str | None = None,
    roles_paths: Sequence[Path] | None = None,
) -> RoleTestReport:
    """Run one scenario of role NAME with ``molecule test`` and report; raise on failure.

    Without ``scenario``, kiln's own scenario (molecule/NAME/) runs if there is one, else the
    role's own ``default`` scenario. ``scenario`` names a scenario the role ships
    (roles_paths/NAME/molecule/SCENARIO/), run adapted to kiln's containers, offline. ``image``
    overrides the instance image (KILN_TEST_IMAGE). ``on_line`` receives every line of
    Molecule's output as it arrives. Raises RoleTestFailure (a TestFailure) when the scenario
    fails, DefinitionError for an unknown role or scenario, ToolError when molecule or docker is
    missing.
    """
    paths = _roles_paths(project_root, roles_paths)
    plan = _plan_one(name, scenario, project_root, paths)
    report = _execute(plan, project_root=project_root, image=image, on_line=on_line, paths=paths)
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
    roles_paths: Sequence[Path] | None = None,
    discover_in: Sequence[Path] | None = None,
) -> list[RoleTestReport]:
    """Run the scenarios of every role (or of those in ``names``); raise if any failed.

    A role with a kiln scenario (molecule/<role>/) runs that one; a role without one runs every
    scenario it ships itself, as ``molecule test --all`` in the role would. Every scenario runs
    even when an earlier one fails. ``on_report`` receives each report as soon as its scenario
    ends. The RoleTestFailure raised at the end names every failed scenario and carries all the
    reports. ``discover_in`` limits the roles paths whose roles are tested (say, the project's
    own, not installed requirements); all of ``roles_paths`` still resolve roles.
    """
    paths = _roles_paths(project_root, roles_paths)
    plans = _plan_all(project_root, paths if discover_in is None else discover_in)
    known = sorted({plan.role for plan in plans})
    unknown = [name for name in names or () if name not in known]
    if unknown:
        raise DefinitionError(
            f"no Molecule scenario for {', '.join(map(repr, unknown))}; "
            f"roles with a scenario: {', '.join(known) or 'none'}"
        )
    selected = [plan for plan in plans if names is None or plan.role in names]
    reports: list[RoleTestReport] = []
    for plan in selected:
        report = _execute(
            plan, project_root=project_root, image=image, on_line=on_line, paths=paths
        )
        reports.append(report)
        if on_report is not None:
            on_report(report)
    failed = [report for report in reports if not report.passed]
    if failed:
        raise RoleTestFailure(
            f"{len(failed)} of {len(reports)} role scenarios failed: "
            f"{', '.join(report.label for report in failed)}\n\n"
            + "\n\n".join(_failure_message(report, project_root) for report in failed),
            reports,
        )
    return reports


def _roles_paths(project_root: Path, roles_paths: Sequence[Path] | None) -> tuple[Path, ...]:
    return tuple(roles_paths) if roles_paths is not None else (project_root / "roles",)


def _plan_one(name: str, scenario: str | None, project_root: Path, paths: Sequence[Path]) -> _Plan:
    role_path = shipped.find_role(name, paths)
    if scenario is None and name in role_scenarios(project_root):
        return _Plan(name)
    if role_path is None:
        with_scenario = ", ".join(_roles_with_scenarios(project_root, paths)) or "none"
        raise DefinitionError(
            f"role {name!r} has no Molecule scenario (needs roles/{name}/ and "
            f"molecule/{name}/molecule.yml under {project_root}, or a scenario the role ships in "
            f"<roles path>/{name}/molecule/; roles paths: {', '.join(map(str, paths))}); "
            f"roles with a scenario: {with_scenario}"
        )
    wanted = scenario or shipped.DEFAULT_SCENARIO
    available = shipped.shipped_scenarios(role_path)
    if wanted not in available:
        own = ""
        if name in role_scenarios(project_root):
            own = f" (kiln's own scenario, molecule/{name}/, runs without --scenario)"
        raise DefinitionError(
            f"role {name!r} has no Molecule scenario {wanted!r} "
            f"({role_path}/molecule/{wanted}/molecule.yml); "
            f"scenarios it ships: {', '.join(available) or 'none'}{own}"
        )
    return _Plan(name, wanted, role_path)


def _plan_all(project_root: Path, paths: Sequence[Path]) -> list[_Plan]:
    own = set(role_scenarios(project_root))
    plans = [_Plan(name) for name in own]
    for name, role_path in _roles_in(paths).items():
        if name not in own:
            plans += [_Plan(name, s, role_path) for s in shipped.shipped_scenarios(role_path)]
    return sorted(plans, key=lambda plan: (plan.role, plan.scenario or ""))


def _roles_in(paths: Sequence[Path]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for roles_path in paths:
        if roles_path.is_dir():
            for path in sorted(roles_path.iterdir()):
                if path.is_dir() and not path.name.startswith("."):
                    found.setdefault(path.name, path)
    return found


def _roles_with_scenarios(project_root: Path, paths: Sequence[Path]) -> list[str]:
    return sorted({plan.role for plan in _plan_all(project_root, paths)})


def _molecule_executable() -> Path:
    # The molecule next to this interpreter, so tests use the venv's molecule and ansible.
    molecule = Path(sys.executable).parent / "molecule"
    if not molecule.is_file():
        raise ToolError(
            f"molecule is not installed next to {sys.executable}; "
            "install the dev extras (pip install -e '.[dev]')"
        )
    tools.which("docker")  # Molecule scenarios run in Docker containers
    return molecule


@dataclass(frozen=True)
class _Run:
    """Where and how one ``molecule test`` runs."""

    name: str
    cwd: Path
    scenario_name: str
    platforms: tuple[str, ...]
    run_id: str
    image: str | None
    #: kiln's create.yml and destroy.yml (the only playbooks that run outside the sandbox).
    shared_dir: Path | None = None
    #: What the sandboxed playbooks read besides the project: roles paths, the role itself.
    readable: tuple[Path, ...] = ()
    scenario: str | None = None
    adaptation: tuple[str, ...] = ()


def _execute(
    plan: _Plan,
    *,
    project_root: Path,
    image: str | None,
    on_line: Callable[[str], None] | None,
    paths: Sequence[Path],
) -> RoleTestReport:
    run_id = uuid.uuid4().hex[:12]
    if plan.scenario is None or plan.role_path is None:
        scenario_dir = project_root / "molecule" / plan.role
        run = _Run(
            plan.role,
            project_root,
            plan.role,
            _platforms(scenario_dir),
            run_id,
            image,
            shared_dir=_shared_dir(project_root),
            readable=tuple(paths),
        )
        return _run_molecule(run, on_line=on_line)
    with tempfile.TemporaryDirectory(prefix="kiln-role-scenario-") as workdir:
        prepared = shipped.prepare_scenario(
            plan.role_path,
            plan.scenario,
            Path(workdir),
            shared_dir=_shared_dir(project_root),
            roles_paths=paths,
        )
        used = image or os.environ.get("KILN_TEST_IMAGE") or "kiln/debian-bookworm:latest"
        run = _Run(
            plan.role,
            prepared.project_dir,
            plan.scenario,
            prepared.platforms,
            run_id,
            image,
            shared_dir=_shared_dir(project_root),
            # The temporary project links the role and its aliases: their targets, too.
            readable=(Path(workdir), plan.role_path.resolve(), *paths),
            scenario=plan.scenario,
            adaptation=tuple(prepared.adaptation.notes(used)),
        )
        report = _run_molecule(run, on_line=on_line)
    # Errors name files of the temporary copy; point them at the role's own files instead.
    detail = report.failure_detail.replace(f"{prepared.project_dir}/", f"{plan.role_path}/")
    return dataclasses.replace(report, failure_detail=detail)


def _shared_dir(project_root: Path) -> Path:
    # The project's molecule/_shared/ (what its own scenarios import), else the copy kiln ships.
    candidates = (project_root / "molecule" / "_shared", MOLECULE_SHARED_DIR)
    for candidate in candidates:
        if (candidate / "create.yml").is_file() and (candidate / "destroy.yml").is_file():
            return candidate.resolve()
    raise ToolError(
        f"kiln's Molecule playbooks (create.yml, destroy.yml) are in neither "
        f"{candidates[0]} nor {candidates[1]}; reinstall kiln"
    )


def _platforms(scenario_dir: Path) -> tuple[str, ...]:
    # The platform names of one of kiln's own scenarios, so that kiln names their containers;
    # create.yml derives names itself when this cannot be read.
    try:
        config = yaml.safe_load((scenario_dir / "molecule.yml").read_text(encoding="utf-8"))
        names = tuple(str(p["name"]) for p in config["platforms"])
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return ()
    return names


def _run_molecule(run: _Run, *, on_line: Callable[[str], None] | None) -> RoleTestReport:
    molecule = _molecule_executable()
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    steps = StepTracker()
    started = time.monotonic()
    # The watchdog ends molecule and removes its instances if kiln is killed (kiln.watchdog).
    lease = Lease(labels=(f"{RUN_LABEL}={run.run_id}",))
    with tempfile.TemporaryDirectory(prefix="kiln-molecule-") as home, watchdog(lease):
        env = {**_molecule_env(Path(home), run), **lease.env}
        try:
            proc = subprocess.Popen(
                [str(molecule), "test", "--scenario-name", run.scenario_name],
                cwd=run.cwd,
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
                line = ANSI.sub("", raw.rstrip("\r\n"))
                tail.append(line)
                steps.feed(line)
                if on_line is not None:
                    on_line(line)
            returncode = proc.wait()
        finally:
            stop_process(proc)  # interrupted: stop molecule before reaping its containers
            _reap_instances(run.run_id)
    passed = returncode == 0
    return RoleTestReport(
        name=run.name,
        passed=passed,
        duration_s=round(time.monotonic() - started, 3),
        output_tail="\n".join(tail),
        failed_step=None if passed else steps.failed_step,
        failure_detail="" if passed else "\n".join(steps.detail),
        returncode=returncode,
        scenario=run.scenario,
        adaptation=run.adaptation,
    )


def _molecule_env(home: Path, run: _Run) -> dict[str, str]:
    env = dict(os.environ)
    # Molecule's ansible-playbook is kiln's shim: the role's playbooks run in kiln's sandbox.
    shim = home / "bin"
    shim.mkdir(exist_ok=True)
    sandboxed_ansible.write_shim(shim)
    path = [str(shim), str(Path(sys.executable).parent), env.get("PATH", "")]
    env.update(
        {
            "PATH": os.pathsep.join(path),
            # Molecule's ephemeral state, ansible-compat's cache and Ansible's own files all stay
            # in a temporary home instead of /root/.ansible and /root/.cache.
            "HOME": str(home),
            "ANSIBLE_HOME": str(home / ".ansible"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "KILN_MOLECULE_RUN": run.run_id,
            "NO_COLOR": "1",
            "PY_COLORS": "0",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "PYTHONUNBUFFERED": "1",
            # A testinfra verifier imports the role's tests, maybe through a link into the role:
            # no bytecode and no pytest cache may be written next to them.
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTEST_ADDOPTS": f"{env.get('PYTEST_ADDOPTS', '')} -p no:cacheprovider".strip(),
        }
    )
    if run.platforms:
        label = run.name if run.scenario is None else f"{run.name}-{run.scenario}"
        names = shipped.instance_names(label, run.platforms, run.run_id)
        env["KILN_MOLECULE_NAMES"] = json.dumps(names)
    if run.image is not None:
        env["KILN_TEST_IMAGE"] = run.image
    if run.shared_dir is not None:
        env[sandboxed_ansible.SHARED_DIR_VAR] = str(run.shared_dir)
    env[sandboxed_ansible.READABLE_VAR] = os.pathsep.join(str(p) for p in run.readable)
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


_MOLECULE_HINT = Path(sys.executable).parent / "molecule"


def _failure_message(report: RoleTestReport, project_root: Path) -> str:
    step = f" at step {report.failed_step!r}" if report.failed_step else ""
    detail = "".join(f"  {line}\n" for line in report.failure_detail.splitlines())
    tail = "".join(f"  | {line}\n" for line in report.output_tail.splitlines())
    if report.scenario is None:
        what = f"Molecule scenario {report.name!r}"
        rerun = f"cd {project_root} && {_MOLECULE_HINT} test -s {report.name}"
    else:
        what = f"Molecule scenario {report.scenario!r} of role {report.name!r}"
        rerun = f"invoke test-role {report.name} --scenario {report.scenario}"
    adapted = "".join(f"  {line}\n" for line in report.adaptation)
    return (
        f"{what} failed{step} (exit code {report.returncode}, {report.duration_s:.1f} s).\n"
        + (f"What failed:\n{detail}" if detail else "")
        + (f"Run adapted by kiln:\n{adapted}" if adapted else "")
        + f"Last {TAIL_LINES} lines of output:\n{tail}"
        f"Rerun it with: {rerun}"
    )
