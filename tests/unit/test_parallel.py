"""Parallel bakes: dependency order, the -j limit, failures that stop descendants only."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kiln import parallel
from kiln.bake import BakeOutcome
from kiln.cli import bake_text
from kiln.console import Reporter
from kiln.errors import DefinitionError, ProvisionError
from kiln.model import Project
from kiln.registry import Artifact, Version


def make_project(tmp_path: Path) -> Project:
    """base -> {web, cache}; web -> shop; worker and api on the bare base image."""
    for name in ("common", "web"):
        (tmp_path / "roles" / name / "tasks").mkdir(parents=True)
    project = Project(tmp_path)
    debian = project.base("debian")
    project.role("base", parent=debian, ansible_roles=["common"])
    project.role("web", parent="base", ansible_roles=["web"])
    project.role("cache", parent="base", ansible_roles=["web"])
    project.role("shop", parent="web", ansible_roles=["web"])
    project.role("worker", parent=debian, ansible_roles=["common"])
    return project


def version(role: str, number: int = 1) -> Version:
    return Version(
        role=role, version=number, kind="role", target="docker", fingerprint="f" * 64,
        parent_role=None, parent_version=None, status="tested", git_commit="0" * 40,
        git_dirty=False, tools={}, inputs={}, timings={"provision": 1.0}, bake_seconds=1.5,
        created_at="2026-01-01T00:00:00.000000Z",
        artifacts=(Artifact("docker", f"kiln/{role}:{number}", "sha256:" + "a" * 64, None, 1),),
    )  # fmt: skip


class FakeBaker:
    """Stands in for Baker: records the order of bakes and how many run at once."""

    def __init__(self, log: list[str], lock: threading.Lock, fail: set[str], delay: float) -> None:
        self.log, self.lock, self.fail, self.delay = log, lock, fail, delay
        self.registry = self
        self.running = 0
        self.peak = 0

    def close(self) -> None:
        return

    def bake(self, name: str, *, force: bool = False) -> list[BakeOutcome]:
        with self.lock:
            self.log.append(f"start {name}{' forced' if force else ''}")
            self.running += 1
            self.peak = max(self.peak, self.running)
        time.sleep(self.delay)
        with self.lock:
            self.running -= 1
            self.log.append(f"end {name}")
        if name in self.fail:
            raise ProvisionError(f"bake of {name} v1 failed: Ansible task 'x' failed")
        return [BakeOutcome(version=version(name), baked=True, timings={"provision": 1.0})]


def run(
    project: Project,
    names: list[str],
    *,
    jobs: int,
    fail: frozenset[str] = frozenset(),
    delay: float = 0.05,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[parallel.BatchResult, FakeBaker, str]:
    log: list[str] = []
    fake = FakeBaker(log, threading.Lock(), set(fail), delay)
    # Nothing is up to date: the probe never finds a cached version.
    monkeypatch.setattr(parallel, "_up_to_date", lambda probe, role, memo: None)
    factory: Callable[..., Any] = lambda *_args: fake  # noqa: E731
    out = io.StringIO()
    roles = parallel.select_roles(project, names, all_roles=not names)
    result = parallel.bake_many(
        project, roles, jobs=jobs, reporter=Reporter(out), baker_factory=factory
    )
    return result, fake, out.getvalue()


def test_parents_bake_before_children_and_j_limits_concurrency(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path)
    result, fake, _ = run(project, [], jobs=2, monkeypatch=monkeypatch)
    order = fake.log
    for parent, child in (("base", "web"), ("base", "cache"), ("web", "shop")):
        assert order.index(f"end {parent}") < order.index(f"start {child}")
    assert fake.peak == 2  # worker runs beside base, web beside cache
    assert result.ok and {j.name: j.state for j in result.jobs} == dict.fromkeys(
        ("base", "web", "cache", "shop", "worker"), "baked"
    )


def test_one_job_at_a_time_with_j1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result, fake, _ = run(make_project(tmp_path), [], jobs=1, monkeypatch=monkeypatch)
    assert fake.peak == 1 and result.ok


def test_a_failure_stops_descendants_but_not_unrelated_roles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path)
    result, fake, out = run(project, [], jobs=2, fail=frozenset({"web"}), monkeypatch=monkeypatch)
    states = {j.name: j.state for j in result.jobs}
    assert states == {
        "base": "baked", "web": "failed", "cache": "baked", "shop": "skipped", "worker": "baked",
    }  # fmt: skip
    assert "start shop" not in fake.log
    assert "shop: skipped - its ancestor web failed" in out
    error = parallel.failure(result)
    assert error is not None and "1 role(s) failed (web)" in str(error)
    table = bake_text.summary_table(result)
    assert "web failed:" in table and "Ansible task 'x' failed" in table


def test_named_roles_bring_their_role_ancestors_and_force_only_themselves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path)
    roles = parallel.select_roles(project, ["shop", "worker"], all_roles=False)
    jobs = parallel.plan_jobs(roles, force=True)
    assert [(j.name, j.force, j.parent) for j in jobs] == [
        ("base", False, None), ("web", False, "base"), ("shop", True, "web"),
        ("worker", True, None),
    ]  # fmt: skip


def test_role_specs(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    assert parallel.parse_role_spec("web", project) == (["web"], False)
    assert parallel.parse_role_spec("web,worker", project) == (["web", "worker"], False)
    assert parallel.parse_role_spec("all", project) == ([], True)
    with pytest.raises(DefinitionError, match="unknown role 'nope'"):
        parallel.select_roles(project, ["nope"], all_roles=False)


def test_a_single_failure_is_the_commands_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path)
    result, _, _ = run(
        project, ["worker"], jobs=2, fail=frozenset({"worker"}), monkeypatch=monkeypatch
    )
    error = parallel.failure(result)
    assert isinstance(error, ProvisionError)


def test_an_interrupt_reaches_every_packer_run_packer_started(tmp_path: Path) -> None:
    """Ctrl-C reaches the main thread only: parallel asks kiln.packer to forward it."""
    import sys

    from kiln import packer
    from kiln.redact import Redactor

    script = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGINT, lambda *_: sys.exit(3))\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    ready = threading.Event()
    runs: list[packer.PackerRun] = []

    def on_line(line: str) -> None:
        if line == "ready":
            ready.set()

    def start() -> None:
        with (tmp_path / "packer.log").open("w") as log:
            runs.append(
                packer.run_packer(
                    [sys.executable, "-c", script],
                    cwd=tmp_path,
                    env={"PATH": "/usr/bin:/bin"},
                    events_path=tmp_path / "events.jsonl",
                    log=log,
                    on_line=on_line,
                    on_event=lambda _event: None,
                    redact=Redactor([]),
                )
            )

    worker = threading.Thread(target=start)
    worker.start()
    assert ready.wait(10)
    assert packer.interrupt_running() == 1
    worker.join(10)
    assert runs and runs[0].returncode == 3
    assert packer.interrupt_running() == 0  # a finished packer is forgotten
