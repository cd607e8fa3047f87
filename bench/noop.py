"""Benchmark: `invoke bake web` with nothing changed, against Python and invoke start-up.

In a scratch copy of the project (the integration tests' sandbox, so that edits to the work tree
during the run change nothing), makes sure web is baked (not timed), then times, alternating:
  baseline 1  python -c pass
  baseline 2  invoke --list (Python, invoke and tasks.py: the floor of any kiln command)
  kiln        invoke bake web (fingerprints, finds the version, checks its image, prints)
Prints medians, and the kiln no-op minus and over `invoke --list`. Target: < 1 s wall.

Run from the repository root: .venv/bin/python bench/noop.py [--runs 10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _common import INVOKE, load, make_sandbox, median, run, timed

TARGET_S = 1.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kiln-bench-noop-") as tmp:
        box = make_sandbox(Path(tmp))
        env, cwd = box.env(), box.root
        try:
            print(f"preparing: invoke bake web until it is up to date ({load()})", flush=True)
            run([*INVOKE, "bake", "web"], cwd=cwd, env=env)
            commands = {
                "python -c pass": [sys.executable, "-c", "pass"],
                "invoke --list": [*INVOKE, "--list"],
                "invoke bake web": [*INVOKE, "bake", "web"],
            }
            samples: dict[str, list[float]] = {name: [] for name in commands}
            for _ in range(args.runs):
                for name, argv in commands.items():
                    samples[name].append(timed(argv, cwd=cwd, env=env))
            out = run([*INVOKE, "bake", "web"], cwd=cwd, env=env).stdout
            assert "up to date" in out or "cached" in out, out
        finally:
            box.cleanup()
    medians = {name: median(values) for name, values in samples.items()}
    for name, value in medians.items():
        print(f"{name:<16} median {value * 1000:7.0f} ms over {args.runs} runs")
    noop, floor = medians["invoke bake web"], medians["invoke --list"]
    print(
        f"no-op bake: {noop:.2f} s ({'meets' if noop < TARGET_S else 'misses'} the "
        f"{TARGET_S:.0f} s target); {noop - floor:+.2f} s and {noop / floor:.2f}x over "
        f"`invoke --list`; {noop / medians['python -c pass']:.1f}x `python -c pass` ({load()})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
