"""Run one benchmark from this tree and from an earlier commit, alternated, in one invocation.

For a change that must keep the figures (issue 13's reshaping: "the figures in bench/ hold within
noise, measured in one run against the previous commit"): the earlier commit is checked out into
a scratch clone, and each round runs its copy of the benchmark, then this tree's, each importing
its own kiln (PYTHONPATH) with the same virtualenv and tools. Prints each run's last lines.

Run from the repository root:
  .venv/bin/python bench/against.py [--rounds 2] [--lines 3] REV bench/noop.py [ITS ARGS]
(everything after the benchmark's path is the benchmark's own arguments)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import REPO, load


def run_bench(tree: Path, script: str, args: list[str], lines: int) -> str:
    env = {**os.environ, "PYTHONPATH": str(tree / "lib")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as a user's shell has it (see bench_env)
    proc = subprocess.run(
        [sys.executable, script, *args], cwd=tree, env=env, capture_output=True, text=True,
        check=False, timeout=7200,
    )  # fmt: skip
    if proc.returncode != 0:
        sys.exit(f"{script} in {tree} exited {proc.returncode}:\n{proc.stdout[-2000:]}"
                 f"\n{proc.stderr[-2000:]}")  # fmt: skip
    return "\n".join(proc.stdout.strip().splitlines()[-lines:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the earlier commit")
    parser.add_argument("script", help="the benchmark, e.g. bench/noop.py")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of earlier, then this")
    parser.add_argument("--lines", type=int, default=3, help="last lines of each run to print")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the benchmark's own arguments")
    options = parser.parse_args()
    args = options.args[1:] if options.args[:1] == ["--"] else options.args
    with tempfile.TemporaryDirectory(prefix="kiln-bench-against-") as tmp:
        earlier = Path(tmp) / "earlier"
        subprocess.run(["git", "clone", "-q", str(REPO), str(earlier)], check=True)
        subprocess.run(["git", "-C", str(earlier), "checkout", "-q", options.rev], check=True)
        (earlier / ".venv").symlink_to(REPO / ".venv")
        trees = {options.rev: earlier, "this tree": REPO}
        for round_ in range(1, options.rounds + 1):
            for name, tree in trees.items():
                print(f"== round {round_}, {name} ({load()})", flush=True)
                print(run_bench(tree, options.script, args, options.lines), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
