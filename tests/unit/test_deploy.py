"""Unit tests of kiln.deploy against a fake container engine: rolling and blue-green order, the
capacity invariant, failure and rollback, refusals, records, drift filtering, and the boundary
(deploy never loads Ansible or bake code and runs nothing but docker)."""

from __future__ import annotations

import ast
import inspect
import json
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kiln import deploy as kd
from kiln.errors import DeployError, ImageMoved, ToolError
from kiln.model import HealthCheck, Project
from kiln.registry import Artifact, Deployment, Registry, Version, utc_now

REPO = Path(__file__).resolve().parents[2]
DEPLOY_PKG = REPO / "lib" / "kiln" / "deploy"
NS = "unitns"
FAST_CHECK = HealthCheck(command=("check-health",), timeout_s=0.3, interval_s=0.01)


# -- a fake engine --------------------------------------------------------------------------------
@dataclass
class Box:
    name: str
    image: str
    labels: dict[str, str]
    port: int | None
    started_at: str
    state: str = "running"
    passed_check: bool = False
    diff: list[tuple[str, str]] = field(default_factory=list)


class FakeEngine:
    """Containers in a dict; records every start and removal and the fewest instances serving."""

    def __init__(self) -> None:
        self.images = {f"{NS}/web:{n}": f"sha256:{n}{n}{n}" for n in (1, 2, 3)}
        self.boxes: dict[str, Box] = {}
        self.events: list[tuple[str, str]] = []
        self.unhealthy_images: set[str] = set()
        # Fail the health check of the n-th (1-based) instance of an image: {image: n}.
        self.fail_nth: dict[str, int] = {}
        self.execs: list[tuple[str, tuple[str, ...]]] = []
        self.min_serving: int | None = None
        self.foreign_ports: set[int] = set()
        self.stop_calls: list[list[str]] = []
        self._clock = 0

    def serving(self) -> int:
        return sum(1 for b in self.boxes.values() if b.state == "running" and b.passed_check)

    def _note(self) -> None:
        now = self.serving()
        self.min_serving = now if self.min_serving is None else min(self.min_serving, now)

    def start(
        self, image: str, *, name: str, labels: Mapping[str, str], host_port: int | None
    ) -> None:
        assert name not in self.boxes
        assert host_port is None or all(b.port != host_port for b in self.boxes.values())
        self._clock += 1
        self.boxes[name] = Box(
            name, image, dict(labels), host_port, f"2026-01-01T00:00:{self._clock:02d}.5Z"
        )
        self.events.append(("start", name))
        if host_port in self.foreign_ports:
            # Like `docker run`: the container is created, then cannot start.
            self.boxes[name].state = "created"
            raise ToolError(f"docker run failed: port {host_port} is already allocated")

    def exec(self, name: str, command: Sequence[str], *, timeout: float) -> tuple[int, str]:
        self.execs.append((name, tuple(command)))
        box = self.boxes.get(name)
        if box is None or box.state != "running":
            return 1, f"container {name} is not running"
        nth = [b.name for b in self.boxes.values() if b.image == box.image].index(name) + 1
        if box.image in self.unhealthy_images or self.fail_nth.get(box.image) == nth:
            return 1, "test: /srv/missing: No such file"
        box.passed_check = True
        return 0, ""

    def diff(self, name: str) -> list[tuple[str, str]]:
        return list(self.boxes[name].diff)

    def stop(self, names: Sequence[str]) -> None:
        self.stop_calls.append(list(names))
        for name in names:
            if name in self.boxes:
                self.boxes[name].state = "exited"
            self.events.append(("stop", name))
        self._note()

    def remove(self, name: str) -> None:
        self.boxes.pop(name, None)
        self.events.append(("remove", name))
        self._note()

    def servers(self, namespace: str, role: str | None = None) -> list[kd.Server]:
        found = []
        for box in self.boxes.values():
            labels = box.labels
            if labels.get(kd.LABEL_NAMESPACE) != namespace:
                continue
            if role is not None and labels.get(kd.LABEL_ROLE) != role:
                continue
            found.append(
                kd.Server(
                    name=box.name,
                    container_id=f"id-{box.name}",
                    role=labels[kd.LABEL_ROLE],
                    version=int(labels[kd.LABEL_VERSION]),
                    channel=labels[kd.LABEL_CHANNEL],
                    deployment=labels[kd.LABEL_ID],
                    image=box.image,
                    image_id=self.images.get(box.image, "gone"),
                    state=box.state,
                    started_at=box.started_at,
                    ports=(box.port,) if box.port else (),
                )
            )
        return sorted(found, key=lambda s: s.started_at)

    def image_id(self, ref: str) -> str | None:
        if ref in self.images.values():  # an image id names its image, as docker's do
            return ref
        return self.images.get(ref)

    # helpers for assertions
    def names(self, version: int | None = None) -> list[str]:
        return [
            b.name
            for b in self.boxes.values()
            if version is None or b.labels[kd.LABEL_VERSION] == str(version)
        ]

    def reset_watch(self) -> None:
        self.events.clear()
        self.min_serving = None
        for box in self.boxes.values():
            box.passed_check = box.state == "running"


