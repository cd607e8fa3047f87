"""Benchmark: fingerprinting the web role tree, and the registry's history over 10,000 versions.

Prints median timings against a baseline and the targets (fingerprint < 50 ms, history < 200 ms).
Run from the repository root: .venv/bin/python bench/fingerprint_registry.py
"""

from __future__ import annotations

import hashlib
import json
import os
import runpy
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kiln import lifecycle
from kiln.fingerprint import fingerprint_chain
from kiln.model import Project, Role
from kiln.registry import Registry, utc_now
from kiln.targets import get_target
from kiln.targets.base import PLAYBOOK_TEMPLATE

REPO = Path(__file__).resolve().parents[1]
VERSIONS = 10_000
FINGERPRINT_TARGET_MS = 50.0
HISTORY_TARGET_MS = 200.0
TOOLS = {"packer": "1.11.2", "ansible-core": "2.19.0"}  # fixed: no packer process in the loop


def median_ms(
    func: Callable[[], object], runs: int, clock: Callable[[], float] = time.perf_counter
) -> float:
    func()  # warm the page cache and imports
    samples = []
    for _ in range(runs):
        started = clock()
        func()
        samples.append((clock() - started) * 1000)
    return statistics.median(samples)


def cpu_ms(func: Callable[[], object], runs: int) -> float:
    """Median CPU time of this process: what the code costs when other processes share the CPU."""
    return median_ms(func, runs, time.process_time)


def calibration_ms() -> float:
    """A fixed pure-Python loop (about 150 ms on an idle current x86 core), to judge the rest."""
    return median_ms(lambda: sum(range(10_000_000)), 5)


def load_project() -> Project:
    project = runpy.run_path(str(REPO / "tasks.py"))["project"]
    assert isinstance(project, Project)
    return project


def bench_fingerprint(project: Project) -> dict[str, float]:
    web = project.role_named("web")
    target = get_target("docker")
    templates = {
        "hcl": project.templates_path / target.template,
        "playbook": project.templates_path / PLAYBOOK_TEMPLATE,
    }
    key = b"k" * 32

    def fingerprint() -> object:
        return fingerprint_chain(
            web,
            content=project.content,
            templates_for=templates,
            recipe=target.recipe(),
            target="docker",
            tools=TOOLS,
            secret_values={},
            key=key,
        )

    # The same bytes the fingerprint covers: every file of every applied Ansible role, and the
    # templates, once per role of the tree that applies them.
    paths: list[Path] = []
    for node in web.ancestry():
        if isinstance(node, Role):
            for found in project.content.closure(node.ansible_roles):
                paths += sorted(p for p in found.path.rglob("*") if p.is_file())
            paths += list(templates.values())
    blob = b"".join(p.read_bytes() for p in paths)

    def read_and_hash() -> object:
        digest = hashlib.sha256()
        for path in paths:
            digest.update(path.read_bytes())
        return digest.hexdigest()

    return {
        "files": float(len(paths)),
        "bytes": float(len(blob)),
        "fingerprint": median_ms(fingerprint, 51),
        "fingerprint_cpu": cpu_ms(fingerprint, 51),
        "one_sha256": median_ms(lambda: hashlib.sha256(blob).hexdigest(), 51),
        "read_and_hash": median_ms(read_and_hash, 51),
    }


