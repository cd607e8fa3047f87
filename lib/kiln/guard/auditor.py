"""The audit's entry points and its walk through roles, their dependencies and their files."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kiln.ansible_content import AnsibleContent, dependency_name
from kiln.errors import DefinitionError, GuardError
from kiln.guard.arguments import _TEMPLATED_RE
from kiln.guard.findings import (
    AuditReport,
    ExceptionLike,
    _apply_exceptions,
    _Recorder,
    _unused_exception,
    _validate_exception,
    _Where,
)
from kiln.guard.lookups import template_lookups, value_lookups
from kiln.guard.plays import _Plays
from kiln.guard.rule import Rule
from kiln.guard.rules import _Ctx, _Rules
from kiln.guard.yaml_lines import _item_line, _key_line, _line_of, _load_file, _Unreadable

DEFAULT_BUILDER_GROUP = "builder"
_CALL_RE = re.compile(r"\b(?:lookup|query|q)\s*\(")


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


class _Auditor:
    """Finds roles and reads their files once each, handing what it loads to the play walk."""

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
        self._rec = _Recorder(roots)
        rules = _Rules(
            self._rec,
            work_dir=work_dir,
            production_hosts=production_hosts,
            secret_vars=secret_vars,
            builder_group=builder_group,
        )
        self._plays = _Plays(self, rules, self._rec)
        self._roles: list[str] = []
        self._files: list[str] = []
        self._seen_roles: set[str] = set()
        # A file is walked again only in a context that changes what its tasks may do.
        self._seen_files: set[tuple[Path, bool, bool]] = set()

    def report(self, exceptions: Sequence[ExceptionLike]) -> AuditReport:
        for exc in exceptions:
            _validate_exception(exc)
        findings, unused = _apply_exceptions(self._rec.findings, exceptions)
        for exc in unused:
            role_dir = self._role_dir(exc.ansible_role)
            where = self._rec.display(role_dir) if role_dir else exc.ansible_role
            findings.append(_unused_exception(exc, where))
        return AuditReport(tuple(findings), tuple(self._roles), tuple(self._files))

    # -- roles

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
            self._rec.add(
                origin,
                Rule.UNKNOWN_ROLE,
                f"role {name!r} is in no roles path and no installed collection, so kiln "
                "cannot audit it: vendor it, or list it in requirements.yml (`invoke deps`)",
            )
            return
        ctx = _Ctx(role=name, role_dir=role_dir)
        if name not in self._seen_roles:
            self._seen_roles.add(name)
            self._dependencies(role_dir, ctx)
            self._variables(role_dir, ctx)
            self._templates(role_dir, ctx)
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
                self._rec.add(
                    origin, Rule.MISSING_INCLUDE, f"{kind}/{stem} does not exist in {name}"
                )
            elif found is not None:
                self.task_file(found, ctx)

    def _dependencies(self, role_dir: Path, ctx: _Ctx) -> None:
        meta = _find_file(role_dir / "meta", "main")
        if meta is None:
            return
        file = self._rec.display(meta)
        self._files.append(file)
        data = self._load(meta, ctx.role)
        if data is None:
            return
        top = _Where(file, _line_of(data) or 1, "", ctx.role)
        if not isinstance(data, dict):
            self._rec.add(top, Rule.YAML_ERROR, "meta/main.yml should be a mapping")
            return
        deps = data.get("dependencies") or []
        if not isinstance(deps, list):
            self._rec.add(top, Rule.YAML_ERROR, "dependencies in meta/main.yml should be a list")
            return
        for i, dep in enumerate(deps):
            name = dependency_name(dep)
            where = _Where(file, _item_line(deps, i), f"dependency {name}", ctx.role)
            role = self._rec.static_name(
                where,
                name,
                missing="a dependency needs a role name",
                templated=f"dependency {name!r} is templated, so kiln cannot audit it: "
                "name the role",
            )
            if role is not None:
                self.role(role, origin=where)

    def _variables(self, role_dir: Path, ctx: _Ctx) -> None:
        """Lookups in the role's defaults and vars (include_vars files too), which Ansible
        templates on the control host like a task's arguments."""
        for kind in ("defaults", "vars"):
            if not (role_dir / kind).is_dir():
                continue
            for path in sorted((role_dir / kind).rglob("*")):
                if path.suffix not in (".yml", ".yaml", ".json") or not path.is_file():
                    continue
                file = self._rec.display(path)
                self._files.append(file)
                data = self._load(path, ctx.role)
                if not isinstance(data, dict):
                    continue  # Ansible refuses such a file; it sets no variable
                for name, value in data.items():
                    where = _Where(file, _key_line(data, name), f"variable {name}", ctx.role)
                    for problem in value_lookups(value):
                        self._rec.add(where, Rule.CONTROLLER_LOOKUP, problem)

    def _templates(self, role_dir: Path, ctx: _Ctx) -> None:
        """Lookups in the role's templates/: the template module renders them on the control
        host, so a lookup('pipe') there runs on the bake host as one in a task would."""
        if not (role_dir / "templates").is_dir():
            return
        for path in sorted(p for p in (role_dir / "templates").rglob("*") if p.is_file()):
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue  # not text, so not a template the module could render
            file = self._rec.display(path)
            self._files.append(file)
            problems = template_lookups(text) if _TEMPLATED_RE.search(text) else []
            if not problems:
                continue
            first = _CALL_RE.search(text)
            line = text[: first.start()].count("\n") + 1 if first else None
            task = f"template {path.relative_to(role_dir / 'templates').as_posix()}"
            for problem in dict.fromkeys(problems):
                self._rec.add(_Where(file, line, task, ctx.role), Rule.CONTROLLER_LOOKUP, problem)

    # -- files

    def _load(self, path: Path, role: str) -> Any:
        """The document in ``path``; None when it is empty, or unreadable and recorded as such."""
        data = _load_file(path)
        if isinstance(data, _Unreadable):
            where = _Where(self._rec.display(path), data.line, "", role)
            self._rec.add(where, data.rule, data.message)
            return None
        return data

    def _list_file(self, path: Path, ctx: _Ctx, not_a_list: str) -> list[Any] | None:
        """The list ``path`` holds, the first time it is read in ``ctx``; else None, having
        recorded ``not_a_list`` if it holds something else."""
        key = (path, ctx.local, ctx.no_log)
        if key in self._seen_files:
            return None
        self._seen_files.add(key)
        file = self._rec.display(path)
        if file not in self._files:
            self._files.append(file)
        data = self._load(path, ctx.role)
        if data is None:
            return None
        if not isinstance(data, list):
            where = _Where(file, _line_of(data) or 1, "", ctx.role)
            self._rec.add(where, Rule.YAML_ERROR, not_a_list)
            return None
        return data

    def task_file(self, path: Path, ctx: _Ctx) -> None:
        tasks = self._list_file(path, ctx, "a task file should be a list of tasks")
        if tasks is not None:
            self._plays.task_list(tasks, path, ctx)

    def playbook_file(self, path: Path, ctx: _Ctx) -> None:
        plays = self._list_file(path, ctx, "a playbook should be a list of plays")
        if plays is None:
            return
        for i, play in enumerate(plays):
            if isinstance(play, dict):
                self._plays.play(play, path, ctx)
            else:
                where = _Where(self._rec.display(path), _item_line(plays, i), "", ctx.role)
                self._rec.add(where, Rule.YAML_ERROR, "each play should be a mapping")


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
