"""Benchmark: the whole tree from nothing: the base bootstrap, base and web, acceptance tests in.

A scratch project with an empty registry whose Debian base has a name of its own, so that its
fingerprint is new and no bootstrapped image in the engine can be reused (mmdebstrap really
runs), and an apt cache volume of its own, new and empty (every .deb and list comes from the
mirror). `invoke bake web` then bootstraps the base, bakes base and web, and runs their
acceptance tests. Baseline, in the same run and before it: mmdebstrap alone, writing the same
base to /dev/null. Prints both, the timeline of the bake (each role's phases) and each role's
recorded timings.

Run from the repository root: .venv/bin/python bench/cold.py
It downloads the base system twice from the mirror: run it alone.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
import time
from pathlib import Path

from _common import INVOKE, bench_env, load, make_sandbox

TARGET_S = 45.0
PHASE_LINE = re.compile(r"^\[\s*([\d.]+)s\] ([\w.-]+): (\w[\w ]*?) - ")


def mmdebstrap_alone(packages: list[str], variant: str, suite: str) -> float:
    """The base system alone: mmdebstrap to /dev/null, as kiln runs it for a bootstrap."""
    started = time.perf_counter()
    subprocess.run(
        ["mmdebstrap", f"--variant={variant}", f"--include={','.join(packages)}", suite, "-"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
    )  # fmt: skip
    return time.perf_counter() - started


def timeline(output: str) -> list[str]:
    """The bake's phase changes (not its task-by-task progress), as kiln printed them."""
    lines = []
    for line in output.splitlines():
        match = PHASE_LINE.match(line)
        if match and "provision: task" not in line:
            lines.append(line)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kiln-bench-cold-") as tmp:
        box = make_sandbox(Path(tmp))
        base_name = f"cold-{box.namespace}"
        tasks = box.root / "tasks.py"
        tasks.write_text(tasks.read_text().replace('"debian-bookworm"', f'"{base_name}"'))
        volume = f"kiln-bench-cold-{box.namespace}"
        env = {**bench_env(box), "KILN_APT_CACHE": volume}
        try:
            base = box.project().role_named("base").base
            print(f"baseline: mmdebstrap alone ({load()})", flush=True)
            floor = mmdebstrap_alone(list(base.packages), base.variant, base.suite)
            print(f"mmdebstrap alone: {floor:.1f} s", flush=True)
            print(f"cold: invoke bake web, base {base_name}, empty cache {volume} ({load()})")
            started = time.perf_counter()
            proc = subprocess.run(
                [*INVOKE, "bake", "web"],
                cwd=box.root, env=env, capture_output=True, text=True, check=False,
            )  # fmt: skip
            cold = time.perf_counter() - started
            if proc.returncode != 0:
                raise SystemExit(f"the cold bake failed:\n{proc.stdout[-4000:]}{proc.stderr}")
            with box.registry() as registry:
                recorded = {role: registry.latest(role) for role in ("base", "web")}
        finally:
            box.cleanup()
            subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True)
    print(f"({load()})")
    print("timeline:")
    for line in timeline(proc.stdout):
        print(f"  {line}")
    for role, version in recorded.items():
        assert version is not None, f"{role} was not recorded"
        phases = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in version.timings.items())
        print(f"{role} v{version.version}: {phases}")
    verdict = "met" if cold <= TARGET_S else "missed"
    print(f"cold bake of the whole tree: {cold:.1f} s (target <= {TARGET_S:.0f} s: {verdict})")
    print(f"mmdebstrap alone: {floor:.1f} s; the rest: {cold - floor:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
