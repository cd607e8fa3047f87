"""Rules for tasks on the control host: they may only read, and write in the work directory."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from kiln.guard.arguments import _JINJA_RE, _TEMPLATED_RE
from kiln.guard.findings import _Recorder, _Where
from kiln.guard.rule import Rule

# Modules that only read, or whose effect is checked by a rule of its own, may run locally.
_LOCAL_READ_ONLY = frozenset(
    {
        "add_host",
        "assert",
        "async_status",
        "debug",
        "fail",
        "find",
        "gather_facts",
        "getent",
        "group_by",
        "import_role",
        "import_tasks",
        "include",
        "include_role",
        "include_tasks",
        "include_vars",
        "meta",
        "package_facts",
        "pause",
        "ping",
        "service_facts",
        "set_fact",
        "set_stats",
        "setup",
        "slurp",
        "stat",
        "validate_argument_spec",
        "wait_for",
    }
)
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


class _ControlHost:
    """Checks what a task does on the control host, where only the work directory is kiln's."""

    def __init__(self, recorder: _Recorder, work_dir: str | None) -> None:
        self._rec = recorder
        self._work_dir = work_dir  # normalised and absolute

    def local(self, short: str, module: str, args: Mapping[Any, Any], where: _Where) -> None:
        """A task that runs on the control host: ``short`` is ``module`` without collection."""
        if short in _LOCAL_READ_ONLY:
            return
        if short in _LOCAL_COMMANDS:
            self._rec.add(
                where,
                Rule.LOCAL_WRITE,
                f"runs {module} on the control host, where kiln cannot contain it: "
                "run it on the builder (drop delegate_to/local_action)",
            )
        elif short in _LOCAL_WRITERS:
            self.write(where, f"{module} runs on the control host", args, short)
        else:
            self._rec.add(
                where,
                Rule.LOCAL_WRITE,
                f"runs {module or 'an unknown module'} on the control host; only read-only "
                "modules and file writes inside the work directory may run there: "
                "run it on the builder",
            )

    def write(self, where: _Where, what: str, args: Mapping[Any, Any], module: str) -> None:
        """A write to the control host by ``module``, to the paths _LOCAL_WRITERS names."""
        keys = _LOCAL_WRITERS[module]
        paths = [(k, args[k]) for k in keys if args.get(k) is not None]
        fix = (
            f"write inside the work directory {self._work_dir}, or run the task on the builder"
            if self._work_dir
            else "run the task on the builder"
        )
        if not paths and module not in _WRITES_NOTHING_WITHOUT_PATH:
            self._rec.add(
                where, Rule.LOCAL_WRITE, f"{what} without a {'/'.join(keys)} to check: {fix}"
            )
        for key, value in paths:
            problem = self._outside_work_dir(value)
            if problem:
                self._rec.add(
                    where, Rule.LOCAL_WRITE, f"{what} and {key} {value!r} {problem}: {fix}"
                )

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

    def synchronize(self, args: Mapping[Any, Any], where: _Where) -> None:
        for key in ("src", "dest"):
            value = args.get(key)
            if isinstance(value, str) and _is_remote_path(value):
                self._rec.add(
                    where,
                    Rule.REMOTE_SYNC,
                    f"synchronize {key} {value!r} names another host: sync only between "
                    "the control host's work directory and the builder",
                )
        # A pull copies from the builder into dest, on the control host unless dest is remote.
        if str(args.get("mode", "push")).lower() == "pull":
            dest = args.get("dest")
            if not (isinstance(dest, str) and _is_remote_path(dest)):
                self.write(where, "synchronize mode=pull writes to the control host", args, "copy")


def _is_remote_path(value: str) -> bool:
    """True for rsync's ``host:path``, ``user@host:path`` and ``rsync://`` forms."""
    plain = _JINJA_RE.sub("X", value.strip())
    return plain.startswith("rsync://") or re.match(r"^[^/]+:", plain) is not None
