"""Static checks before any builder starts: ansible-playbook --syntax-check and ansible-lint.

Both run on every Ansible role a bake applies (meta dependencies included), cached under
.kiln/lint/ by content digest. Only what breaks a bake blocks it; style findings are warnings
unless the role opts into an ansible-lint profile (see `blocking`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import yaml

from kiln import tools
from kiln.ansible_content import AnsibleRole
from kiln.console import Reporter
from kiln.errors import KilnError, LintError, ToolError
from kiln.fingerprint import canonical_json, file_digest, tree_digests
from kiln.guard import ansible_environment
from kiln.model import Project, Role
from kiln.paths import relative_to

__all__ = [
    "PROFILE",
    "LintError",
    "LintFinding",
    "LintResult",
    "blocking",
    "check_role",
    "lint_ansible_roles",
    "lint_digest",
    "prepare",
]

#: The profile ansible-lint reports with: production, its strictest, so that every finding a role
#: could opt into is known. Which findings block is decided afterwards (see `blocking`).
PROFILE = "production"
#: Rules that mean Ansible cannot load the content: they block every bake.
LOAD_PROFILE = "min"
#: Parts of a role that never run in a bake (its own Molecule scenarios and test playbooks).
NOT_LINTED = ("molecule", "tests")
CACHE_SCHEMA = 2
#: Project-level ansible-lint configuration files; their content is part of the cache key.
CONFIG_FILES = (
    ".ansible-lint",
    ".ansible-lint.yml",
    ".ansible-lint.yaml",
    ".config/ansible-lint.yml",
)
TIMEOUT_S = 600


@dataclass(frozen=True)
class LintFinding:
    """One ansible-lint finding, located relative to the project root."""

    path: str
    line: int | None
    rule: str
    message: str
    #: "error" fails the profile; "warning" is reported only.
    level: str = "error"

    @property
    def location(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path

    def __str__(self) -> str:
        return f"{self.location}: [{self.rule}] {self.message}"


@dataclass(frozen=True)
class LintResult:
    """The checks of one Ansible role at one content digest."""

    ansible_role: str
    digest: str
    syntax_error: str = ""
    findings: tuple[LintFinding, ...] = ()
    duration_s: float = 0.0
    cached: bool = field(default=False, compare=False)

    @property
    def errors(self) -> list[LintFinding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def ok(self) -> bool:
        return not self.syntax_error and not self.errors


Runner = Callable[[Sequence[str], Path, dict[str, str]], tuple[int, str, str]]


def _run(argv: Sequence[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    proc = tools.run(argv, check=False, timeout=TIMEOUT_S, cwd=cwd, env=env)
    return proc.returncode, proc.stdout, proc.stderr


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError as exc:
        raise ToolError(f"{package} is not installed in this Python; {tools.INSTALL_HINT}") from exc


def lint_digest(project: Project, ansible_role: str) -> str:
    """What a lint verdict depends on: the role's files and its dependencies', tools, config."""
    closure = project.content.closure((ansible_role,))
    config = {
        name: file_digest(project.root / name)
        for name in CONFIG_FILES
        if (project.root / name).is_file()
    }
    inputs = {
        "schema": CACHE_SCHEMA,
        "role": ansible_role,
        "files": {found.name: tree_digests(found.path) for found in closure},
        "profile": PROFILE,
        "config": config,
        "ansible-lint": _version("ansible-lint"),
        "ansible-core": _version("ansible-core"),
    }
    return hashlib.sha256(canonical_json(inputs).encode()).hexdigest()


def _cache_path(project: Project, digest: str) -> Path:
    return project.state_path / "lint" / f"{digest[:40]}.json"


def _load_cached(path: Path) -> LintResult | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        findings = tuple(LintFinding(**f) for f in data.pop("findings"))
        data.pop("cached", None)
        return LintResult(findings=findings, cached=True, **data)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _store(path: Path, result: LintResult) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(result), indent=1, sort_keys=True))
    os.replace(tmp, path)


def _environment() -> dict[str, str]:
    env, _dropped = ansible_environment(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(ANSIBLE_NOCOLOR="1", NO_COLOR="1", ANSIBLE_RETRY_FILES_ENABLED="False")
    return env


# Digests of the verdicts this process produced: a role's check after prepare() says that lint
# ran (and how long it took) rather than calling the verdict cached.
_RAN_HERE: set[str] = set()
_RAN_HERE_LOCK = threading.Lock()


def prepare(project: Project, roles: Sequence[Role], *, runner: Runner = _run) -> None:
    """Lint every Ansible role these roles apply that has no verdict yet, in one ansible-lint run.

    A bake of several roles checks each one (check_role) just before its builder, after its
    parent's bake: without this, a new project pays ansible-lint's start-up once per role, in
    series with the bakes. Errors (an unknown Ansible role, ansible-lint failing) are left to
    check_role, which reports them as the failure of the role they belong to.
    """
    try:
        names = [n for role in roles for n in project.content.closure_names(role.ansible_roles)]
        lint_ansible_roles(project, names, runner=runner)
    except KilnError:
        return


def lint_ansible_roles(
    project: Project, names: Sequence[str], *, runner: Runner = _run
) -> list[LintResult]:
    """Syntax-check and lint each named role; cached verdicts are reused, the rest run now.

    Every uncached role is linted in one ansible-lint process (its start-up is most of the cost).
    """
    results: dict[str, LintResult] = {}
    pending: dict[str, str] = {}
    for name in dict.fromkeys(names):
        digest = lint_digest(project, name)
        cached = _load_cached(_cache_path(project, digest))
        if cached is not None and cached.digest == digest:
            results[name] = cached
        else:
            pending[name] = digest
    if pending:
        started = time.monotonic()
        env = _environment()
        # The syntax checks run beside ansible-lint: its start-up is most of the wait.
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="kiln-lint") as pool:
            checks = {
                name: pool.submit(_syntax_check, project, name, env, runner) for name in pending
            }
            findings = _ansible_lint(project, list(pending), env, runner)
            syntax = {name: future.result() for name, future in checks.items()}
        took = (time.monotonic() - started) / len(pending)
        for name, digest in pending.items():
            result = LintResult(
                ansible_role=name,
                digest=digest,
                syntax_error=syntax[name],
                findings=tuple(findings.get(name, ())),
                duration_s=round(took, 3),
            )
            _store(_cache_path(project, digest), result)
            with _RAN_HERE_LOCK:
                _RAN_HERE.add(digest)
            results[name] = result
    return [results[name] for name in dict.fromkeys(names)]


def _content_env(project: Project, env: dict[str, str]) -> dict[str, str]:
    content = project.content
    return {
        **env,
        "ANSIBLE_ROLES_PATH": content.roles_path_env(),
        "ANSIBLE_COLLECTIONS_PATH": content.collections_path_env(),
    }


def _syntax_check(project: Project, name: str, env: dict[str, str], runner: Runner) -> str:
    """'' if ansible-playbook can load a play applying the role, else its error's tail."""
    with tempfile.TemporaryDirectory(prefix="kiln-syntax-") as tmp:
        playbook = Path(tmp) / "syntax-check.yml"
        playbook.write_text(
            "- name: kiln syntax check\n  hosts: all\n  gather_facts: false\n"
            f"  roles:\n    - role: {json.dumps(name)}\n"
        )
        playbook_bin = Path(sys.executable).parent / "ansible-playbook"
        argv = [str(playbook_bin), "--syntax-check", "-i", "localhost,", str(playbook)]
        code, out, err = runner(argv, project.root, _content_env(project, env))
    if code == 0:
        return ""
    text = (err or out).replace(f"{project.root}/", "").strip()
    return "\n".join(text.splitlines()[-15:]) or f"ansible-playbook --syntax-check exited {code}"


