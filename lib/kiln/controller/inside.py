"""The part of the controller that runs inside the sandbox: ansible-playbook through ansible-runner.

Started by kiln.controller.entry as `python -m kiln.controller.inside SPEC`, with the run's
spec (a JSON file in the run's private directory) as its one argument.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from kiln.controller.bridge import PortToSocket
from kiln.controller.events import EventWriter, ansible_pass


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
            event_handler=events,
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