# -- a project and registry on disk ---------------------------------------------------------------
def version_record(number: int, status: str) -> Version:
    return Version(
        role="web", version=number, kind="role", target="docker", fingerprint=f"{number}" * 64,
        parent_role="base", parent_version=1, status=status, git_commit="0" * 40,
        git_dirty=False, tools={}, inputs={}, timings={}, bake_seconds=1.0, created_at=utc_now(),
        artifacts=(Artifact("docker", f"{NS}/web:{number}", f"sha256:{number}{number}{number}"),),
    )  # fmt: skip


@dataclass
class World:
    project: Project
    registry: Registry
    engine: FakeEngine

    def point(self, channel: str, version: int) -> None:
        with self.registry.transaction() as tx:
            tx.set_channel(
                role="web", channel=channel, version=version, action="promote", actor="t"
            )

    def deploy(self, channel: str, **kwargs: object) -> kd.DeployResult:
        return kd.deploy(self.project, "web", channel=channel, engine=self.engine, **kwargs)

    def deployments(self) -> list[Deployment]:
        return self.registry.deployments("web")


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("KILN_ACTOR", "tester@unit")
    for role in ("common", "web"):
        (tmp_path / "roles" / role / "tasks").mkdir(parents=True)
        (tmp_path / "roles" / role / "tasks" / "main.yml").write_text("---\n[]\n")
    project = Project(tmp_path, image_namespace=NS)
    base = project.base("debian-bookworm")
    project.role("base", parent=base, ansible_roles=["common"])
    project.role("web", parent="base", health_check=FAST_CHECK)
    registry = Registry(project.registry_url)
    for number in (1, 2, 3):
        registry.record_version(version_record(number, "tested"))
    world = World(project, registry, FakeEngine())
    world.point("stable", 1)
    world.point("prod", 2)
    try:
        yield world
    finally:
        registry.close()


def running(world: World, replicas: int, channel: str = "stable") -> list[str]:
    world.deploy(channel, replicas=replicas)
    world.engine.reset_watch()
    return world.engine.names()


# -- rolling and blue-green -----------------------------------------------------------------------
def test_rolling_replaces_one_at_a_time_and_never_lowers_capacity(world: World) -> None:
    old = running(world, 3)
    steps: list[kd.DeployStep] = []
    result = world.deploy("prod", replicas=3, on_step=steps.append)

    assert result.result == "succeeded" and result.version == 2
    kinds = [kind for kind, _ in world.engine.events if kind != "stop"]
    assert kinds == ["start", "remove"] * 3
    assert [name for kind, name in world.engine.events if kind == "remove"] == old
    assert world.engine.min_serving == 3
    assert world.engine.stop_calls == [[name] for name in old]
    assert all(len(step.serving) >= 3 for step in steps)
    assert [s.kind for s in steps] == ["started", "healthy", "removed"] * 3
    new = world.engine.names()
    assert new == list(result.started) and len(new) == 3
    for name in new:
        box = world.engine.boxes[name]
        assert name.startswith(f"{NS}-web-v2-")
        assert box.image == f"{NS}/web:2" and box.port is None
        assert box.labels == {
            kd.LABEL_NAMESPACE: NS, kd.LABEL_ROLE: "web", kd.LABEL_VERSION: "2",
            kd.LABEL_ID: result.deployment, kd.LABEL_CHANNEL: "prod",
        }  # fmt: skip
        assert "kiln.bake" not in box.labels


