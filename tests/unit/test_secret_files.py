"""The secrets file: on a tmpfs only, 0600 in a 0700 directory named after its kiln process,
removed on every exit path a process survives, and swept by the next command after a kill -9.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kiln import secret_files
from kiln.errors import ToolError
from kiln.secret_files import (
    ANSIBLE_RUN_PREFIX,
    PREFIX,
    memory_root,
    secret_vars_file,
    sweep,
)
from kiln.tasks import cli

LIB = Path(__file__).resolve().parents[2] / "lib"
VALUES = {"api_token": 's3cret "quoted" \\ é', "other": "x"}


@pytest.fixture
def shm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in for /dev/shm where the sweep looks (it never checks the file system type)."""
    path = tmp_path / "shm"
    path.mkdir()
    monkeypatch.setattr(secret_files, "SHM", path)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def own_name(pid: int | None = None, started: str | None = None) -> str:
    """A directory name as secret_vars_file makes it, for pid (this process by default)."""
    pid = os.getpid() if pid is None else pid
    started = secret_files._start_time(pid) if started is None else started
    return f"{PREFIX}{secret_files._pid_namespace()}-{pid}-{started}-abc123_x"


def test_the_file_is_0600_in_a_0700_directory_on_a_tmpfs_and_then_gone() -> None:
    previous = os.umask(0)  # the modes are kiln's doing, not the umask's grace
    try:
        with secret_vars_file(VALUES) as path:
            assert json.loads(path.read_text(encoding="utf-8")) == VALUES
            assert mode(path) == 0o600 and mode(path.parent) == 0o700
            assert path.stat().st_uid == os.getuid()
            assert list(path.parent.iterdir()) == [path]
            mounts = secret_files._mount_types()
            assert secret_files._type_of(path, mounts) in {"tmpfs", "ramfs"}
            assert path.parent.parent == memory_root()
            assert path.parent.name.startswith(own_name().removesuffix("abc123_x"))
    finally:
        os.umask(previous)
    assert not path.parent.exists()


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_the_file_is_removed_when_the_bake_fails_or_is_interrupted(
    error: type[BaseException],
) -> None:
    with pytest.raises(error), secret_vars_file(VALUES) as path:
        assert path.exists()
        raise error
    assert not path.parent.exists()


