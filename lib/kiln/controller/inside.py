"""The part of the controller that runs inside the sandbox: ansible-playbook through ansible-runner.

Started by kiln.controller.entry as `python -m kiln.controller.inside SPEC`, with the run's
spec (a JSON file in the run's private directory) as its one argument.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kiln.controller.bridge import PortToSocket
from kiln.controller.events import FAILED_TASK_AT, EventWriter, ansible_pass, failure_text


def _with_failed_task_lines(events: EventWriter) -> Callable[[Mapping[str, Any]], bool]:
    """events, and a "kiln: failed task at file:line => msg" line printed for each failed task.

    Under ansible-runner, Ansible's own "[ERROR] ... Origin: file:line" lines of a failed task
    (and once its "fatal: ... => {msg}" line) are sometimes missing from the output runner
    prints, though its events hold them; failure reports read the task's place and message
    from the output.
    """

    def handle(event: Mapping[str, Any]) -> bool:
        data = event.get("event_data") or {}
        failed = event.get("event") == "runner_on_failed" and not data.get("ignore_errors")
        if failed and data.get("task_path"):
            why = failure_text(data.get("res") or {})
            print(f"{FAILED_TASK_AT}{data['task_path']}{' => ' + why if why else ''}", flush=True)
        return events(event)

    return handle


def run(spec: dict[str, Any]) -> int:
    """ansible-playbook with spec's arguments; its events to kiln's file; its exit code."""
    import ansible_runner  # heavy: only here, inside the sandbox

    bridge = None
    if spec.get("bridge"):
        host, port, socket_path = spec["bridge"]
        bridge = PortToSocket(host, int(port), Path(socket_path))
    events = EventWriter(Path(spec["events"]) if spec.get("events") else None, ansible_pass())
    try:
        _out, _err, rc = ansible_runner.run_command(
            executable_cmd=spec["ansible_playbook"],
            cmdline_args=list(spec["args"]),
            private_data_dir=spec["private_data_dir"],
            artifact_dir=spec["artifact_dir"],
            ident=f"pass{ansible_pass()}",
            event_handler=_with_failed_task_lines(events),
            quiet=False,
        )
    finally:
        events.close()
        if bridge is not None:
            bridge.close()
    return int(rc)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    return run(spec)


if __name__ == "__main__":
    sys.exit(main())
