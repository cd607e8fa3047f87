"""kiln's watchdog against real processes: a "kiln" that dies by SIGKILL, and one that ends well."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kiln import watchdog as wd
from kiln.watchdog import Lease, Proc, doomed, end_lease, process_table

LIB = Path(wd.__file__).resolve().parents[1]
# A stand-in for kiln: it starts a watchdog, then a process group under the lease (a member of it
# in a session of its own, as a sandboxed Ansible may be), prints their pids and waits to be
# killed, or, with "end", leaves the watchdog's block as a bake that ends well does.
FAKE_KILN = """
import os, subprocess, sys, time
from kiln.watchdog import Lease, watchdog

with watchdog(Lease(log=sys.argv[1])) as lease:
    group = subprocess.Popen(
        ["sh", "-c", "sleep 300 & setsid sleep 301 & echo $!; wait"],
        env={**os.environ, **lease.env}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    print(group.pid, group.stdout.readline().strip(), flush=True)
    if sys.argv[2] == "end":
        time.sleep(0.5)
    else:
        time.sleep(600)
print("done", flush=True)
"""


def alive(pid: int) -> bool:
    """Whether pid runs (a zombie waiting for its parent does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def wait_until_gone(pids: list[int], within_s: float) -> list[int]:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and any(map(alive, pids)):
        time.sleep(0.05)
    return [pid for pid in pids if alive(pid)]


@pytest.fixture
def fake_kiln(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], list[int], Path]]:
    """The stand-in, its leased group's leader and setsid'd member, and the watchdog's log."""
    log = tmp_path / "watchdog.log"
    kiln = subprocess.Popen(
        [sys.executable, "-c", FAKE_KILN, str(log), "kill"],
        env={**os.environ, "PYTHONPATH": str(LIB)},
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert kiln.stdout is not None
    pids = [int(p) for p in kiln.stdout.readline().split()]
    try:
        yield kiln, pids, log
    finally:
        for pid in [kiln.pid, *pids]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        kiln.wait()


def test_kiln_killed_alone_its_leased_processes_die_too(
    fake_kiln: tuple[subprocess.Popen[str], list[int], Path],
) -> None:
    kiln, (leader, setsid_member), log = fake_kiln
    assert os.getpgid(leader) == leader != os.getpgid(kiln.pid)
    deadline = time.monotonic() + 5  # `echo $!` may come before setsid has run
    while os.getsid(setsid_member) != setsid_member and time.monotonic() < deadline:
        time.sleep(0.01)
    assert os.getsid(setsid_member) == setsid_member  # not in the group: found as a descendant
    os.kill(kiln.pid, signal.SIGKILL)  # kiln's own process, not its group
    kiln.wait()
    # Gone only if the watchdog saw EOF: none of the leased processes holds the pipe's write end.
    assert wait_until_gone([leader, setsid_member], within_s=5) == []
    assert "kiln is gone: SIGTERM to" in log.read_text()


def test_a_watched_block_that_ends_well_leaves_its_processes_alone(tmp_path: Path) -> None:
    log = tmp_path / "watchdog.log"
    done = subprocess.run(
        [sys.executable, "-c", FAKE_KILN, str(log), "end"],
        env={**os.environ, "PYTHONPATH": str(LIB)},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    leader, member = (int(p) for p in done.stdout.split()[:2])
    try:
        assert done.stdout.split()[2] == "done"
        time.sleep(0.5)  # what the watchdog would have killed by now
        assert alive(leader) and alive(member)
        assert not log.exists()  # it writes only when kiln died
    finally:
        os.killpg(leader, signal.SIGKILL)
        os.kill(member, signal.SIGKILL)


def test_the_process_table_marks_processes_by_their_lease() -> None:
    lease = Lease()
    marked = subprocess.Popen(["sleep", "30"], env={**os.environ, **lease.env})
    other = subprocess.Popen(["sleep", "30"], env={**os.environ, **Lease().env})
    try:
        table = process_table(lease.token)
        assert table[marked.pid].leased and not table[other.pid].leased
        assert table[marked.pid].ppid == os.getpid()
        assert not table[os.getpid()].leased
    finally:
        for proc in (marked, other):
            proc.kill()
            proc.wait()


def test_doomed_are_leased_processes_the_groups_they_lead_and_their_descendants() -> None:
    table = {
        p.pid: p
        for p in [
            Proc(pid=10, ppid=1, pgid=10, leased=False),  # kiln's shell; kiln's group is 10
            Proc(pid=11, ppid=10, pgid=10, leased=False),  # `| tee` beside kiln: spared
            Proc(pid=20, ppid=1, pgid=20, leased=True),  # packer, orphaned, leads its group
            Proc(pid=21, ppid=20, pgid=20, leased=False),  # Ansible, its environment rebuilt
            Proc(pid=22, ppid=21, pgid=22, leased=False),  # in a session of its own (sandbox)
            Proc(pid=23, ppid=22, pgid=22, leased=False),
            Proc(pid=30, ppid=1, pgid=10, leased=True),  # leased, but in kiln's group
            Proc(pid=40, ppid=1, pgid=40, leased=False),  # the watchdog itself
            Proc(pid=50, ppid=1, pgid=20, leased=True),  # spared by name
        ]
    }
    assert doomed(table, spare={40, 50}) == {20, 21, 22, 23, 30}


def test_end_lease_kills_what_ignores_sigterm_after_the_grace() -> None:
    lease = Lease()
    stubborn = subprocess.Popen(
        [sys.executable, "-c", "import signal, time; signal.signal(15, 1); print(1, flush=1); "
         "time.sleep(60)"],
        env={**os.environ, **lease.env}, stdout=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    assert stubborn.stdout is not None and stubborn.stdout.readline()  # SIGTERM is ignored now
    said: list[str] = []
    started = time.monotonic()
    end_lease(lease, said.append, grace_s=0.5, settle_s=0)
    assert stubborn.wait(timeout=5) == -signal.SIGKILL
    assert 0.5 <= time.monotonic() - started < 3
    assert said == [f"kiln is gone: SIGTERM to [{stubborn.pid}]", f"SIGKILL to [{stubborn.pid}]"]


def test_reaping_removes_containers_by_name_and_by_label(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = tmp_path / "calls"
    docker = tmp_path / "docker"
    docker.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n[ "$1" != ps ] || printf "c1\\nc2\\n"\n')
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    lease = Lease(containers=("kiln-test-1",), labels=("kiln.molecule.run=r1",))
    assert wd._reap(lease) == ["c1", "c2"]
    assert calls.read_text().splitlines() == [
        "rm -f -v kiln-test-1",
        "ps --all --quiet --filter=label=kiln.molecule.run=r1",
        "rm --force --volumes c1 c2",
    ]


def test_a_lease_travels_as_json() -> None:
    lease = Lease(
        target="docker", role="web", bake_id="web:3:abc", containers=("x",), labels=("a=b",),
        log="/l",
    )  # fmt: skip
    assert Lease.from_json(lease.to_json()) == lease
    assert lease.env == {"KILN_LEASE": lease.token} and Lease().token != lease.token


def test_the_script_imports_only_the_standard_library_at_start() -> None:
    # It starts with every bake: kiln's own modules (and the render stack behind the targets)
    # are imported only on the path where kiln has died.
    tree = ast.parse(Path(wd.__file__).read_text())
    top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    names = {a.name for n in top if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in top if isinstance(n, ast.ImportFrom)}
    assert names - {"__future__"} <= set(sys.stdlib_module_names) | {"collections.abc"}
