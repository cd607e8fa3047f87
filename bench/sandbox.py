"""Benchmark: what kiln's controller sandbox costs an Ansible run, against a running container.

Three ways to run the same three-task play against one container (community.docker.docker,
pipelining), in rounds that rotate which goes first:
  ansible-playbook  ansible-playbook itself, as Packer's Ansible provisioner ran it before
  runner            kiln.controller.inside (ansible-runner and kiln's event writer), no sandbox
  kiln-ansible      what Packer runs now: tmpfs run directory, engine proxy, bubblewrap, runner
Prints each round, the medians, and the differences of the medians: kiln-ansible - runner is the
sandbox's own cost (the issue's target: under 0.2 s a bake), kiln-ansible - ansible-playbook all
of the controller's.

Run from the repository root: .venv/bin/python bench/sandbox.py [--rounds 10] [--image IMAGE]
Needs Docker and bubblewrap, and an image with python3 (default: kiln's Debian base).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import REPO, load, median, run, timed

PLAY = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: ping
      ansible.builtin.ping:
    - name: run a command
      ansible.builtin.command: "true"
      changed_when: false
    - name: write a file
      ansible.builtin.copy:
        content: "bench\\n"
        dest: /tmp/bench
        mode: "0644"
"""


def _image(wanted: str | None) -> str:
    if wanted:
        return wanted
    out = run(
        [
            "docker",
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            "--filter",
            "reference=*/debian-bookworm",
        ],
        cwd=REPO,
    ).stdout.split()
    if not out:
        sys.exit("no */debian-bookworm image: run scripts/setup.sh first, or pass --image")
    return out[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--image", default=None)
    options = parser.parse_args()
    bindir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="kiln-bench-sandbox-") as scratch_dir:
        scratch = Path(scratch_dir)
        (scratch / "play.yml").write_text(PLAY)
        container = run(
            [
                "docker",
                "run",
                "-d",
                "--rm",
                "--entrypoint",
                "sleep",
                _image(options.image),
                "infinity",
            ],
            cwd=REPO,
        ).stdout.strip()
        try:
            args = [
                "-i",
                f"{container},",
                "-e",
                f"ansible_host={container}",
                "-e",
                "ansible_connection=community.docker.docker",
                "-e",
                "ansible_python_interpreter=/usr/bin/python3",
                str(scratch / "play.yml"),
            ]
            spec = scratch / "spec.json"
            spec.write_text(
                json.dumps(
                    {
                        "ansible_playbook": str(bindir / "ansible-playbook"),
                        "args": args,
                        "events": "",
                        "private_data_dir": str(scratch / "runner"),
                        "artifact_dir": str(scratch / "art"),
                    }
                )
            )
            env = {
                "PATH": f"{bindir}:/usr/bin:/bin",
                "ANSIBLE_PIPELINING": "True",
                "LANG": "C.UTF-8",
                "HOME": str(scratch),
            }
            ways = {
                "ansible-playbook": [str(bindir / "ansible-playbook"), *args],
                "runner": [sys.executable, "-m", "kiln.controller.inside", str(spec)],
                "kiln-ansible": [str(bindir / "kiln-ansible"), *args],
            }
            _measure(ways, options.rounds, scratch, env)
        finally:
            subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)


def _measure(ways: dict[str, list[str]], rounds: int, cwd: Path, env: dict[str, str]) -> None:
    names = list(ways)
    for name in names:  # warm the page cache and byte-compile once, not timed
        timed(ways[name], cwd=cwd, env=env)
    times: dict[str, list[float]] = {name: [] for name in names}
    print(f"load {load()}")
    for index in range(rounds):
        order = names[index % 3 :] + names[: index % 3]
        row = {name: timed(ways[name], cwd=cwd, env=env) for name in order}
        for name, seconds in row.items():
            times[name].append(seconds)
        print(f"round {index + 1:2d}  " + "  ".join(f"{n} {row[n]:.3f}s" for n in names))
    medians = {name: median(times[name]) for name in names}
    print("medians   " + "  ".join(f"{n} {medians[n]:.3f}s" for n in names))
    print(
        "sandbox (kiln-ansible - runner):              "
        f"{medians['kiln-ansible'] - medians['runner']:+.3f}s"
    )
    print(
        f"controller (kiln-ansible - ansible-playbook): "
        f"{medians['kiln-ansible'] - medians['ansible-playbook']:+.3f}s"
    )
    print(f"load {load()}")


if __name__ == "__main__":
    main()
