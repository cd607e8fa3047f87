"""Files a task reads on the control host: module ``src`` paths, judged by what kiln can see.

A relative path is found in the role (files/, templates/, vars/) and is normal practice; an
absolute path, a home directory or a ``..`` component reads the bake host's own files.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from kiln.guard.arguments import _JINJA_RE, _truthy

# `{{ role_path }}` is the role's own directory: a path that starts with it stays in the role.
ROLE_PATH_RE = re.compile(r"^\{\{\s*role_path\s*\}\}")
_UNKNOWN = "\0"  # stands for a templated part of a path in its skeleton

# Modules that read ``src`` on the control host, and whether remote_src is their default
# (assemble reads the builder's files unless told otherwise; the others read the controller's).
_SRC_MODULES: Mapping[str, bool] = {
    "copy": False,
    "template": False,
    "unarchive": False,
    "assemble": True,
    "patch": False,
}


def path_problem(text: str) -> str | None:
    """Why ``text``, as written, reads outside the role on the control host; None if it does
    not visibly. A path that starts with a templated value is not judged: kiln cannot know it,
    and the sandbox, not this audit, holds the bake host's files out of reach."""
    skeleton = _JINJA_RE.sub(_UNKNOWN, ROLE_PATH_RE.sub(".", text.strip()))
    if skeleton.startswith(_UNKNOWN):
        return None
    if skeleton.startswith("/"):
        return "is an absolute path on the bake host"
    if skeleton.startswith("~"):
        return "is in a home directory on the bake host"
    if ".." in re.split(r"[/\\]", skeleton):
        return "climbs out of the role with '..'"
    return None


def controller_sources(short: str, args: Mapping[Any, Any]) -> list[tuple[str, str, str]]:
    """(argument, path, problem) for each file module ``short`` would read on the control host
    outside the role: src of copy, template, unarchive, assemble and patch (unless the file is
    on the builder: remote_src), script's script, include_vars' file or dir. The argument is
    "" for a free-form path."""
    paths: list[tuple[str, object]] = []
    if short in _SRC_MODULES:
        remote = args.get("remote_src", _SRC_MODULES[short])
        if short == "unarchive" and "copy" in args:  # its pre-2.2 spelling: copy=no is remote
            remote = not _truthy(args["copy"])
        src = args.get("src")
        is_url = isinstance(src, str) and "://" in src  # downloaded by the builder
        if not _truthy(remote) and not is_url:
            paths.append(("src", src))
    elif short == "script":
        command = args.get("cmd", args.get("_raw_params"))
        if isinstance(command, str) and command.strip():
            # The script is the first word; spaces inside Jinja do not split it.
            joined = _JINJA_RE.sub(lambda m: m.group(0).replace(" ", ""), command)
            paths.append(("", joined.split()[0]))
    elif short == "include_vars":
        paths += [
            ("", args.get("_raw_params")),
            ("file", args.get("file")),
            ("dir", args.get("dir")),
        ]
    found = []
    for key, value in paths:
        if isinstance(value, str):
            problem = path_problem(value)
            if problem is not None:
                found.append((key, value, problem))
    return found
