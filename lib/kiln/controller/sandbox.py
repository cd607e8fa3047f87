"""The controller's sandbox: bubblewrap around ansible-runner, so Ansible reaches the builder only.

Why bubblewrap (Debian's `bubblewrap` package) rather than `unshare` from util-linux: one exec
gives a network namespace with only its own loopback, a mount namespace built from explicit
read-only binds (no pivot_root script of our own), a cleared environment, and
--die-with-parent, so the sandbox never outlives the process that started it. It costs one
exec (about 50 ms here); `unshare --net` alone would still leave every host file readable.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kiln.errors import ToolError

#: System files Python, Ansible, ssh and the docker client read, and nothing else of /etc:
#: no shadow, no SSH host keys, no cloud or Docker client configuration.
SYSTEM_FILES = (
    "/etc/passwd",
    "/etc/group",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/localtime",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/alternatives",
    "/etc/protocols",
    "/etc/services",
    "/etc/mime.types",
    "/etc/ssh/ssh_config",
    "/etc/ssh/ssh_config.d",
)
#: Top-level directories of the system's programs and libraries (symlinks into /usr when merged).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
DOCKER_SOCKET = Path("/run/docker.sock")


@dataclass(frozen=True)
class SandboxSpec:
    """What one sandboxed Ansible run may see: everything else of the host is absent."""

    #: The project: roles, playbooks and templates, read-only; cwd inside.
    project: Path
    #: Directories inside the project that are hidden (kiln's state: registry, logs, keys).
    hidden: tuple[Path, ...] = ()
    #: Read-only paths (Ansible content outside the project, packer's inventory, secrets).
    readable: tuple[Path, ...] = ()
    #: The run's own directories, writable.
    writable: tuple[Path, ...] = ()
    #: Unix sockets bound in: (path outside, path inside), e.g. kiln's engine proxy.
    sockets: tuple[tuple[Path, Path], ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    #: The working directory inside (a directory the sandbox holds); the project by default.
    cwd: Path | None = None


def bwrap_path() -> str:
    found = shutil.which("bwrap")
    if found is None:
        raise ToolError(
            "bwrap (bubblewrap) is not installed: kiln runs Ansible in its sandbox. "
            "Install it with `apt-get install bubblewrap` (scripts/setup.sh does)."
        )
    return found


def python_paths() -> tuple[Path, ...]:
    """The Python installation that runs Ansible: the venv, its base, and kiln itself."""
    import kiln

    package = Path(kiln.__file__)
    paths = {
        Path(sys.prefix),
        Path(sys.base_prefix),
        package.parent.parent,
        package.resolve().parent,
    }
    paths.add(Path(os.path.realpath(sys.executable)).parent.parent)
    return tuple(sorted(paths))


def bwrap_argv(spec: SandboxSpec, command: Sequence[str]) -> list[str]:
    """The bubblewrap command line that runs command inside spec's sandbox."""
    argv = [
        bwrap_path(),
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-pid",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
        "--tmpfs",
        "/run",
        "--symlink",
        "../run",
        "/var/run",
    ]
    argv += _system_binds()
    argv += _binds("--ro-bind", [spec.project])
    argv += [arg for hidden in spec.hidden if hidden.exists() for arg in ("--tmpfs", str(hidden))]
    argv += _binds("--ro-bind", [*python_paths(), *spec.readable])
    argv += _binds("--bind", spec.writable)
    for outside, inside in spec.sockets:
        argv += ["--bind", str(outside), str(inside)]
    for name, value in sorted(spec.env.items()):
        argv += ["--setenv", name, value]
    return [*argv, "--chdir", str(spec.cwd or spec.project), "--", *command]


def _system_binds() -> list[str]:
    argv: list[str] = []
    for top in SYSTEM_DIRS:
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    for path in SYSTEM_FILES:
        argv += ["--ro-bind-try", path, path]
    return argv


def _binds(flag: str, paths: Iterable[Path]) -> list[str]:
    """flag SRC DEST for each existing path, outermost first so that nested binds stay on top."""
    argv: list[str] = []
    for path in sorted({Path(os.path.abspath(p)) for p in paths}, key=lambda p: len(p.parts)):
        if path.exists():
            argv += [flag, str(path), str(path)]
    return argv
