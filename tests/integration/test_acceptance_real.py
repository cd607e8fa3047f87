"""The acceptance gate's rarer verdicts for real, and what is refused before any builder starts.

Four roles on the Debian base are baked at once in one sandbox, each through the real gate
(`invoke bake ROLE`, a throwaway instance, kiln's base battery and the role's suites): an Ansible
verify playbook that passes, one that fails, an image whose systemd never finishes booting, and a
testinfra suite whose conftest.py raises at import. Then two refusals that must come before any
builder: a `packer` too old for kiln, and a role that `ansible-playbook --syntax-check` rejects
although kiln's YAML guard accepts it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Sandbox, image_filters, make_sandbox

pytestmark = pytest.mark.integration

PROBE_TASKS = """\
- name: Write the probe file
  ansible.builtin.copy:
    content: "{{ probe_text }}\\n"
    dest: /etc/kiln-probe
    mode: "0644"
"""
# A oneshot unit that never finishes: multi-user.target waits for it, so systemd stays
# "starting" for ever, the way a server hangs on a stuck mount or a network wait at boot.
HANG_TASKS = """\
- name: Install a unit that never finishes starting
  ansible.builtin.copy:
    content: |
      [Unit]
      Description=Waits for ever
      [Service]
      Type=oneshot
      ExecStart=/bin/sleep infinity
      TimeoutStartSec=infinity
      [Install]
      WantedBy=multi-user.target
    dest: /etc/systemd/system/kiln-hang.service
    mode: "0644"

- name: Enable it at boot (not started in the builder)
  ansible.builtin.systemd_service:
    name: kiln-hang.service
    enabled: true
    daemon_reload: true
"""
VERIFY_PASSES = """\
- name: Verify the probe
  hosts: all
  gather_facts: false
  tasks:
    - name: Read the probe file
      ansible.builtin.slurp:
        src: /etc/kiln-probe
      register: probe

    - name: The probe holds the baked text
      ansible.builtin.assert:
        that: (probe.content | b64decode | trim) == probe_text
        fail_msg: "the probe says {{ probe.content | b64decode | trim }}"
"""
VERIFY_FAILS = """\
- name: Verify the probe strictly
  hosts: all
  gather_facts: false
  tasks:
    - name: Read the probe file
      ansible.builtin.slurp:
        src: /etc/kiln-probe
      register: probe

    - name: The probe shouts
      ansible.builtin.assert:
        that: (probe.content | b64decode | trim) == (probe_text | upper)
        fail_msg: "the probe says {{ probe.content | b64decode | trim }}, not in capitals"
"""
CRASHING_CONFTEST = """\
raise RuntimeError("the metrics fixture cannot find its endpoint")
"""
CRASHY_TEST = """\
def test_never_runs(host):
    assert host.file("/etc/kiln-probe").exists
