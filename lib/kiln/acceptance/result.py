"""The verdict of an acceptance run: test cases, their summary, and what a failing gate says."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from kiln.model import Project
from kiln.private_files import log_dir, write_private

#: How many lines of a failing test's message the bake prints (the whole output is recorded).
MESSAGE_LINES = 8


@dataclass(frozen=True)
class TestCase:
    """One test's outcome; message is the assertion (or failed task) tail for failures."""

    __test__ = False  # not a pytest test class

    name: str
    outcome: Literal["passed", "failed", "skipped"]
    message: str = ""
    duration_s: float = 0.0


@dataclass(frozen=True)
class AcceptanceResult:
    """The verdict on one version: every test case, the full output and the time it took."""

    role: str
    version: int
    cases: tuple[TestCase, ...]
    output: str
    started_at: str
    duration_s: float
    boot_s: float

    @property
    def failures(self) -> list[TestCase]:
        return [c for c in self.cases if c.outcome == "failed"]

    @property
    def passed(self) -> bool:
        return bool(self.cases) and not self.failures

    def count(self, outcome: str) -> int:
        return sum(1 for c in self.cases if c.outcome == outcome)

    @property
    def summary(self) -> str:
        """One line: the counts, and for a failure the failing tests with their first line."""
        if not self.cases:
            return "no test ran"
        counts = ", ".join(
            f"{n} {outcome}"
            for outcome in ("passed", "failed", "skipped")
            if (n := self.count(outcome))
        )
        if self.passed:
            return counts
        failed = "; ".join(
            f"{c.name}: {_first_line(c.message) or 'failed'}" for c in self.failures[:5]
        )
        more = f" (+{len(self.failures) - 5} more)" if len(self.failures) > 5 else ""
        return f"{counts}. Failed: {failed}{more}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "version": self.version,
            "passed": self.passed,
            "summary": self.summary,
            "duration_s": round(self.duration_s, 3),
            "boot_s": round(self.boot_s, 3),
            "cases": [
                {
                    "name": c.name,
                    "outcome": c.outcome,
                    "message": c.message,
                    "duration_s": round(c.duration_s, 3),
                }
                for c in self.cases
            ],
        }


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def failure_message(result: AcceptanceResult, *, log: str | None = None) -> str:
    """What a user reads when the gate closes: each failing test, why, and what to do next."""
    lines = [
        f"{result.role} v{result.version} failed its acceptance tests "
        f"({len(result.failures)} of {len(result.cases)} failed, {result.duration_s:.1f}s):"
    ]
    for case in result.failures:
        lines.append(f"  FAILED {case.name}")
        lines += [f"      {line}" for line in case.message.splitlines()[:MESSAGE_LINES]]
    lines.append(
        f"{result.role} v{result.version} is marked failed: it is never used as a parent or "
        "promoted. Fix the role (or the test) and bake again; if the failure was transient, "
        f"rerun the tests with `invoke test {result.role} --version {result.version}`."
    )
    if log:
        lines.append(f"Full output: {log}")
    return "\n".join(lines)


def write_log(project: Project, result: AcceptanceResult) -> Path:
    """Keep the whole output next to the version's bake logs; returns its path."""
    path = log_dir(project.state_path, result.role, result.version) / "acceptance.log"
    return write_private(path, f"{result.summary}\n\n{result.output}")