def test_blue_green_starts_every_new_instance_before_removing_any(world: World) -> None:
    old = running(world, 3)
    world.engine.stop_calls.clear()
    result = world.deploy("prod", replicas=3, strategy="blue-green")
    kinds = [kind for kind, _ in world.engine.events if kind != "stop"]
    assert kinds == ["start"] * 3 + ["remove"] * 3
    assert world.engine.stop_calls == [old]  # stopped together, once all new ones serve
    assert world.engine.min_serving == 3
    assert world.engine.names(2) == list(result.started)


def test_old_instances_are_stopped_gracefully_before_removal(world: World) -> None:
    old = running(world, 1)
    world.deploy("prod")
    assert ("stop", old[0]) in world.engine.events
    events = world.engine.events
    assert events.index(("stop", old[0])) < events.index(("remove", old[0]))


def test_scaling_down_removes_the_surplus_after_the_new_ones_serve(world: World) -> None:
    running(world, 3)
    world.deploy("prod", replicas=1)
    assert len(world.engine.names(2)) == 1 and world.engine.names(1) == []
    assert world.engine.min_serving == 1


def test_first_deploy_starts_from_nothing(world: World) -> None:
    result = world.deploy("prod", replicas=2)
    assert result.result == "succeeded" and result.removed == ()
    assert len(world.engine.names(2)) == 2


# -- failure --------------------------------------------------------------------------------------
def test_an_unhealthy_new_instance_stops_the_deploy_and_leaves_the_old_ones(world: World) -> None:
    old = running(world, 2)
    world.engine.unhealthy_images.add(f"{NS}/web:2")
    with pytest.raises(DeployError) as caught:
        world.deploy("prod", replicas=2)
    message = str(caught.value)
    failed = [name for kind, name in world.engine.events if kind == "start"]
    assert len(failed) == 1
    assert f"instance {failed[0]} did not pass its health check" in message
    assert "/srv/missing: No such file" in message and "check-health" in message
    assert world.engine.names() == old
    assert all(world.engine.boxes[n].state == "running" for n in old)
    assert world.deployments()[0].result == "failed"
    assert world.deployments()[0].version == 2


def test_blue_green_failure_removes_every_new_instance(world: World) -> None:
    old = running(world, 2)
    world.engine.fail_nth[f"{NS}/web:2"] = 2
    with pytest.raises(DeployError, match="did not pass its health check"):
        world.deploy("prod", replicas=2, strategy="blue-green")
    assert world.engine.names() == old
    assert [k for k, _ in world.engine.events] == ["start", "start", "remove", "remove"]


def test_a_failure_mid_roll_puts_the_removed_old_instances_back(world: World) -> None:
    running(world, 3)
    world.engine.fail_nth[f"{NS}/web:2"] = 2
    steps: list[kd.DeployStep] = []
    with pytest.raises(DeployError) as caught:
        world.deploy("prod", replicas=3, on_step=steps.append)
    assert world.engine.names(2) == []
    assert len(world.engine.names(1)) == 3
    assert world.engine.min_serving == 3
    assert [s.kind for s in steps] == [
        "started", "healthy", "removed",  # new 1 takes old 1's place
        "started", "failed",  # new 2 fails
        "started", "healthy", "restored", "removed",  # old 1 comes back, new 1 goes
    ]  # fmt: skip
    assert "serving now:" in str(caught.value)