"""
DEFINITIONS = """
probe = {"ansible_roles": ["probe"], "variables": {"probe_text": "baked by kiln"}}
project.role("probe", parent=bookworm, tests=["tests/images/probe/verify.yml"], **probe)
project.role("strict", parent=bookworm, tests=["tests/images/probe/strict.yml"], **probe)
project.role("crashy", parent=bookworm, tests=["tests/images/crashy"], **probe)
project.role("hang", parent=bookworm, ansible_roles=["hang"], lint_allowed=True)
project.role("unbaked", parent=bookworm, **probe)
project.role("unknown-module", parent=bookworm, ansible_roles=["unknown_module"])
project.role("two-actions", parent=bookworm, ansible_roles=["two_actions"])
"""
BROKEN_ROLES = {
    # Each is valid YAML and a list of tasks, which is all kiln's guard asks of it.
    "unknown_module": (
        "- name: Install the probe\n"
        "  ansible.builtin.copy:\n"
        "    content: probe\n"
        "    dest: /etc/kiln-probe\n"
        "    mode: '0644'\n"
        "\n"
        "- name: Tune the kernel\n"
        "  kiln.nowhere.sysctl_tune:\n"
        "    level: 3\n",
        7,
    ),
    "two_actions": (
        "- name: Start and stop at once\n  ansible.builtin.command: /bin/true\n"
        "  ansible.builtin.shell: /bin/false\n",
        1,
    ),
}
GATED = ("probe", "strict", "crashy", "hang")


@dataclass
class Box:
    sandbox: Sandbox
    runs: dict[str, subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    sandbox = make_sandbox(tmp_path_factory.mktemp("gate"))
    root = sandbox.root
    files = {
        "roles/probe/tasks/main.yml": PROBE_TASKS,
        "roles/hang/tasks/main.yml": HANG_TASKS,
        "tests/images/probe/verify.yml": VERIFY_PASSES,
        "tests/images/probe/strict.yml": VERIFY_FAILS,
        "tests/images/crashy/conftest.py": CRASHING_CONFTEST,
        "tests/images/crashy/test_crashy.py": CRASHY_TEST,
        **{f"roles/{name}/tasks/main.yml": text for name, (text, _line) in BROKEN_ROLES.items()},
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    sandbox.write_tasks(extra=DEFINITIONS)
    try:
        procs = {role: sandbox.popen("bake", role) for role in GATED}
        runs = {}
        for role, proc in procs.items():
            out, err = proc.communicate(timeout=1800)
            runs[role] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        yield Box(sandbox, runs)
    finally:
        sandbox.cleanup()


def acceptance_log(box: Box, role: str) -> str:
    return (box.sandbox.root / ".kiln" / "logs" / role / "1" / "acceptance.log").read_text()


def recorded(box: Box, role: str) -> tuple[str, str]:
    with box.sandbox.registry() as registry:
        version = registry.get(role, 1)
    assert version is not None, f"{role} v1 was not recorded"
    return version.status, version.status_reason or ""


# -- the gate's verdicts ----------------------------------------------------------------------
def test_a_verify_playbook_that_passes_lets_the_version_through(box: Box) -> None:
    run = box.runs["probe"]
    assert run.returncode == 0, run.stdout + run.stderr
    assert recorded(box, "probe") == ("tested", "")
    log = acceptance_log(box, "probe")
    assert "$ ansible-playbook tests/images/probe/verify.yml (on kiln-test-" in log
    assert re.search(r"ok=2\s+changed=0\s+unreachable=0\s+failed=0", log), log
    # The playbook read the baked variable from the registry, as the assert's message would show.
    assert "the probe says" not in log


def test_a_verify_playbook_that_fails_fails_the_version(box: Box) -> None:
    run = box.runs["strict"]
    assert run.returncode == 1, run.stdout + run.stderr
    message = run.stderr
    assert "strict v1 failed its acceptance tests (1 of " in message
    assert "FAILED tests/images/probe/strict.yml::The probe shouts" in message
    assert "task 'The probe shouts' at tests/images/probe/strict.yml:10" in message
    assert "the probe says baked by kiln, not in capitals" in message
    assert "Full output: .kiln/logs/strict/1/acceptance.log" in message
    status, reason = recorded(box, "strict")
    assert status == "failed"
    assert "tests/images/probe/strict.yml::The probe shouts" in reason
    assert not box.sandbox.containers(), "the test instance was left running"


def test_an_instance_that_never_finishes_booting_fails_the_version(box: Box) -> None:
    run = box.runs["hang"]
    assert run.returncode == 1, run.stdout + run.stderr
    assert "hang v1 failed its acceptance tests (1 of 1 failed" in run.stderr
    assert "FAILED boot" in run.stderr
    boot = re.search(
        rf"instance kiln-test-\w+ of {re.escape(box.sandbox.image('hang', 1))} did not boot "
        r"within 60 s \(systemd state: starting\)",
        run.stderr,
    )
    assert boot, run.stderr
    status, reason = recorded(box, "hang")
    assert status == "failed"
    assert "boot: instance kiln-test-" in reason and "did not boot within 60 s" in reason
    assert not box.sandbox.containers(), "the instance that did not boot was left behind"


def test_pytest_crashing_at_import_fails_the_version(box: Box) -> None:
    run = box.runs["crashy"]
    assert run.returncode == 1, run.stdout + run.stderr
    assert "crashy v1 failed its acceptance tests (1 of 1 failed" in run.stderr
    assert "FAILED pytest" in run.stderr
    assert re.search(r"pytest exited [1-9]", run.stderr), run.stderr
    assert "RuntimeError: the metrics fixture cannot find its endpoint" in run.stderr
    status, reason = recorded(box, "crashy")
    assert status == "failed"
    assert reason.startswith("1 failed. Failed: pytest: pytest exited")
    assert "tests/images/crashy/conftest.py" in acceptance_log(box, "crashy")


# -- refused before any builder starts --------------------------------------------------------
FAKE_PACKER = """\
#!/bin/sh
# What `packer version` of Packer 1.5.6 prints when its update check answers.
if [ "$1" = version ]; then
    echo "Packer v1.5.6"
    echo
    echo "Your version of Packer is out of date! The latest version"
    echo "is 1.6.6. You can update by downloading from www.packer.io/downloads.html"
    exit 0
