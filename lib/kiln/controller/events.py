"""ansible-runner's events in kiln's event vocabulary (kiln.ansible_events), one JSON line each.

ansible-runner reports every task start, result and the recap; this turns each into the record
kiln's progress display, failure report and --json output read. kiln's callback plugin still
writes what only Ansible's own objects know (the inventory's hosts, the strategy, a task-count
estimate): see kiln.ansible_plugins.callback.kiln_events.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

TAIL_LINES = 20
#: The line kiln-ansible prints for each failed task, with its file:line and why it failed
#: (kiln.molecule_output reads it as it reads Ansible's "Origin:" and "fatal:" lines, which
#: runner's printed output sometimes lacks).
FAILED_TASK_AT = "kiln: failed task at "


def failure_text(result: Mapping[str, Any]) -> str:
    """What a reader needs of a failed module result: its msg and stderr, 300 characters each."""
    parts = [str(result[key]).strip()[:300] for key in ("msg", "stderr") if result.get(key)]
    return " | ".join(parts)


_RESULTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_skipped": "skipped",
    "runner_on_unreachable": "unreachable",
}
_STATS = ("ok", "changed", "dark", "failures", "ignored", "rescued", "skipped", "processed")
#: ansible-runner's recap names → Ansible's summarize() names, which kiln reads.
_STATS_NAMES = {"dark": "unreachable"}


def _tail(value: Any) -> str:
    if not value:
        return ""
    if not isinstance(value, str):
        value = json.dumps(value, default=str)
    return "\n".join(value.splitlines()[-TAIL_LINES:])


def _task_fields(data: Mapping[str, Any]) -> dict[str, str]:
    task, role = str(data.get("task") or ""), str(data.get("role") or "")
    return {
        # As Ansible names a role's task in its output (and kiln's callback did): "role : task".
        "task": f"{role} : {task}" if role and task else task,
        "path": str(data.get("task_path") or ""),
        "role": str(data.get("role") or ""),
        "action": str(data.get("task_action") or ""),
    }


def kiln_event(runner_event: Mapping[str, Any]) -> dict[str, Any] | None:
    """kiln's record of one ansible-runner event; None for events kiln does not follow."""
    kind = runner_event.get("event")
    data = runner_event.get("event_data") or {}
    if kind in ("playbook_on_task_start", "playbook_on_handler_task_start"):
        return {
            "event": "task_start",
            "handler": kind == "playbook_on_handler_task_start",
            **_task_fields(data),
        }
    if kind in _RESULTS:
        res = data.get("res") or {}
        status = _RESULTS[kind]
        if status == "failed" and data.get("ignore_errors"):
            status = "ignored"
        return {
            "event": "task_result",
            "status": status,
            "changed": bool(res.get("changed", False)),
            "msg": _tail(res.get("msg", "")),
            "stdout": _tail(res.get("stdout", "")),
            "stderr": _tail(res.get("stderr", "")),
            "module_stderr": _tail(res.get("module_stderr", "")),
            "censored": bool(res.get("censored")),
            **_task_fields(data),
        }
    if kind == "playbook_on_stats":
        totals: dict[str, int] = {}
        for name in _STATS:
            by_host = data.get(name) or {}
            if isinstance(by_host, Mapping):
                key = _STATS_NAMES.get(name, name)
                totals[key] = sum(int(v) for v in by_host.values() if isinstance(v, int))
        totals.pop("processed", None)
        return {"event": "stats", **totals}
    return None


class EventWriter:
    """ansible-runner's event_handler: appends kiln's records to the run's events file."""

    def __init__(self, path: Path | None, ansible_pass: str) -> None:
        self._out: TextIO | None = path.open("a", encoding="utf-8") if path else None
        self._pass = ansible_pass

    def __call__(self, runner_event: Mapping[str, Any]) -> bool:
        record = kiln_event(runner_event)
        if record is not None and self._out is not None:
            record.update(time=time.time(), ansible_pass=self._pass)
            self._out.write(json.dumps(record, default=str) + "\n")
            self._out.flush()
        return True  # keep runner's own artifacts of the event too

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


def ansible_pass() -> str:
    return os.environ.get("KILN_PASS", "1")
