"""The guard: configuration tooling runs only against the throwaway builder, never production.

It statically audits every Ansible task a bake would run before any builder starts, and it
checks the environment and inventory handed to ansible-playbook.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import yaml

from kiln.ansible_content import AnsibleContent
from kiln.errors import DefinitionError, GuardError

__all__ = [
    "DEFAULT_BUILDER_GROUP",
    "HOST_CHANGING_ENV",
    "RULES",
    "AuditReport",
    "ExceptionLike",
    "Finding",
    "SafeEnvironment",
    "Severity",
    "TaskException",
    "ansible_environment",
    "audit_playbook",
    "audit_roles",
    "check_single_host_inventory",
    "raise_for_findings",
]

DEFAULT_BUILDER_GROUP = "builder"

RULES: Mapping[str, str] = {
    "delegate-to": "a task is delegated to a host other than localhost",
    "local-write": "a task on the control host runs a command or writes outside the work directory",
    "add-host": "add_host puts a new host in the inventory",
    "group-by": "group_by builds groups of hosts at run time",
    "play-hosts": "a play targets hosts other than all or the builder group",
    "prod-url": "a task names a production host (URL, host argument or command)",
    "remote-sync": "synchronize copies to or from another host",
    "connection-var": "a task or play sets ansible_host or another connection variable",
    "unknown-role": "a role is not under the roles path, so kiln cannot audit it",
    "yaml-error": "a file is not valid YAML, or not the shape Ansible expects",
    "not-utf8": "a file is not valid UTF-8",
    "secret-no-log": "a task uses a secret variable without no_log: true",
    "dynamic-include": "an included file or role name is templated",
    "missing-include": "an included task file does not exist",
    "unused-exception": "an exception allowed no finding",
}
_WARNING_RULES = frozenset(
    {"secret-no-log", "dynamic-include", "missing-include", "unused-exception"}
)
# A file kiln could not read was not audited at all, so no reason can make it safe.
_NOT_EXCEPTABLE = frozenset({"yaml-error", "not-utf8", "unused-exception"})

# Every variable that changes which hosts ansible-playbook targets or how it reaches them
# (ansible-core 2.19 config/base.yml). ANSIBLE_CONFIG goes too: a config file can set all of them.
HOST_CHANGING_ENV = frozenset(
    {
        "ANSIBLE_INVENTORY",
        "ANSIBLE_HOSTS",  # the pre-2.8 name of ANSIBLE_INVENTORY
        "ANSIBLE_INVENTORY_ENABLED",
        "ANSIBLE_INVENTORY_PLUGINS",
        "ANSIBLE_CONFIG",
        # vars plugins can set ansible_host and so point the builder's name at another machine
        "ANSIBLE_VARS_PLUGINS",
        "ANSIBLE_VARS_ENABLED",
    }
)

_LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_SELF_RE = re.compile(r"\{\{\s*inventory_hostname\s*\}\}")
_TEMPLATED_RE = re.compile(r"\{\{|\{%")
_JINJA_RE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)
_KV_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.DOTALL)
_HOST_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")
_HOST_RANGE_RE = re.compile(r"\[[^\]]*:[^\]]*\]")
_SECRET_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Keywords of a task, handler or block (ansible-core 2.19 Task/Handler/Block attributes);
# the first other key of a task is its module.
_TASK_KEYWORDS = frozenset(
    {
        "action", "always", "any_errors_fatal", "args", "async", "become", "become_exe",
        "become_flags", "become_method", "become_user", "block", "changed_when", "check_mode",
        "collections", "connection", "debugger", "delay", "delegate_facts", "delegate_to", "diff",
        "environment", "failed_when", "ignore_errors", "ignore_unreachable", "listen",
        "local_action", "loop", "loop_control", "module_defaults", "name", "no_log", "notify",
        "poll", "port", "register", "remote_user", "rescue", "retries", "run_once", "tags",
        "throttle", "timeout", "until", "vars", "when",
    }
)  # fmt: skip
_CONNECTION_VARS = frozenset(
    {"ansible_host", "ansible_ssh_host", "ansible_connection", "ansible_docker_host"}
)
_TASK_INCLUDES = frozenset({"include_tasks", "import_tasks", "include"})
_ROLE_INCLUDES = frozenset({"include_role", "import_role"})
# Modules that only read, or whose effect is checked by a rule of its own, may run locally.
_LOCAL_READ_ONLY = frozenset(
    {
        "add_host", "assert", "async_status", "debug", "fail", "find", "gather_facts", "getent",
        "group_by", "import_role", "import_tasks", "include", "include_role", "include_tasks",
        "include_vars", "meta", "package_facts", "pause", "ping", "service_facts", "set_fact",
        "set_stats", "setup", "slurp", "stat", "validate_argument_spec", "wait_for",
    }
)  # fmt: skip
_LOCAL_COMMANDS = frozenset({"command", "shell", "raw", "script", "expect"})
# Modules that write files, and the arguments naming what they write.
_LOCAL_WRITERS: Mapping[str, tuple[str, ...]] = {
    "archive": ("dest", "path"),
    "assemble": ("dest",),
    "blockinfile": ("path", "dest", "name"),
    "copy": ("dest",),
    "fetch": ("dest",),
    "file": ("path", "dest", "name"),
    "get_url": ("dest",),
    "git": ("dest",),
    "ini_file": ("path", "dest"),
    "lineinfile": ("path", "dest", "name"),
    "replace": ("path", "dest", "name"),
    "template": ("dest",),
    "tempfile": ("path",),
    "unarchive": ("dest",),
    "uri": ("dest",),
}
_WRITES_NOTHING_WITHOUT_PATH = frozenset({"uri"})


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Finding:
    """One thing the audit found: where, which rule, which task, and what to do about it."""

    file: str
    line: int | None
    rule: str
    task: str
    message: str
    ansible_role: str = ""
    reason: str | None = None  # set when a TaskException allows the finding

    @property
    def severity(self) -> Severity:
        return Severity.WARNING if self.rule in _WARNING_RULES else Severity.ERROR

    @property
    def allowed(self) -> bool:
        return self.reason is not None

    @property
    def status(self) -> str:
        return "allowed" if self.allowed else str(self.severity)

    @property
    def location(self) -> str:
        return self.file if self.line is None else f"{self.file}:{self.line}"

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "rule": self.rule,
            "task": self.task,
            "message": self.message,
            "ansible_role": self.ansible_role,
            "severity": str(self.severity),
            "allowed": self.allowed,
            "reason": self.reason,
        }


class ExceptionLike(Protocol):
    """Anything shaped like a TaskException (the role definition may carry its own class)."""

    @property
    def ansible_role(self) -> str: ...
    @property
    def task(self) -> str: ...
    @property
    def rule(self) -> str: ...
    @property
    def reason(self) -> str: ...


@dataclass(frozen=True)
class TaskException:
    """Allows one task of one Ansible role to break one rule; the reason is recorded per version."""

    ansible_role: str
    task: str
    rule: str
    reason: str

    def __post_init__(self) -> None:
        _validate_exception(self)


def _validate_exception(exc: ExceptionLike) -> None:
    where = f"the exception for task {exc.task!r} of Ansible role {exc.ansible_role!r}"
    if not exc.ansible_role.strip() or not exc.task.strip():
        raise DefinitionError(f"{where} needs both an Ansible role and a task name")
    if exc.rule not in RULES or exc.rule in _NOT_EXCEPTABLE:
        allowed = ", ".join(r for r in RULES if r not in _NOT_EXCEPTABLE)
        raise DefinitionError(f"{where} names rule {exc.rule!r}; rules it can allow: {allowed}")
    if not exc.reason.strip():
        raise DefinitionError(f"{where} needs a reason: say why the task is safe")


@dataclass(frozen=True)
class AuditReport:
    """Every finding of one audit, plus the roles and files it read."""

    findings: tuple[Finding, ...]
    roles: tuple[str, ...] = ()
    files: tuple[str, ...] = ()

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if not f.allowed and f.severity is Severity.ERROR)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if not f.allowed and f.severity is Severity.WARNING)

    @property
    def allowed(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.allowed)

    @property
    def ok(self) -> bool:
        return not self.errors

    def table(self) -> str:
        """The findings as an aligned plain-text table, errors first, then a summary line."""
        audited = f"{len(self.roles)} role(s), {len(self.files)} file(s) audited"
        if not self.findings:
            return f"No findings: {audited}."
        order = {"error": 0, "warning": 1, "allowed": 2}
        rows = [("STATUS", "WHERE", "RULE", "TASK", "MESSAGE")]
        for f in sorted(self.findings, key=lambda f: order[f.status]):
            message = f.message if f.reason is None else f"{f.message} [allowed: {f.reason}]"
            rows.append((f.status, f.location, f.rule, f.task or "-", message))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = [
            "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True))
            + "  "
            + row[4]
            for row in rows
        ]
        counts = (
            f"{len(self.errors)} error(s), {len(self.warnings)} warning(s), "
            f"{len(self.allowed)} allowed; {audited}."
        )
        return "\n".join([*lines, counts])

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "roles": list(self.roles),
            "files": list(self.files),
            "counts": {
                "errors": len(self.errors),
                "warnings": len(self.warnings),
                "allowed": len(self.allowed),
            },
            "findings": [f.to_json() for f in self.findings],
        }


def audit_roles(
    ansible_roles: Sequence[str],
    *,
    roles_path: Path | AnsibleContent,
    root: Path | None = None,
    work_dir: Path | None = None,
    exceptions: Sequence[ExceptionLike] = (),
    production_hosts: Sequence[str] = (),
    secret_vars: Sequence[str] = (),
    builder_group: str = DEFAULT_BUILDER_GROUP,
) -> AuditReport:
    """Audit the Ansible roles a bake applies, with their dependencies, includes and handlers.

    ``work_dir`` is the only place tasks on the control host may write; ``production_hosts``
    match exactly and as domain suffixes; paths are shown relative to root. Raises
    DefinitionError for a role that is in no roles path and no installed collection.
    """
    names = [ansible_roles] if isinstance(ansible_roles, str) else list(ansible_roles)
    content = _content(roles_path)
    if isinstance(roles_path, Path) and not roles_path.is_dir():
        raise DefinitionError(f"the Ansible roles path {roles_path} is not a directory")
    for name in names:
        content.resolve(name)
    auditor = _Auditor(
        roles_path=content,
        roots=(root,) if root else tuple(p.parent for p in content.roles_paths),
        work_dir=work_dir,
        production_hosts=production_hosts,
        secret_vars=secret_vars,
        builder_group=builder_group,
    )
    for name in names:
        auditor.role(name, origin=None)
    return auditor.report(exceptions)


def audit_playbook(
    path: Path,
    *,
    roles_path: Path | AnsibleContent | None = None,
    work_dir: Path | None = None,
    exceptions: Sequence[ExceptionLike] = (),
    production_hosts: Sequence[str] = (),
    secret_vars: Sequence[str] = (),
    builder_group: str = DEFAULT_BUILDER_GROUP,
) -> AuditReport:
    """Audit a playbook (kiln's generated one): its plays' hosts, tasks and imported playbooks.

    Roles the plays apply are audited too when ``roles_path`` is given; without it they are
    left to audit_roles. Findings in the playbook's own tasks cannot be allowed by exceptions.
    """
    path = path.resolve()
    if not path.is_file():
        raise GuardError(f"cannot audit playbook {path}: it does not exist")
    content = _content(roles_path) if roles_path is not None else None
    roots = (path.parent, *(p.parent for p in content.roles_paths)) if content else (path.parent,)
    auditor = _Auditor(
        roles_path=content,
        roots=roots,
        work_dir=work_dir,
        production_hosts=production_hosts,
        secret_vars=secret_vars,
        builder_group=builder_group,
    )
    auditor.playbook_file(path, _Ctx(role="", role_dir=None))
    return auditor.report(exceptions)


def raise_for_findings(report: AuditReport, role_name: str) -> None:
    """Raise GuardError listing every error finding of ``report``, with how to allow a task."""
    errors = report.errors
    if not errors:
        return
    lines = [
        f"role {role_name}: the guard refused {len(errors)} Ansible finding(s) "
        "that could reach a host other than the builder:"
    ]
    lines += [f"  {f.location} [{f.rule}] {f.task or '-'}: {f.message}" for f in errors]
    example = next((f for f in errors if f.rule not in _NOT_EXCEPTABLE and f.ansible_role), None)
    if example is None:
        lines.append(
            "Fix the files above: kiln could not audit them, so no exception can allow them."
        )
    else:
        lines.append(
            "If a task is safe, allow it in the role definition with a reason, for example "
            f"TaskException(ansible_role={example.ansible_role!r}, task={example.task!r}, "
            f"rule={example.rule!r}, reason='why this cannot reach another host')."
        )
    raise GuardError("\n".join(lines))


class SafeEnvironment(NamedTuple):
    env: dict[str, str]
    dropped: tuple[str, ...]


def ansible_environment(base: Mapping[str, str]) -> SafeEnvironment:
    """A copy of ``base`` without the variables that change which hosts Ansible targets.

    ``dropped`` names what was removed, so that kiln can say so in one line.
    """
    env = {k: v for k, v in base.items() if k not in HOST_CHANGING_ENV}
    return SafeEnvironment(env, tuple(sorted(k for k in base if k in HOST_CHANGING_ENV)))


def check_single_host_inventory(inventory: object) -> None:
    """Raise GuardError unless ``inventory`` holds exactly one host.

    ``inventory`` is ansible-runner's YAML-dict form, or a string: INI, YAML or ``host,`` list.
    """
    hosts = _inventory_hosts(inventory)
    if len(hosts) != 1:
        shown = ", ".join(sorted(hosts)[:5]) + (", ..." if len(hosts) > 5 else "")
        raise GuardError(
            f"the Ansible inventory must hold exactly one host, the builder; it holds "
            f"{len(hosts)}{': ' + shown if hosts else ''}. kiln writes that inventory itself: "
            "do not pass another one (-i, ANSIBLE_INVENTORY)."
        )


# --- YAML with line numbers ---------------------------------------------------------------


class _Map(dict[Any, Any]):
    """A YAML mapping that remembers the 1-based line it starts on."""

    line: int | None = None


class _Seq(list[Any]):
    """A YAML sequence that remembers the 1-based line of each item."""

    line: int | None = None
    item_lines: tuple[int, ...] = ()


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps line numbers and accepts Ansible's own tags (!unsafe, !vault)."""


def _construct_map(loader: yaml.SafeLoader, node: yaml.MappingNode) -> Iterator[_Map]:
    data = _Map()
    data.line = node.start_mark.line + 1
    yield data
    data.update(loader.construct_mapping(node))


def _construct_seq(loader: yaml.SafeLoader, node: yaml.SequenceNode) -> Iterator[_Seq]:
    data = _Seq()
    data.line = node.start_mark.line + 1
    data.item_lines = tuple(child.start_mark.line + 1 for child in node.value)
    yield data
    data.extend(loader.construct_sequence(node))


def _construct_tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    assert isinstance(node, yaml.ScalarNode)
    return loader.construct_scalar(node)


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)
_Loader.add_multi_constructor("!", _construct_tagged)


