"""The external tools kiln drives (packer, docker, mmdebstrap): finding and running them.

Every subprocess failure is translated here into a KilnError a user can act on.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from kiln.errors import ToolError

MIN_PACKER = (1, 6, 6)
INSTALL_HINT = "run the README's setup command (scripts/setup.sh) to install it"


def which(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise ToolError(f"{tool} is not installed or not on PATH; {INSTALL_HINT}")
    return path


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float | None = 120,
    input: str | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a tool and capture its output; failures become ToolError with the output's tail."""
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            cwd=cwd,
            env=env,
            check=False,
        )
    except FileNotFoundError as exc:
        raise ToolError(f"{argv[0]} is not installed or not on PATH; {INSTALL_HINT}") from exc
    except subprocess.TimeoutExpired as exc:
        raise ToolError(f"{' '.join(argv[:3])} did not finish within {timeout} s") from exc
    if check and proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-20:])
        raise ToolError(f"{' '.join(argv[:4])} failed with exit code {proc.returncode}:\n{tail}")
    return proc


def _parse_version(text: str) -> tuple[int, ...]:
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    if not match:
        raise ToolError(f"cannot read a version from {text.strip()!r}")
    return tuple(int(p) for p in match.groups())


def packer_version(state_path: Path | None = None) -> str:
    """Packer's version, cached on disk by binary identity so the no-op bake spawns nothing."""
    binary = which("packer")
    stat = os.stat(binary)
    key = f"{os.path.realpath(binary)}:{stat.st_mtime_ns}:{stat.st_size}"
    cache_file = state_path / "tools.json" if state_path else None
    if cache_file is not None and cache_file.exists():
        try:
            cached = json.loads(cache_file.read_text())
            if cached.get("packer_key") == key:
                return str(cached["packer"])
        except (OSError, ValueError, KeyError):
            pass
    version = _packer_version_uncached(binary)
    if cache_file is not None:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            cache_file.write_text(json.dumps({"packer_key": key, "packer": version}))
        except OSError:
            pass
    return version


@cache
def _packer_version_uncached(binary: str) -> str:
    out = run([binary, "version"], timeout=30).stdout
    version = _parse_version(out)
    if version < MIN_PACKER:
        raise ToolError(
            f"packer {'.'.join(map(str, version))} is too old: kiln needs "
            f"{'.'.join(map(str, MIN_PACKER))} or newer; {INSTALL_HINT}"
        )
    return ".".join(map(str, version))


def packer_supports_required_plugins(version: str) -> bool:
    return _parse_version(version) >= (1, 7, 0)


@cache
def ansible_version() -> str:
    try:
        return metadata.version("ansible-core")
    except metadata.PackageNotFoundError as exc:
        raise ToolError(f"ansible-core is not installed in this Python; {INSTALL_HINT}") from exc


@cache
def collections_version() -> str:
    """The version of the `ansible` package, which pins every collection it bundles
    (community.docker, ansible.posix...): the collections a bake runs with by default."""
    try:
        return metadata.version("ansible")
    except metadata.PackageNotFoundError:
        return "none"


def tool_versions(state_path: Path | None = None) -> dict[str, str]:
    """The tool versions that shape an image, and so belong in its fingerprint."""
    return {
        "packer": packer_version(state_path),
        "ansible-core": ansible_version(),
        "ansible-collections": collections_version(),
    }


def require_docker() -> None:
    """Fail with a fix when the Docker engine is not answering."""
    which("docker")
    proc = run(["docker", "version", "--format", "{{.Server.Version}}"], check=False, timeout=20)
    if proc.returncode != 0:
        answer = ((proc.stderr or proc.stdout).strip().splitlines() or ["no answer"])[-1]
        host = os.environ.get("DOCKER_HOST")
        where = f" at DOCKER_HOST={host}" if host else ""
        raise ToolError(
            f"the Docker engine is not running{where} (docker version: {answer}). "
            "Start it with: dockerd >/var/log/dockerd.log 2>&1 &"
            + (", or unset DOCKER_HOST" if host else "")
        )


def docker(*args: str, check: bool = True, timeout: float | None = 120) -> str:
    return run(["docker", *args], check=check, timeout=timeout).stdout.strip()


def docker_image_id(ref: str) -> str | None:
    """The image id of ref, or None if the local engine does not have it."""
    proc = run(["docker", "image", "inspect", "--format", "{{.Id}}", ref], check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_state(root: Path) -> tuple[str, bool]:
    """(commit, dirty) of the repository holding root; ('unknown', True) outside git."""
    if shutil.which("git") is None:
        return "unknown", True
    head = run(["git", "-C", str(root), "rev-parse", "HEAD"], check=False)
    if head.returncode != 0:
        return "unknown", True
    status = run(["git", "-C", str(root), "status", "--porcelain"], check=False)
    return head.stdout.strip(), bool(status.stdout.strip())


def stop_process(proc: subprocess.Popen[Any], grace_s: float = 30) -> None:
    """Ask a child to stop (so it can clean up what it mounted or started), then kill it."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
