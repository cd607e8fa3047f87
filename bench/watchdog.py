"""Benchmark: what kiln's watchdog (kiln.watchdog) costs a bake, and how fast it acts on a kill.

In rounds, in this process:
  enter      entering `with watchdog(lease)`: what kiln waits for before it starts packer
  round trip entering and leaving an empty block: the watchdog starts, reads "done", exits
  leave      leaving a block of 0.5 s (the watchdog up by then): what a real bake waits at its end
  cpu        the CPU time of one watchdog (user + system, from its rusage)
  kill       a stand-in kiln holding a lease over a `sleep` process group is killed with
             SIGKILL; the time until that group is gone (no builder to reap here)
Prints each round and the medians. A no-op bake starts none: only a packer run is watched.

Run from the repository root: .venv/bin/python bench/watchdog.py [--rounds 10]
(with PYTHONPATH=lib when the venv's kiln is another checkout's)
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

from _common import REPO, median
from kiln.watchdog import Lease, watchdog

STAND_IN = """
import os, subprocess, sys, time
from kiln.watchdog import Lease, watchdog

with watchdog(Lease()) as lease:
    group = subprocess.Popen(["sleep", "300"], env={**os.environ, **lease.env},
                             start_new_session=True)
    print(group.pid, flush=True)
    time.sleep(600)
"""


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one_round() -> dict[str, float]:
    started = time.perf_counter()
    cpu_before = children_cpu_s()
    with watchdog(Lease()):
        entered = time.perf_counter() - started
    round_trip = time.perf_counter() - started
    cpu = children_cpu_s() - cpu_before
    with watchdog(Lease()):
        time.sleep(0.5)
        leaving = time.perf_counter()
    return {
        "enter": entered,
        "round trip": round_trip,
        "leave": time.perf_counter() - leaving,
        "cpu": cpu,
        "kill": kill_to_gone(),
    }


def kill_to_gone() -> float:
    kiln = subprocess.Popen(
        [sys.executable, "-c", STAND_IN],
        env={**os.environ, "PYTHONPATH": str(REPO / "lib")},
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert kiln.stdout is not None
    leased = int(kiln.stdout.readline())
    os.kill(kiln.pid, signal.SIGKILL)
    killed = time.perf_counter()
    kiln.wait()
    while Path(f"/proc/{leased}").exists() and "Z" not in stat_state(leased):
        time.sleep(0.005)
    return time.perf_counter() - killed


def stat_state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "Z"
    return stat[stat.rindex(")") + 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    rounds = parser.parse_args().rounds
    samples: dict[str, list[float]] = {}
    for number in range(1, rounds + 1):
        measured = one_round()
        for name, value in measured.items():
            samples.setdefault(name, []).append(value)
        print(
            f"round {number}: " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in measured.items())
        )
    print("medians: " + ", ".join(f"{k} {median(v) * 1000:.1f} ms" for k, v in samples.items()))


if __name__ == "__main__":
    main()