def _line_of(value: object) -> int | None:
    return value.line if isinstance(value, _Map | _Seq) else None


def _item_line(items: list[Any], index: int) -> int | None:
    if isinstance(items, _Seq) and index < len(items.item_lines):
        return items.item_lines[index]
    return _line_of(items)


# --- the auditor ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ctx:
    role: str  # "" outside a role
    role_dir: Path | None
    local: bool = False  # runs on the control host
    no_log: bool = False


@dataclass(frozen=True)
class _Where:
    file: str
    line: int | None
    task: str
    role: str


class _Auditor:
    def __init__(
        self,
        *,
        roles_path: AnsibleContent | None,
        roots: Sequence[Path],
        work_dir: Path | None,
        production_hosts: Sequence[str],
        secret_vars: Sequence[str],
        builder_group: str,
    ) -> None:
        self._roles_path = roles_path
        self._roots = tuple(roots)
        self._work_dir = os.path.normpath(os.path.abspath(work_dir)) if work_dir else None
        self._prod = tuple(p for p in (_normalize_host(h) for h in production_hosts) if p)
        for name in secret_vars:
            if not _SECRET_NAME_RE.match(name):
                raise DefinitionError(f"secret variable name {name!r} is not a valid identifier")
        self._secrets = tuple(
            (name, re.compile(rf"(?<![\w.'\"]){re.escape(name)}(?![\w'\"])"))
            for name in secret_vars
        )
        self._group = builder_group
        self._findings: list[Finding] = []
        self._roles: list[str] = []
        self._files: list[str] = []
        self._seen_roles: set[str] = set()
        self._seen_files: set[tuple[Path, bool, bool]] = set()

    # -- results

    def report(self, exceptions: Sequence[ExceptionLike]) -> AuditReport:
        for exc in exceptions:
            _validate_exception(exc)
        unique = list(dict.fromkeys(self._findings))
        used: set[int] = set()
        findings: list[Finding] = []
        for f in unique:
            for i, exc in enumerate(exceptions):
                if (exc.ansible_role, exc.task, exc.rule) == (f.ansible_role, f.task, f.rule):
                    used.add(i)
                    f = replace(f, reason=exc.reason.strip())
                    break
            findings.append(f)
        for i, exc in enumerate(exceptions):
            if i in used:
                continue
            role_dir = self._role_dir(exc.ansible_role)
            where = self._display(role_dir) if role_dir else exc.ansible_role
            findings.append(
                Finding(
                    where,
                    None,
                    "unused-exception",
                    exc.task,
                    f"the exception for rule {exc.rule} matched no task named {exc.task!r} in "
                    f"Ansible role {exc.ansible_role}: remove it, or fix the task name",
                    exc.ansible_role,
                )
            )
        return AuditReport(tuple(findings), tuple(self._roles), tuple(self._files))

    def _add(self, where: _Where, rule: str, message: str) -> None:
        self._findings.append(
            Finding(where.file, where.line, rule, where.task, message, where.role)
        )

    def _display(self, path: Path) -> str:
        for root in self._roots:
            try:
                return path.relative_to(root).as_posix()
            except ValueError:
                continue
        return str(path)

    # -- roles and files

    def _role_dir(self, name: str) -> Path | None:
        if self._roles_path is None or not _safe_name(name):
            return None
        found = self._roles_path.find(name)
        return found.path.resolve() if found is not None else None

    def role(
        self,
        name: str,
        *,
        origin: _Where | None,
        tasks_from: str | None = None,
        handlers_from: str | None = None,
    ) -> None:
        if self._roles_path is None:
            return  # audit_playbook without roles_path leaves roles to audit_roles
        role_dir = self._role_dir(name)
        if role_dir is None:
            assert origin is not None  # audit_roles checked the top-level names
            self._add(
                origin,
                "unknown-role",
                f"role {name!r} is in no roles path and no installed collection, so kiln "
                "cannot audit it: vendor it, or list it in requirements.yml (`invoke deps`)",
            )
            return
        ctx = _Ctx(role=name, role_dir=role_dir)
        if name not in self._seen_roles:
            self._seen_roles.add(name)
            self._dependencies(role_dir, ctx)
            self._roles.append(name)  # after its dependencies: the order Ansible applies them
            for kind in ("tasks", "handlers"):
                main = _find_file(role_dir / kind, "main")
                if main is not None:
                    self.task_file(main, ctx)
        for kind, stem in (("tasks", tasks_from), ("handlers", handlers_from)):
            if stem is None:
                continue
            found = _find_file(role_dir / kind, stem)
            if found is None and origin is not None:
                self._add(origin, "missing-include", f"{kind}/{stem} does not exist in {name}")
            elif found is not None:
                self.task_file(found, ctx)

    def _dependencies(self, role_dir: Path, ctx: _Ctx) -> None:
        meta = _find_file(role_dir / "meta", "main")
        if meta is None:
            return
        file = self._display(meta)
        self._files.append(file)
        loaded, data = self._load(meta, ctx.role)
        if not loaded or data is None:
            return
        top = _Where(file, _line_of(data) or 1, "", ctx.role)
        if not isinstance(data, dict):
            self._add(top, "yaml-error", "meta/main.yml should be a mapping")
            return
        deps = data.get("dependencies") or []
        if not isinstance(deps, list):
            self._add(top, "yaml-error", "dependencies in meta/main.yml should be a list")
            return
        for i, dep in enumerate(deps):
            name = dep.get("role", dep.get("name")) if isinstance(dep, dict) else dep
            where = _Where(file, _item_line(deps, i), f"dependency {name}", ctx.role)
            if not isinstance(name, str) or not name.strip():
                self._add(where, "yaml-error", "a dependency needs a role name")
            elif _TEMPLATED_RE.search(name):
                self._add(
                    where,
                    "dynamic-include",
                    f"dependency {name!r} is templated, so kiln cannot audit it: name the role",
                )
            else:
                self.role(name.strip(), origin=where)

    def _load(self, path: Path, role: str) -> tuple[bool, Any]:
        file = self._display(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            self._add(_Where(file, None, "", role), "yaml-error", f"cannot be read: {exc}")
            return False, None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad_line = raw[: exc.start].count(b"\n") + 1
            self._add(
                _Where(file, bad_line, "", role),
                "not-utf8",
                f"byte 0x{raw[exc.start]:02x} on line {bad_line} is not UTF-8, so kiln cannot "
                "audit this file: save it as UTF-8",
            )
            return False, None
        try:
            return True, yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
        except yaml.YAMLError as exc:
            line: int | None = None
            problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if isinstance(exc, yaml.MarkedYAMLError):
                mark = exc.problem_mark or exc.context_mark
                line = mark.line + 1 if mark is not None else None
                problem = exc.problem or exc.context or problem
            elif isinstance(exc, yaml.reader.ReaderError):
                line = text[: exc.position].count("\n") + 1
            self._add(
                _Where(file, line, "", role),
                "yaml-error",
                f"is not valid YAML ({problem}), so kiln cannot audit it: fix the syntax",
            )
            return False, None

    def task_file(self, path: Path, ctx: _Ctx) -> None:
        key = (path, ctx.local, ctx.no_log)
        if key in self._seen_files:
            return
        self._seen_files.add(key)
        file = self._display(path)
        if file not in self._files:
            self._files.append(file)
        loaded, data = self._load(path, ctx.role)
        if not loaded or data is None:
            return
        if not isinstance(data, list):
            where = _Where(file, _line_of(data) or 1, "", ctx.role)
            self._add(where, "yaml-error", "a task file should be a list of tasks")
            return
        self._task_list(data, path, ctx)

    def playbook_file(self, path: Path, ctx: _Ctx) -> None:
        key = (path, ctx.local, ctx.no_log)
        if key in self._seen_files:
            return
        self._seen_files.add(key)
        file = self._display(path)
        if file not in self._files:
            self._files.append(file)
        loaded, data = self._load(path, ctx.role)
        if not loaded or data is None:
            return
        if not isinstance(data, list):
            where = _Where(file, _line_of(data) or 1, "", ctx.role)
            self._add(where, "yaml-error", "a playbook should be a list of plays")
            return
        for i, play in enumerate(data):
            if isinstance(play, dict):
                self._play(play, path, ctx)
            else:
                where = _Where(file, _item_line(data, i), "", ctx.role)
                self._add(where, "yaml-error", "each play should be a mapping")

    def _task_list(self, items: list[Any], path: Path, ctx: _Ctx) -> None:
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                where = _Where(self._display(path), _item_line(items, i), "", ctx.role)
                self._add(where, "yaml-error", "each task should be a mapping")
            elif "hosts" in item or "import_playbook" in item:
                self._play(item, path, ctx)  # a play where a task was expected
            else:
                self._task(item, path, ctx)

    # -- plays

    def _play(self, play: dict[Any, Any], path: Path, ctx: _Ctx) -> None:
        name = str(play.get("name") or "(unnamed play)")
        where = _Where(self._display(path), _line_of(play), name, ctx.role)
        if "import_playbook" in play:
            target = play["import_playbook"]
            if not isinstance(target, str) or not target.strip():
                self._add(where, "yaml-error", "import_playbook needs a file name")
            elif _TEMPLATED_RE.search(target):
                self._add(
                    where,
                    "dynamic-include",
                    f"import_playbook {target!r} is templated, so kiln cannot audit it",
                )
            else:
                imported = (path.parent / target.strip()).resolve()
                if imported.is_file():
                    self.playbook_file(imported, ctx)
                else:
                    self._add(where, "missing-include", f"playbook {target!r} does not exist")
            return
        bad = _bad_host_patterns(play.get("hosts"), self._group)
        if bad:
            self._add(
                where,
                "play-hosts",
                f"the play targets {', '.join(bad)}; a bake may only target 'all' or the "
                f"builder group {self._group!r}: set hosts: {self._group}",
            )
        play_ctx = self._keywords(play, where, ctx)
        for key in ("pre_tasks", "tasks", "post_tasks", "handlers"):
            tasks = play.get(key)
            if isinstance(tasks, list):
                self._task_list(tasks, path, play_ctx)
            elif tasks is not None:
                self._add(where, "yaml-error", f"{key} should be a list of tasks")
        roles = play.get("roles") or []
        if not isinstance(roles, list):
            self._add(where, "yaml-error", "roles should be a list")
            return
        for i, entry in enumerate(roles):
            role_name = entry.get("role", entry.get("name")) if isinstance(entry, dict) else entry
            role_where = _Where(where.file, _item_line(roles, i), name, ctx.role)
            if not isinstance(role_name, str) or not role_name.strip():
                self._add(role_where, "yaml-error", "a play's role needs a name")
            elif _TEMPLATED_RE.search(role_name):
                self._add(
                    role_where,
                    "dynamic-include",
                    f"role {role_name!r} is templated, so kiln cannot audit it: name the role",
                )
            else:
                self.role(role_name.strip(), origin=role_where)

    # -- tasks

    def _keywords(
        self, task: Mapping[Any, Any], where: _Where, ctx: _Ctx, *, sync: bool = False
    ) -> _Ctx:
        """Check the keywords that choose where a task runs; return the context it runs in."""
        local, no_log = ctx.local, ctx.no_log
        if "no_log" in task:
            no_log = _truthy(task["no_log"])
        connection = task.get("connection")
        if isinstance(connection, str) and connection.rsplit(".", 1)[-1] == "local":
            local = True
        variables = task.get("vars")
        if isinstance(variables, Mapping):
            for var in sorted(_CONNECTION_VARS & {k for k in variables if isinstance(k, str)}):
                value = variables[var]
                if var == "ansible_connection" and str(value).rsplit(".", 1)[-1] == "local":
                    local = True
                    continue
                self._add(
                    where,
                    "connection-var",
                    f"vars sets {var}: {value!r}, which points Ansible at another machine: "
                    "remove it, the inventory already reaches the builder",
                )
        if "local_action" in task:
            local = True
        if "delegate_to" in task and task["delegate_to"] is not None:
            target = str(task["delegate_to"]).strip()
            if target.lower() in _LOCAL_NAMES:
                local = True
            elif _SELF_RE.fullmatch(target):
                local = False
            else:
                local = False
                why = (
                    "is templated, so kiln cannot prove it is the builder"
                    if _TEMPLATED_RE.search(target)
                    else "runs the task on another host"
                )
                if sync:
                    self._add(
                        where,
                        "remote-sync",
                        f"synchronize with delegate_to {target!r} {why}, copying between "
                        "that host and the builder: sync from the control host instead",
                    )
                else:
                    self._add(
                        where,
                        "delegate-to",
                        f"delegate_to {target!r} {why}; only the builder may be touched: "
                        "remove delegate_to (localhost is allowed for steps that stay in the "
                        "work directory)",
                    )
        return _Ctx(ctx.role, ctx.role_dir, local, no_log)

    def _task(self, task: dict[Any, Any], path: Path, ctx: _Ctx) -> None:
        file = self._display(path)
        line = _line_of(task)
        if any(k in task for k in ("block", "rescue", "always")):
            where = _Where(file, line, str(task.get("name") or "(unnamed block)"), ctx.role)
            inner = self._keywords(task, where, ctx)
            for key in ("block", "rescue", "always"):
                tasks = task.get(key)
                if isinstance(tasks, list):
                    self._task_list(tasks, path, inner)
                elif tasks is not None:
                    self._add(where, "yaml-error", f"{key} should be a list of tasks")
            return

        module, args = _module_and_args(task)
        short = module.rsplit(".", 1)[-1]
        name = str(task.get("name") or f"(unnamed {short or 'task'})")
        where = _Where(file, line, name, ctx.role)
        run = self._keywords(task, where, ctx, sync=short == "synchronize")

        if short == "add_host":
            self._add(
                where,
                "add-host",
                "add_host puts a new host in the inventory, so later tasks could reach it: "
                "remove the task, the bake only configures the builder",
            )
        elif short == "group_by":
            self._add(
                where,
                "group-by",
                "group_by builds host groups at run time, so plays could reach other hosts: "
                f"target the builder group {self._group!r} instead",
            )
        elif short == "set_fact":
            for var in sorted(_CONNECTION_VARS & {k for k in args if isinstance(k, str)}):
                self._add(
                    where,
                    "connection-var",
                    f"set_fact sets {var}, which points every later task at another machine: "
                    "remove it, the inventory already reaches the builder",
                )
        elif short == "synchronize":
            self._synchronize(args, where)
        elif short == "fetch":
            self._controller_write(where, "fetch copies files to the control host", args, "fetch")
        elif run.local:
            self._local(short, module, args, where)

        self._production(task, where)
        self._secret(task, run, where)
        if short in _TASK_INCLUDES:
            self._include_tasks(args, path, where, run)
        elif short in _ROLE_INCLUDES:
            self._include_role(args, where)

    def _local(self, short: str, module: str, args: Mapping[Any, Any], where: _Where) -> None:
        if short in _LOCAL_READ_ONLY:
            return
        if short in _LOCAL_COMMANDS:
            self._add(
                where,
                "local-write",
                f"runs {module} on the control host, where kiln cannot contain it: "
                "run it on the builder (drop delegate_to/local_action)",
            )
        elif short in _LOCAL_WRITERS:
            self._controller_write(where, f"{module} runs on the control host", args, short)
        else:
            self._add(
                where,
                "local-write",
                f"runs {module or 'an unknown module'} on the control host; only read-only "
                "modules and file writes inside the work directory may run there: "
                "run it on the builder",
            )

    def _controller_write(
        self, where: _Where, what: str, args: Mapping[Any, Any], module: str
    ) -> None:
        keys = _LOCAL_WRITERS[module]
        paths = [(k, args[k]) for k in keys if args.get(k) is not None]
        fix = (
            f"write inside the work directory {self._work_dir}, or run the task on the builder"
            if self._work_dir
            else "run the task on the builder"
        )
        if not paths and module not in _WRITES_NOTHING_WITHOUT_PATH:
            self._add(where, "local-write", f"{what} without a {'/'.join(keys)} to check: {fix}")
        for key, value in paths:
            problem = self._outside_work_dir(value)
            if problem:
                self._add(where, "local-write", f"{what} and {key} {value!r} {problem}: {fix}")

    def _outside_work_dir(self, value: object) -> str | None:
        if not isinstance(value, str):
            return "is not a path"
        if _TEMPLATED_RE.search(value):
            return "is templated, so kiln cannot prove where it writes"
        if not os.path.isabs(value):
            return "is relative, so kiln cannot prove where it writes"
        if self._work_dir is None:
            return "is on the control host"
        path = os.path.normpath(value)
        if path == self._work_dir or path.startswith(self._work_dir.rstrip(os.sep) + os.sep):
            return None
        return "is outside the work directory"

    def _synchronize(self, args: Mapping[Any, Any], where: _Where) -> None:
        for key in ("src", "dest"):
            value = args.get(key)
            if isinstance(value, str) and _is_remote_path(value):
                self._add(
                    where,
                    "remote-sync",
                    f"synchronize {key} {value!r} names another host: sync only between "
                    "the control host's work directory and the builder",
                )
        if str(args.get("mode", "push")).lower() == "pull":
            dest = args.get("dest")
            if not (isinstance(dest, str) and _is_remote_path(dest)):
                self._controller_write(
                    where, "synchronize mode=pull writes to the control host", args, "copy"
                )

    def _production(self, task: Mapping[Any, Any], where: _Where) -> None:
        if not self._prod:
            return
        # Every string but the task's name: URLs, host arguments and command lines alike.
        values = [v for k, v in task.items() if k != "name"]
        hits: dict[str, str] = {}
        for text in _strings(values):
            for token in _HOST_TOKEN_RE.findall(text):
                entry = _production_entry(token.lower(), self._prod)
                if entry is not None:
                    hits.setdefault(token.lower(), entry)
        for host, entry in sorted(hits.items()):
            listed = "" if host == entry else f" (under {entry})"
            self._add(
                where,
                "prod-url",
                f"reaches production host {host}{listed}; bake-time tasks may only touch the "
                "builder: use a non-production mirror or bake the file into the role",
            )

    def _secret(self, task: Mapping[Any, Any], run: _Ctx, where: _Where) -> None:
        if not self._secrets or run.no_log:
            return
        used = sorted(
            {
                name
                for text in _strings(task)
                for expr in _JINJA_RE.findall(text)
                for name, pattern in self._secrets
                if pattern.search(expr)
            }
        )
        if used:
            self._add(
                where,
                "secret-no-log",
                f"uses secret {', '.join(used)} without no_log: true, so its value can reach "
                "the bake log: add no_log: true to the task",
            )

    def _include_tasks(self, args: Mapping[Any, Any], path: Path, where: _Where, run: _Ctx) -> None:
        target = args.get("file", args.get("_raw_params"))
        apply = args.get("apply")
        ctx = self._keywords(apply, where, run) if isinstance(apply, Mapping) else run
        if not isinstance(target, str) or not target.strip():
            self._add(where, "yaml-error", "the include needs a file name")
            return
        target = target.strip()
        if _TEMPLATED_RE.search(target):
            fallback = ctx.role_dir is not None and (ctx.role_dir / "tasks").is_dir()
            self._add(
                where,
                "dynamic-include",
                f"the included file {target!r} is templated, so kiln cannot tell which one runs"
                + ("; it audited every file under tasks/ instead" if fallback else "")
                + ": prefer a static file name",
            )
            if fallback and ctx.role_dir is not None:
                for other in sorted((ctx.role_dir / "tasks").rglob("*")):
                    if other.suffix in (".yml", ".yaml") and other.is_file():
                        self.task_file(other.resolve(), ctx)
            return
        candidates = [path.parent / target]
        if ctx.role_dir is not None:
            candidates += [ctx.role_dir / "tasks" / target, ctx.role_dir / "handlers" / target]
        found = next((c.resolve() for c in candidates if c.is_file()), None)
        if found is None:
            self._add(where, "missing-include", f"the included file {target!r} does not exist")
        else:
            self.task_file(found, ctx)

    def _include_role(self, args: Mapping[Any, Any], where: _Where) -> None:
        name = args.get("name", args.get("_raw_params"))
        if not isinstance(name, str) or not name.strip():
            self._add(where, "yaml-error", "include_role needs a role name")
            return
        parts = [name] + [args.get(k) for k in ("tasks_from", "handlers_from")]
        if any(isinstance(p, str) and _TEMPLATED_RE.search(p) for p in parts):
            self._add(
                where,
                "dynamic-include",
                f"the included role {name!r} (or its tasks_from) is templated, so kiln cannot "
                "audit it: name the role and file",
            )
            return
        tasks_from, handlers_from = args.get("tasks_from"), args.get("handlers_from")
        self.role(
            name.strip(),
            origin=where,
            tasks_from=tasks_from if isinstance(tasks_from, str) else None,
            handlers_from=handlers_from if isinstance(handlers_from, str) else None,
        )


# --- helpers -------------------------------------------------------------------------------


def _content(roles: Path | AnsibleContent) -> AnsibleContent:
    if isinstance(roles, AnsibleContent):
        return roles
    return AnsibleContent((roles.resolve(),))


def _safe_name(name: str) -> bool:
    return bool(name) and not name.startswith(".") and "/" not in name and "\\" not in name


def _find_file(directory: Path, stem: str) -> Path | None:
    for suffix in (".yml", ".yaml", ".json", ""):
        candidate = directory / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate.resolve()
    return None


def _truthy(value: object) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"true", "yes", "on", "1", "y"}


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _module_and_args(task: Mapping[Any, Any]) -> tuple[str, dict[Any, Any]]:
    """The module a task calls and its arguments, for the plain, action and local_action forms."""
    for key in ("local_action", "action"):
        if key in task:
            module, args = _action_value(task[key])
            break
    else:
        module = next(
            (
                k
                for k in task
                if isinstance(k, str) and k not in _TASK_KEYWORDS and not k.startswith("with_")
            ),
            "",
        )
        args = _args_value(task.get(module)) if module else {}
    extra = task.get("args")
    if isinstance(extra, Mapping):
        args = {**extra, **args}
    return module, args