def test_an_interrupted_deploy_removes_its_unserving_instances(world: World) -> None:
    old = running(world, 2)

    def interrupt(step: kd.DeployStep) -> None:
        if step.kind == "started":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        world.deploy("prod", replicas=2, on_step=interrupt)
    assert world.engine.names() == old
    assert world.deployments()[0].result == "interrupted"


def test_a_container_that_fails_to_start_is_removed(world: World) -> None:
    old = running(world, 1)
    world.engine.foreign_ports.add(9000)
    with pytest.raises(DeployError, match=r"could not start .* port 9000 is already allocated"):
        world.deploy("prod", port=9000)
    assert world.engine.names() == old
    assert world.deployments()[0].result == "failed"


# -- refusals, no-ops and records ----------------------------------------------------------------
@pytest.mark.parametrize("status", ["baked", "untested", "failed", "revoked"])
def test_only_tested_versions_are_deployed(world: World, status: str) -> None:
    world.registry.set_status("web", 2, status, "a reason")
    with pytest.raises(DeployError, match=f"web v2 is {status} \\(a reason\\), and only tested"):
        world.deploy("prod")
    assert world.engine.events == []
    record = world.deployments()[0]
    assert (record.result, record.version) == ("refused", 2)


def test_a_version_built_on_a_revoked_parent_is_refused(world: World) -> None:
    with world.registry.transaction() as tx:
        tx.mark_parent_revoked([("web", 2)])
    with pytest.raises(DeployError, match="revoked parent"):
        world.deploy("prod")


def test_unknown_and_empty_channels_are_refused(world: World) -> None:
    with pytest.raises(DeployError, match=r"no channel 'qa' \(its channels: prod, stable\)"):
        world.deploy("qa")
    with world.registry.transaction() as tx:
        tx.set_channel(role="web", channel="empty", version=None, action="t", actor="t")
    with pytest.raises(DeployError, match="points at no version"):
        world.deploy("empty")
    assert [d.result for d in world.deployments()] == ["refused", "refused"]


def test_a_missing_image_is_refused(world: World) -> None:
    del world.engine.images[f"{NS}/web:2"]
    with pytest.raises(DeployError, match=f"image {NS}/web:2 of web v2 is missing from the"):
        world.deploy("prod")
    assert world.engine.events == []
    assert [d.result for d in world.deployments()] == ["refused"]


