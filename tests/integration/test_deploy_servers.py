"""Deploy for real: replace running web servers (systemd containers) from a channel's version.

One sandbox with two baked versions of web (v1 "Hello from kiln", v2 "v2") serves every test;
each test first brings the servers into the state it starts from.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Sandbox, clone_sandbox
from kiln import deploy as kd
from kiln.registry import Deployment, actor

pytestmark = pytest.mark.integration

PAGE_CHECK = (
    "python3",
    "-c",
    "import urllib.request as u; print(u.urlopen('http://127.0.0.1/', timeout=2).read().decode())",
)


@pytest.fixture(scope="module")
def box(baked_sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    sandbox = clone_sandbox(baked_sandbox, tmp_path_factory.mktemp("deploy"))  # web v1 baked
    try:
        sandbox.set_web_variables(web_title="v2")
        sandbox.invoke("bake", "web", check=True)
        with sandbox.registry() as registry:
            assert [v.version for v in registry.history("web")] == [2, 1]
            # The acceptance-test gate is another issue: mark both versions tested by hand.
            for number in (1, 2):
                registry.set_status("web", number, "tested")
            with registry.transaction() as tx:
                for channel, number in (("stable", 1), ("prod", 2)):
                    tx.set_channel(
                        role="web", channel=channel, version=number, action="promote",
                        actor=actor(),
                    )  # fmt: skip
        yield sandbox
    finally:
        leftovers = sandbox.docker(
            "ps", "-aq", "--filter", f"label={kd.LABEL_NAMESPACE}={sandbox.namespace}", check=False
        ).split()
        if leftovers:
            subprocess.run(["docker", "rm", "-f", "-v", *leftovers], capture_output=True)
        sandbox.cleanup()


# -- helpers ----------------------------------------------------------------------------------
def servers(box: Sandbox) -> dict[str, dict[str, str]]:
    """name -> {id, version, state} of every deployed container of the sandbox."""
    out = box.docker(
        "ps", "-a", "--filter", f"label={kd.LABEL_NAMESPACE}={box.namespace}",
        "--format", '{{.Names}} {{.ID}} {{.Label "kiln.deploy.version"}} {{.State}}',
    )  # fmt: skip
    rows = [line.split() for line in out.splitlines()]
    return {name: {"id": cid, "version": v, "state": s} for name, cid, v, s in rows}


def page(name: str) -> str | None:
    """The page the instance serves on 127.0.0.1:80 inside it, or None if it serves none."""
    proc = subprocess.run(
        ["docker", "exec", name, *PAGE_CHECK], capture_output=True, text=True, timeout=30
    )
    return proc.stdout if proc.returncode == 0 else None


def healthy_count(box: Sandbox) -> int:
    return sum(page(name) is not None for name in servers(box))


def ensure(box: Sandbox, channel: str, replicas: int) -> dict[str, dict[str, str]]:
    """Bring the servers to `replicas` instances of channel's version (a no-op if they are)."""
    box.invoke("deploy", "web", "--channel", channel, "--replicas", str(replicas), check=True)
    now = servers(box)
    assert len(now) == replicas
    return now


def last_deployment(box: Sandbox) -> Deployment:
    with box.registry() as registry:
        return registry.deployments("web")[0]


def free_port_range(size: int) -> int:
    for start in range(23000, 40000, 97):
        try:
            for port in range(start, start + size):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return start
    raise AssertionError("no free port range")


