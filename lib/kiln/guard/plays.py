"""The walk through a loaded playbook or task file: plays, blocks, tasks and what they include."""

from __future__ import annotations

import glob
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from kiln.guard.arguments import _JINJA_RE, _TEMPLATED_RE, _module_and_args
from kiln.guard.findings import _Recorder, _Where
from kiln.guard.rule import Rule
from kiln.guard.rules import _Ctx, _Rules
from kiln.guard.sources import ROLE_PATH_RE
from kiln.guard.yaml_lines import _item_line, _line_of

_TASK_INCLUDES = frozenset({"include_tasks", "import_tasks", "include"})
_ROLE_INCLUDES = frozenset({"include_role", "import_role"})
# Keys that hold tasks, each audited as a task of its own.
_TASK_LISTS = frozenset(
    {"pre_tasks", "tasks", "post_tasks", "handlers", "block", "rescue", "always"}
)


class _Files(Protocol):
    """Where the walk goes next: the auditor that reads files and finds roles."""

    def task_file(self, path: Path, ctx: _Ctx) -> None: ...
    def playbook_file(self, path: Path, ctx: _Ctx) -> None: ...
    def role(
        self,
        name: str,
        *,
        origin: _Where | None,
        tasks_from: str | None = None,
        handlers_from: str | None = None,
    ) -> None: ...


