"""The PostgreSQL registry with the real CLI, bakes and server: a history copied from SQLite, two
checkouts baking against one database, kill -9 inside a record, and a server that goes away.

The server is a throwaway cluster of Debian's postgresql package on a unix socket (tests/conftest.py
`postgres`, one per pytest worker); the tests that stop it start a cluster of their own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import REGISTRY_DB, Sandbox, clone_sandbox
from kiln.registry import Registry
from postgres_cluster import PostgresCluster, throwaway_cluster


def _read(box: Sandbox, url: str, *args: str) -> Any:
    proc = box.invoke(*args, "--json", env={"KILN_REGISTRY_URL": url}, check=True)
    return json.loads(proc.stdout)


def _everything(box: Sandbox, url: str) -> dict[str, Any]:
    """What `history --json` and `show --json` print of every role and version in url."""
    seen: dict[str, Any] = {}
    for role in ("debian-bookworm", "base", "web"):
        seen[role] = history = _read(box, url, "history", role)
        for entry in history["versions"]:
            number = entry["version"]
            seen[f"{role} v{number}"] = _read(box, url, "show", role, "--version", str(number))
    return seen


def test_registry_copy_moves_a_real_history_losslessly(
    baked_clone: Sandbox, postgres: PostgresCluster
) -> None:
    box = baked_clone
    box.invoke("promote", "web", "1", "--channel", "prod", "--reason", "first", check=True)
    box.invoke("deploy", "web", "prod", check=True)
    box.invoke("revoke", "base", "1", "--reason", "CVE-2026-0001", check=True)
    sqlite_url = f"sqlite:///{box.root / REGISTRY_DB}"
    before = _everything(box, sqlite_url)
    assert before["web"]["deployments"] and before["web"]["channel_log"]

    url = postgres.new_database()
    copied = _read(box, sqlite_url, "registry-copy", "--to", url)["rows"]
    assert copied["versions"] == 3 and copied["deployments"] == 1 and copied["test_runs"] >= 1
    assert _everything(box, url) == before

    again = box.invoke("registry-copy", "--to", url, env={"KILN_REGISTRY_URL": sqlite_url})
    assert again.returncode != 0 and "is not empty" in again.stderr
    # The copy goes on where the original left off: the next number is never one used before.
    with Registry(url) as registry:
        assert registry.allocate_version("web") == 2


def test_two_checkouts_bake_at_once_against_one_postgresql(
    baked_clone: Sandbox, baked_sandbox: Sandbox, postgres: PostgresCluster, tmp_path: Any
) -> None:
    """Two checkouts of one project, each with its own .kiln/, share one PostgreSQL registry and
    bake web with different variables at the same time: two distinct versions, none twice."""
    url = postgres.new_database()
    first = baked_clone
    first.invoke("registry-copy", "--to", url, check=True)
    second = clone_sandbox(baked_sandbox, tmp_path / "second")
    try:
        first.set_web_variables(web_message="from the first checkout")
        second.set_web_variables(web_message="from the second checkout")
        team = {"KILN_REGISTRY_URL": url}
        bakes = [box.popen("bake", "web", env=team) for box in (first, second)]
        outputs = [proc.communicate(timeout=900) for proc in bakes]
        for proc, (out, err) in zip(bakes, outputs, strict=True):
            assert proc.returncode == 0, f"{out}\n{err}"
        with Registry(url) as registry:
            webs = registry.history("web")
            assert sorted(v.version for v in webs) == [1, 2, 3]
            refs = {v.artifact("docker").ref for v in webs}  # type: ignore[union-attr]
            assert len(refs) == 3, refs
        assert any("waiting for it" in out for out, _ in outputs), "no bake waited for the lock"
    finally:
        second.cleanup()


@pytest.fixture
def own_postgres() -> Iterator[PostgresCluster]:
    """A cluster of this test's own: the tests below stop it."""
    with throwaway_cluster() as cluster:
        yield cluster


#: Records web with a package manifest big enough to be killed half-way through.
RECORD_SLOWLY = """
import sys
from dataclasses import replace
sys.path.insert(0, sys.argv[2])
from conftest import parent_version
from kiln.registry import Package, Registry

with Registry(sys.argv[1]) as registry:
    number = registry.allocate_version("web")
    packages = [Package(f"package-{n}", "1.0", "amd64") for n in range(400_000)]
    print("recording", number, flush=True)
    registry.record_version(replace(parent_version("web", number)), packages=packages)
    print("recorded", flush=True)
"""


def test_kill_9_inside_a_record_leaves_no_partial_version(postgres: PostgresCluster) -> None:
    url = postgres.new_database()
    units = str(Path(__file__).resolve().parents[1] / "unit")
    proc = subprocess.Popen(
        [sys.executable, "-c", RECORD_SLOWLY, url, units], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("recording 1")
        # Watched with plain psycopg: opening a Registry would queue behind the record's lock.
        with psycopg.connect(url, autocommit=True) as watch:
            deadline = time.monotonic() + 60
            while not _writing(watch) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _writing(watch), "the record never started writing its packages"
            os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    with Registry(url) as registry:
        assert registry.history("web") == [] and registry.packages("web", 1) == []
        assert registry.allocate_version("web") == 2  # and the number it took stays used


def _writing(watch: psycopg.Connection[Any]) -> bool:
    """The record's transaction is open and inserting its packages."""
    row = watch.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE xact_start IS NOT NULL"
        " AND query LIKE 'INSERT INTO packages%%'"
    ).fetchone()
    return bool(row and row[0])


def test_a_postgresql_that_stops_mid_bake_is_named_and_loses_nothing(
    baked_clone: Sandbox, own_postgres: PostgresCluster
) -> None:
    box = baked_clone
    url = own_postgres.new_database()
    box.invoke("registry-copy", "--to", url, check=True)
    with Registry(url) as registry:
        before = [v.summary() for role in registry.roles() for v in registry.history(role)]
    box.set_web_variables(web_message="baked while the database went away")
    bake = box.popen("bake", "web", env={"KILN_REGISTRY_URL": url})
    try:
        deadline = time.monotonic() + 600
        while not box.containers() and bake.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert box.containers(), "the bake never started its builder"
        own_postgres.stop()
        out, err = bake.communicate(timeout=600)
    finally:
        bake.kill()
    assert bake.returncode not in (0, None), out
    assert f"registry {url.split('?')[0]}" in err, err
    assert box.containers() == [], "the bake left its builder behind"
    own_postgres.start()
    with Registry(url) as registry:
        after = [v.summary() for role in registry.roles() for v in registry.history(role)]
    assert after == before