def test_a_retagged_image_is_refused_naming_both_images_and_the_way_back(world: World) -> None:
    world.engine.images[f"{NS}/web:2"] = "sha256:111"  # the tag now names web v1's image
    world.engine.images["elsewhere/web:9"] = "sha256:222"  # the recorded one is still there
    with pytest.raises(DeployError) as refused:
        world.deploy("prod")
    message = str(refused.value)
    assert f"web v2's image {NS}/web:2 was recorded as sha256:222" in message
    assert "now names another image, sha256:111" in message
    assert f"`docker tag sha256:222 {NS}/web:2` puts the tag back" in message
    assert "`invoke bake web --force`" in message and "promote it to prod" in message
    moved = refused.value.__cause__
    assert isinstance(moved, ImageMoved) and (moved.role, moved.version) == ("web", 2)
    assert (moved.ref, moved.recorded_id, moved.current_id) == (
        f"{NS}/web:2",
        "sha256:222",
        "sha256:111",
    )
    assert world.engine.events == []
    assert [d.result for d in world.deployments()] == ["refused"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"strategy": "canary"}, "unknown strategy"),
        ({"replicas": 0}, "replicas must be between"),
        ({"port": 65535, "replicas": 2}, "leaves no room"),
    ],
)
def test_bad_arguments_are_refused(world: World, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(DeployError, match=match):
        world.deploy("prod", **kwargs)


def test_deploying_the_same_version_again_is_a_no_op(world: World) -> None:
    old = running(world, 2, channel="prod")
    result = world.deploy("prod", replicas=2)
    assert result.result == "unchanged"
    assert "already run v2" in result.message and "nothing to do" in result.message
    assert world.engine.events == [] and world.engine.names() == old
    again = world.deploy("prod", replicas=2, recreate=True)
    assert again.result == "succeeded" and set(world.engine.names()).isdisjoint(old)
    different_count = world.deploy("prod", replicas=3)
    assert different_count.result == "succeeded"


def test_every_deployment_is_recorded(world: World) -> None:
    result = world.deploy("prod", replicas=2, strategy="blue-green")
    record = world.deployments()[0]
    assert record.deployment == result.deployment
    assert record.actor == "tester@unit"
    assert (record.role, record.version, record.channel) == ("web", 2, "prod")
    assert (record.replicas, record.strategy, record.result) == (
        2,
        "blue-green",
        "succeeded",
    )
    assert record.duration_s == result.duration_s >= 0
    assert record.started_at.endswith("Z")
    assert result.started[0] in str(record.detail)


def test_ports_are_published_from_the_given_port_up_without_clashes(world: World) -> None:
    world.deploy("stable", replicas=2, port=8000)
    assert sorted(b.port for b in world.engine.boxes.values()) == [8000, 8001]
    world.deploy("prod", replicas=2, port=8000)
    assert sorted(b.port for b in world.engine.boxes.values()) == [8000, 8002]
    world.deploy("stable", replicas=2, port=8000, strategy="blue-green")
    assert sorted(b.port for b in world.engine.boxes.values()) == [8001, 8003]


def test_docker_engine_publishes_on_loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, object]] = []
    monkeypatch.setattr(kd.engine, "start_instance", lambda image, **kw: calls.append(kw))
    kd.DockerEngine().start("img", name="n", labels={}, host_port=8080)
    kd.DockerEngine().start("img", name="m", labels={}, host_port=None)
    assert calls[0]["extra_flags"] == ("--restart", "unless-stopped", "-p", "127.0.0.1:8080:80")
    assert calls[1]["extra_flags"] == ("--restart", "unless-stopped")


def test_a_role_without_a_health_check_waits_for_systemd(world: World) -> None:
    role = world.project.role_named("web")
    assert kd.health_check_of(role) is FAST_CHECK
    bare = world.project.role("bare", parent="base", ansible_roles=["web"])
    assert kd.health_check_of(bare).command == ("systemctl", "is-system-running")


# -- servers and drift ----------------------------------------------------------------------------
def test_servers_reports_health_and_standing(world: World) -> None:
    world.deploy("prod", replicas=2)
    names = world.engine.names()
    world.engine.boxes[names[1]].state = "exited"
    statuses = kd.servers(world.project, "web", engine=world.engine)
    assert [(s.health, s.standing) for s in statuses] == [
        ("healthy", "current"),
        ("stopped", "current"),
    ]
    world.point("prod", 3)
    assert {s.standing for s in kd.servers(world.project, engine=world.engine)} == {"outdated"}
    world.registry.set_status("web", 2, "revoked", "CVE")
    assert {s.standing for s in kd.servers(world.project, engine=world.engine)} == {"revoked"}
    table = kd.server_table(statuses)
    assert table[0].split() == [
        "NAME", "ROLE", "VERSION", "CHANNEL", "AGE", "HEALTH", "STANDING", "PORTS",
    ]  # fmt: skip
    assert "v2" in table[1] and "prod" in table[1]
    assert json.dumps([s.to_dict() for s in statuses])


def test_servers_runs_only_the_health_check(world: World) -> None:
    world.deploy("prod")
    world.engine.execs.clear()
    kd.servers(world.project, engine=world.engine)
    assert [cmd for _, cmd in world.engine.execs] == [FAST_CHECK.command]


CLEAN_INSTANCE_DIFF = [
    ("C", "/etc"),
    ("C", "/etc/mtab"),
    ("C", "/var"),
    ("C", "/var/log"),
    ("C", "/var/log/journal"),
    ("A", "/var/log/journal/2f61/system@0006.journal~"),
    ("C", "/var/log/nginx/access.log"),
    ("C", "/var/log/wtmp"),
]