class _Plays:
    """Walks the plays and tasks of one loaded file, checking each against the rules."""

    def __init__(self, files: _Files, rules: _Rules, recorder: _Recorder) -> None:
        self._files = files
        self._rules = rules
        self._rec = recorder

    def play(self, play: dict[Any, Any], path: Path, ctx: _Ctx) -> None:
        name = str(play.get("name") or "(unnamed play)")
        where = _Where(self._rec.display(path), _line_of(play), name, ctx.role)
        if "import_playbook" in play:
            self._import_playbook(play["import_playbook"], path, where, ctx)
            return
        self._rules.play_hosts(play.get("hosts"), where)
        self._rules.lookups({k: v for k, v in play.items() if k not in _TASK_LISTS}, where)
        self._rules.secret_in_name(play.get("name"), where)
        play_ctx = self._rules.keywords(play, where, ctx)
        for key in ("pre_tasks", "tasks", "post_tasks", "handlers"):
            tasks = play.get(key)
            if isinstance(tasks, list):
                self.task_list(tasks, path, play_ctx)
            elif tasks is not None:
                self._rec.add(where, Rule.YAML_ERROR, f"{key} should be a list of tasks")
        self._play_roles(play.get("roles") or [], where, ctx)

    def _import_playbook(self, target: object, path: Path, where: _Where, ctx: _Ctx) -> None:
        name = self._rec.static_name(
            where,
            target,
            missing="import_playbook needs a file name",
            templated=f"import_playbook {target!r} is templated, so kiln cannot audit it",
        )
        if name is None:
            return
        imported = (path.parent / name).resolve()
        if imported.is_file():
            self._files.playbook_file(imported, ctx)
        else:
            self._rec.add(where, Rule.MISSING_INCLUDE, f"playbook {target!r} does not exist")

    def _play_roles(self, roles: object, where: _Where, ctx: _Ctx) -> None:
        if not isinstance(roles, list):
            self._rec.add(where, Rule.YAML_ERROR, "roles should be a list")
            return
        for i, entry in enumerate(roles):
            role_name = entry.get("role", entry.get("name")) if isinstance(entry, dict) else entry
            role_where = _Where(where.file, _item_line(roles, i), where.task, ctx.role)
            name = self._rec.static_name(
                role_where,
                role_name,
                missing="a play's role needs a name",
                templated=f"role {role_name!r} is templated, so kiln cannot audit it: "
                "name the role",
            )
            if name is not None:
                self._files.role(name, origin=role_where)

    def task_list(self, items: list[Any], path: Path, ctx: _Ctx) -> None:
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                where = _Where(self._rec.display(path), _item_line(items, i), "", ctx.role)
                self._rec.add(where, Rule.YAML_ERROR, "each task should be a mapping")
            elif "hosts" in item or "import_playbook" in item:
                self.play(item, path, ctx)  # a play where a task was expected
            else:
                self._task(item, path, ctx)

    def _task(self, task: dict[Any, Any], path: Path, ctx: _Ctx) -> None:
        if any(k in task for k in ("block", "rescue", "always")):
            self._block(task, path, ctx)
            return
        module, args = _module_and_args(task)
        short = module.rsplit(".", 1)[-1]
        name = str(task.get("name") or f"(unnamed {short or 'task'})")
        where = _Where(self._rec.display(path), _line_of(task), name, ctx.role)
        run = self._rules.keywords(task, where, ctx, sync=short == "synchronize")
        self._rules.task(task, module, args, where, run)
        if short in _TASK_INCLUDES:
            self._include_tasks(args, path, where, run)
        elif short in _ROLE_INCLUDES:
            self._include_role(args, where)

    def _block(self, block: dict[Any, Any], path: Path, ctx: _Ctx) -> None:
        name = str(block.get("name") or "(unnamed block)")
        where = _Where(self._rec.display(path), _line_of(block), name, ctx.role)
        inner = self._rules.keywords(block, where, ctx)
        self._rules.lookups({k: v for k, v in block.items() if k not in _TASK_LISTS}, where)
        for key in ("block", "rescue", "always"):
            tasks = block.get(key)
            if isinstance(tasks, list):
                self.task_list(tasks, path, inner)
            elif tasks is not None:
                self._rec.add(where, Rule.YAML_ERROR, f"{key} should be a list of tasks")

    def _include_tasks(self, args: Mapping[Any, Any], path: Path, where: _Where, run: _Ctx) -> None:
        target = args.get("file", args.get("_raw_params"))
        apply = args.get("apply")
        ctx = self._rules.keywords(apply, where, run) if isinstance(apply, Mapping) else run
        if not isinstance(target, str) or not target.strip():
            self._rec.add(where, Rule.YAML_ERROR, "the include needs a file name")
            return
        shown = target = target.strip()
        dirs = [path.parent]
        if ctx.role_dir is not None and ROLE_PATH_RE.match(target):
            # The one variable kiln knows: the role's own directory.
            target, dirs = ROLE_PATH_RE.sub("", target).lstrip("/"), [ctx.role_dir]
        elif ctx.role_dir is not None:
            dirs += [ctx.role_dir / "tasks", ctx.role_dir / "handlers"]
        if _TEMPLATED_RE.search(target):
            self._templated_include(shown, target, dirs, where, ctx)
            return
        found = next((c.resolve() for c in (d / target for d in dirs) if c.is_file()), None)
        if found is None:
            self._rec.add(
                where, Rule.MISSING_INCLUDE, f"the included file {shown!r} does not exist"
            )
        else:
            self._files.task_file(found, ctx)

    def _templated_include(
        self, shown: str, target: str, dirs: list[Path], where: _Where, ctx: _Ctx
    ) -> None:
        """Audit every file a templated name can pick, or refuse the include if kiln cannot
        tell which files those are."""
        matches = include_candidates(target, dirs)
        if matches:
            for match in matches:
                self._files.task_file(match, ctx)
            return
        self._rec.add(
            where,
            Rule.DYNAMIC_INCLUDE,
            f"the included file {shown!r} is templated, so kiln cannot tell which file runs "
            "and cannot audit it: name the file, or template only a file name part "
            "(setup-{{ ansible_os_family }}.yml) that matches files of the role",
        )

    def _include_role(self, args: Mapping[Any, Any], where: _Where) -> None:
        name = args.get("name", args.get("_raw_params"))
        if not isinstance(name, str) or not name.strip():
            self._rec.add(where, Rule.YAML_ERROR, "include_role needs a role name")
            return
        parts = [name] + [args.get(k) for k in ("tasks_from", "handlers_from")]
        if any(isinstance(p, str) and _TEMPLATED_RE.search(p) for p in parts):
            self._rec.add(
                where,
                Rule.DYNAMIC_INCLUDE,
                f"the included role {name!r} (or its tasks_from) is templated, so kiln cannot "
                "tell which role runs and cannot audit it: name the role and file",
            )
            return
        tasks_from, handlers_from = args.get("tasks_from"), args.get("handlers_from")
        self._files.role(
            name.strip(),
            origin=where,
            tasks_from=tasks_from if isinstance(tasks_from, str) else None,
            handlers_from=handlers_from if isinstance(handlers_from, str) else None,
        )


# A fact is the builder's own, a name-like value (os family, distribution, version): it may
# begin a file name. Any other variable could hold an absolute path.
_FACT_RE = re.compile(r"\{\{\s*ansible_\w+(?:\s*\|\s*(?:lower|upper|string))*\s*\}\}")


def include_candidates(target: str, dirs: list[Path]) -> list[Path]:
    """The files a templated include name can pick, each templated part standing for any text
    within one path part; none when its start or its '..' parts could lead anywhere."""
    if _TEMPLATED_RE.match(target) and not _FACT_RE.match(target):
        return []
    skeleton = re.sub("\0+", "\0", _JINJA_RE.sub("\0", target))  # no '**': it means any depth
    parts = skeleton.split("/")
    if skeleton.startswith(("/", "~")) or ".." in parts:
        return []
    pattern = "/".join(glob.escape(part).replace("\0", "*") for part in parts)
    found: dict[Path, None] = {}
    for directory in dirs:
        for match in sorted(directory.glob(pattern)):
            if match.is_file() and match.suffix in (".yml", ".yaml"):
                found.setdefault(match.resolve())
    return list(found)
