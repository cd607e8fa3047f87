"""`kiln-ansible`: the command Packer's Ansible provisioner runs instead of ansible-playbook.

Packer passes it ansible-playbook's arguments (its inventory of the one builder, the playbook,
kiln's extra arguments). It runs them through ansible-runner inside kiln's sandbox
(kiln.controller.sandbox), in a private run directory on a tmpfs, and returns
ansible-playbook's exit code. Packer started by kiln sets KILN_EVENTS_FILE (kiln's event records)
and KILN_ANSIBLE_LOG_DIR (where runner's artifacts are kept, redacted); `packer build` run by hand
sets neither and gets Ansible's output only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiln.controller.bridge import SocketToPort
from kiln.controller.config import KILN_ANSIBLE_CFG, write_ansible_cfg
from kiln.controller.engine_proxy import EngineProxy
from kiln.controller.environment import sandbox_environment
from kiln.controller.inventory import inventory_path, loopback_ssh_port
from kiln.controller.rundir import keep_artifacts, run_directory, secret_values
from kiln.controller.sandbox import DOCKER_SOCKET, SandboxSpec, bwrap_argv, python_paths
from kiln.errors import KilnError

#: Content directories Ansible reads besides the project (installed collections, plugins).
_CONTENT_PATH_VARS = (
    "ANSIBLE_ROLES_PATH",
    "ANSIBLE_COLLECTIONS_PATH",
    "ANSIBLE_CALLBACK_PLUGINS",
    "ANSIBLE_STRATEGY_PLUGINS",
)


def _content_paths(env: Mapping[str, str], cwd: Path) -> list[Path]:
    paths = []
    for name in _CONTENT_PATH_VARS:
        for item in env.get(name, "").split(os.pathsep):
            if item:
                paths.append((cwd / item).resolve())
    return paths


#: Extra variables Packer passes that name a file Ansible must read (the builder's SSH key).
_FILE_VARS = ("ansible_ssh_private_key_file=", "ansible_private_key_file=")


def _file_arguments(args: Sequence[str]) -> list[Path]:
    """Files Packer and kiln name on the command line: inventory, key, `-e @file` (secrets)."""
    files = []
    for index, arg in enumerate(args):
        value = args[index + 1] if index + 1 < len(args) else ""
        if arg.startswith("@"):
            files.append(Path(arg[1:]))
        elif arg in ("-i", "--inventory", "--private-key", "--key-file") and value:
            files.append(Path(value))
        elif arg in ("-e", "--extra-vars") and value.startswith(_FILE_VARS):
            files.append(Path(value.partition("=")[2]))
    return [path.resolve() for path in files]


def docker_target(args: Sequence[str]) -> str | None:
    """The container the run targets (the last -e ansible_host=), when it goes through docker."""
    values = [args[i + 1] for i, arg in enumerate(args[:-1]) if arg in ("-e", "--extra-vars")]
    connection = next((v for v in reversed(values) if v.startswith("ansible_connection=")), "")
    if "docker" not in connection:
        return None
    host = next((v for v in reversed(values) if v.startswith("ansible_host=")), "")
    return host.partition("=")[2] or None


@dataclass(frozen=True)
class Scope:
    """What a run reaches when its caller is not Packer (a role test: kiln.controller.molecule).

    Packer's runs take all of this from their arguments and environment (_packer_scope).
    """

    #: The containers the engine proxy admits; none, and the run reaches no container.
    containers: tuple[str, ...]
    #: The project, read-only with its .kiln hidden; the cwd must be inside it or readable.
    project: Path
    #: Read-only paths besides the project: content outside it, files the arguments name.
    readable: tuple[Path, ...] = ()
    #: Variables set inside besides the allow-listed ones (MOLECULE_*).
    env: Mapping[str, str] = field(default_factory=dict)
    #: The ansible.cfg the run reads.
    ansible_cfg: str = KILN_ANSIBLE_CFG


def _packer_scope(args: Sequence[str], env: Mapping[str, str]) -> Scope:
    """A run Packer started: its one container, the cwd as the project, the files it names."""
    container = docker_target(args)
    cwd = Path.cwd()
    # The files themselves, not their directories: a hand-run packer keeps them in /tmp.
    readable = (*_content_paths(env, cwd), *_file_arguments(args))
    return Scope(containers=(container,) if container else (), project=cwd, readable=readable)


def sandbox_spec(
    args: Sequence[str], env: Mapping[str, str], run: Path, scope: Scope | None = None
) -> SandboxSpec:
    """What the sandbox holds for these ansible-playbook arguments, run from the cwd."""
    scope = scope or _packer_scope(args, env)
    project, cwd = scope.project, Path.cwd()
    writable = [run]
    events = env.get("KILN_EVENTS_FILE", "")
    if events:
        writable.append(Path(events).parent)
    readable = list(scope.readable)
    if not cwd.is_relative_to(project):
        readable.append(cwd)
    state = project / ".kiln"
    galaxy = state / "galaxy"
    if galaxy.exists():
        readable.append(galaxy)
    return SandboxSpec(
        project=project,
        hidden=(state,),
        readable=tuple(readable),
        writable=tuple(writable),
        sockets=((run / "docker.sock", DOCKER_SOCKET),) if scope.containers else (),
        env={**sandbox_environment(env, run), **scope.env},
        cwd=cwd,
    )


def _run_sandboxed(argv: list[str]) -> int:
    """Run bwrap; Ctrl-C or SIGTERM (packer stopping) stops it, and the whole sandbox with it."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)

    def stop(signum: int, _frame: object) -> None:
        proc.terminate()  # bwrap's end kills the sandbox: --die-with-parent on its child

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _inside_spec(args: Sequence[str], env: Mapping[str, str], run_dir: Path) -> dict[str, Any]:
    """What kiln.controller.inside runs, as the JSON it reads."""
    return {
        "ansible_playbook": str(Path(sys.executable).parent / "ansible-playbook"),
        "args": list(args),
        "events": env.get("KILN_EVENTS_FILE", ""),
        "private_data_dir": str(run_dir / "runner"),
        "artifact_dir": str(run_dir / "artifacts"),
    }


