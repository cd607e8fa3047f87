"""What a bake tells its user: phases, Ansible progress, warnings and the closing summary.

One Reporter per command. Plain lines by default, or one JSON object per line with json=True.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, TextIO


class Reporter:
    """Prints bake progress; thread-safe so that parallel bakes keep their lines whole."""

    def __init__(
        self, stream: TextIO | None = None, *, json_mode: bool = False, verbose: bool = False
    ) -> None:
        self.stream = stream or sys.stdout
        self.json_mode = json_mode
        self.verbose = verbose
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._task_counts: dict[str, dict[str, int]] = {}

    def _elapsed(self) -> str:
        return f"{time.monotonic() - self._started:6.1f}s"

    def _write(self, role: str, text: str, **data: Any) -> None:
        with self._lock:
            if self.json_mode:
                record = {"role": role, "elapsed_s": round(time.monotonic() - self._started, 3)}
                record.update(data)
                self.stream.write(json.dumps(record, default=str) + "\n")
            else:
                self.stream.write(f"[{self._elapsed()}] {role}: {text}\n")
            self.stream.flush()

    def phase(self, role: str, phase: str, detail: str = "") -> None:
        self._write(
            role,
            f"{phase}{' - ' + detail if detail else ''}",
            kind="phase",
            phase=phase,
            detail=detail,
        )

    def message(self, role: str, text: str) -> None:
        self._write(role, text, kind="message", message=text)

    def warning(self, role: str, text: str) -> None:
        self._write(role, f"WARNING: {text}", kind="warning", message=text)

    def packer_line(self, role: str, line: str) -> None:
        if self.verbose:
            self._write(role, f"  | {line}", kind="packer", line=line)

    def ansible_event(self, role: str, event: dict[str, Any]) -> None:
        counts = self._task_counts.setdefault(
            role, {"n": 0, "total": 0, "ok": 0, "changed": 0, "failed": 0}
        )
        kind = event.get("event")
        if kind == "play_start":
            counts["total"] = int(event.get("tasks_estimate") or 0)
        elif kind == "task_start":
            counts["n"] += 1
            of = f"/{counts['total']}" if counts["total"] >= counts["n"] else ""
            handler = " (handler)" if event.get("handler") else ""
            self._write(
                role,
                f"provision: task {counts['n']}{of} {event.get('task')}{handler} "
                f"[ok={counts['ok']} changed={counts['changed']} failed={counts['failed']}]",
                kind="task",
                task=event.get("task"),
                n=counts["n"],
                total=counts["total"],
                path=event.get("path"),
                **{k: counts[k] for k in ("ok", "changed", "failed")},
            )
        elif kind == "task_result":
            status = event.get("status")
            if status == "ok" and event.get("changed"):
                counts["changed"] += 1
            elif status == "ok":
                counts["ok"] += 1
            elif status in ("failed", "unreachable"):
                counts["failed"] += 1

    def summary(self, role: str, lines: list[tuple[str, str]], **data: Any) -> None:
        if self.json_mode:
            self._write(role, "", kind="summary", **data)
            return
        width = max(len(k) for k, _ in lines)
        with self._lock:
            for key, value in lines:
                self.stream.write(f"  {key.ljust(width)}  {value}\n")
            self.stream.flush()


class NullReporter(Reporter):
    """Reports nothing: for library callers who only want the return value."""

    def _write(self, role: str, text: str, **data: Any) -> None:
        return

    def summary(self, role: str, lines: list[tuple[str, str]], **data: Any) -> None:
        return