def test_a_clean_instance_shows_no_drift(world: World) -> None:
    allow = (*world.project.role_named("web").drift_allow, *kd.BASELINE_DRIFT_ALLOW)
    assert kd.significant_changes(CLEAN_INSTANCE_DIFF, allow) == []


def test_changes_outside_the_allow_list_are_reported(world: World) -> None:
    allow = ("/var/log", "/etc/mtab")
    entries = [*CLEAN_INSTANCE_DIFF, ("A", "/etc/patched"), ("D", "/usr/bin/curl"), ("C", "/usr")]
    assert kd.significant_changes(entries, allow) == [
        kd.FileChange("added", "/etc/patched"),
        kd.FileChange("deleted", "/usr/bin/curl"),
    ]
    # A prefix allows a path and what is under it, not a sibling that shares its letters.
    assert kd.significant_changes([("A", "/var/login")], ("/var/log",)) == [
        kd.FileChange("added", "/var/login")
    ]


def test_drift_reports_changed_files_and_unpinned_versions(world: World) -> None:
    world.deploy("prod", replicas=2)
    first, second = world.engine.names()
    world.engine.boxes[first].diff = [*CLEAN_INSTANCE_DIFF, ("A", "/etc/patched")]
    world.engine.boxes[second].diff = list(CLEAN_INSTANCE_DIFF)
    report = kd.drift(world.project, "web", engine=world.engine)
    assert [item.drifted for item in report] == [True, False]
    assert report[0].changes == (kd.FileChange("added", "/etc/patched"),)
    assert report[0].remedy == "invoke deploy web --channel prod --recreate"
    lines = kd.drift_lines(report)
    assert any("/etc/patched" in line for line in lines)
    assert lines[-1].endswith("invoke deploy web --channel prod --recreate")

    world.point("prod", 3)
    report = kd.drift(world.project, engine=world.engine)
    assert all("which no channel points at" in " ".join(item.problems) for item in report)


def test_drift_only_reads(world: World) -> None:
    world.deploy("prod")
    world.engine.events.clear()
    world.engine.execs.clear()
    kd.drift(world.project, engine=world.engine)
    assert world.engine.events == [] and world.engine.execs == []


def test_instances_of_other_namespaces_are_invisible(world: World) -> None:
    world.deploy("prod")
    other = Project(world.project.root, image_namespace="othernamespace")
    other.role("web", parent=other.base("debian-bookworm"), ansible_roles=["web"])
    assert kd.servers(other, engine=world.engine) == []


# -- small pieces ---------------------------------------------------------------------------------
def test_docker_times_with_nanoseconds_are_read() -> None:
    parsed = kd.parse_docker_time("2026-11-26T11:45:01.123456789Z")
    assert parsed is not None and parsed.microsecond == 123456 and parsed.utcoffset() is not None
    assert kd.parse_docker_time("0001-01-01T00:00:00Z") is None
    assert kd.parse_docker_time("garbage") is None


def test_server_from_inspect_reads_labels_ports_and_state() -> None:
    record = {
        "Id": "abc",
        "Name": "/unitns-web-v2-123456",
        "Image": "sha256:222",
        "Config": {
            "Image": f"{NS}/web:2",
            "Labels": {
                kd.LABEL_ROLE: "web",
                kd.LABEL_VERSION: "2",
                kd.LABEL_CHANNEL: "prod",
                kd.LABEL_ID: "d1",
                kd.LABEL_NAMESPACE: NS,
            },
        },
        "State": {"Status": "running", "StartedAt": "2026-11-26T11:45:01.1Z"},
        "HostConfig": {"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8081"}]}},
    }
    server = kd.server_from_inspect(record)
    assert (server.name, server.version, server.channel, server.ports) == (
        "unitns-web-v2-123456", 2, "prod", (8081,),
    )  # fmt: skip
    assert server.running and server.image == f"{NS}/web:2"


def test_format_age() -> None:
    assert [kd.format_age(s) for s in (5, 65, 7200, 200000)] == ["5s", "1m", "2h", "2d"]


