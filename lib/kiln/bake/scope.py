"""What a bake runs inside: role lock, work directory, packer's temp directory, pending artifact.

Nested as `with role_lock(...), workspace(...) as work, pending_artifact(...) as pending:`, they
undo a failed bake in one place, whatever the failure (a KeyboardInterrupt included).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from kiln.console import Reporter
from kiln.errors import BuildError
from kiln.locks import project_lock
from kiln.model import Project
from kiln.private_files import private_dir
from kiln.registry import Artifact
from kiln.targets.base import BakePlan, Builder


def role_lock(project: Project, role: str, reporter: Reporter) -> AbstractContextManager[None]:
    """Serialise bakes of one role across processes."""
    return project_lock(
        project,
        role,
        on_wait=lambda: reporter.message(
            role, "another bake of this role is running; waiting for it"
        ),
    )


@contextmanager
def workspace(path: Path) -> Iterator[Path]:
    """A bake's 0700 work directory (manifest, Ansible's raw events), removed however the bake
    ends. Its secrets file is elsewhere, on a tmpfs (kiln.secret_files)."""
    private_dir(path, below=path.parent)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


#: kiln-packer-<pid of the kiln process>-<random>: the pid tells a live bake's from a dead one's.
PACKER_TEMP_PREFIX = "kiln-packer-"


@contextmanager
def packer_temp_dir() -> Iterator[Path]:
    """A private (0700) temp directory for one packer run, removed however the run ends.

    It sits in the system's temp directory, not the work directory: packer's plugins listen on
    unix sockets in it, and a socket path holds at most 107 bytes. A bake killed with SIGKILL
    cannot remove its own (with the builder's private key in it): the next one does.
    """
    remove_orphaned_packer_temp_dirs()
    path = Path(tempfile.mkdtemp(prefix=f"{PACKER_TEMP_PREFIX}{os.getpid()}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def remove_orphaned_packer_temp_dirs() -> list[Path]:
    """Remove this user's packer temp directories whose kiln process is gone; returns them."""
    removed = []
    for path in Path(tempfile.gettempdir()).glob(f"{PACKER_TEMP_PREFIX}*-*"):
        pid = path.name.removeprefix(PACKER_TEMP_PREFIX).split("-", 1)[0]
        try:
            mine = path.is_dir() and path.stat().st_uid == os.getuid()
        except OSError:  # removed meanwhile by its own bake
            continue
        if mine and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process of that number
        return True
    return True


class PendingArtifact:
    """The artifact of a bake that is not recorded yet: deleted unless keep() is called."""

    def __init__(self, target: Builder, plan: BakePlan | None, version: int) -> None:
        self._target = target
        self._plan = plan
        self._version = version
        self.artifact: Artifact | None = None
        self.kept = False

    def hold(self, artifact: Artifact) -> None:
        """The artifact is known: discard deletes this one instead of looking for it."""
        self.artifact = artifact

    def keep(self) -> None:
        """The version is recorded: its artifact now belongs to the registry."""
        self.kept = True

    def discard(self) -> None:
        """Remove whatever artifact the bake managed to produce (for a plan, packer's image)."""
        artifact = self.artifact
        if artifact is None:
            if self._plan is None:
                return
            try:
                artifact = self._target.collect_artifact(self._plan, self._version)
            except BuildError:
                return  # packer produced nothing
        self._target.delete_artifact(artifact)


@contextmanager
def pending_artifact(
    target: Builder, plan: BakePlan | None, version: int
) -> Iterator[PendingArtifact]:
    """Delete the bake's artifact when the block ends without pending.keep(), even by Ctrl-C."""
    pending = PendingArtifact(target, plan, version)
    try:
        yield pending
    finally:
        if not pending.kept:
            pending.discard()