# -- tests ------------------------------------------------------------------------------------
def test_rolling_deploy_keeps_healthy_servers_at_every_step(box: Sandbox) -> None:
    before = ensure(box, "stable", 2)
    assert {s["version"] for s in before.values()} == {"1"}

    observed: list[tuple[str, str, int, int]] = []
    low_water: list[int] = []
    stop = threading.Event()

    def poll() -> None:  # between and during steps, as fast as docker exec allows
        while not stop.wait(0.1):
            low_water.append(healthy_count(box))

    def on_step(step: kd.DeployStep) -> None:
        observed.append((step.kind, step.instance, healthy_count(box), len(servers(box))))

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        result = kd.deploy(box.project(), "web", channel="prod", replicas=2, on_step=on_step)
    finally:
        stop.set()
        poller.join(timeout=60)

    assert result.result == "succeeded"
    assert [kind for kind, *_ in observed] == ["started", "healthy", "removed"] * 2
    assert min(healthy for _, _, healthy, _ in observed) >= 1  # N-1 of N=2, at every step
    assert low_water and min(low_water) >= 1, low_water
    after = servers(box)
    assert set(after) == set(result.started) and set(after).isdisjoint(before)
    for name in after:
        assert re.fullmatch(rf"{box.namespace}-web-v2-[0-9a-f]{{6}}", name)
        assert "<title>v2</title>" in (page(name) or "")
        labels = json.loads(box.docker("inspect", "--format", "{{json .Config.Labels}}", name))
        assert labels[kd.LABEL_ROLE] == "web" and labels[kd.LABEL_VERSION] == "2"
        assert labels[kd.LABEL_CHANNEL] == "prod" and labels[kd.LABEL_ID] == result.deployment
        assert labels.get("kiln.bake", "") == ""
        assert box.docker("port", name) == ""  # nothing published without --port
    record = last_deployment(box)
    assert (record.result, record.version, record.strategy) == ("succeeded", 2, "rolling")


def test_deploying_the_same_version_twice_is_a_no_op(box: Sandbox) -> None:
    before = ensure(box, "prod", 2)
    again = box.invoke("deploy", "web", "--channel", "prod", "--replicas", "2")
    assert again.returncode == 0, again.stderr
    assert "already run v2" in again.stdout and "nothing to do" in again.stdout
    assert servers(box) == before
    assert last_deployment(box).result == "unchanged"

    recreated = box.invoke(
        "deploy", "web", "--channel", "prod", "--replicas", "2", "--recreate", "--json"
    )
    assert recreated.returncode == 0, recreated.stderr
    result = json.loads(recreated.stdout)
    assert result["result"] == "succeeded" and sorted(result["removed"]) == sorted(before)
    assert set(servers(box)).isdisjoint(before)


def test_a_failing_health_check_rolls_back_and_leaves_the_old_servers(box: Sandbox) -> None:
    before = ensure(box, "prod", 2)
    tasks = box.root / "tasks.py"
    original = tasks.read_text()
    broken = original.replace(
        "health_check=HealthCheck(),",
        "health_check=HealthCheck(command=('ls', '/srv/kiln-missing'), timeout_s=6),",
    )
    assert broken != original
    tasks.write_text(broken)
    try:
        started = time.monotonic()
        failed = box.invoke("deploy", "web", "--channel", "stable", "--replicas", "2")
        took = time.monotonic() - started
    finally:
        tasks.write_text(original)

    assert failed.returncode != 0
    match = re.search(
        rf"instance ({box.namespace}-web-v1-[0-9a-f]{{6}}) did not pass", failed.stderr
    )
    assert match, failed.stderr
    assert "/srv/kiln-missing" in failed.stderr and "No such file or directory" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert took < 60
    assert servers(box) == before  # same containers, same ids, nothing of v1 left behind
    assert all(page(name) is not None for name in before)
    record = last_deployment(box)
    assert (record.result, record.version) == ("failed", 1)
    assert match.group(1) in str(record.detail)


def test_only_tested_versions_are_deployed(box: Sandbox) -> None:
    before = servers(box)
    with box.registry() as registry:
        registry.set_status("web", 1, "baked")
    try:
        refused = box.invoke("deploy", "web", "--channel", "stable")
    finally:
        with box.registry() as registry:
            registry.set_status("web", 1, "tested")
    assert refused.returncode != 0
    assert "web v1 is baked, and only tested versions are deployed" in refused.stderr
    assert servers(box) == before
    assert last_deployment(box).result == "refused"