def test_without_a_tmpfs_it_refuses_rather_than_write_to_disk(
    shm: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if secret_files._type_of(tmp_path, secret_files._mount_types()) == "tmpfs":
        pytest.skip("the test's temp directory is itself a tmpfs")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # on disk here: passed over too
    refused = pytest.raises(ToolError, match=r"no tmpfs to keep the secrets file in: .* never")
    with refused, secret_vars_file(VALUES):
        pytest.fail("a secrets file was made on disk")
    assert list(shm.iterdir()) == []


def test_xdg_runtime_dir_is_preferred_when_it_is_a_tmpfs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/dev/shm")  # a tmpfs the test can name
    monkeypatch.setattr(secret_files, "SHM", Path("/nonexistent"))
    assert memory_root() == Path("/dev/shm")


def test_mount_points_with_escaped_characters_are_read_back() -> None:
    written = r"/mnt/a\040b\134c"  # how /proc/self/mounts writes "/mnt/a b\c"
    assert secret_files._OCTAL.sub(lambda m: chr(int(m[1], 8)), written) == "/mnt/a b\\c"


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_the_sweep_removes_what_dead_or_replaced_owners_left_and_nothing_else(shm: Path) -> None:
    dead = shm / own_name(dead_pid(), "12345")
    reused = shm / own_name(os.getpid(), "1")  # this pid, but another process's start time
    live = shm / own_name()
    other_namespace = shm / f"{PREFIX}1-{dead_pid()}-12345-abc123_x"
    not_kilns = [shm / f"{PREFIX}notes", shm / f"{PREFIX}1-2-3", shm / "other-program"]
    for path in (dead, reused, live, other_namespace, *not_kilns):
        path.mkdir()
        (path / "secrets.json").write_text("{}")
    a_file = shm / own_name(dead_pid(), "777")
    a_file.write_text("not a directory kiln made")

    assert sorted(sweep()) == sorted([dead, reused])
    assert not dead.exists() and not reused.exists()
    for kept in (live, other_namespace, *not_kilns, a_file):
        assert kept.exists(), kept
    assert sweep() == []


def test_the_sweep_looks_in_xdg_runtime_dir_too(
    shm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = tmp_path / "run-user"
    runtime.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    left = runtime / own_name(dead_pid(), "12345")
    left.mkdir()
    assert sweep() == [left]


def test_every_task_starts_with_the_sweep(shm: Path) -> None:
    left = shm / own_name(dead_pid(), "12345")
    left.mkdir()
    with cli():
        assert not left.exists()


def test_a_bake_through_the_library_sweeps_too(shm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/dev/shm")  # the stand-in for /dev/shm is no tmpfs
    left = shm / own_name(dead_pid(), "12345")
    left.mkdir()
    with secret_vars_file(VALUES):
        assert not left.exists()


def test_the_sweep_is_cheap(shm: Path) -> None:
    """The start of every command pays for it: a few microseconds (the no-op bake is ~200 ms).
    The best of many runs, so that a loaded machine does not fail it."""
    for n in range(200):  # a busy /dev/shm: other programs' files, and live kiln bakes
        (shm / f"sem.other-{n}").write_text("")
    for n in range(20):
        (shm / own_name().replace("abc123_x", f"r{n}")).mkdir()
    best = float("inf")
    for _ in range(50):
        started = time.perf_counter()
        sweep()
        best = min(best, time.perf_counter() - started)
    assert best < 0.005, f"{best * 1000:.2f} ms a sweep"


HOLDER = """
import sys, time
from invoke.exceptions import Exit
from kiln.secret_files import secret_vars_file
from kiln.tasks import cli
try:
    with cli(), secret_vars_file({"token": "s3cret"}) as path:
        print(path, flush=True)
        time.sleep(60)
except Exit as exc:
    sys.exit(exc.code)
"""


@pytest.fixture
def holder() -> Iterator[subprocess.Popen[str]]:
    """A process that runs a task holding a secrets file, as a bake does while packer runs."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLDER)],
        env={**os.environ, "PYTHONPATH": str(LIB)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_stopping_signal_removes_the_file(
    holder: subprocess.Popen[str], signum: signal.Signals
) -> None:
    assert holder.stdout is not None
    path = Path(holder.stdout.readline().strip())
    assert path.exists()
    holder.send_signal(signum)
    _, err = holder.communicate(timeout=30)
    assert holder.returncode == 130, err
    assert not path.parent.exists()


def test_after_a_kill_9_the_next_command_sweeps_the_file(holder: subprocess.Popen[str]) -> None:
    assert holder.stdout is not None
    path = Path(holder.stdout.readline().strip())
    holder.kill()
    holder.wait(timeout=30)
    assert path.exists()  # the positive control: nothing in the killed process could remove it
    with cli():
        pass
    assert not path.parent.exists()


def test_a_sandboxed_ansible_runs_directory_is_named_for_the_sweep() -> None:
    from kiln.controller.rundir import run_directory

    with run_directory() as live:
        assert live.name.startswith(
            own_name().removesuffix("abc123_x").replace(PREFIX, ANSIBLE_RUN_PREFIX, 1)
        )
        assert mode(live) == 0o700 and live.parent == memory_root()
        assert live not in sweep()  # its process (this one) is alive
    assert not live.exists()


def test_the_sweep_removes_a_killed_sandboxed_ansible_runs_directory_too(shm: Path) -> None:
    killed = shm / own_name(dead_pid(), "12345").replace(PREFIX, ANSIBLE_RUN_PREFIX, 1)
    killed.mkdir(mode=0o700)
    (killed / "artifacts").mkdir()
    assert sweep() == [killed]
    assert not killed.exists()
