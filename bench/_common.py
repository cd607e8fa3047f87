"""Helpers shared by the benchmarks: scratch projects, timed commands, medians."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from conftest import Sandbox, make_sandbox  # noqa: E402  (the integration tests' sandboxes)

__all__ = [
    "INVOKE",
    "REPO",
    "Memory",
    "Sandbox",
    "bench_env",
    "busy_cpu_seconds",
    "make_sandbox",
    "measured",
    "median",
    "print_ratio",
    "ratios",
    "run",
    "timed",
    "timed_with_cpu",
]
MEMORY_SAMPLE_S = 0.1
#: kiln's command line, run by this interpreter (the project's venv) in a sandbox.
INVOKE = [sys.executable, "-m", "invoke"]


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


def bench_env(box: Sandbox) -> dict[str, str]:
    """The sandbox's environment as a user's shell has it: Python keeps its bytecode caches.

    This machine's environment sets PYTHONDONTWRITEBYTECODE, which makes every kiln command
    (and Ansible's plugins from kiln's tree) compile its modules from source again, about 0.2 s
    a command that no user pays.
    """
    env = box.env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


@dataclass(frozen=True)
class Memory:
    """Memory of a process tree in MB: PSS (shared pages split between their users) and RSS
    summed over the processes (shared pages counted once per process: an upper bound)."""

    pss: float = 0.0
    rss: float = 0.0

    def peak(self, other: Memory) -> Memory:
        return Memory(max(self.pss, other.pss), max(self.rss, other.rss))


def measured(
    argv: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None
) -> tuple[float, Memory]:
    """Run argv to the end: its wall time in seconds and the peak memory of its process tree.

    The tree is the command and all its descendants (kiln, packer, ansible-playbook), sampled
    every MEMORY_SAMPLE_S. Builders' own processes live under the Docker engine and are not
    counted.
    """
    started = time.perf_counter()
    peak = Memory()
    with subprocess.Popen(
        list(argv), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    ) as proc:
        collector = threading.Thread(target=lambda: proc.stdout and proc.stdout.read(), daemon=True)
        collector.start()
        while proc.poll() is None:
            peak = peak.peak(tree_memory(proc.pid))
            time.sleep(MEMORY_SAMPLE_S)
        collector.join()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} exited {proc.returncode}")
    return time.perf_counter() - started, peak


def tree_memory(root: int) -> Memory:
    """The memory of root and its descendants now (processes gone meanwhile count 0)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    kb = {"Pss:": 0, "Rss:": 0}
    todo = [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in rollup.splitlines():
            field = line.split(maxsplit=1)[0] if line else ""
            if field in kb:
                kb[field] += int(line.split()[1])
    return Memory(pss=kb["Pss:"] / 1024, rss=kb["Rss:"] / 1024)


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent not idle since boot (every process, including
    dockerd and the builders' own processes, which are not kiln's children)."""
    ticks = [int(field) for field in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle and iowait
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")


def timed_with_cpu(
    argv: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None
) -> tuple[float, float]:
    """(wall seconds, busy CPU seconds of the whole machine) of one command."""
    before = busy_cpu_seconds()
    seconds = timed(argv, cwd=cwd, env=env)
    return seconds, busy_cpu_seconds() - before


def print_ratio(kiln_s: Sequence[float], packer_s: Sequence[float], target: float) -> None:
    """Medians of alternated kiln and hand-written Packer runs, and their ratio both ways: of the
    medians, and the median of the run pairs (each kiln run and the packer run right after it saw
    about the same load, so their ratio is steadier when other work comes and goes)."""
    a, b = median(kiln_s), median(packer_s)
    of_medians, pairs = ratios(kiln_s, packer_s)
    print(f"median of {len(kiln_s)}: kiln {a:.1f} s, hand-written packer {b:.1f} s")
    print(
        f"ratio kiln / packer: {of_medians:.2f} of the medians, {pairs:.2f} median of the run "
        f"pairs (target <= {target}: {'met' if max(of_medians, pairs) <= target else 'missed'})"
    )


def ratios(a_s: Sequence[float], b_s: Sequence[float]) -> tuple[float, float]:
    """a / b of alternated runs: the ratio of the medians, and the median of the ratios of the
    run pairs (runs made one right after the other saw about the same load)."""
    pairs = median([a / b for a, b in zip(a_s, b_s, strict=True)])
    return median(a_s) / median(b_s), pairs


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min) {five:.1f} (5 min) on {os.cpu_count()} CPUs"
