"""Reading Molecule's output: which step failed, which Ansible tasks failed and why.

Pure text processing over the lines Molecule 26 prints, so it is tested without Docker.
"""

from __future__ import annotations

import json
import re

from kiln.controller.events import FAILED_TASK_AT, failure_text

__all__ = ["ANSI", "StepTracker"]

#: Colour and cursor escape codes, removed before a line is read.
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# Molecule 26 announces each step as "INFO     [web > converge] Executing" and closes it with
# "... Executed: Successful" or "Executed: Failed"; with colours on it writes "web ➜ converge: ...".
_STEP = re.compile(
    r"(?:\[(?P<s1>[^\]]+?) > (?P<a1>[\w-]+)\]|(?P<s2>\S+) ➜ (?P<a2>[\w-]+):)"
    r" (?P<what>Executing|Executed: (?P<result>\w+))"
)

_FAILED_TASK = re.compile(r"(?:fatal|failed): \[")

# pytest's short summary of a failed test (testinfra verifier), "FAILED path::test - why".
_PYTEST_FAILED = re.compile(r"FAILED \S+::\S+")


class StepTracker:
    """Follows Molecule's output to tell which step failed and why."""

    #: At most this many lines of failure detail (failed Ansible tasks, Molecule's own errors).
    MAX_DETAIL = 12

    def __init__(self) -> None:
        self.current: str | None = None
        self.failed: str | None = None
        self.detail: list[str] = []
        self._task: str | None = None
        self._task_start = 0
        self._listing = False

    def feed(self, line: str) -> None:
        match = _STEP.search(line)
        if match is not None:
            self._listing = False
            step = match["a1"] or match["a2"]
            if match["what"] == "Executing":
                if self.current is not None and self.failed is None:
                    self.failed = self.current  # the previous step never reported its end
                self.current = step
            elif match["result"] == "Failed" and self.failed is None:
                self.failed = step
            elif self.current == step:
                self.current = None
            return
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            self._task = line.rstrip(" *")
            self._task_start = len(self.detail)
        elif _FAILED_TASK.match(line) or line.startswith(("[ERROR]: ", "Origin: ", FAILED_TASK_AT)):
            if self._task is not None:  # name the task once, before its first error line
                self._note(self._task)
                self._task = None
            self._note(_summarize_failure(line) if _FAILED_TASK.match(line) else line[:400])
        elif line.strip() == "...ignoring":
            del self.detail[self._task_start :]  # an ignored failure is no failure
        elif line.startswith("CRITICAL") and "glob failed" not in line:
            self._note(line)
            self._listing = True  # e.g. the tasks that broke idempotence, one "* " line each
        elif _PYTEST_FAILED.match(line):
            self._note(line[:300])  # a testinfra verifier's failed test
        elif self._listing and line.startswith("* "):
            self._note(line)
        else:
            self._listing = False

    def _note(self, line: str) -> None:
        if len(self.detail) < self.MAX_DETAIL:
            self.detail.append(line)

    @property
    def failed_step(self) -> str | None:
        return self.failed or self.current


def _summarize_failure(line: str) -> str:
    # "fatal: [instance]: FAILED! => {json}" carries the whole module result; keep what a reader
    # needs (msg, stderr) instead of the first few hundred characters of it.
    head, sep, payload = line.partition(" => ")
    try:
        result = json.loads(payload) if sep else None
    except ValueError:
        result = None
    why = failure_text(result) if isinstance(result, dict) else ""
    return f"{head} => {why}" if why else line[:300]