def test_deploy_tasks_are_thin_and_speak_json() -> None:
    # Per-argument help is checked for every task in test_cli.py (reading it consumes it).
    from kiln.cli import servers

    for task in (servers.deploy, servers.servers, servers.drift):
        assert task.__doc__ and len(task.__doc__.strip().splitlines()) == 1
        assert "json" in inspect.signature(task.body).parameters


# -- the boundary ---------------------------------------------------------------------------------
FORBIDDEN_MODULES = ("ansible", "ansible_runner", "kiln.bake", "kiln.packer")


def _forbidden(module: str) -> bool:
    return any(module == f or module.startswith(f"{f}.") for f in FORBIDDEN_MODULES) or (
        module.startswith("ansible")
    )


def test_importing_deploy_loads_no_ansible_and_no_bake_code() -> None:
    code = "import json, sys, kiln.deploy; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    loaded = json.loads(out)
    assert "kiln.deploy" in loaded
    assert [m for m in loaded if _forbidden(m)] == []


def _tree() -> ast.Module:
    """Every module of the deploy package, as one tree."""
    body = [ast.parse(p.read_text(), filename=str(p)) for p in sorted(DEPLOY_PKG.glob("*.py"))]
    return ast.Module(body=[node for module in body for node in module.body], type_ignores=[])


def test_deploy_imports_nothing_that_configures_or_connects() -> None:
    imported: list[str] = []
    for node in ast.walk(_tree()):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            imported.append(node.module or "")
            imported += [f"{node.module}.{alias.name}" for alias in node.names]
    assert imported, "the scan found no imports at all"
    assert [m for m in imported if _forbidden(m)] == []
    # Every process goes through kiln.tools or the docker target, never a shell of its own.
    for module in ("subprocess", "os", "paramiko", "fabric", "pexpect", "shlex"):
        assert module not in imported


def _argv_literals(tree: ast.Module) -> list[list[ast.expr]]:
    """Every list or tuple literal that starts with a string: what could be a command line."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.List | ast.Tuple) and node.elts:
            first = node.elts[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.append(node.elts)
    return found


def test_every_command_deploy_runs_is_a_read_only_or_replacing_docker_verb() -> None:
    tree = _tree()
    runs = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "tools"
    ]
    assert {call.func.attr for call in runs if isinstance(call.func, ast.Attribute)} == {
        "run",
        "docker_image_id",
    }
    verbs = []
    for call in runs:
        if isinstance(call.func, ast.Attribute) and call.func.attr != "run":
            continue
        argv = call.args[0]
        assert isinstance(argv, ast.List), ast.unparse(call)
        words = [e.value for e in argv.elts if isinstance(e, ast.Constant)]
        assert words[0] == "docker", ast.unparse(call)
        verbs.append(words[1])
        if words[1] == "exec":
            # docker exec NAME <the role's health check>: nothing of deploy's own making.
            assert ast.unparse(argv) == "['docker', 'exec', name, *command]"
    assert sorted(verbs) == ["diff", "exec", "inspect", "ps", "stop"]

    words = {
        e.value
        for elts in _argv_literals(tree)
        for e in elts
        if isinstance(e, ast.Constant) and isinstance(e.value, str)
    }
    for word in ("ansible", "ansible-playbook", "ansible-runner", "ssh", "scp", "sftp", "rsync",
                 "packer", "sh", "bash", "cp", "apt-get"):  # fmt: skip
        assert word not in words
    # The only exec deploy's code runs of its own is BOOT_CHECK, which reads systemd's state.
    assert kd.BOOT_CHECK.command == ("systemctl", "is-system-running")


def test_deploy_starts_containers_only_through_the_docker_target() -> None:
    names = {node.id for node in ast.walk(_tree()) if isinstance(node, ast.Name)} | {
        node.attr for node in ast.walk(_tree()) if isinstance(node, ast.Attribute)
    }
    assert {"start_instance", "remove_instance"} <= names
    for name in ("Popen", "system", "check_output", "check_call", "run_packer", "Baker"):
        assert name not in names
