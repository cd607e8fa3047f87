"""Running `packer build -machine-readable`, following its UI lines and kiln's Ansible events.

Packer is started in its own session so that Ctrl-C reaches kiln first; kiln then forwards one
interrupt and waits for Packer to tear its builder down before giving up.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from kiln.ansible_events import Event, TaskResult, parse_event
from kiln.errors import BuildError
from kiln.redact import Redactor

EventSink = Callable[[Event], None]
LineSink = Callable[[str], None]
CLEANUP_GRACE_S = 120


@dataclass
class PackerRun:
    returncode: int
    errors: list[str] = field(default_factory=list)
    artifacts: dict[str, str] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    interrupted: bool = False
    duration_s: float = 0.0

    def __post_init__(self) -> None:
        # Callers may hand over decoded dicts: they are read through the one parser.
        self.events = [parse_event(e) for e in self.events]

    @property
    def failed_tasks(self) -> list[TaskResult]:
        return [e for e in self.events if isinstance(e, TaskResult) and e.failed]


def decode_machine_line(
    line: str, redact: Callable[[str], str] = str
) -> tuple[str, str, list[str]] | None:
    """(target, type, data) of one -machine-readable line, with Packer's escapes undone.

    redact runs on each field before its newlines are decoded: Packer writes a newline as
    backslash-n without escaping backslashes, so decoding first would cut a secret that holds
    a backslash and an n (say JSON-escaped in Ansible's output) in two.
    """
    parts = line.rstrip("\n").split(",")
    if len(parts) < 3 or not parts[0].isdigit():
        return None
    data = [
        redact(p.replace("%!(PACKER_COMMA)", ",")).replace("\\n", "\n").replace("\\r", "\r")
        for p in parts[3:]
    ]
    return parts[1], parts[2], data


class _EventTail:
    """Reads JSON lines appended to the events file by kiln's Ansible callback."""

    def __init__(self, path: Path | None) -> None:
        self.path = path  # None: a run that starts no Ansible (packer init)
        self._handle: TextIO | None = None
        self._partial = ""

    def poll(self) -> list[Event]:
        if self._handle is None:
            if self.path is None or not self.path.exists():
                return []
            self._handle = self.path.open(encoding="utf-8")
        out: list[Event] = []
        chunk = self._handle.read()
        if not chunk:
            return out
        self._partial += chunk
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            if line.strip():
                try:
                    out.append(parse_event(line))
                except ValueError:
                    continue
        return out

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


class _LivePackers:
    """The packer processes this process started and has not reaped yet (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen[str]] = set()

    def add(self, proc: subprocess.Popen[str]) -> None:
        with self._lock:
            self._procs.add(proc)

    def discard(self, proc: subprocess.Popen[str]) -> None:
        with self._lock:
            self._procs.discard(proc)

    def interrupt(self) -> int:
        """Send one SIGINT to each one's process group; returns how many were asked."""
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            # A process is discarded only once reaped, so its pid cannot have been reused.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGINT)
        return len(procs)


_LIVE = _LivePackers()


def interrupt_running() -> int:
    """Forward one SIGINT to every packer run_packer started that is still running.

    Ctrl-C reaches only the main thread, and packer, in its own session, would not see it: a
    parallel bake calls this so that each packer removes its builder.
    """
    return _LIVE.interrupt()


def run_packer(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    events_path: Path | None,
    log: TextIO,
    on_line: LineSink,
    on_event: EventSink,
    redact: Redactor,
) -> PackerRun:
    """Run packer to completion, streaming UI lines and Ansible events; never leaves it running.

    events_path is None for a run that starts no Ansible (packer init).
    """
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise BuildError(f"{argv[0]} is not installed; run scripts/setup.sh") from exc
    _LIVE.add(proc)
    try:
        result = _follow(proc, _EventTail(events_path), log, on_line, on_event, redact)
    finally:
        _LIVE.discard(proc)
    result.duration_s = time.monotonic() - started
    return result


def _follow(
    proc: subprocess.Popen[str],
    tail: _EventTail,
    log: TextIO,
    on_line: LineSink,
    on_event: EventSink,
    redact: Redactor,
) -> PackerRun:
    """Stream proc's lines and tail's events until proc exits; Ctrl-C asks it to clean up."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.put(raw)
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    result = PackerRun(returncode=-1)
    interrupt_deadline: float | None = None
    done = False
    try:
        while not done:
            try:
                try:
                    raw = lines.get(timeout=0.2)
                except queue.Empty:
                    raw = ""
                if raw is None:
                    done = True
                elif raw:
                    _handle_line(raw, result, log, on_line, redact)
                for event in map(redact.ansible_event, tail.poll()):
                    result.events.append(event)
                    on_event(event)
                if interrupt_deadline is not None and time.monotonic() > interrupt_deadline:
                    os.killpg(proc.pid, signal.SIGKILL)
                    interrupt_deadline = None
            except KeyboardInterrupt:
                if not result.interrupted:
                    result.interrupted = True
                    on_line("interrupted: asking packer to remove the builder...")
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGINT)
                    interrupt_deadline = time.monotonic() + CLEANUP_GRACE_S
    except BaseException:
        # Anything else (a full disk under the log, a bug in a sink): packer must not outlive
        # kiln, so it is interrupted, given time to remove its builder, then killed.
        _stop(proc)
        raise
    result.returncode = proc.wait()
    if result.interrupted:
        _kill_stragglers(proc)
    for event in map(redact.ansible_event, tail.poll()):
        result.events.append(event)
        on_event(event)
    tail.close()
    return result


def _stop(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=CLEANUP_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    _kill_stragglers(proc)


def _kill_stragglers(proc: subprocess.Popen[str]) -> None:
    """End what is left of a stopped packer's process group (a `docker run` it had started)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _handle_line(
    raw: str, result: PackerRun, log: TextIO, on_line: LineSink, redact: Callable[[str], str]
) -> None:
    decoded = decode_machine_line(raw, redact)
    if decoded is None:
        text = redact(raw.rstrip("\n"))
        log.write(text + "\n")
        on_line(text)
        return
    _target, kind, data = decoded
    if kind == "ui" and len(data) >= 2:
        for text in data[1].splitlines() or [""]:
            text = redact(text)
            log.write(text + "\n")
            if data[0] == "error":
                result.errors.append(text)
            on_line(text)
    elif kind == "artifact" and len(data) >= 3 and data[1] == "id":
        result.artifacts[data[0]] = data[2]
    elif kind == "error" and data:
        result.errors.append(redact(data[0]))
    log.flush()