def fill_registry(registry: Registry, inputs: dict[str, Any]) -> None:
    """VERSIONS synthetic web versions on a few base versions, with channels moved around."""
    inputs_json = json.dumps(inputs, sort_keys=True)
    now = utc_now()
    rows: list[tuple[Any, ...]] = [
        ("base", n, "role", "docker", f"{n:064x}", None, None, "tested", "c0ffee", 0, "{}",
         "{}", "{}", 30.0, now)
        for n in range(1, 11)
    ]  # fmt: skip
    rows += [
        ("web", n, "role", "docker", hashlib.sha256(str(n).encode()).hexdigest(), "base",
         1 + n * 10 // VERSIONS if n < VERSIONS else 10, "tested" if n % 7 else "failed",
         "0123456789abcdef0123456789abcdef01234567", n % 3 == 0, json.dumps(TOOLS), inputs_json,
         json.dumps({"render": 0.1, "provision": 20.0}), 42.0, now)
        for n in range(1, VERSIONS + 1)
    ]  # fmt: skip
    # Bulk rows go in behind the interface, in one SQLite transaction, as no bake would write them.
    with registry._transaction() as conn:
        conn.executemany(
            "INSERT INTO versions (role, version, kind, target, fingerprint, parent_role,"
            " parent_version, status, git_commit, git_dirty, tools, inputs, timings,"
            " bake_seconds, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
        conn.executemany(
            "INSERT INTO artifacts (role, version, target, ref, image_id, sha256, size_bytes)"
            " VALUES (?,?,?,?,?,?,?)",
            [(r[0], r[1], "docker", f"kiln/{r[0]}:{r[1]}", f"sha256:{r[4]}", r[4], 268_000_000)
             for r in rows],
        )  # fmt: skip
        conn.executemany(
            "INSERT INTO counters (role, last_version) VALUES (?, ?)",
            [("base", 10), ("web", VERSIONS)],
        )
    with registry.transaction() as tx:
        for n in range(1, VERSIONS, 50):
            for channel in ("dev", "staging", "prod"):
                tx.set_channel(
                    role="web", channel=channel, version=n, action="promote", actor="bench",
                    reason=None,
                )  # fmt: skip


def bench_history(project: Project) -> dict[str, float]:
    web = project.role_named("web")
    target = get_target("docker")
    templates = {
        "hcl": project.templates_path / target.template,
        "playbook": project.templates_path / PLAYBOOK_TEMPLATE,
    }
    fingerprints = fingerprint_chain(
        web,
        content=project.content,
        templates_for=templates,
        recipe=target.recipe(),
        target="docker",
        tools=TOOLS,
        secret_values={},
        key=b"k" * 32,
    )
    inputs = {**fingerprints["web"].inputs, "definition": web.inputs()}
    with tempfile.TemporaryDirectory() as tmp, Registry(Path(tmp) / "registry.db") as registry:
        fill_registry(registry, inputs)
        result = lifecycle.history(registry, "web")
        assert len(result.versions) == VERSIONS and result.versions[0].version == VERSIONS
        # A benchmark may look behind the interface: which index answers history?
        plan = registry._query(
            f"EXPLAIN QUERY PLAN SELECT {registry._SUMMARY_COLUMNS} FROM versions"
            " WHERE role = ? ORDER BY version DESC",
            ("web",),
        )
        return {
            "inputs_bytes": float(len(json.dumps(inputs))),
            "history": median_ms(lambda: lifecycle.history(registry, "web"), 21),
            "history_cpu": cpu_ms(lambda: lifecycle.history(registry, "web"), 21),
            "full_records": median_ms(lambda: registry.history("web"), 5),
            "outdated": median_ms(lambda: lifecycle.outdated(registry), 21),
            "gc_plan": median_ms(lambda: lifecycle.gc_plan(registry, 3), 21),
            "plan": " / ".join(str(r["detail"]) for r in plan),  # type: ignore[dict-item]
        }


def main() -> int:
    project = load_project()
    calibration = calibration_ms()
    fp = bench_fingerprint(project)
    hist = bench_history(project)
    load = os.getloadavg()[0]
    print(f"machine: sum(range(10**7)) {calibration:.0f} ms, load average {load:.1f} on "
          f"{os.cpu_count()} CPUs (wall times grow with the load, CPU times less)")  # fmt: skip
    print("fingerprint of the web role tree (base <- web, Ansible roles and templates)")
    print(f"  inputs:             {fp['files']:.0f} files, {fp['bytes'] / 1024:.1f} KiB")
    print(f"  fingerprint_chain:  {fp['fingerprint']:8.3f} ms  "
          f"(target < {FINGERPRINT_TARGET_MS} ms)  CPU {fp['fingerprint_cpu']:.3f} ms")  # fmt: skip
    print(f"  baseline, 1 sha256: {fp['one_sha256']:8.3f} ms  "
          f"ratio {fp['fingerprint'] / fp['one_sha256']:.0f}x")  # fmt: skip
    print(f"  baseline, read+sha: {fp['read_and_hash']:8.3f} ms  "
          f"ratio {fp['fingerprint'] / fp['read_and_hash']:.1f}x")  # fmt: skip
    print(f"history over {VERSIONS:,} recorded versions of web")
    print(f"  lifecycle.history:  {hist['history']:8.3f} ms  "
          f"(target < {HISTORY_TARGET_MS} ms)  CPU {hist['history_cpu']:.3f} ms")  # fmt: skip
    print(f"  baseline, full Version records (registry.history): {hist['full_records']:.1f} ms  "
          f"ratio {hist['history'] / hist['full_records']:.2f}x "
          f"(inputs {hist['inputs_bytes'] / 1024:.1f} KiB each)")  # fmt: skip
    print(f"  lifecycle.outdated: {hist['outdated']:8.3f} ms")
    print(f"  lifecycle.gc_plan:  {hist['gc_plan']:8.3f} ms")
    print(f"  query plan:         {hist['plan']}")
    ok = fp["fingerprint"] < FINGERPRINT_TARGET_MS and hist["history"] < HISTORY_TARGET_MS
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
