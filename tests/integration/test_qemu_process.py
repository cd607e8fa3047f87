"""The real qemu process around a throwaway boot: one that cannot start, one that dies while kiln
waits for its guest. Each boots a blank disk (no guest ever answers), so each takes seconds; the
one real VM bake and boot is tests/integration/test_vm_bake.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kiln.errors import BuildError
from kiln.targets.qemu import machine

pytestmark = pytest.mark.integration


@pytest.fixture
def blank_disk(tmp_path: Path) -> Path:
    """A real, empty qcow2: qemu starts on it and its firmware finds nothing to boot."""
    disk = tmp_path / "blank.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    return disk


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def _qemu_pids(pattern: str) -> set[int]:
    """qemu processes whose command line holds pattern (other tests may run qemu meanwhile)."""
    found = subprocess.run(
        ["pgrep", "-f", "--", f"{machine.QEMU_BINARY} .*{pattern}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return {int(pid) for pid in found.stdout.split()}


def test_a_qemu_that_cannot_forward_its_port_is_reported_with_its_own_words(
    blank_disk: Path, taken_port: int
) -> None:
    """qemu may write its pidfile before it opens its forwards: it then dies just after
    booted_vm returns, and the wait for the guest reports it. Either way the user reads qemu's
    own message, and no qemu is left."""
    with (
        pytest.raises(BuildError) as caught,
        machine.booted_vm(blank_disk, accel="tcg", forwards={80: taken_port}) as running,
    ):
        machine.wait_for_http(running.url(80), timeout_s=120, running=running)

    assert "host forwarding" in str(caught.value), str(caught.value)
    assert _qemu_pids(f"127.0.0.1:{taken_port}-") == set()


def test_a_qemu_killed_while_kiln_waits_ends_the_wait_at_once(blank_disk: Path) -> None:
    with machine.booted_vm(
        blank_disk, accel="tcg", forwards={80: 0}, memory_mb=128, cpus=1
    ) as running:
        assert running.alive()
        overlay = running.overlay
        assert overlay.exists()
        os.kill(running.pid, signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(BuildError, match=r"the VM stopped before .*killed by SIGKILL"):
            machine.wait_for_http(running.url(80), timeout_s=300, running=running)
        waited = time.monotonic() - started
        assert not running.alive(), "a killed qemu still counts as alive"

    assert waited < 15, f"the wait went on for {waited:.0f} s after qemu died"
    assert not overlay.exists(), "the overlay of a dead VM was left behind"
    assert _qemu_pids("overlay.qcow2") & {running.pid} == set()