def _ansible_lint(
    project: Project, names: Sequence[str], env: dict[str, str], runner: Runner
) -> dict[str, list[LintFinding]]:
    roles = {name: project.content.resolve(name) for name in names}
    excluded = [
        relative_to(role.path / part, project.root)
        for role in roles.values()
        for part in NOT_LINTED
        if (role.path / part).exists()
    ]
    argv = [
        str(Path(sys.executable).parent / "ansible-lint"),
        "--offline",
        "--profile",
        PROFILE,
        "-f",
        "json",
        "--nocolor",
        "--project-dir",
        str(project.root),
        *[arg for path in excluded for arg in ("--exclude", path)],
        # --exclude takes several values: "--" ends them, or it would swallow the role paths.
        "--",
        *[relative_to(role.path, project.root) for role in roles.values()],
    ]
    code, out, err = runner(argv, project.root, _content_env(project, env))
    if code not in (0, 2):
        tail = "\n".join((err or out).strip().splitlines()[-15:])
        raise ToolError(f"ansible-lint failed to run (exit {code}):\n{tail}")
    try:
        issues = json.loads(out or "[]")
    except ValueError as exc:
        raise ToolError(f"ansible-lint printed no JSON report: {out[:200]!r}") from exc
    found: dict[str, list[LintFinding]] = {name: [] for name in names}
    for issue in issues if isinstance(issues, list) else []:
        finding = parse_issue(issue)
        owner = _owner(project, finding.path, roles)
        found.setdefault(owner or names[0], []).append(finding)
    return found


def parse_issue(issue: dict[str, Any]) -> LintFinding:
    """One entry of ansible-lint's codeclimate JSON as a LintFinding."""
    location = issue.get("location") or {}
    line = (location.get("lines") or {}).get("begin")
    if line is None:
        line = ((location.get("positions") or {}).get("begin") or {}).get("line")
    return LintFinding(
        path=str(location.get("path", "?")),
        line=int(line) if isinstance(line, int | str) and str(line).isdigit() else None,
        rule=str(issue.get("check_name", "?")),
        message=str(issue.get("description", "")).strip(),
        level="warning" if issue.get("severity") in ("minor", "info") else "error",
    )


