"""Looking inside a qcow2 without booting or mounting it: its files, and whether it is sealed."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from kiln import tools
from kiln.errors import BuildError
from kiln.targets.qemu.access import PACKER_USER
from kiln.targets.qemu.base_image import PARTITION_START_SECTOR, SECTOR

__all__ = ["guest_file", "guest_listdir", "sealing_problems"]


@contextlib.contextmanager
def _raw_root(image: Path) -> Iterator[str]:
    """A debugfs device spec for the root partition of a qcow2 (a raw copy with ?offset=)."""
    qemu_img = tools.which("qemu-img")
    with tempfile.TemporaryDirectory(prefix="kiln-inspect-") as tmp:
        raw = Path(tmp) / "disk.raw"
        done = subprocess.run(
            [qemu_img, "convert", "-O", "raw", str(image), str(raw)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise BuildError(f"cannot read {image}: {done.stderr.strip()}")
        yield f"{raw}?offset={PARTITION_START_SECTOR * SECTOR}"


def _debugfs(spec: str, request: str) -> subprocess.CompletedProcess[bytes]:
    """Run one debugfs request against the filesystem at ``spec``, read-only."""
    return subprocess.run(
        [tools.which("debugfs"), "-R", request, spec], capture_output=True, check=False
    )


def _guest_file(spec: str, path: str) -> bytes | None:
    """guest_file() on an already converted disk."""
    done = _debugfs(spec, f"cat {path}")
    if b"File not found" in done.stderr:
        return None
    if done.returncode != 0:
        raise BuildError(f"debugfs cannot read {path}: {done.stderr.decode(errors='replace')}")
    return done.stdout


def _guest_listdir(spec: str, path: str) -> list[str] | None:
    """guest_listdir() on an already converted disk."""
    done = _debugfs(spec, f"ls -p {path}")
    if b"File not found" in done.stderr:
        return None
    names = []
    for line in done.stdout.decode(errors="replace").splitlines():
        # ls -p: /inode/mode/uid/gid/name/size/
        fields = line.split("/")
        if len(fields) >= 7 and fields[5] not in (".", ".."):
            names.append(fields[5])
    return sorted(names)


def guest_file(image: Path, path: str) -> bytes | None:
    """The content of ``path`` in the image's root filesystem, or None if it does not exist."""
    with _raw_root(image) as spec:
        return _guest_file(spec, path)


def guest_listdir(image: Path, path: str) -> list[str] | None:
    """The names in directory ``path`` of the image's root filesystem, or None if it is absent."""
    with _raw_root(image) as spec:
        return _guest_listdir(spec, path)


def sealing_problems(image: Path, *, user: str = PACKER_USER) -> list[str]:
    """What a bake left behind that a sealed image must not hold; empty when it is sealed."""
    problems = []
    with _raw_root(image) as spec:
        passwd = (_guest_file(spec, "/etc/passwd") or b"").decode(errors="replace")
        if any(line.startswith(f"{user}:") for line in passwd.splitlines()):
            problems.append(f"user {user} is still in /etc/passwd")
        if _guest_listdir(spec, f"/home/{user}") is not None:
            problems.append(f"/home/{user} still exists")
        if _guest_file(spec, f"/home/{user}/.ssh/authorized_keys") is not None:
            problems.append(f"/home/{user}/.ssh/authorized_keys still exists")
        sudoers = _guest_listdir(spec, "/etc/sudoers.d") or []
        for name in sudoers:
            text = (_guest_file(spec, f"/etc/sudoers.d/{name}") or b"").decode(errors="replace")
            if user in text:
                problems.append(f"/etc/sudoers.d/{name} still names {user}")
        host_keys = [n for n in _guest_listdir(spec, "/etc/ssh") or [] if n.startswith("ssh_host_")]
        if host_keys:
            problems.append(f"SSH host keys remain: {', '.join(host_keys)}")
        machine_id = _guest_file(spec, "/etc/machine-id")
        if machine_id:
            problems.append("/etc/machine-id is not empty")
        if _guest_listdir(spec, "/var/lib/cloud/instances"):
            problems.append("cloud-init instance data remains (cloud-init clean did not run)")
    return problems