def test_servers_lists_health_and_whether_the_version_is_current(box: Sandbox) -> None:
    ensure(box, "prod", 2)
    listed = box.invoke("servers", "--json", check=True)
    rows = json.loads(listed.stdout)
    assert len(rows) == 2
    for row in rows:
        assert (row["role"], row["version"], row["channel"]) == ("web", 2, "prod")
        assert (row["health"], row["standing"]) == ("healthy", "current")
        assert row["age_s"] >= 0
    table = box.invoke("servers", "-r", "web", check=True).stdout
    assert table.splitlines()[0].split()[:3] == ["NAME", "ROLE", "VERSION"]
    assert table.count("healthy") == 2 and table.count("current") == 2

    with box.registry() as registry, registry.transaction() as tx:
        tx.set_channel(role="web", channel="prod", version=1, action="t", actor="t")
    try:
        rows = json.loads(box.invoke("servers", "--json", check=True).stdout)
        assert {row["standing"] for row in rows} == {"outdated"}
        unpinned = box.invoke("drift", "-r", "web")
        assert unpinned.returncode != 0
        assert "runs web v2, which no channel points at" in unpinned.stdout
    finally:
        with box.registry() as registry, registry.transaction() as tx:
            tx.set_channel(role="web", channel="prod", version=2, action="t", actor="t")


def test_drift_reports_a_patched_file_and_redeploying_clears_it(box: Sandbox) -> None:
    now = ensure(box, "prod", 2)
    clean = box.invoke("drift", "-r", "web")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "no drift: 2 server(s)" in clean.stdout

    patched = sorted(now)[0]
    box.docker("exec", patched, "sh", "-c", "echo x > /etc/patched")
    found = box.invoke("drift", "-r", "web")
    assert found.returncode != 0
    assert f"{patched} (web v2) drifted" in found.stdout
    assert re.search(r"added\s+/etc/patched", found.stdout)
    assert "invoke deploy web --channel prod --recreate" in found.stderr
    report = json.loads(box.invoke("drift", "--json").stdout)
    assert [item["name"] for item in report if item["drifted"]] == [patched]

    box.invoke("deploy", "web", "--channel", "prod", "--replicas", "2", "--recreate", check=True)
    assert box.invoke("drift").returncode == 0


def test_rolling_and_blue_green_wall_time_with_ports(box: Sandbox) -> None:
    """Three replicas, published on 127.0.0.1 from a free port up; prints the wall times."""
    ensure(box, "prod", 3)
    port = free_port_range(6)
    timings: dict[str, float] = {}
    for strategy, channel, version in (("rolling", "stable", "1"), ("blue-green", "prod", "2")):
        started = time.monotonic()
        box.invoke(
            "deploy", "web", "--channel", channel, "--replicas", "3", "--strategy", strategy,
            "--port", str(port), check=True,
        )  # fmt: skip
        timings[strategy] = time.monotonic() - started
        now = servers(box)
        assert {s["version"] for s in now.values()} == {version} and len(now) == 3
        published = []
        for name in now:
            mapping = box.docker("port", name, "80")
            assert re.fullmatch(r"127\.0\.0\.1:\d+", mapping), mapping
            published.append(int(mapping.split(":")[1]))
        assert all(port <= p < port + 6 for p in published)
        with urllib.request.urlopen(f"http://127.0.0.1:{min(published)}/", timeout=5) as reply:
            assert reply.status == 200
    durations = {d.strategy: d.duration_s for d in reversed(_deployments(box)[:2])}
    print(
        f"\n3-replica deploy wall time: rolling {timings['rolling']:.1f} s "
        f"(recorded {durations['rolling']:.1f} s), blue-green {timings['blue-green']:.1f} s "
        f"(recorded {durations['blue-green']:.1f} s)"
    )
    Path(box.root.parent / "deploy-timings.json").write_text(json.dumps(timings))


def test_nothing_is_left_but_the_running_servers(box: Sandbox) -> None:
    labelled = set(servers(box))
    assert all(s["state"] == "running" for s in servers(box).values())
    assert set(box.containers()) == {servers(box)[n]["id"] for n in labelled}


def _deployments(box: Sandbox) -> list[Deployment]:
    with box.registry() as registry:
        return registry.deployments("web")
