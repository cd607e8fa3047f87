"""The throwaway resources a bake runs inside (kiln.bake.scope)."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from kiln.bake.scope import packer_temp_dir, remove_orphaned_packer_temp_dirs, workspace


def test_packer_temp_dir_is_private_short_enough_for_a_socket_and_removed() -> None:
    with packer_temp_dir() as temp_dir:
        assert temp_dir.parent == Path(tempfile.gettempdir())
        assert stat.S_IMODE(temp_dir.stat().st_mode) == 0o700
        # Packer's plugins listen on unix sockets here, named like this one.
        with socket.socket(socket.AF_UNIX) as server:
            server.bind(str(temp_dir / "packer-plugin1234567890"))
        (temp_dir / "ansible-key123").write_text("key")
    assert not temp_dir.exists()


def test_packer_temp_dir_is_removed_when_the_run_fails() -> None:
    with pytest.raises(KeyboardInterrupt), packer_temp_dir() as temp_dir:
        (temp_dir / "ansible-key123").write_text("key")
        raise KeyboardInterrupt
    assert not temp_dir.exists()


def test_workspace_is_removed_when_the_bake_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), workspace(tmp_path / "work" / "web" / "3") as work:
        (work / "secrets.json").write_text("{}")
        raise RuntimeError("packer failed")
    assert not (tmp_path / "work" / "web" / "3").exists()


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_packer_temp_dir_names_its_kiln_process() -> None:
    with packer_temp_dir() as temp_dir:
        assert temp_dir.name.startswith(f"kiln-packer-{os.getpid()}-")


def test_the_next_packer_run_removes_the_temp_dir_of_a_killed_bake() -> None:
    """A bake killed with SIGKILL leaves its temp dir (the builder's key in it) behind."""
    temp = Path(tempfile.gettempdir())
    orphan = Path(tempfile.mkdtemp(prefix=f"kiln-packer-{_dead_pid()}-", dir=temp))
    (orphan / "ansible-key123").write_text("key")
    with subprocess.Popen(["sleep", "60"]) as sleeper:
        alive = Path(tempfile.mkdtemp(prefix=f"kiln-packer-{sleeper.pid}-", dir=temp))
        try:
            with packer_temp_dir() as mine:
                assert not orphan.exists()
                assert alive.exists()  # a running bake's directory is left alone
                assert remove_orphaned_packer_temp_dirs() == []  # nor is this run's own
                assert mine.exists()
        finally:
            sleeper.kill()
            shutil.rmtree(alive, ignore_errors=True)
