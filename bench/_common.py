"""Helpers shared by the benchmarks: scratch projects, timed commands, medians."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from conftest import Sandbox, make_sandbox  # noqa: E402  (the integration tests' sandboxes)

__all__ = ["REPO", "Sandbox", "make_sandbox", "median", "run", "timed"]


def run(
    argv: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(argv), cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=3600
    )
    if check and proc.returncode != 0:
        sys.exit(
            f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
            f"{proc.stderr[-3000:]}"
        )
    return proc


def timed(
    argv: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None, check: bool = True
) -> float:
    started = time.perf_counter()
    run(argv, cwd=cwd, env=env, check=check)
    return time.perf_counter() - started


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def invoke(sandbox: Sandbox) -> list[str]:
    return [sys.executable, "-m", "invoke"]


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min) {five:.1f} (5 min) on {os.cpu_count()} CPUs"
