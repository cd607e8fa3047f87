"""The Docker engine adapter: start, wait for, exec in, remove and export containers.

deploy, acceptance, `run`, the lifecycle diff and the docker target all talk to the engine here,
and ask it whether a recorded image is still the one its tag names.
"""

from __future__ import annotations

import hashlib
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from kiln import tools
from kiln.errors import ImageMoved, TestFailure, ToolError
from kiln.registry import Artifact, Version
from kiln.watchdog import Lease, watchdog

# How every kiln container runs (builder, test instance, deployed server): systemd as PID 1, so
# that services start as on a server. --privileged does not work on every host; these caps do.
# SYS_PTRACE: a unit with User= and PrivateUsers= under ProtectProc=invisible (hidepid) has its
# (sd-userns) helper write the service's uid_map, which /proc hides from it without the cap
# ("Failed to set up user namespacing", 217/USER). It grants nothing SYS_ADMIN does not already.
SYSTEMD_RUN_FLAGS: tuple[str, ...] = (
    "--cap-add",
    "SYS_ADMIN",
    "--cap-add",
    "SYS_PTRACE",
    "--security-opt",
    "seccomp=unconfined",
    "--cgroupns=host",
    "-v",
    "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs",
    "/run",
    "--tmpfs",
    "/run/lock",
    "--stop-signal",
    "SIGRTMIN+3",
)
INIT = "/sbin/init"
#: Pseudo-filesystems that are mount points in a container, never image content.
SKIPPED_TREES = ("proc", "sys", "dev")


def run_command_line(image: str) -> str:
    """The one-line way to start an instance of image the way kiln documents it."""
    return " ".join(["docker run -d", *SYSTEMD_RUN_FLAGS, image])


@dataclass(frozen=True)
class Instance:
    """A running container started from an image."""

    name: str
    image: str

    def exec(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return tools.run(["docker", "exec", self.name, *argv], check=False, timeout=timeout)


# -- recorded images -------------------------------------------------------------------------
ImageLookup = Callable[[str], str | None]


def recorded_image_present(
    artifact: Artifact,
    *,
    owner: Version | None = None,
    remedy: str | None = None,
    image_id: ImageLookup | None = None,
) -> bool:
    """Whether the engine holds artifact's image under its recorded ref, as recorded.

    False when nothing is tagged there (or gc deleted it): a bake may build it again. A ref that
    names another image raises ImageMoved (naming owner's role and version, if given): starting,
    testing or baking on that image would be wrong, and baking anew would hide why.
    image_id: how to ask the engine (deploy's Engine.image_id); by default `docker image inspect`.
    """
    lookup = image_id or tools.docker_image_id
    if artifact.deleted_at is not None:
        return False
    current = lookup(artifact.ref)
    if current is None or current == artifact.image_id:
        return current is not None
    raise ImageMoved(
        ref=artifact.ref,
        recorded_id=artifact.image_id,
        current_id=current,
        recorded_kept=lookup(artifact.image_id) is not None,
        role=owner.role if owner is not None else None,
        version=owner.version if owner is not None else None,
        remedy=remedy,
    )


def start_instance(
    image: str,
    *,
    name: str,
    labels: Mapping[str, str] | None = None,
    extra_flags: tuple[str, ...] = (),
) -> Instance:
    """Start a container from image with systemd as init; no ports are published."""
    label_args = [
        arg for key, value in (labels or {}).items() for arg in ("--label", f"{key}={value}")
    ]
    tools.run(
        [
            "docker",
            "run",
            "-d",
            "--name",
            name,
            *label_args,
            *SYSTEMD_RUN_FLAGS,
            *extra_flags,
            "--",
            image,
            INIT,
        ],
        timeout=60,
    )
    return Instance(name=name, image=image)


def wait_until_booted(instance: Instance, timeout_s: float = 60) -> str:
    """Wait until systemd in the instance reports running (or degraded); returns the state."""
    deadline = time.monotonic() + timeout_s
    state = ""
    while time.monotonic() < deadline:
        state = instance.exec("systemctl", "is-system-running").stdout.strip()
        if state in ("running", "degraded"):
            return state
        time.sleep(0.3)
    raise TestFailure(
        f"instance {instance.name} of {instance.image} did not boot within {timeout_s:.0f} s "
        f"(systemd state: {state or 'unknown'})"
    )


def remove_instance(name: str) -> None:
    tools.run(["docker", "rm", "-f", "-v", name], check=False, timeout=60)


@contextmanager
def throwaway_instance(
    image: str, *, purpose: str, labels: Mapping[str, str] | None = None
) -> Iterator[Instance]:
    """A container from image that is always removed, whatever happens inside the block.

    Even when kiln itself is killed: a watchdog then removes it (kiln.watchdog).
    """
    name = f"kiln-{purpose}-{uuid.uuid4().hex[:10]}"
    with watchdog(Lease(containers=(name,))):
        try:
            instance = start_instance(
                image, name=name, labels={"kiln.purpose": purpose, **(labels or {})}
            )
            wait_until_booted(instance)
            yield instance
        finally:
            remove_instance(name)


# -- reading an image's files ---------------------------------------------------------------
@dataclass(frozen=True)
class FileEntry:
    """What identifies a path in an image (mtimes are left out: every bake changes them)."""

    type: str  # file, dir, symlink, hardlink, other
    size: int
    mode: int
    uid: int
    gid: int
    sha256: str | None = None
    link: str | None = None


def _file_entry(member: tarfile.TarInfo, tar: tarfile.TarFile) -> FileEntry:
    kind, digest, link = "other", None, None
    if member.isreg():
        kind = "file"
        handle = tar.extractfile(member)
        assert handle is not None
        hasher = hashlib.sha256()
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
        digest = hasher.hexdigest()
    elif member.issym():
        kind, link = "symlink", member.linkname
    elif member.islnk():
        kind, link = "hardlink", "/" + member.linkname.removeprefix("./").lstrip("/")
    elif member.isdir():
        kind = "dir"
    return FileEntry(kind, member.size, member.mode, member.uid, member.gid, digest, link)


def image_filesystem(ref: str) -> dict[str, FileEntry]:
    """Every path of a docker image, read by streaming `docker export` of a created container.

    The container is never started, and it is removed whatever happens.
    """
    name = f"kiln-diff-{uuid.uuid4().hex[:10]}"
    tools.docker("create", "--name", name, "--label", "kiln.purpose=diff", ref, timeout=120)
    entries: dict[str, FileEntry] = {}
    try:
        with (
            tempfile.TemporaryFile() as errors,
            subprocess.Popen(
                ["docker", "export", name], stdout=subprocess.PIPE, stderr=errors
            ) as proc,
        ):
            assert proc.stdout is not None
            try:
                with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                    for member in tar:
                        path = member.name.removeprefix("./").strip("/")
                        if not path or path.split("/", 1)[0] in SKIPPED_TREES:
                            continue
                        entries["/" + path] = _file_entry(member, tar)
            except tarfile.TarError as exc:
                proc.kill()
                raise ToolError(f"cannot read the filesystem of {ref}: {exc}") from exc
            if proc.wait() != 0:
                errors.seek(0)
                tail = errors.read().decode(errors="replace").strip().splitlines()[-5:]
                raise ToolError(f"docker export of {ref} failed: {' '.join(tail)}")
    finally:
        tools.run(["docker", "rm", "-f", "-v", name], check=False, timeout=120)
    return entries
