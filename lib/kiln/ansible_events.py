"""Typed events of kiln's Ansible callback (kiln_events) and the one parser of its JSON lines."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "FAILED_STATUSES",
    "Event",
    "GuardEvent",
    "InventoryEvent",
    "InventorySource",
    "PhaseEvent",
    "PlayStart",
    "Stats",
    "StrategyEvent",
    "TaskResult",
    "TaskStart",
    "parse_event",
    "read_events",
    "strategy_of",
]

#: The task_result statuses that fail a run.
FAILED_STATUSES = ("failed", "unreachable")


@dataclass(frozen=True)
class Event:
    """Any event: its kind, wall time and Ansible pass; data is the whole record as written."""

    kind: str = ""
    time: float | None = None
    ansible_pass: str = ""
    data: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False, hash=False)


@dataclass(frozen=True)
class InventorySource:
    """One inventory source Ansible was handed (a file's content, or the source string)."""

    source: str = ""
    is_file: bool = False
    content: str = ""


@dataclass(frozen=True)
class InventoryEvent(Event):
    """'inventory': the sources Ansible was given and the hosts it parsed (None: unknown)."""

    sources: tuple[InventorySource, ...] = ()
    hosts: tuple[str, ...] | None = None


@dataclass(frozen=True)
class GuardEvent(Event):
    """'guard': the callback refused to go on (status 'refused') and why."""

    status: str = ""
    message: str = ""


@dataclass(frozen=True)
class PlayStart(Event):
    """'play_start': a play's name and an estimate of its task count."""

    play: str = ""
    tasks_estimate: int = 0


@dataclass(frozen=True)
class StrategyEvent(Event):
    """'strategy': the play's strategy, whether Mitogen runs it, and why not when it fell back."""

    name: str = ""
    mitogen: bool = False
    fallback: str = ""


@dataclass(frozen=True)
class TaskStart(Event):
    """'task_start': a task (or handler) begins; path is its file:line."""

    task: str = ""
    path: str = ""
    role: str = ""
    action: str = ""
    handler: bool = False


@dataclass(frozen=True)
class TaskResult(Event):
    """'task_result': a task's status (ok, failed, ignored, skipped, unreachable), output tails."""

    task: str = ""
    path: str = ""
    role: str = ""
    action: str = ""
    status: str = ""
    changed: bool = False
    msg: str = ""
    stdout: str = ""
    stderr: str = ""
    module_stderr: str = ""
    censored: bool = False

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES


@dataclass(frozen=True)
class Stats(Event):
    """'stats': the play recap, summed over hosts (counts by name, e.g. ok, changed, failures)."""

    totals: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PhaseEvent(Event):
    """'phase': a marker the packer template writes between its own steps (e.g. commit)."""

    phase: str = ""
    detail: str = ""


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def _time(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _strs(d: Mapping[str, Any], *names: str) -> dict[str, Any]:
    return {k: _str(d.get(k)) for k in names}


def _task_fields(d: Mapping[str, Any]) -> dict[str, Any]:
    return _strs(d, "task", "path", "role", "action")


def _inventory(d: Mapping[str, Any]) -> dict[str, Any]:
    sources = tuple(
        InventorySource(_str(s.get("source")), bool(s.get("is_file")), _str(s.get("content")))
        for s in d.get("sources") or ()
        if isinstance(s, Mapping)
    )
    hosts = d.get("hosts")
    return {"sources": sources, "hosts": None if hosts is None else tuple(map(str, hosts))}


def _task_result(d: Mapping[str, Any]) -> dict[str, Any]:
    outputs = ("status", "msg", "stdout", "stderr", "module_stderr")
    return {
        **_task_fields(d),
        **_strs(d, *outputs),
        "changed": bool(d.get("changed")),
        "censored": bool(d.get("censored")),
    }


def _no_fields(d: Mapping[str, Any]) -> dict[str, Any]:
    return {}


_COMMON = ("event", "time", "ansible_pass")
_KINDS: dict[str, tuple[type[Event], Callable[[Mapping[str, Any]], dict[str, Any]]]] = {
    "inventory": (InventoryEvent, _inventory),
    "guard": (GuardEvent, lambda d: _strs(d, "status", "message")),
    "play_start": (
        PlayStart,
        lambda d: {**_strs(d, "play"), "tasks_estimate": _int(d.get("tasks_estimate"))},
    ),
    "strategy": (
        StrategyEvent,
        lambda d: {**_strs(d, "name", "fallback"), "mitogen": bool(d.get("mitogen"))},
    ),
    "task_start": (TaskStart, lambda d: {**_task_fields(d), "handler": bool(d.get("handler"))}),
    "task_result": (TaskResult, _task_result),
    "stats": (Stats, lambda d: {"totals": {k: _int(v) for k, v in d.items() if k not in _COMMON}}),
    "phase": (PhaseEvent, lambda d: _strs(d, "phase", "detail")),
}


def strategy_of(events: Iterable[Event]) -> StrategyEvent | None:
    """How Ansible's first play ran (None: no play started, or a callback older than kiln's)."""
    return next((e for e in events if isinstance(e, StrategyEvent)), None)


def parse_event(line_or_dict: str | bytes | Mapping[str, Any] | Event) -> Event:
    """The typed event of one JSON line (or its decoded dict); unknown kinds give a plain Event.

    Raises ValueError for a line that is not a JSON object (say, one cut short by a crash).
    """
    if isinstance(line_or_dict, Event):
        return line_or_dict
    data = json.loads(line_or_dict) if isinstance(line_or_dict, str | bytes) else line_or_dict
    if not isinstance(data, Mapping):
        raise ValueError(f"not an event object: {str(line_or_dict)[:80]!r}")
    kind = _str(data.get("event"))
    cls, fields = _KINDS.get(kind, (Event, _no_fields))
    ansible_pass = data.get("ansible_pass")
    return cls(
        kind=kind,
        time=_time(data.get("time")),
        ansible_pass="" if ansible_pass is None else str(ansible_pass),
        data=dict(data),
        **fields(data),
    )


def read_events(path: Path) -> list[Event]:
    """Every event in an events file, skipping lines that do not parse (a truncated last one)."""
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            events.append(parse_event(line))
        except ValueError:
            continue
    return events
