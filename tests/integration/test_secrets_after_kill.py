"""A kill -9 of kiln while Ansible runs leaves the secrets file on the tmpfs, and nowhere else;
the next kiln command, whatever it is, removes it.
"""

from __future__ import annotations

import os
import secrets
import signal
import stat
import string
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Sandbox, make_sandbox
from kiln.secret_files import FILE_NAME, PREFIX, memory_root

pytestmark = pytest.mark.integration

TOKEN = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40))
SLOW_TASKS = """\
- name: Store a digest of the token
  ansible.builtin.copy:
    content: "{{ api_token | hash('sha256') }}\\n"
    dest: /etc/kiln-token.sha256
    mode: "0644"
  no_log: true

- name: Take a long time
  ansible.builtin.command: sleep 600
  changed_when: false
"""
DEFINITIONS = """
from kiln import Secret
project.role(
    "slow", parent=bookworm, secrets={"api_token": Secret(env="KILN_TEST_TOKEN")},
    lint_allowed=True,
)
"""
#: How long the bake may take to reach its sleeping task (the base image may be bootstrapped).
REACH_S = 900


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sandbox]:
    sandbox = make_sandbox(tmp_path)
    tasks = sandbox.root / "roles" / "slow" / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "main.yml").write_text(SLOW_TASKS)
    sandbox.write_tasks(extra=DEFINITIONS)
    try:
        yield sandbox
    finally:
        sandbox.cleanup()


def secret_dirs_of(pid: int) -> list[Path]:
    """The secret directories kiln process pid made on the tmpfs (kiln.secret_files names)."""
    return [
        path
        for path in memory_root().glob(f"{PREFIX}*")
        if path.name.removeprefix(PREFIX).split("-")[1:2] == [str(pid)]
    ]


def wait_for_secret_file(proc: subprocess.Popen[str], deadline: float) -> Path:
    """The bake's secrets file once it holds the token and packer has started Ansible."""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the bake ended before Ansible ran ({proc.returncode}):\n{out}\n{err}")
        for directory in secret_dirs_of(proc.pid):
            try:
                if TOKEN in (directory / FILE_NAME).read_text(encoding="utf-8"):
                    return directory / FILE_NAME
            except FileNotFoundError:
                continue
        time.sleep(0.2)
    pytest.fail(f"no secrets file of kiln process {proc.pid} within {REACH_S}s")


def test_kill_9_leaves_the_secrets_file_on_the_tmpfs_only_and_the_next_command_removes_it(
    box: Sandbox,
) -> None:
    # Its own process group, like a terminal's job: kill -9 reaches packer and Ansible too.
    proc = subprocess.Popen(
        [sys.executable, "-m", "invoke", "bake", "slow", "--skip-tests"],
        cwd=box.root, env={**box.env(), "KILN_TEST_TOKEN": TOKEN}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    watchdog = threading.Timer(REACH_S + 60, os.killpg, (proc.pid, signal.SIGKILL))
    watchdog.start()
    try:
        path = wait_for_secret_file(proc, time.monotonic() + REACH_S)
        info, directory = path.stat(), path.parent.stat()
        assert stat.S_IMODE(info.st_mode) == 0o600 and stat.S_IMODE(directory.st_mode) == 0o700
        time.sleep(3)  # let Ansible get to the sleeping task inside the builder
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL

    # The positive control: nothing of the killed process could remove it.
    assert TOKEN in path.read_text(encoding="utf-8")
    leaks = [
        str(found.relative_to(box.root))
        for top in (".kiln", "packer")
        for found in (box.root / top).rglob("*")
        if found.is_file() and not found.is_symlink() and TOKEN.encode() in found.read_bytes()
    ]
    assert (box.root / "packer" / "slow.pkr.hcl").exists()
    assert leaks == [], "the secret is on disk"

    listed = box.invoke("list", check=True)  # any command sweeps first
    assert "slow" in listed.stdout
    assert not path.parent.exists()
    assert secret_dirs_of(proc.pid) == []
