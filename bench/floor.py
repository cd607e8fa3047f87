"""Benchmark: kiln's bake of nginx against the physical floor and the hand-written Packer template.

(a) kiln: `invoke bake web --force --skip-tests`, as in bench/bake_vs_packer.py;
(b) packer: the hand-written template of bench/bake_vs_packer.py;
(c) the floor: the same package work with neither Packer nor Ansible. A bare `docker run` of the
    same parent image (no systemd) sets up kiln's apt hooks (the same shared .deb and lists
    cache), runs `apt-get update`, installs the role's packages without recommends, writes the
    files the role writes (taken from kiln's image, so they are byte for byte the same), runs
    `nginx -t`, cleans apt's caches and lists; then `docker commit`.
Runs alternate a, b, c. Prints every run, the medians, kiln minus the floor (target: at most
TARGET_OVER_FLOOR_S), for the last run of each where the time went phase by phase, and the
peak memory of kiln's and packer's process trees (target: under TARGET_PEAK_MB).

Run from the repository root: .venv/bin/python bench/floor.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

from _common import REPO, Memory, Sandbox, load, measured, median
from bake_vs_packer import KILN_BAKE, prepared

TARGET_OVER_FLOOR_S = 1.5
TARGET_PEAK_MB = 400
APT_HOOKS = REPO / "lib" / "kiln" / "targets" / "docker" / "apt_cache.py"
APT_CACHE_VOLUME = "kiln-apt-archives:/run/kiln-apt-cache"  # the docker target's shared cache
# The role's files, as kiln's image has them: (path in the image, mode).
ROLE_FILES = {
    "index.html": "/var/www/kiln/index.html",
    "site.conf": "/etc/nginx/sites-available/kiln",
}
FLOOR_SCRIPT = """set -e
now() { date +%s.%N; }
t0=$(now)
cp /floor/kiln-apt.py /run/kiln-apt.py
python3 /run/kiln-apt.py setup >/dev/null
apt-get -q update >/dev/null
t1=$(now)
DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends nginx >/dev/null 2>&1
t2=$(now)
install -d -m 0755 /var/www/kiln
install -m 0644 /floor/index.html /var/www/kiln/index.html
install -m 0644 /floor/site.conf /etc/nginx/sites-available/kiln
ln -sf /etc/nginx/sites-available/kiln /etc/nginx/sites-enabled/kiln
rm -f /etc/nginx/sites-enabled/default
nginx -t 2>/dev/null
t3=$(now)
python3 /run/kiln-apt.py finish >/dev/null
apt-get clean
rm -rf /var/lib/apt/lists/*
t4=$(now)
echo "FLOOR $t0 $t1 $t2 $t3 $t4"
"""


def floor_files(box: Sandbox, image: str, into: Path) -> Path:
    """The role's files out of kiln's image, the floor script and kiln's apt hooks, in a dir."""
    for name, path in ROLE_FILES.items():
        content = box.docker("run", "--rm", "--entrypoint", "cat", image, path)
        (into / name).write_text(content + "\n")
    (into / "floor.sh").write_text(FLOOR_SCRIPT)
    (into / "kiln-apt.py").write_bytes(APT_HOOKS.read_bytes())
    return into


def floor_run(box: Sandbox, parent: str, files: Path, index: int) -> dict[str, float]:
    """One floor bake: docker run, the package work, docker commit. Its phases, in seconds."""
    started = time.time()
    container = box.docker(
        "create", "--tmpfs", "/run", "-v", APT_CACHE_VOLUME, "-v", f"{files}:/floor:ro",
        parent, "sh", "/floor/floor.sh",
    )  # fmt: skip
    try:
        out = box.docker("start", "-a", container)
        marks = [float(v) for v in out.split("FLOOR", 1)[1].split()]
        committed = time.time()
        box.docker("commit", container, f"{box.namespace}/floor:{index}")
        ended = time.time()
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)
    return {
        "docker run": marks[0] - started,
        "apt-get update": marks[1] - marks[0],
        "package install": marks[2] - marks[1],
        "files and nginx -t": marks[3] - marks[2],
        "apt clean-up": marks[4] - marks[3],
        "docker commit": ended - committed,
        "total": ended - started,
    }


def kiln_phases(box: Sandbox, wall: float) -> dict[str, float]:
    """The last kiln bake's phases: its recorded timings, split further by Ansible's events."""
    with box.registry() as registry:
        version = registry.latest("web")
        assert version is not None
    timings = dict(version.timings)
    events_file = box.root / ".kiln" / "logs" / "web" / str(version.version)
    events = [json.loads(line) for line in (events_file / "ansible-events.jsonl").open()]
    tasks: dict[str, float] = {}
    started: dict[str, float] = {}
    for event in events:
        if event.get("event") == "task_start":
            started[event["task"]] = event["time"]
        elif event.get("event") == "task_result" and event["task"] in started:
            tasks[event["task"]] = event["time"] - started.pop(event["task"])
    facts = tasks.pop("Gathering Facts", 0.0)
    wait = sum(s for name, s in tasks.items() if name.startswith("kiln :"))
    install = sum(s for name, s in tasks.items() if "Install" in name)
    others = sum(tasks.values()) - wait - install
    provision = timings.get("provision", 0.0)
    return {
        "kiln start, lint (cached), render": wall - sum(timings.values()) + timings["render"],
        "docker run, systemd boot, Ansible start": timings["builder start"],
        "facts (Ansible's default, full)": facts,
        "wait for apt-get update (overlapped)": wait,
        "package install task": install,
        "the other tasks and handlers": others,
        "Ansible between tasks": provision - facts - wait - install - others,
        "capture, seal and commit": timings["capture and commit"],
        "record": timings["record"],
        "total": wall,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each (default 3)")
    args = parser.parse_args()
    kiln_s: list[float] = []
    packer_s: list[float] = []
    floor_s: list[float] = []
    kiln_mb: list[Memory] = []
    packer_mb: list[Memory] = []
    with (
        tempfile.TemporaryDirectory(prefix="kiln-bench-floor-") as tmp,
        prepared(Path(tmp)) as bench,
    ):
        box = bench.box
        files_dir = Path(tmp) / "floor"
        files_dir.mkdir()
        files = floor_files(box, box.image("web", 1), files_dir)
        print(f"all three bake nginx on {bench.parent}", flush=True)
        for index in range(args.runs):
            seconds, memory = measured(KILN_BAKE, cwd=box.root, env=bench.env)
            kiln_s.append(seconds)
            kiln_mb.append(memory)
            kiln = kiln_phases(box, seconds)
            print(
                f"run {index + 1}: kiln {seconds:.1f} s, {memory.pss:.0f} MB ({load()})", flush=True
            )
            seconds, memory = measured(bench.packer, cwd=bench.hand, env=bench.packer_env)
            packer_s.append(seconds)
            packer_mb.append(memory)
            print(
                f"run {index + 1}: packer {seconds:.1f} s, {memory.pss:.0f} MB ({load()})",
                flush=True,
            )
            floor = floor_run(box, bench.parent, files, index)
            floor_s.append(floor["total"])
            print(f"run {index + 1}: floor {floor_s[-1]:.1f} s ({load()})", flush=True)
    report(kiln_s, packer_s, floor_s, kiln, floor)
    report_memory(kiln_mb, packer_mb)
    return 0


def report(
    kiln_s: list[float],
    packer_s: list[float],
    floor_s: list[float],
    kiln: dict[str, float],
    floor: dict[str, float],
) -> None:
    k, p, f = median(kiln_s), median(packer_s), median(floor_s)
    print(
        f"median of {len(kiln_s)}: kiln {k:.1f} s, hand-written packer {p:.1f} s, floor {f:.1f} s"
    )
    over = k - f
    verdict = "met" if over <= TARGET_OVER_FLOOR_S else "missed"
    print(f"kiln - floor: {over:.1f} s (target <= {TARGET_OVER_FLOOR_S} s: {verdict})")
    print(f"kiln / packer: {k / p:.2f}; floor / packer: {f / p:.2f}")
    print("where the time went, last run of each:")
    for name, seconds in kiln.items():
        print(f"  kiln   {name:<42} {seconds:5.1f} s")
    for name, seconds in floor.items():
        print(f"  floor  {name:<42} {seconds:5.1f} s")


def report_memory(kiln: list[Memory], packer: list[Memory]) -> None:
    """The highest peak of all runs; the target is on PSS, which counts a shared page once."""
    k, p = max(m.pss for m in kiln), max(m.pss for m in packer)
    k_rss, p_rss = max(m.rss for m in kiln), max(m.rss for m in packer)
    verdict = "met" if k < TARGET_PEAK_MB else "missed"
    print(
        f"peak memory of the process tree, highest run: kiln PSS {k:.0f} MB (target < "
        f"{TARGET_PEAK_MB} MB: {verdict}), RSS summed {k_rss:.0f} MB; hand-written packer "
        f"PSS {p:.0f} MB, RSS summed {p_rss:.0f} MB"
    )


if __name__ == "__main__":
    raise SystemExit(main())