def _action_value(value: object) -> tuple[str, dict[Any, Any]]:
    if isinstance(value, str):
        head, _, rest = value.strip().partition(" ")
        return head, _parse_kv(rest)
    if isinstance(value, Mapping):
        args = {k: v for k, v in value.items() if k != "module"}
        return str(value.get("module") or ""), args
    return "", {}


def _args_value(value: object) -> dict[Any, Any]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str):
        return _parse_kv(value)
    return {"_raw_params": value}


def _parse_kv(text: str) -> dict[Any, Any]:
    """Ansible's free-form ``key=value`` arguments; the rest becomes ``_raw_params``."""
    args: dict[Any, Any] = {}
    raw: list[str] = []
    for token in _split_args(text):
        match = _KV_RE.match(token)
        if match:
            value = match.group(2)
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            args[match.group(1)] = value
        else:
            raw.append(token)
    if raw:
        args["_raw_params"] = " ".join(raw)
    return args


def _split_args(text: str) -> list[str]:
    """Split on whitespace outside quotes and Jinja delimiters."""
    tokens: list[str] = []
    current: list[str] = []
    quote: str | None = None
    depth = 0
    i = 0
    while i < len(text):
        pair = text[i : i + 2]
        char = text[i]
        if quote is not None:
            current.append(char)
            if char == quote and text[i - 1] != "\\":
                quote = None
        elif pair in ("{{", "{%", "{#"):
            depth += 1
            current.append(pair)
            i += 2
            continue
        elif pair in ("}}", "%}", "#}") and depth:
            depth -= 1
            current.append(pair)
            i += 2
            continue
        elif char in "'\"":
            quote = char
            current.append(char)
        elif char.isspace() and depth == 0:
            if current:
                tokens.append("".join(current))
                current = []
        else:
            current.append(char)
        i += 1
    if current:
        tokens.append("".join(current))
    return tokens


