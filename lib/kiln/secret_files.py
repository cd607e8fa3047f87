"""The extra-vars file that carries a bake's secret values to Ansible, kept on a tmpfs only.

It sits alone in a 0700 directory named after the kiln process that made it, and is removed
however the bake ends; what a kill -9 leaves behind, the next kiln command sweeps away.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from kiln.errors import ToolError
from kiln.private_files import private_open

#: kiln-secrets-<pid namespace>-<pid>-<start time>-<random>: the owner's pid and its start time
#: (clock ticks since boot, /proc/<pid>/stat) tell a live bake's directory from a dead one's, even
#: once the pid has been given to another process. A sweep leaves alone the directories of other
#: pid namespaces (a container sharing /dev/shm), whose pids it cannot look up.
PREFIX = "kiln-secrets-"
FILE_NAME = "secrets.json"
#: Directories sweep() removes after a killed kiln: secrets files, and sandboxed Ansible runs'
#: private directories (kiln.controller.rundir: Ansible's raw output, until it is redacted).
ANSIBLE_RUN_PREFIX = "kiln-ansible-"
PREFIXES = (PREFIX, ANSIBLE_RUN_PREFIX)
#: How /proc/self/mounts writes a space, tab, newline or backslash in a mount point.
_OCTAL = re.compile(r"\\([0-7]{3})")
SHM = Path("/dev/shm")
#: File systems whose pages live in memory (they can still be swapped: see the README).
MEMORY_FILE_SYSTEMS = frozenset({"tmpfs", "ramfs"})


def candidate_roots() -> list[Path]:
    """Where secret directories may be: $XDG_RUNTIME_DIR (private to the user), then /dev/shm."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    return [*([Path(runtime)] if os.path.isabs(runtime) else []), SHM]


def memory_root() -> Path:
    """The first candidate root on a file system held in memory; a ToolError if there is none.

    Never a fallback to disk: a secret written there outlives a kill -9 and a reboot.
    """
    mounts = _mount_types()
    for root in candidate_roots():
        if root.is_dir() and _type_of(root, mounts) in MEMORY_FILE_SYSTEMS:
            return root
    tried = " or ".join(str(root) for root in candidate_roots())
    raise ToolError(
        f"no tmpfs to keep the secrets file in: {tried} is missing or not a tmpfs, and kiln "
        "never writes secret values to disk. Mount one (`mount -t tmpfs -o mode=1777 tmpfs "
        "/dev/shm`, as Linux distributions do), or set XDG_RUNTIME_DIR to a tmpfs of yours."
    )


def _mount_types() -> dict[str, str]:
    """Mount point -> file system type, as this process sees them (the last mount wins)."""
    types: dict[str, str] = {}
    with open("/proc/self/mounts", encoding="utf-8", errors="replace") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) >= 3:
                types[_OCTAL.sub(lambda m: chr(int(m[1], 8)), fields[1])] = fields[2]
    return types


def _type_of(path: Path, mounts: Mapping[str, str]) -> str | None:
    """The type of the file system path is on: its longest mount point."""
    resolved = path.resolve()
    for candidate in (resolved, *resolved.parents):
        if str(candidate) in mounts:
            return mounts[str(candidate)]
    return None


@contextmanager
def memory_directory(prefix: str) -> Iterator[Path]:
    """A 0700 directory on a tmpfs named for this process (so sweep() knows a killed one's)."""
    pid = os.getpid()
    owner = f"{prefix}{_pid_namespace()}-{pid}-{_start_time(pid)}-"
    directory = Path(tempfile.mkdtemp(prefix=owner, dir=memory_root()))  # made 0700
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def secret_vars_file(values: Mapping[str, str]) -> Iterator[Path]:
    """A 0600 JSON file of values, alone in a 0700 directory on a tmpfs; removed on exit.

    Exceptions, Ctrl-C and the SIGTERM and SIGHUP that kiln.tasks.cli() turns into
    KeyboardInterrupt all pass through the finally; sweep() covers a kill -9.
    """
    sweep()  # a program that bakes through the library, not invoke, sweeps here too
    with memory_directory(PREFIX) as directory:
        path = directory / FILE_NAME
        with private_open(path) as handle:
            json.dump(dict(values), handle)
        yield path


def sweep() -> list[Path]:
    """Remove this user's secret directories whose kiln process is gone; returns them.

    One listing of each candidate root, and a read of /proc/<pid>/stat per directory found: cheap
    enough for the start of every command.
    """
    removed = []
    namespace = _pid_namespace()
    for root in candidate_roots():
        try:
            names = os.listdir(root)
        except OSError:
            continue
        for name in names:
            prefix = next((p for p in PREFIXES if name.startswith(p)), None)
            if prefix is not None and _orphaned(name.removeprefix(prefix), namespace):
                path = root / name
                if _mine(path):
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
    return removed


def _orphaned(owner: str, namespace: str) -> bool:
    """Whether the process named in owner (a directory's name after its prefix) is gone (or its
    pid now belongs to another process)."""
    fields = owner.split("-")
    if len(fields) != 4 or not all(field.isdigit() for field in fields[:3]):
        return False  # not a name kiln made: not kiln's to remove
    owner_namespace, pid, started = fields[:3]
    return owner_namespace == namespace and _start_time(int(pid)) != started


def _mine(path: Path) -> bool:
    try:
        info = path.lstat()
    except OSError:  # removed meanwhile by its own bake, or by another sweep
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()


def _pid_namespace() -> str:
    """This process's pid namespace, as the number in /proc/self/ns/pid ("pid:[4026531836]")."""
    try:
        link = os.readlink("/proc/self/ns/pid")
    except OSError:
        return "0"
    return "".join(c for c in link if c.isdigit()) or "0"


def _start_time(pid: int) -> str:
    """When pid started, in clock ticks since boot; "0" for no such process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return "0"
    # The command name (field 2) may hold spaces and parentheses: count from the last ")".
    return text.rpartition(")")[2].split()[19]
