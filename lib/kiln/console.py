"""What a bake tells its user: phases, Ansible progress, warnings and the closing summary.

One Reporter per command: plain lines (no terminal), one JSON object per line (json_mode), or on a
terminal a live block with one line per role redrawn in place (LiveReporter, via make_reporter).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from kiln.ansible_events import (
    Event,
    PhaseEvent,
    PlayStart,
    Stats,
    TaskResult,
    TaskStart,
    parse_event,
)
from kiln.redact import Redactor

# Phases in the order a bake goes through them; the live display shows the current one.
PHASES = (
    "waiting",
    "base",
    "render",
    "plugins",
    "builder start",
    "provision",
    "capture",
    "commit",
    "tests",
    "record",
)


@dataclass
class RoleProgress:
    """Everything the display knows about one role, built only from structured events."""

    role: str
    phase: str = "waiting"
    detail: str = ""
    task: str = ""
    n: int = 0
    total: int = 0
    ok: int = 0
    changed: int = 0
    failed: int = 0
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    outcome: str = ""  # "", "baked", "cached", "failed", "skipped"

    @property
    def elapsed(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def of(self) -> str:
        """'task n of m' when the play's estimate holds, else the running count."""
        if self.total >= self.n:
            return f"task {self.n} of {self.total}"
        return f"task {self.n}"


class Reporter:
    """Prints bake progress; thread-safe so that parallel bakes keep their lines whole."""

    def __init__(
        self, stream: TextIO | None = None, *, json_mode: bool = False, verbose: bool = False
    ) -> None:
        self.stream = stream or sys.stdout
        self.json_mode = json_mode
        self.verbose = verbose
        self._lock = threading.RLock()
        self._started = time.monotonic()
        self.progress: dict[str, RoleProgress] = {}
        self._warned: set[tuple[str, str]] = set()
        self._secrets: set[str] = set()
        self._redact = Redactor(())

    def mask(self, values: Iterable[str]) -> None:
        """Mask these secret values, in every form Redactor knows, in all this reporter prints
        from now on. Bakes redact events and Packer's lines where they read them; this is the
        last line before the terminal, for task names and messages from any other path."""
        with self._lock:
            new = {value for value in values if value} - self._secrets
            if new:
                self._secrets |= new
                self._redact = Redactor(sorted(self._secrets))

    # -- state ------------------------------------------------------------------------------
    def _state(self, role: str) -> RoleProgress:
        state = self.progress.get(role)
        if state is None:
            state = self.progress[role] = RoleProgress(role)
        return state

    def _elapsed(self) -> str:
        return f"{time.monotonic() - self._started:6.1f}s"

    def _write(self, role: str, text: str, **data: Any) -> None:
        with self._lock:
            if self.json_mode:
                record = {"role": role, "elapsed_s": round(time.monotonic() - self._started, 3)}
                record.update(self._redact.event(data))
                self.stream.write(json.dumps(record, default=str) + "\n")
            else:
                self.stream.write(self._redact(f"[{self._elapsed()}] {role}: {text}") + "\n")
            self.stream.flush()

    # -- what bakes report ------------------------------------------------------------------
    def phase(self, role: str, phase: str, detail: str = "") -> None:
        with self._lock:
            state = self._state(role)
            if state.phase == "waiting":
                state.started = time.monotonic()
            state.phase, state.detail = phase, detail
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
        """Write a warning once: every role of a bake may meet the same cause."""
        with self._lock:
            if (role, text) in self._warned:
                return
            self._warned.add((role, text))
        self._write(role, f"WARNING: {text}", kind="warning", message=text)

    def packer_line(self, role: str, line: str) -> None:
        if self.verbose:
            self._write(role, f"  | {line}", kind="packer", line=line)

    def ansible_event(self, role: str, event: Event | Mapping[str, Any]) -> None:
        """Follow kiln_events callback records: play_start, task_start, task_result, stats."""
        event = parse_event(event)
        with self._lock:
            state = self._state(role)
            if isinstance(event, PlayStart):
                state.total += event.tasks_estimate
                if state.phase != "provision":
                    self.phase(role, "provision", event.play)
            elif isinstance(event, TaskStart):
                self._task_started(role, state, event)
            elif isinstance(event, TaskResult):
                if event.status == "ok" and event.changed:
                    state.changed += 1
                elif event.status == "ok":
                    state.ok += 1
                elif event.failed:
                    state.failed += 1
                self._changed(role)
            elif isinstance(event, Stats):
                self.phase(role, "capture", "package manifest and seal")
            elif isinstance(event, PhaseEvent) and event.phase:
                # Markers the packer template writes between its own steps (e.g. commit).
                self.phase(role, event.phase, event.detail)

    def _task_started(self, role: str, state: RoleProgress, event: TaskStart) -> None:
        state.n += 1
        state.task = event.task
        handler = " (handler)" if event.handler else ""
        self._write(
            role,
            f"provision: {state.of()}: {state.task}{handler} "
            f"[ok={state.ok} changed={state.changed} failed={state.failed}]",
            kind="task",
            task=state.task,
            n=state.n,
            total=state.total,
            path=event.path or None,
            ok=state.ok,
            changed=state.changed,
            failed=state.failed,
        )

    def finished(self, role: str, outcome: str, text: str = "") -> None:
        """A role is done: outcome is baked, cached, failed or skipped."""
        with self._lock:
            state = self._state(role)
            state.outcome, state.ended, state.detail = outcome, time.monotonic(), text
            self._write(
                role,
                f"{outcome}{' - ' + text if text else ''} ({state.elapsed:.1f}s)",
                kind="finished",
                outcome=outcome,
                detail=text,
                seconds=round(state.elapsed, 3),
            )

    def summary(self, role: str, lines: list[tuple[str, str]], **data: Any) -> None:
        if self.json_mode:
            self._write(role, "", kind="summary", **data)
            return
        width = max(len(k) for k, _ in lines)
        with self._lock:
            self._print_block([f"  {key.ljust(width)}  {value}" for key, value in lines])

    def text(self, text: str) -> None:
        """A block of plain text (an error, a table) that is not tied to the progress display."""
        with self._lock:
            self._print_block(text.splitlines())

    def _print_block(self, lines: list[str]) -> None:
        for line in lines:
            self.stream.write(self._redact(line) + "\n")
        self.stream.flush()

    def _changed(self, role: str) -> None:
        """Counts changed without a line of their own; the live display redraws."""

    def waiting(self, role: str) -> None:
        """A role is queued behind its parent; the live display shows it from now on."""
        with self._lock:
            self._state(role)

    def close(self) -> None:
        """Stop any live display; the output after this is plain."""

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NullReporter(Reporter):
    """Reports nothing: for library callers who only want the return value."""

    def _write(self, role: str, text: str, **data: Any) -> None:
        return

    def summary(self, role: str, lines: list[tuple[str, str]], **data: Any) -> None:
        return

    def _print_block(self, lines: list[str]) -> None:
        return


