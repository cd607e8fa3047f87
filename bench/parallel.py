"""Benchmark: four independent roles baked with `-p 1` and with `-p 2`, alternated.

A scratch project (the integration tests' sandbox) defines four nginx roles on `base`; base is
baked once first (not timed), then `invoke bake web-a,web-b,web-c,web-d --force --skip-tests` runs
with -p 1 and -p 2 in turn. Prints each run, the medians and the ratio (-p 2 / -p 1).

It also prints the machine's busy CPU during each run (every process: kiln, packer, Ansible,
dockerd and the builders). With C CPU-seconds of work per run on N cores, -p 2 cannot take less
than C/N seconds, so the ratio cannot go below (C/N) / (-p 1 time): the bound printed.

Run from the repository root: .venv/bin/python bench/parallel.py [--runs 1]
It bakes 8 images per run pair: run it alone, on an otherwise idle machine if you can.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from _common import INVOKE, load, make_sandbox, median, run, timed_with_cpu

ROLES = ("web-a", "web-b", "web-c", "web-d")
EXTRA = "\n".join(
    f'project.role("{name}", parent="base", ansible_roles=["web"], '
    f'variables={{"web_title": "{name}", "web_message": "parallel bench"}})'
    for name in ROLES
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="run pairs (default 1)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kiln-bench-parallel-") as tmp:
        box = make_sandbox(Path(tmp))
        box.write_tasks(EXTRA)
        try:
            print(f"preparing: baking base once ({load()})", flush=True)
            run([*INVOKE, "bake", "base", "--skip-tests"], cwd=box.root, env=box.env())
            results: dict[int, list[float]] = {1: [], 2: []}
            cpu: dict[int, list[float]] = {1: [], 2: []}
            for index in range(args.runs):
                for jobs in (1, 2):
                    argv = [*INVOKE, "bake", ",".join(ROLES), "--force", "--skip-tests",
                            "-p", str(jobs)]  # fmt: skip
                    seconds, busy = timed_with_cpu(argv, cwd=box.root, env=box.env())
                    results[jobs].append(seconds)
                    cpu[jobs].append(busy)
                    print(
                        f"run {index + 1}: -p {jobs}: {seconds:.1f} s, busy CPU {busy:.1f} s "
                        f"({busy / seconds:.2f} cores busy on average; {load()})",
                        flush=True,
                    )
        finally:
            box.cleanup()
    one, two = median(results[1]), median(results[2])
    cores = os.cpu_count() or 1
    bound = median(cpu[1]) / cores / one
    print(f"four independent roles, median of {args.runs}: -p 1 {one:.1f} s, -p 2 {two:.1f} s")
    print(f"ratio -p 2 / -p 1: {two / one:.2f} ({one / two:.2f}x faster with -p 2)")
    print(
        f"-p 1 kept {median(cpu[1]) / one:.2f} of {cores} cores busy: on this machine no -p 2 "
        f"can go below {bound:.2f} of -p 1 (target 0.55)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
