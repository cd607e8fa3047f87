"""kill -9 of the kiln process alone, mid-provisioning: packer, Ansible and the builder stop too.

Not the process group (test_lifecycle_bakes kills that, as a terminal's job would): here only
kiln's own process dies, as the OOM killer or a `kill -9 PID` would do it, and everything it had
started keeps running, orphaned. kiln's watchdog sees the pipe to kiln close and ends it all.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, Sandbox, make_sandbox

pytestmark = pytest.mark.integration

NAP_TASKS = """\
- name: Take a long nap in the builder
  ansible.builtin.command: sleep 600
  changed_when: false
"""
DEFINITIONS = 'project.role("nap", parent=bookworm, ansible_roles=["nap"], lint_allowed=True)\n'
# kiln in its acceptance gate: a throwaway test instance, booted, and tests running on it.
TESTING_KILN = """
import sys, time
from kiln.docker import throwaway_instance

with throwaway_instance(sys.argv[1], purpose="test", labels={"kiln.k9": sys.argv[2]}) as instance:
    print(instance.name, flush=True)
    time.sleep(600)
"""
#: The issue's bound: no builder runs 10 s after the kill.
WITHIN_S = 10.0


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sandbox]:
    sandbox = make_sandbox(tmp_path)
    tasks = sandbox.root / "roles" / "nap" / "tasks" / "main.yml"
    tasks.parent.mkdir(parents=True)
    tasks.write_text(NAP_TASKS)
    sandbox.write_tasks(extra=DEFINITIONS)
    try:
        yield sandbox
    finally:
        sandbox.cleanup()


def running_builders(box: Sandbox) -> list[str]:
    """Running builder containers of this sandbox: `<id> <kiln.bake label>` each."""
    out = box.docker(
        "ps", "--filter", f"label=kiln.namespace={box.namespace}", "--filter", "label=kiln.bake",
        "--format", '{{.ID}} {{.Label "kiln.bake"}}',
    )  # fmt: skip
    return [line for line in out.splitlines() if line.split()[1:] != []]


def napping(box: Sandbox, container: str) -> bool:
    """Whether Ansible's `sleep 600` runs inside the builder."""
    top = box.docker("top", container, "-eo", "pid,args", check=False)
    return any(line.split()[1:] == ["sleep", "600"] for line in top.splitlines())


def bake_processes(root: Path, groups: set[int]) -> list[str]:
    """Live processes of the bake: in one of groups, or naming the project in their command line
    or working directory (packer runs there; ansible-playbook is given its files)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        state, _ppid, pgid = stat[stat.rindex(")") + 2 :].split()[:3]
        if state == "Z":
            continue
        if int(pgid) in groups or str(root) in cmdline or cwd == str(root):
            found.append(f"{entry.name} {cmdline.strip()}")
    return found


def children(pid: int) -> dict[int, str]:
    """pid's children: their command lines, by pid."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found[int(child)] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
    return {pid: cmd.decode() for pid, cmd in found.items()}


def start_and_wait_for_the_nap(box: Sandbox) -> tuple[subprocess.Popen[str], str]:
    """`invoke bake nap`, in a session of its own, once Ansible naps in the builder."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "invoke", "bake", "nap", "--json"],
        cwd=box.root, env=box.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    seen: list[str] = []
    for line in proc.stdout:
        seen.append(line)
        record = json.loads(line) if line.startswith("{") else {}
        if record.get("kind") == "task" and record.get("role") == "nap":
            break
    else:
        pytest.fail("the bake ended before provisioning:\n" + "".join(seen[-30:]))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        builders = running_builders(box)
        if builders and napping(box, builders[0].split()[0]):
            return proc, builders[0].split()[1]
        time.sleep(0.5)
    pytest.fail(f"Ansible never napped in the builder; builders: {running_builders(box)}")


def test_kill_9_of_kiln_alone_stops_packer_ansible_and_the_builder(box: Sandbox) -> None:
    proc, bake_id = start_and_wait_for_the_nap(box)
    try:
        kin = children(proc.pid)
        packer = [pid for pid, cmd in kin.items() if " build " in f"{cmd} "]
        assert packer, f"no packer among kiln's children: {kin}"
        groups = {os.getpgid(pid) for pid in packer}
        assert proc.pid not in groups  # packer leads its own group: the kill below spares it
        os.kill(proc.pid, signal.SIGKILL)  # kiln's process only, not its group
        killed = time.monotonic()
        proc.wait(timeout=30)
        left, gone_after = running_builders(box), 0.0
        while left and time.monotonic() - killed < WITHIN_S:
            time.sleep(0.2)
            left, gone_after = running_builders(box), time.monotonic() - killed
        survivors = bake_processes(box.root, groups)
        while survivors and time.monotonic() - killed < WITHIN_S:
            time.sleep(0.2)
            survivors = bake_processes(box.root, groups)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert left == [], f"builder of {bake_id} still running {WITHIN_S:.0f} s after the kill"
    assert survivors == [], f"still alive {WITHIN_S:.0f} s after the kill: {survivors}"
    log = box.root / ".kiln" / "logs" / "nap" / bake_id.split(":")[1] / "watchdog.log"
    print(f"builder gone {gone_after:.1f} s after the kill\n{log.read_text()}")  # with -s
    assert "kiln is gone" in log.read_text()


def test_kill_9_of_kiln_alone_during_acceptance_tests_removes_the_test_instance() -> None:
    # A Debian base any sandbox bootstrapped (the bake above, if no other): kiln labels its bases.
    images = subprocess.run(
        ["docker", "images", "-q", "--filter", "label=kiln.role=debian-bookworm"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert images, "no Debian base on the engine: run the bake test above first"
    mark = uuid.uuid4().hex
    kiln = subprocess.Popen(
        [sys.executable, "-c", TESTING_KILN, images[0], mark],
        env={**os.environ, "PYTHONPATH": str(REPO / "lib")}, stdout=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    ps = ["docker", "ps", "-a", "-q", "--filter", f"label=kiln.k9={mark}"]
    try:
        assert kiln.stdout is not None
        assert kiln.stdout.readline().startswith("kiln-test-"), "the instance did not boot"
        assert subprocess.run(ps, capture_output=True, text=True, check=True).stdout.split()
        os.kill(kiln.pid, signal.SIGKILL)
        killed = time.monotonic()
        kiln.wait(timeout=30)
        left = subprocess.run(ps, capture_output=True, text=True, check=True).stdout.split()
        while left and time.monotonic() - killed < WITHIN_S:
            time.sleep(0.2)
            left = subprocess.run(ps, capture_output=True, text=True, check=True).stdout.split()
    finally:
        if kiln.poll() is None:
            os.killpg(kiln.pid, signal.SIGKILL)
        found = subprocess.run(ps, capture_output=True, text=True, check=False).stdout.split()
        if found:
            subprocess.run(["docker", "rm", "-f", *found], capture_output=True, check=False)
    assert left == [], f"the test instance still exists {WITHIN_S:.0f} s after the kill"
    print(f"test instance gone {time.monotonic() - killed:.1f} s after the kill")