# -- the live display ---------------------------------------------------------------------
CSI = "\x1b["
BOLD, DIM, RED, GREEN, YELLOW, CYAN, RESET = (
    f"{CSI}1m",
    f"{CSI}2m",
    f"{CSI}31m",
    f"{CSI}32m",
    f"{CSI}33m",
    f"{CSI}36m",
    f"{CSI}0m",
)
REFRESH_S = 0.25


class LiveReporter(Reporter):
    """On a terminal: one line per role, redrawn in place; messages scroll above the block.

    Each line shows the phase, during provisioning the Ansible task with "task n of m" and the
    ok/changed/failed counts, and the elapsed time. Plain ANSI escapes, no extra dependency.
    """

    def __init__(self, stream: TextIO | None = None, *, verbose: bool = False) -> None:
        super().__init__(stream, json_mode=False, verbose=verbose)
        self._drawn = 0  # lines of the live block currently on screen
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._closed = False

    # Scrolling lines: warnings, messages, Packer output with --verbose.
    def _write(self, role: str, text: str, **data: Any) -> None:
        kind = data.get("kind")
        with self._lock:
            if kind in ("phase", "task", "finished"):
                self._start_ticker()
                self._redraw()
                return
            colour = YELLOW if kind == "warning" else ""
            self._scroll([f"{colour}[{self._elapsed()}] {role}: {text}{RESET if colour else ''}"])

    def _changed(self, role: str) -> None:
        with self._lock:
            self._redraw()

    def _print_block(self, lines: list[str]) -> None:
        self._scroll(lines)

    def _scroll(self, lines: list[str]) -> None:
        """Print lines above the live block, then draw the block again below them."""
        lines = [self._redact(line) for line in lines]
        if self._closed:
            for line in lines:
                self.stream.write(line + "\n")
            self.stream.flush()
            return
        self._erase()
        for line in lines:
            self.stream.write(line + "\n")
        self._draw()

    def _erase(self) -> None:
        if self._drawn:
            # Up to the first line of the block, then clear to the end of the screen.
            self.stream.write(f"{CSI}{self._drawn}F{CSI}J")
            self._drawn = 0

    def _redraw(self) -> None:
        if self._closed:
            return
        self._erase()
        self._draw()

    def _draw(self) -> None:
        width = max(20, shutil.get_terminal_size((100, 24)).columns - 1)
        lines = [self._line(state, width) for state in self.progress.values()]
        for line in lines:
            self.stream.write(line + "\n")
        self._drawn = len(lines)
        self.stream.flush()

    def _line(self, state: RoleProgress, width: int) -> str:
        name_width = min(24, max(len(s.role) for s in self.progress.values()))
        name = state.role[:name_width].ljust(name_width)
        clock = f"{state.elapsed:6.1f}s"
        if state.outcome:
            colour = {"baked": GREEN, "cached": CYAN, "failed": RED}.get(state.outcome, DIM)
            mark = {"baked": "done", "cached": "up to date", "failed": "FAILED"}.get(
                state.outcome, state.outcome
            )
            body = self._redact(f"{mark}{' - ' + state.detail if state.detail else ''}")
            return _fit(f"{colour}{name}{RESET}", name_width, f"{body}", clock, width, colour)
        if state.phase == "provision" and state.n:
            # The counts come first: when the line is too long, the task name is what is cut.
            counts = f"ok {state.ok} changed {state.changed} failed {state.failed}"
            # Masked before the line is cut: a cut could leave a secret's head unmatched.
            body = self._redact(f"provision  {state.of()}  [{counts}]  {state.task}")
        elif state.phase == "waiting":
            body = "waiting for its parent"
        else:
            body = self._redact(f"{state.phase}{' - ' + state.detail if state.detail else ''}")
        colour = RED if state.failed else BOLD
        return _fit(f"{colour}{name}{RESET}", name_width, body, clock, width, "")

    def waiting(self, role: str) -> None:
        """Show a role queued behind its parent before its bake starts."""
        with self._lock:
            self._state(role)
            self._redraw()

    def _start_ticker(self) -> None:
        if self._ticker is not None or self._closed:
            return

        def tick() -> None:
            while not self._stop.wait(REFRESH_S):
                with self._lock:
                    self._redraw()

        self._ticker = threading.Thread(target=tick, name="kiln-progress", daemon=True)
        self._ticker.start()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._stop.set()
            self._redraw()  # the final state stays on screen
            self._closed = True
        if self._ticker is not None:
            self._ticker.join(timeout=2)


def _fit(name: str, name_width: int, body: str, clock: str, width: int, colour: str) -> str:
    """name, body and the clock on one line of at most width columns (the body is cut)."""
    room = width - name_width - len(clock) - 4
    if room < 1:
        body = ""
    elif len(body) > room:
        body = body[: max(0, room - 3)] + "..."
    pad = " " * max(0, room - len(body))
    reset = RESET if colour else ""
    return f"{name}  {colour}{body}{reset}{pad}  {DIM}{clock}{RESET}"


def make_reporter(
    stream: TextIO | None = None, *, json_mode: bool = False, verbose: bool = False
) -> Reporter:
    """The reporter for a command: JSON lines, a live display on a terminal, or plain lines.

    Verbose output (Packer's own lines) scrolls, so it gets plain lines too; so do dumb
    terminals and NO_COLOR users' pipes.
    """
    out = stream or sys.stdout
    if json_mode:
        return Reporter(out, json_mode=True, verbose=verbose)
    is_tty = hasattr(out, "isatty") and out.isatty()
    if is_tty and not verbose and os.environ.get("TERM", "dumb") != "dumb":
        return LiveReporter(out)
    return Reporter(out, verbose=verbose)
