"""Running an Ansible verify playbook against the instance, its failures read from kiln's events.

It runs as bakes run their play: through kiln-ansible (ansible-runner in kiln's sandbox), with
ansible_host pinned to the instance, so a verify playbook can reach nothing but that instance.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from kiln import tools
from kiln.acceptance.result import MESSAGE_LINES, TestCase
from kiln.acceptance.suites import TIMEOUT_S, Suite
from kiln.ansible_events import TaskResult, read_events
from kiln.docker import Instance
from kiln.guard import audit_playbook, raise_for_findings
from kiln.model import Project
from kiln.paths import relative_to
from kiln.targets.base import ANSIBLE_ENV_STATIC, CALLBACK_DIR


def run_playbook(
    project: Project,
    suite: Suite,
    instance: Instance,
    env: dict[str, str],
    work: Path,
    index: int,
) -> tuple[list[TestCase], str]:
    """One verify playbook against exactly the one test instance, read through kiln's events."""
    # The guard holds for tests too: a verify playbook may only touch the instance it is given.
    raise_for_findings(
        audit_playbook(suite.path, roles_path=project.content),
        f"{env['KILN_ROLE']} (acceptance test {suite.label})",
    )
    events_file = work / f"events-{index}.jsonl"
    playbook_env = _playbook_env(project, env, work, events_file)
    argv = _playbook_argv(suite, instance, env)
    started = time.monotonic()
    proc = tools.run(argv, check=False, timeout=TIMEOUT_S, cwd=project.root, env=playbook_env)
    took = time.monotonic() - started
    output = f"$ ansible-playbook {suite.label} (on {instance.name})\n{proc.stdout}{proc.stderr}"
    if proc.returncode == 0:
        return [TestCase(suite.label, "passed", "", took)], output
    failed = [e for e in read_events(events_file) if isinstance(e, TaskResult) and e.failed]
    if not failed:
        tail = "\n".join(output.strip().splitlines()[-MESSAGE_LINES:])
        return [TestCase(suite.label, "failed", f"exit {proc.returncode}\n{tail}", took)], output
    return [_failed_case(project, suite, event) for event in failed], output


def _playbook_env(
    project: Project, env: dict[str, str], work: Path, events_file: Path
) -> dict[str, str]:
    playbook_env = dict(env)
    playbook_env.update(item.partition("=")[::2] for item in ANSIBLE_ENV_STATIC)
    playbook_env.update(
        ANSIBLE_CALLBACK_PLUGINS=str(CALLBACK_DIR),
        ANSIBLE_ROLES_PATH=project.content.roles_path_env(),
        ANSIBLE_COLLECTIONS_PATH=project.content.collections_path_env(),
        ANSIBLE_LOCAL_TEMP=str(work / "ansible-tmp"),
        KILN_EVENTS_FILE=str(events_file),
        KILN_PASS="verify",
    )
    return playbook_env


def _playbook_argv(suite: Suite, instance: Instance, env: dict[str, str]) -> list[str]:
    return [
        str(Path(sys.executable).parent / "kiln-ansible"),
        "-i",
        f"{instance.name},",
        "--limit",
        instance.name,
        "-e",
        f"ansible_host={instance.name}",
        "-e",
        "ansible_connection=community.docker.docker",
        "-e",
        "ansible_python_interpreter=/usr/bin/python3",
        "-e",
        f"@{env['KILN_VARS_FILE']}",
        "-e",
        json.dumps({"kiln_role": env["KILN_ROLE"], "kiln_version": int(env["KILN_VERSION"])}),
        str(suite.path),
    ]


def _failed_case(project: Project, suite: Suite, event: TaskResult) -> TestCase:
    """A failed task as a test case named after it, with its file:line and output."""
    detail = "\n".join(part for part in (event.msg, event.stderr, event.stdout) if part)
    spot = Path(event.path.rsplit(":", 1)[0])
    where = relative_to(spot.resolve(), project.root)
    line = event.path.rpartition(":")[2]
    message = f"task {event.task!r} at {where}:{line}\n{detail}".strip()
    name = f"{suite.label}::{event.task}"
    return TestCase(name, "failed", "\n".join(message.splitlines()[:MESSAGE_LINES]))
