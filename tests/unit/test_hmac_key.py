"""The HMAC key of secret digests: outside .kiln/, made once by exactly one of many first users,
0600 in 0700 directories, refused when short, and moved (unchanged) from where older kilns kept it.
"""

from __future__ import annotations

import multiprocessing
import os
import stat
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from kiln.errors import RegistryError
from kiln.hmac_key import KEY_BYTES, key_path, project_key, secret_key, state_home

THREADS = 48
PROCESSES = 16
ROUNDS = 6


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    return home


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_key_lives_in_xdg_state_home_keyed_by_the_project(state: Path, tmp_path: Path) -> None:
    root = tmp_path / "my project!"
    root.mkdir()
    key = secret_key(root)
    assert len(key) == KEY_BYTES
    path = key_path(root)
    assert path.parent.parent == state / "kiln"
    assert path.parent.name.startswith("my-project-") and path.parent.name == project_key(root)
    assert path.read_bytes() == key and secret_key(root) == key
    assert not (root / ".kiln").exists()  # nothing of it in the project
    (root / "other").mkdir()
    assert secret_key(root / "other") != key
    # The same directory however it is named: a relative path, a symlink.
    os.symlink(root, tmp_path / "link")
    assert project_key(tmp_path / "link") == project_key(root)


def test_the_key_is_0600_in_0700_directories_whatever_the_umask(
    state: Path, tmp_path: Path
) -> None:
    (state / "kiln").mkdir(parents=True, mode=0o755)  # made wide by someone: tightened
    previous = os.umask(0)
    try:
        secret_key(tmp_path)
    finally:
        os.umask(previous)
    path = key_path(tmp_path)
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700 and mode(state / "kiln") == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["secret.key"]  # no temp file left


def test_without_xdg_state_home_the_key_is_under_local_state(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for value in (None, "", "relative/path"):  # unset, empty or relative: ignored, as XDG says
        if value is None:
            monkeypatch.delenv("XDG_STATE_HOME", raising=False)
        else:
            monkeypatch.setenv("XDG_STATE_HOME", value)
        assert state_home() == tmp_path / "home" / ".local" / "state"


def test_the_tests_never_write_to_the_real_state_home(
    private_state_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """tests/conftest.py's session fixture: no test (nor sandbox) touches ~/.local/state."""
    assert state_home() == private_state_home
    assert tmp_path_factory.getbasetemp() in state_home().parents


def first_uses(start: threading.Barrier, root: Path) -> Callable[[], bytes]:
    def use() -> bytes:
        start.wait()
        return secret_key(root)

    return use


def test_many_threads_using_a_key_first_all_get_the_same_one(state: Path, tmp_path: Path) -> None:
    for round_ in range(ROUNDS):
        root = tmp_path / f"project-{round_}"
        root.mkdir()
        start = threading.Barrier(THREADS)
        with ThreadPoolExecutor(THREADS) as pool:
            futures = [pool.submit(first_uses(start, root)) for _ in range(THREADS)]
            keys = [future.result() for future in futures]  # raises any thread's error
        assert len(set(keys)) == 1 and len(keys[0]) == KEY_BYTES
        assert key_path(root).read_bytes() == keys[0]


def _process_first_use(start: multiprocessing.synchronize.Barrier, root: Path, out: Path) -> None:
    start.wait()
    try:
        out.write_bytes(secret_key(root))
    except BaseException as exc:
        out.write_text(f"error: {exc!r}")


def test_many_processes_using_a_key_first_all_get_the_same_one(state: Path, tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    for round_ in range(ROUNDS):
        root = tmp_path / f"project-{round_}"
        root.mkdir()
        start = context.Barrier(PROCESSES)
        outs = [tmp_path / f"out-{round_}-{n}" for n in range(PROCESSES)]
        procs = [
            context.Process(target=_process_first_use, args=(start, root, out)) for out in outs
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(60)
        keys = {out.read_bytes() for out in outs}
        assert keys == {key_path(root).read_bytes()}, keys
        assert len(next(iter(keys))) == KEY_BYTES


@pytest.mark.parametrize("content", [b"", b"\n", b"x" * (KEY_BYTES - 1)])
def test_an_empty_or_short_key_is_refused(state: Path, tmp_path: Path, content: bytes) -> None:
    path = key_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(RegistryError) as raised:
        secret_key(tmp_path)
    message = str(raised.value)
    assert str(path) in message and "Remove the file and run again" in message
    assert ("is empty" if not content else f"holds {len(content)} bytes") in message
    assert path.read_bytes() == content  # refused, not repaired behind the user's back


def test_a_key_others_may_read_is_refused(state: Path, tmp_path: Path) -> None:
    secret_key(tmp_path)
    key_path(tmp_path).chmod(0o644)
    with pytest.raises(RegistryError, match=r"has mode 0644: others may read it. `chmod 600 "):
        secret_key(tmp_path)


def test_a_state_home_kiln_cannot_write_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "a-file"))  # as good as read-only
    with pytest.raises(RegistryError, match=r"cannot read or make the secret key .* XDG_STATE"):
        secret_key(tmp_path)


def test_the_key_of_an_older_kiln_is_moved_out_of_the_project_unchanged(
    state: Path, tmp_path: Path
) -> None:
    legacy = tmp_path / ".kiln" / "secret.key"
    legacy.parent.mkdir()
    old_key = os.urandom(KEY_BYTES)
    legacy.write_bytes(old_key)
    legacy.chmod(0o644)  # a copy made without -p: still the key the registry's digests need
    assert secret_key(tmp_path) == old_key  # digests recorded with it stay the same
    assert key_path(tmp_path).read_bytes() == old_key and mode(key_path(tmp_path)) == 0o600
    assert not legacy.exists()
    assert secret_key(tmp_path) == old_key


def test_a_moved_key_left_behind_by_a_crash_is_removed_next_time(
    state: Path, tmp_path: Path
) -> None:
    key = secret_key(tmp_path)
    legacy = tmp_path / ".kiln" / "secret.key"
    legacy.parent.mkdir()
    legacy.write_bytes(key)  # moved, and the crash came before the old file was removed
    assert secret_key(tmp_path) == key
    assert not legacy.exists()


def test_an_empty_key_of_an_older_kiln_is_refused_not_moved(state: Path, tmp_path: Path) -> None:
    legacy = tmp_path / ".kiln" / "secret.key"
    legacy.parent.mkdir()
    legacy.write_bytes(b"")  # what 13 of 800 racing first uses got from kiln before issue 14
    legacy.chmod(0o600)
    with pytest.raises(RegistryError, match=r"\.kiln/secret\.key is empty"):
        secret_key(tmp_path)
    assert not key_path(tmp_path).exists()