def _owner(project: Project, path: str, roles: dict[str, AnsibleRole]) -> str | None:
    full = (project.root / path).resolve()
    for name, role in roles.items():
        if full.is_relative_to(role.path.resolve()):
            return name
    return None


@functools.cache
def profile_rules(profile: str) -> frozenset[str]:
    """The rule ids of an ansible-lint profile and of the profiles it extends (its own data)."""
    data = yaml.safe_load(
        resources.files("ansiblelint").joinpath("data/profiles.yml").read_text(encoding="utf-8")
    )
    rules: set[str] = set()
    name: str | None = profile
    while name:
        entry = data.get(name) or {}
        rules.update(entry.get("rules") or {})
        name = entry.get("extends")
    return frozenset(rules)


def blocking(finding: LintFinding, profile: str | None) -> bool:
    """Whether a finding stops a bake: load errors always; a profile's rules when opted into."""
    if finding.level != "error":
        return False
    base_rule = finding.rule.split("[", 1)[0]
    for wanted in (LOAD_PROFILE, profile):
        if wanted and (finding.rule in profile_rules(wanted) or base_rule in profile_rules(wanted)):
            return True
    return False


@dataclass(frozen=True)
class LintVerdict:
    """What lint says of one role's bake: the profile that blocks, the findings, the warnings."""

    role: str
    profile: str | None
    roles: tuple[str, ...]
    findings: tuple[LintFinding, ...]
    blocking: tuple[LintFinding, ...]
    cached: bool

    @property
    def warnings(self) -> list[LintFinding]:
        return [f for f in self.findings if f not in self.blocking]

    def record(self, limit: int = 50) -> dict[str, Any]:
        """As recorded with the version: profile, counts by rule and the first findings."""
        by_rule: dict[str, int] = {}
        for finding in self.warnings:
            by_rule[finding.rule] = by_rule.get(finding.rule, 0) + 1
        return {
            "profile": self.profile or LOAD_PROFILE,
            "warnings": len(self.warnings),
            "by_rule": dict(sorted(by_rule.items())),
            "findings": [str(f) for f in self.warnings[:limit]],
        }


def check_role(project: Project, role: Role, *, reporter: Reporter) -> LintVerdict:
    """Lint what role applies; raise LintError on a syntax or load error, or on findings of the
    role's lint_profile (unless lint_allowed). Everything else is a warning."""
    closure = project.content.closure_names(role.ansible_roles)
    results = lint_ansible_roles(project, closure)
    with _RAN_HERE_LOCK:
        ran = [r for r in results if not r.cached or r.digest in _RAN_HERE]
    findings = tuple(f for r in results for f in r.findings)
    verdict = LintVerdict(
        role=role.name,
        profile=role.lint_profile,
        roles=tuple(closure),
        findings=findings,
        blocking=tuple(
            f for f in findings if blocking(f, None if role.lint_allowed else role.lint_profile)
        ),
        cached=not ran,
    )
    took = sum(r.duration_s for r in ran)
    reporter.phase(
        role.name,
        "lint",
        f"{', '.join(closure)}: {len(verdict.warnings)} warning(s), "
        f"{len(verdict.blocking)} blocking (profile {role.lint_profile or LOAD_PROFILE})"
        + (" (cached)" if verdict.cached else f" in {took:.1f}s"),
    )
    for finding in verdict.warnings:
        reporter.warning(role.name, f"lint: {finding}")
    _raise_for_syntax(role, [r for r in results if r.syntax_error])
    if verdict.blocking:
        _raise_for_findings(role, verdict)
    return verdict


def _raise_for_syntax(role: Role, failed: list[LintResult]) -> None:
    if not failed:
        return
    body = "\n".join(
        f"  {r.ansible_role}:\n" + "\n".join(f"    {line}" for line in r.syntax_error.splitlines())
        for r in failed
    )
    raise LintError(
        f"role {role.name}: ansible-playbook --syntax-check rejects {len(failed)} Ansible "
        f"role(s):\n{body}\nNothing was baked."
    )


def _raise_for_findings(role: Role, verdict: LintVerdict) -> None:
    errors = verdict.blocking
    shown = "\n".join(f"  {f}" for f in errors[:30])
    more = f"\n  ... and {len(errors) - 30} more" if len(errors) > 30 else ""
    if role.lint_profile is None or role.lint_allowed:
        advice = "Ansible cannot load this content: fix the files named above."
    else:
        advice = (
            f"Fix them (a task that is safe as it is can say why with `# noqa: RULE`), drop "
            f"lint_profile={role.lint_profile!r}, or set lint_allowed=True in the definition of "
            f"{role.name!r} to bake anyway."
        )
    raise LintError(
        f"role {role.name}: ansible-lint reports {len(errors)} blocking finding(s) "
        f"(profile {verdict.profile or LOAD_PROFILE}) in the Ansible roles it applies:\n"
        f"{shown}{more}\n{advice} Nothing was baked."
    )
