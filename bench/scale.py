"""Benchmark: render (with the python-hcl2 parse-back check) and fingerprint 10, 100, 1,000 roles.

Generates role definitions in a scratch project (the repository's roles/ and templates/), renders
each role's HCL and playbook for the docker target and fingerprints it, cold (a new process state:
no parse-back cache) and warm (the same definitions again, as a second `invoke render` would).
Prints the total and per-role time, CPU time (robust when other processes share the CPU), the
ratio to the 10-role case (linearity) and a pure-Python calibration loop as the baseline.

Run from the repository root: .venv/bin/python bench/scale.py [--sizes 10,100,1000]
Target: 1,000 roles in under 2 s.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from kiln import fingerprint, render
from kiln.fingerprint import RACY_S, FingerprintMemo, fingerprint_chain
from kiln.model import Project, Role
from kiln.registry import Artifact, Version
from kiln.targets import get_target
from kiln.targets.base import PLAYBOOK_TEMPLATE, BakePlan

REPO = Path(__file__).resolve().parents[1]
TOOLS = {"packer": "1.6.6", "ansible-core": "2.19.0"}  # fixed: no packer process in the loop
TARGET_S = 2.0
IDLE_CALIBRATION_S = 0.150  # the calibration loop's CPU time on an idle current x86 core


def make_project(root: Path, count: int) -> tuple[Project, list[Role]]:
    """count roles: a tenth are mid-level parents on `base`, the rest leaves under them."""
    for name in ("roles", "templates"):
        shutil.copytree(REPO / name, root / name, symlinks=True)
    project = Project(root, image_namespace="scale")
    debian = project.base("debian-bookworm")
    project.role("base", parent=debian, ansible_roles=["common"])
    roles: list[Role] = []
    mids = max(1, count // 10)
    for index in range(count):
        parent = "base" if index < mids else f"mid-{index % mids}"
        name = f"mid-{index}" if index < mids else f"leaf-{index}"
        roles.append(
            project.role(
                name,
                parent=parent,
                ansible_roles=["web"],
                variables={"web_title": f"Role {index}", "web_message": f"message {index}"},
            )
        )
    return project, roles


def parent_version(name: str) -> Version:
    return Version(
        role=name, version=1, kind="role", target="docker", fingerprint="f" * 64,
        parent_role=None, parent_version=None, status="tested", git_commit="0" * 40,
        git_dirty=False, tools={}, inputs={}, timings={}, bake_seconds=1.0,
        created_at="2026-01-01T00:00:00.000000Z",
        artifacts=(Artifact("docker", f"scale/{name}:1", "sha256:" + "a" * 64),),
    )  # fmt: skip


def render_and_fingerprint(project: Project, roles: list[Role]) -> int:
    """What `invoke render` does per role, minus packer validate: fingerprint, render, check."""
    target = get_target("docker")
    templates = {
        "hcl": project.templates_path / target.template,
        "playbook": project.templates_path / PLAYBOOK_TEMPLATE,
    }
    recipe = target.recipe()
    memo = FingerprintMemo()  # as render_roles: shared ancestors are fingerprinted once
    written = 0
    images = project.image_names("0" * 32)  # no registry: any identity names them alike
    for role in roles:
        fingerprints = fingerprint_chain(
            role,
            content=project.content,
            templates_for=templates,
            recipe=recipe,
            target="docker",
            tools=TOOLS,
            secret_values={},
            key=b"k" * 32,
            memo=memo,
        )
        parent = parent_version(role.parent.name)
        plan = BakePlan(project, role, fingerprints[role.name], parent, target, images)
        written += len(target.render(plan))
    return written


def timed(func: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    func()
    return time.perf_counter() - wall, time.process_time() - cpu


def calibration_s() -> float:
    """CPU time of a fixed pure-Python loop (about 0.15 s on an idle current x86 core)."""
    samples = []
    for _ in range(3):
        started = time.process_time()
        sum(range(10_000_000))
        samples.append(time.process_time() - started)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    calibration = calibration_s()
    print(f"baseline: calibration loop {calibration * 1000:.0f} ms CPU (~150 ms on an idle core)")
    print(f"{'roles':>6} {'cold s':>8} {'cold cpu':>9} {'ms/role':>8} {'warm s':>8} "
          f"{'warm cpu':>9} {'ms/role':>8} {'x per-role vs 10':>17}")  # fmt: skip
    base_per_role: float | None = None
    results = {}
    for count in sizes:
        with tempfile.TemporaryDirectory(prefix="kiln-scale-") as tmp:
            project, roles = make_project(Path(tmp), count)
            # As in a checkout: files written in the last 2 s are never trusted by their stat.
            time.sleep(RACY_S + 0.1)
            render.clear_parse_cache()
            fingerprint._DIGESTS.clear()
            cold, cold_cpu = timed(lambda: render_and_fingerprint(project, roles))  # noqa: B023
            warm, warm_cpu = timed(lambda: render_and_fingerprint(project, roles))  # noqa: B023
        per_role = cold_cpu / count * 1000
        base_per_role = base_per_role or per_role
        results[count] = (cold, cold_cpu, warm, warm_cpu)
        print(
            f"{count:>6} {cold:>8.2f} {cold_cpu:>9.2f} {per_role:>8.2f} {warm:>8.2f} "
            f"{warm_cpu:>9.2f} {warm_cpu / count * 1000:>8.2f} {per_role / base_per_role:>17.2f}"
        )
    if 1000 in results:
        cold, cold_cpu, warm, warm_cpu = results[1000]
        # The same CPU work on an idle core, judged by how much slower the calibration loop ran.
        idle = cold_cpu * IDLE_CALIBRATION_S / calibration
        verdict = "meets" if idle < TARGET_S else "misses"
        print(
            f"1,000 roles: cold {cold:.2f} s wall / {cold_cpu:.2f} s CPU, warm {warm:.2f} s "
            f"wall / {warm_cpu:.2f} s CPU; {cold_cpu / calibration:.1f}x the calibration loop, "
            f"about {idle:.2f} s on an idle core: {verdict} the {TARGET_S:.0f} s target"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
