"""Benchmark: what the defaults for unchanged community roles cost a `web` bake, in one run.

Since issue 12 a bake gathers Ansible's default facts (was `gather_subset: [min]`) and runs
`apt-get update` before Ansible starts (was: no package lists in the builder). This bakes `web`
with the code of a baseline commit and with the working tree, alternated, each in its own scratch
project on the same engine, and prints the medians of:
  - the whole bake (`invoke bake web --force --skip-tests`),
  - `builder start` (container start to Ansible's first task: boot wait, apt hooks, the update),
  - Ansible's `Gathering Facts` task (from kiln's Ansible events),
  - `provision` (all of Ansible).

Run from the repository root: .venv/bin/python bench/content_defaults.py [--runs 3] [--baseline REF]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _common import INVOKE, REPO, Sandbox, load, make_sandbox, median, run

BASELINE = "cf5da7a"  # main before issue 12: min facts, no package lists


@dataclass
class Side:
    """One code version baking web in its own scratch project."""

    label: str
    box: Sandbox
    pythonpath: str | None
    samples: dict[str, list[float]] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        env = self.box.env()
        if self.pythonpath:
            env["PYTHONPATH"] = self.pythonpath
        return env

    def invoke(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [*INVOKE, *args]
        return run(argv, cwd=self.box.root, env=self.env())

    def bake_once(self) -> None:
        started = time.perf_counter()
        self.invoke("bake", "web", "--force", "--skip-tests")
        wall = time.perf_counter() - started
        shown = json.loads(self.invoke("show", "web", "--json").stdout)
        timings = shown["timings"]
        version = shown["summary"]["version"]
        facts = gathering_facts(self.box.root / ".kiln/logs/web" / str(version))
        for name, value in (
            ("bake", wall),
            ("builder start", timings.get("builder start", 0.0)),
            ("gathering facts", facts),
            ("provision", timings.get("provision", 0.0)),
        ):
            self.samples.setdefault(name, []).append(value)


def gathering_facts(log_dir: Path) -> float:
    """Seconds from the Gathering Facts task's start to its result, from kiln's Ansible events."""
    start = end = 0.0
    for line in (log_dir / "ansible-events.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event.get("task") == "Gathering Facts":
            if event.get("event") == "task_start":
                start = event["time"]
            elif event.get("event") == "task_result":
                end = event["time"]
    return end - start if start and end else 0.0


def baseline_side(ref: str, scratch: Path) -> Side:
    tree = scratch / "baseline-tree"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), ref],
        check=True,
        capture_output=True,
    )
    box = make_sandbox(scratch / "baseline")
    # The baseline renders from the project's templates/: give it its own commit's.
    shutil.rmtree(box.root / "templates")
    shutil.copytree(tree / "templates", box.root / "templates")
    return Side(f"baseline {ref}", box, pythonpath=str(tree / "lib"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", default=BASELINE)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kiln-bench-defaults-") as tmp:
        scratch = Path(tmp)
        sides = [baseline_side(args.baseline, scratch)]
        sides.append(Side("working tree", make_sandbox(scratch / "current"), pythonpath=None))
        try:
            for side in sides:  # the chain up to web once, outside the measurement
                side.invoke("bake", "web", "--skip-tests")
            print(f"start: {load()}")
            for i in range(args.runs):
                for side in sides:
                    side.bake_once()
                    print(
                        f"run {i + 1} {side.label:>22}: "
                        + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in side.samples.items())
                    )
            report(sides)
            print(f"end: {load()}")
        finally:
            for side in sides:
                side.box.cleanup()
            subprocess.run(
                [
                    "git",
                    "-C",
                    str(REPO),
                    "worktree",
                    "remove",
                    "--force",
                    str(scratch / "baseline-tree"),
                ],
                check=False,
                capture_output=True,
            )
    return 0


def report(sides: list[Side]) -> None:
    base, current = sides
    print(f"\nmedians of {len(base.samples['bake'])} run(s) each")
    print(f"{'':18} {base.label:>22} {current.label:>14} {'difference':>11}")
    for name in base.samples:
        a, b = median(base.samples[name]), median(current.samples[name])
        print(f"{name:18} {a:21.2f}s {b:13.2f}s {b - a:+10.2f}s")


if __name__ == "__main__":
    sys.exit(main())