def _is_remote_path(value: str) -> bool:
    """True for rsync's ``host:path``, ``user@host:path`` and ``rsync://`` forms."""
    plain = _JINJA_RE.sub("X", value.strip())
    return plain.startswith("rsync://") or re.match(r"^[^/]+:", plain) is not None


def _bad_host_patterns(hosts: object, group: str) -> list[str]:
    """The positive host patterns of a play other than all, * and the builder group."""
    if hosts is None:
        return ["no hosts"]
    if isinstance(hosts, list):
        terms = [str(h) for h in hosts]
    else:
        text = str(hosts)
        if _TEMPLATED_RE.search(text):
            return [repr(text)]
        terms = re.split(r"[,:]", text)
    bad: list[str] = []
    for term in (t.strip() for t in terms):
        if not term or term[0] in "!&":
            continue  # exclusions and intersections only narrow the set
        if _TEMPLATED_RE.search(term) or term not in {"all", "*", group}:
            bad.append(repr(term))
    return bad


def _normalize_host(host: str) -> str:
    host = host.strip().lower()
    if "://" in host:
        host = host.split("://", 1)[1]
    host = host.split("/", 1)[0]
    host = host.removeprefix("*.").lstrip(".").rstrip(".")
    return host


def _production_entry(token: str, production: Sequence[str]) -> str | None:
    token = token.rstrip(".")
    for entry in production:
        if token == entry or token.endswith("." + entry):
            return entry
    return None