def run(args: Sequence[str], env: Mapping[str, str], scope: Scope | None = None) -> int:
    """ansible-playbook args through ansible-runner in the sandbox; its exit code.

    Without scope, the run is Packer's: see _packer_scope.
    """
    keep = env.get("KILN_ANSIBLE_LOG_DIR", "")
    scope = scope or _packer_scope(args, env)
    with run_directory() as run_dir, ExitStack() as stack:
        write_ansible_cfg(run_dir, scope.ansible_cfg)
        inside = _inside_spec(args, env, run_dir)
        proxy = None
        if scope.containers and DOCKER_SOCKET.exists():
            proxy = stack.enter_context(
                EngineProxy(run_dir / "docker.sock", DOCKER_SOCKET, scope.containers)
            )
        inventory = inventory_path(args)
        port = loopback_ssh_port(inventory) if inventory else None
        if port is not None:
            stack.enter_context(SocketToPort(run_dir / "ssh.sock", "127.0.0.1", port))
            inside["bridge"] = ["127.0.0.1", port, str(run_dir / "ssh.sock")]
        (run_dir / "spec.json").write_text(json.dumps(inside), encoding="utf-8")
        command = [sys.executable, "-m", "kiln.controller.inside", str(run_dir / "spec.json")]
        try:
            return _run_sandboxed(bwrap_argv(sandbox_spec(args, env, run_dir, scope), command))
        finally:
            for request in proxy.refused if proxy is not None else ():
                print(f"kiln-ansible: refused a Docker API request: {request}", file=sys.stderr)
            if keep:
                keep_artifacts(run_dir / "artifacts", Path(keep), secret_values(args))


def main() -> int:
    args = sys.argv[1:]
    if args == ["--version"]:  # Packer's version check: nothing runs against a host
        ansible_playbook = Path(sys.executable).parent / "ansible-playbook"
        return subprocess.call([str(ansible_playbook), "--version"])
    try:
        return run(args, os.environ)
    except KilnError as exc:
        print(f"kiln-ansible: {exc}", file=sys.stderr)
        return 2


__all__ = ["Scope", "main", "python_paths", "run", "sandbox_spec"]