fi
echo "fake packer: kiln must not run packer $*" >&2
exit 97
"""


def test_a_packer_too_old_is_refused_and_nothing_is_recorded(box: Box, tmp_path: Path) -> None:
    """No Packer older than 1.6.6 can be installed here (no network but Debian and PyPI), so the
    `packer` on PATH is a script that prints what `packer version` of Packer 1.5.6 prints."""
    (tmp_path / "packer").write_text(FAKE_PACKER)
    (tmp_path / "packer").chmod(0o755)
    before = snapshot(box.sandbox)
    env = {**box.sandbox.env()}
    env["PATH"] = f"{tmp_path}:{env['PATH']}"
    since = docker_time(box.sandbox)
    proc = subprocess.run(
        [sys.executable, "-m", "invoke", "bake", "unbaked"],
        cwd=box.sandbox.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr == (
        "kiln: packer 1.5.6 is too old: kiln needs 1.6.6 or newer; run the README's setup "
        "command (scripts/setup.sh) to install it\n"
    )
    assert "fake packer" not in proc.stdout + proc.stderr  # only `packer version` ran
    assert snapshot(box.sandbox) == before
    assert builders_created(box.sandbox, since) == []


@pytest.mark.parametrize("ansible_role", list(BROKEN_ROLES))
def test_a_role_the_syntax_check_rejects_is_refused_before_any_builder(
    box: Box, ansible_role: str
) -> None:
    role = ansible_role.replace("_", "-")
    _text, line = BROKEN_ROLES[ansible_role]
    audit = box.sandbox.invoke("audit", "--role", role, "--json")
    assert audit.returncode == 0, audit.stdout + audit.stderr  # the guard has nothing against it
    before = snapshot(box.sandbox)
    since = docker_time(box.sandbox)
    proc = box.sandbox.invoke("bake", role)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    message = proc.stderr
    assert message.startswith(
        f"kiln: role {role}: ansible-playbook --syntax-check rejects 1 Ansible role(s):\n"
        f"  {ansible_role}:\n"
    ), message
    where = re.search(r"Origin: roles/(\w+)/tasks/main\.yml:(\d+):\d+", message)
    assert where, message
    assert (where.group(1), int(where.group(2))) == (ansible_role, line)
    assert message.rstrip().endswith("Nothing was baked.")
    assert snapshot(box.sandbox) == before
    assert not (box.sandbox.root / "packer" / f"{role}.pkr.hcl").exists()
    assert builders_created(box.sandbox, since) == []


def snapshot(sandbox: Sandbox) -> tuple[list[tuple[str, int, str]], list[str], list[str]]:
    """Recorded versions, log directories and images of the sandbox."""
    with sandbox.registry() as registry:
        versions = [
            (v.role, v.version, v.status)
            for role in ("probe", "strict", "crashy", "hang", "unbaked", *BROKEN_ROLES)
            for v in registry.history(role.replace("_", "-"))
        ]
    logs = sorted(
        str(p.relative_to(sandbox.root)) for p in (sandbox.root / ".kiln/logs").glob("*/*")
    )
    images = sorted(
        sandbox.docker(
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            *image_filters(sandbox.namespace),
        ).split()
    )
    return versions, logs, images


def docker_time(sandbox: Sandbox) -> str:
    """The engine's clock, for `docker events --since`."""
    time.sleep(1)  # events are stamped to the second
    info = json.loads(sandbox.docker("info", "--format", "{{json .SystemTime}}"))
    return str(info)


def builders_created(sandbox: Sandbox, since: str) -> list[str]:
    """Containers created for this sandbox's namespace since then: builders carry its label."""
    until = docker_time(sandbox)
    out = sandbox.docker(
        "events",
        "--since",
        since,
        "--until",
        until,
        "--filter",
        "type=container",
        "--filter",
        "event=create",
        "--filter",
        f"label=kiln.namespace={sandbox.namespace}",
        "--format",
        "{{.Actor.ID}}",
    )
    return out.split()
