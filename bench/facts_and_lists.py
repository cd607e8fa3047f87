"""Benchmark: the two costs issue 12's defaults add to a bake, measured directly in one builder.

In one container started from a kiln base image the way builders are (systemd as PID 1), runs
alternate, --runs times each:
  - Ansible's fact gathering as a bake runs it (community.docker connection, pipelining):
    `gather_subset: [min]` (the previous default) against Ansible's default facts (now);
  - `apt-get update` from no package lists (the worst case: kiln's verified lists cache usually
    restores most of them, and apt then fetches only the InRelease files), against nothing
    (the previous default ran no update).
Prints every run, the medians and the differences. Whole bakes are compared by
bench/content_defaults.py; on a busy machine this direct measurement is the steadier one.

Run from the repository root: .venv/bin/python bench/facts_and_lists.py [--runs 5] [--image REF]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _common import REPO, load, median
from kiln.registry import Registry
from kiln.targets.docker import INIT, SYSTEMD_RUN_FLAGS

PLAY = """- hosts: all
  gather_facts: true
{subset}  tasks: []
"""


def timed(argv: list[str], **kwargs: object) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, **kwargs)  # type: ignore[call-overload]
    return time.perf_counter() - started


def gather(container: str, playbook: Path) -> float:
    bin_dir = Path(sys.executable).parent
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "ANSIBLE_PIPELINING": "True", "HOME": "/tmp"}
    argv = [
        str(bin_dir / "ansible-playbook"), "-i", f"{container},",
        "-e", "ansible_connection=community.docker.docker",
        "-e", "ansible_python_interpreter=/usr/bin/python3", str(playbook),
    ]  # fmt: skip
    return timed(argv, env=env)


def newest_base() -> str:
    """The image of the newest `base` this repository recorded (`invoke bake web` makes one)."""
    with Registry(REPO / ".kiln" / "registry.db") as registry:
        base = registry.latest("base", target="docker")
    if base is None or base.artifact("docker") is None:
        sys.exit("no base is recorded here: run `invoke bake web`, or pass --image")
    return base.artifact("docker").ref  # type: ignore[union-attr]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--image", help="a kiln-baked image to start (default: this repository's newest base)"
    )
    args = parser.parse_args()
    args.image = args.image or newest_base()
    name = f"kiln-bench-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["docker", "run", "-d", "--name", name, *SYSTEMD_RUN_FLAGS, "--", args.image, INIT],
        check=True,
        capture_output=True,
    )
    samples: dict[str, list[float]] = {}
    try:
        subprocess.run(
            ["docker", "exec", name, "systemctl", "is-system-running", "--wait"],
            capture_output=True,
            check=False,
        )
        with tempfile.TemporaryDirectory() as tmp:
            plays = {
                "facts min": Path(tmp) / "min.yml",
                "facts default": Path(tmp) / "default.yml",
            }
            plays["facts min"].write_text(PLAY.format(subset='  gather_subset: ["min"]\n'))
            plays["facts default"].write_text(PLAY.format(subset=""))
            print(f"start: {load()}")
            for i in range(args.runs):
                for label, play in plays.items():
                    samples.setdefault(label, []).append(gather(name, play))
                clear = "rm -rf /var/lib/apt/lists/* && apt-get -q update"
                samples.setdefault("apt-get update", []).append(
                    timed(["docker", "exec", name, "sh", "-c", clear])
                )
                print(f"run {i + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in samples.items()))
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
    medians = {k: round(median(v), 3) for k, v in samples.items()}
    print(json.dumps(medians))
    print(
        f"default facts cost {medians['facts default'] - medians['facts min']:+.2f}s over min "
        f"(ratio {medians['facts default'] / medians['facts min']:.2f}); the list refresh "
        f"costs {medians['apt-get update']:.2f}s from no lists (previous default: none)"
    )
    print(f"end: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