def _inventory_hosts(inventory: object) -> set[str]:
    if isinstance(inventory, Mapping):
        hosts: set[str] = set()
        for name, group in inventory.items():
            _group_hosts(str(name), group, hosts)
        return hosts
    if isinstance(inventory, str):
        try:
            parsed = yaml.safe_load(inventory)
        except yaml.YAMLError:
            parsed = None
        if isinstance(parsed, Mapping):
            return _inventory_hosts(parsed)
        if "\n" not in inventory.strip() and "," in inventory:
            return {_one_host(h) for h in inventory.split(",") if h.strip()}
        return _ini_hosts(inventory)
    raise GuardError(
        f"cannot check an inventory of type {type(inventory).__name__}: "
        "pass ansible-runner's dict form or an INI string"
    )


def _group_hosts(name: str, group: object, hosts: set[str]) -> None:
    if group is None:
        return
    if not isinstance(group, Mapping) or not set(group) <= {"hosts", "children", "vars"}:
        raise GuardError(
            f"cannot read inventory group {name!r}: a group holds only hosts, children and vars"
        )
    members = group.get("hosts") or {}
    if isinstance(members, Mapping | list):
        hosts.update(_one_host(str(h)) for h in members)
    else:
        raise GuardError(f"cannot read the hosts of inventory group {name!r}")
    children = group.get("children") or {}
    if not isinstance(children, Mapping):
        raise GuardError(f"cannot read the children of inventory group {name!r}")
    for child, body in children.items():
        _group_hosts(str(child), body, hosts)


def _ini_hosts(text: str) -> set[str]:
    hosts: set[str] = set()
    section_holds_hosts = True
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section_holds_hosts = not line[1:-1].strip().endswith((":vars", ":children"))
            continue
        if section_holds_hosts:
            hosts.add(_one_host(line.split()[0]))
    return hosts


def _one_host(name: str) -> str:
    name = name.strip()
    if _HOST_RANGE_RE.search(name):
        raise GuardError(f"inventory host {name!r} is a range, so it names several hosts")
    return re.sub(r":\d+$", "", name) if name.count(":") == 1 else name
