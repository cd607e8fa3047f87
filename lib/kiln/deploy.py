"""Deploy by replacement: make a role's running instances equal to the version a channel names.

New containers are started from the version's image, pass the role's health check, then the old
ones are removed; nothing is ever patched in place. `servers` and `drift` only read. This module
runs no Ansible and no SSH: its only process is `docker`, and its only `docker exec` is the role's
own read-only health check. tests/unit/test_deploy.py holds it to that.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from kiln import tools
from kiln.docker import remove_instance, start_instance
from kiln.errors import DeployError, KilnError
from kiln.locks import file_lock
from kiln.model import HealthCheck, Project, Role
from kiln.registry import Registry, Version, actor, utc_now

LABEL_ROLE = "kiln.deploy.role"
LABEL_VERSION = "kiln.deploy.version"
LABEL_ID = "kiln.deploy.id"
LABEL_CHANNEL = "kiln.deploy.channel"
# Several checkouts (and test sandboxes) share one engine: each only ever sees its own servers.
LABEL_NAMESPACE = "kiln.deploy.namespace"

ROLE_PORT = 80
STRATEGIES = ("rolling", "blue-green")
DEPLOYABLE_STATUS = "tested"
MAX_REPLICAS = 64
# Graceful stop for servers being replaced: systemd shuts nginx down and lets requests finish.
STOP_TIMEOUT_S = 10
# Changes every instance shows whatever its role, so no role should have to list them:
# /etc/mtab is rewritten by the engine's init layer when the container is created (seen on a
# clean instance), and dpkg-db-backup.timer writes /var/backups every midnight on Debian.
BASELINE_DRIFT_ALLOW = ("/etc/mtab", "/var/backups")
# A role without a health check is ready when systemd says every unit started.
BOOT_CHECK = HealthCheck(command=("systemctl", "is-system-running"), timeout_s=60, interval_s=0.5)

Outcome = Literal["succeeded", "unchanged", "failed", "refused", "interrupted"]
StepKind = Literal["started", "healthy", "removed", "failed", "restored"]
LogSink = Callable[[str], None]


# -- what is running --------------------------------------------------------------------------
@dataclass(frozen=True)
class Server:
    """One deployed instance, as the engine reports it."""

    name: str
    container_id: str
    role: str
    version: int
    channel: str
    deployment: str
    image: str
    image_id: str
    state: str
    started_at: str
    ports: tuple[int, ...] = ()

    @property
    def running(self) -> bool:
        return self.state == "running"

    def age_s(self, now: datetime | None = None) -> float:
        started = parse_docker_time(self.started_at)
        if started is None:
            return 0.0
        return max(0.0, ((now or datetime.now(UTC)) - started).total_seconds())


@dataclass(frozen=True)
class CheckResult:
    healthy: bool
    output: str
    seconds: float


@dataclass(frozen=True)
class DeployStep:
    """One step of a rollout, handed to on_step: the instances serving right after it."""

    kind: StepKind
    instance: str
    version: int
    serving: tuple[str, ...]


@dataclass(frozen=True)
class DeployResult:
    deployment: str
    role: str
    version: int | None
    channel: str
    strategy: str
    replicas: int
    result: Outcome
    message: str
    started: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    duration_s: float = 0.0
    steps: tuple[DeployStep, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ServerStatus:
    """A server with its health right now and how its version stands against its channel."""

    server: Server
    health: Literal["healthy", "unhealthy", "stopped", "unknown"]
    health_output: str
    standing: Literal["current", "outdated", "revoked"]

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self.server),
            "age_s": round(self.server.age_s(), 1),
            "health": self.health,
            "health_output": self.health_output,
            "standing": self.standing,
        }


@dataclass(frozen=True)
class FileChange:
    kind: Literal["added", "changed", "deleted"]
    path: str


@dataclass(frozen=True)
class InstanceDrift:
    server: Server
    changes: tuple[FileChange, ...]
    problems: tuple[str, ...]

    @property
    def drifted(self) -> bool:
        return bool(self.changes or self.problems)

    @property
    def remedy(self) -> str:
        return f"invoke deploy {self.server.role} --channel {self.server.channel} --recreate"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.server.name,
            "role": self.server.role,
            "version": self.server.version,
            "channel": self.server.channel,
            "drifted": self.drifted,
            "changes": [asdict(c) for c in self.changes],
            "problems": list(self.problems),
            "remedy": self.remedy if self.drifted else None,
        }


# -- the engine -------------------------------------------------------------------------------
class Engine(Protocol):
    """What deploy needs from a container engine; unit tests pass a fake one."""

    def start(
        self, image: str, *, name: str, labels: Mapping[str, str], host_port: int | None
    ) -> None: ...

    def exec(self, name: str, command: Sequence[str], *, timeout: float) -> tuple[int, str]: ...

    def diff(self, name: str) -> list[tuple[str, str]]: ...

    def stop(self, names: Sequence[str]) -> None: ...

    def remove(self, name: str) -> None: ...

    def servers(self, namespace: str, role: str | None = None) -> list[Server]: ...

    def image_id(self, ref: str) -> str | None: ...


class DockerEngine:
    """The local Docker engine. Every process this module runs starts here, with `docker`."""

    def start(
        self, image: str, *, name: str, labels: Mapping[str, str], host_port: int | None
    ) -> None:
        publish = ("-p", f"127.0.0.1:{host_port}:{ROLE_PORT}") if host_port is not None else ()
        # unless-stopped: a server comes back when the engine restarts, a replaced one does not.
        start_instance(
            image, name=name, labels=labels, extra_flags=("--restart", "unless-stopped", *publish)
        )

    def exec(self, name: str, command: Sequence[str], *, timeout: float) -> tuple[int, str]:
        try:
            proc = tools.run(["docker", "exec", name, *command], check=False, timeout=timeout)
        except KilnError as exc:
            return 124, str(exc)
        return proc.returncode, (proc.stdout + proc.stderr).strip()

    def diff(self, name: str) -> list[tuple[str, str]]:
        out = tools.run(["docker", "diff", name], timeout=120).stdout
        return [(line[0], line[2:]) for line in out.splitlines() if len(line) > 2]

    def stop(self, names: Sequence[str]) -> None:
        # One call: the engine stops them concurrently, each given the same grace period.
        tools.run(
            ["docker", "stop", "--time", str(STOP_TIMEOUT_S), *names], check=False, timeout=120
        )

    def remove(self, name: str) -> None:
        remove_instance(name)

    def servers(self, namespace: str, role: str | None = None) -> list[Server]:
        filters = ["--filter", f"label={LABEL_NAMESPACE}={namespace}"]
        if role is not None:
            filters += ["--filter", f"label={LABEL_ROLE}={role}"]
        ids = tools.run(["docker", "ps", "-a", "-q", "--no-trunc", *filters]).stdout.split()
        if not ids:
            return []
        # A container removed between ps and inspect is simply no longer a server.
        proc = tools.run(["docker", "inspect", *ids], check=False)
        try:
            records = json.loads(proc.stdout or "[]")
        except ValueError as exc:
            raise DeployError(f"docker inspect returned unreadable output: {exc}") from exc
        return sorted((server_from_inspect(r) for r in records), key=lambda s: s.started_at)

    def image_id(self, ref: str) -> str | None:
        return tools.docker_image_id(ref)


def server_from_inspect(record: Mapping[str, Any]) -> Server:
    config = record.get("Config") or {}
    labels = config.get("Labels") or {}
    state = record.get("State") or {}
    bindings = (record.get("HostConfig") or {}).get("PortBindings") or {}
    ports = sorted(
        int(b["HostPort"]) for spec in bindings.values() for b in spec or () if b.get("HostPort")
    )
    return Server(
        name=str(record.get("Name", "")).lstrip("/"),
        container_id=str(record.get("Id", "")),
        role=labels.get(LABEL_ROLE, ""),
        version=int(labels.get(LABEL_VERSION) or 0),
        channel=labels.get(LABEL_CHANNEL, ""),
        deployment=labels.get(LABEL_ID, ""),
        image=str(config.get("Image", "")),
        image_id=str(record.get("Image", "")),
        state=str(state.get("Status", "unknown")),
        started_at=str(state.get("StartedAt") or record.get("Created") or ""),
        ports=tuple(ports),
    )


_DOCKER_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def parse_docker_time(text: str) -> datetime | None:
    """Docker's RFC 3339 times carry nanoseconds, which datetime cannot read; None if unset."""
    match = _DOCKER_TIME.match(text)
    if not match or text.startswith("0001-"):
        return None
    base, fraction, zone = match.groups()
    micro = (fraction or "0")[:6].ljust(6, "0")
    return datetime.fromisoformat(f"{base}.{micro}{'+00:00' if zone == 'Z' else zone}")


# -- health -----------------------------------------------------------------------------------
def check_once(engine: Engine, name: str, check: HealthCheck, *, timeout: float) -> CheckResult:
    started = time.monotonic()
    code, output = engine.exec(name, check.command, timeout=max(1.0, timeout))
    detail = output if code == 0 else f"`{' '.join(check.command)}` exited {code}: {output}"
    return CheckResult(code == 0, _tail(detail), time.monotonic() - started)


def wait_healthy(engine: Engine, name: str, check: HealthCheck) -> CheckResult:
    """Run the check until it passes; a CheckResult with healthy=False once timeout_s is spent."""
    started = time.monotonic()
    deadline = started + check.timeout_s
    while True:
        result = check_once(engine, name, check, timeout=deadline - time.monotonic())
        if result.healthy:
            return CheckResult(True, result.output, time.monotonic() - started)
        if time.monotonic() + check.interval_s >= deadline:
            return CheckResult(False, result.output, time.monotonic() - started)
        time.sleep(check.interval_s)


def health_check_of(role: Role) -> HealthCheck:
    return role.health_check or BOOT_CHECK


# -- deploy -----------------------------------------------------------------------------------
class _Unhealthy(Exception):
    def __init__(self, instance: str, result: CheckResult) -> None:
        super().__init__(instance)
        self.instance = instance
        self.result = result


@dataclass
class _Rollout:
    """The instances one deployment starts and removes, and the steps it reports."""

    engine: Engine
    namespace: str
    role: Role
    check: HealthCheck
    deployment: str
    version: int
    port: int | None
    log: LogSink
    on_step: Callable[[DeployStep], None] | None
    serving: list[str] = field(default_factory=list)
    ports_in_use: set[int] = field(default_factory=set)
    # New instances that have not taken an old one's place: removed if the deploy stops.
    pending: list[str] = field(default_factory=list)
    # New instances for which an old one was retired (stopped, then removed): they carry the
    # service now.
    swapped: list[str] = field(default_factory=list)
    removed: list[Server] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    steps: list[DeployStep] = field(default_factory=list)

    def step(self, kind: StepKind, instance: str, version: int) -> None:
        record = DeployStep(kind, instance, version, tuple(self.serving))
        self.steps.append(record)
        if self.on_step is not None:
            self.on_step(record)

    def start(self, image: str, version: int, channel: str) -> str:
        name = f"{self.namespace}-{self.role.name}-v{version}-{uuid.uuid4().hex[:6]}"
        host_port = None
        if self.port is not None:
            host_port = self.port
            while host_port in self.ports_in_use:
                host_port += 1
        labels = {
            LABEL_NAMESPACE: self.namespace,
            LABEL_ROLE: self.role.name,
            LABEL_VERSION: str(version),
            LABEL_ID: self.deployment,
            LABEL_CHANNEL: channel,
        }
        # Pending before `docker run`: a run that fails half way still leaves a container.
        self.pending.append(name)
        self.started.append(name)
        try:
            self.engine.start(image, name=name, labels=labels, host_port=host_port)
        except KilnError as exc:
            if host_port is not None:  # held by another process: putting back must not retry it
                self.ports_in_use.add(host_port)
            raise DeployError(f"could not start {name} from {image}: {exc}") from exc
        if host_port is not None:
            self.ports_in_use.add(host_port)
        where = f" on 127.0.0.1:{host_port}" if host_port is not None else ""
        self.log(f"started {name} ({self.role.name} v{version}){where}")
        self.step("started", name, version)
        return name

    def wait(self, name: str, version: int) -> None:
        result = wait_healthy(self.engine, name, self.check)
        if not result.healthy:
            raise _Unhealthy(name, result)
        self.serving.append(name)
        self.log(f"{name} is healthy after {result.seconds:.1f} s")
        self.step("healthy", name, version)

    def retire(self, olds: Sequence[Server]) -> None:
        """Stop and remove old servers; for each, a pending healthy new instance takes its place."""
        for old in olds:
            if old.name in self.serving:
                self.serving.remove(old.name)
            # The new instance takes the old one's place before the old one stops: a Ctrl-C
            # during the stop must not remove the instance that now carries the service.
            for name in self.pending:
                if name in self.serving:
                    self.pending.remove(name)
                    self.swapped.append(name)
                    break
        self.engine.stop([old.name for old in olds])
        for old in olds:
            self.engine.remove(old.name)
            self.ports_in_use.difference_update(old.ports)
            self.removed.append(old)
            self.log(f"removed {old.name} ({old.role} v{old.version})")
            self.step("removed", old.name, old.version)

    def discard(self, names: Sequence[str]) -> None:
        for name in list(names):
            self.engine.remove(name)
            if name in self.serving:
                self.serving.remove(name)
            for group in (self.pending, self.swapped):
                if name in group:
                    group.remove(name)

    def restore(self) -> list[str]:
        """Put back every old server removed so far (from its own image), one new one at a time.

        Returns what could not be restored; the new instances that still stand in for those
        are kept, so that the role never has fewer instances serving than when the deploy began.
        """
        problems: list[str] = []
        for old in list(self.removed):
            if not self.swapped:
                break
            try:
                name = self.start(old.image, old.version, old.channel)
                self.wait(name, old.version)
            except _Unhealthy as exc:
                self.discard([exc.instance])
                problems.append(f"{old.role} v{old.version} did not come back: {exc.result.output}")
                break
            except DeployError as exc:
                problems.append(str(exc))
                break
            self.pending.remove(name)
            self.log(f"restored {old.role} v{old.version} as {name}")
            self.step("restored", name, old.version)
            victim = self.swapped[-1]
            self.discard([victim])
            self.log(f"removed {victim}")
            self.step("removed", victim, self.version)
        return problems


@contextmanager
def _cleanup(rollout: _Rollout) -> Iterator[None]:
    """Whatever stops a rollout, the new instances that replaced nothing are removed."""
    try:
        yield
    finally:
        rollout.discard(list(rollout.pending))


def deploy_lock(project: Project, role: str, log: LogSink) -> AbstractContextManager[None]:
    """One deploy per role at a time, across processes."""
    return file_lock(
        project.state_path / "locks" / f"deploy-{role}.lock",
        on_wait=lambda: log(f"another deploy of {role} is running; waiting for it"),
    )


def deployable_version(registry: Registry, role: str, channel: str) -> Version:
    """The version channel names for role, or a DeployError saying why it cannot be deployed."""
    channels = registry.channels(role)
    if channel not in channels:
        known = ", ".join(sorted(channels)) or "none"
        raise DeployError(
            f"{role} has no channel {channel!r} (its channels: {known}); "
            f"promote a tested version to it first"
        )
    number = channels[channel]
    if number is None:
        raise DeployError(f"channel {channel} of {role} points at no version; promote one first")
    version = registry.get(role, number)
    if version is None:
        raise DeployError(f"channel {channel} of {role} points at v{number}, which is not recorded")
    if version.status != DEPLOYABLE_STATUS:
        why = f" ({version.status_reason})" if version.status_reason else ""
        raise DeployError(
            f"{version.label} is {version.status}{why}, and only {DEPLOYABLE_STATUS} versions "
            f"are deployed; point channel {channel} at a tested version"
        )
    if version.parent_revoked:
        raise DeployError(
            f"{version.label} was built on a revoked parent ({version.parent_role} "
            f"v{version.parent_version}); rebake {role} and promote the new version"
        )
    artifact = version.artifact("docker")
    if artifact is None or artifact.deleted_at is not None:
        raise DeployError(f"{version.label} has no docker image left to deploy; rebake {role}")
    return version


def deploy(
    project: Project,
    role_name: str,
    *,
    channel: str,
    replicas: int = 1,
    strategy: str = "rolling",
    port: int | None = None,
    recreate: bool = False,
    on_step: Callable[[DeployStep], None] | None = None,
    log: LogSink | None = None,
    engine: Engine | None = None,
) -> DeployResult:
    """Replace role's running instances with `replicas` new ones of channel's version.

    rolling (default) starts one new instance, waits for its health check and removes one old,
    so the number serving never drops below what it was; blue-green starts and checks all new
    instances before removing any old one. An unhealthy new instance (or one that cannot start,
    such as on a port another process holds) stops the deploy: the new instances go, the old
    ones stay (any already removed are started again from their image), and DeployError names
    the instance and the check's output. Every attempt is recorded.
    """
    role = project.role_named(role_name)
    if strategy not in STRATEGIES:
        raise DeployError(f"unknown strategy {strategy!r} (known: {', '.join(STRATEGIES)})")
    if not 1 <= replicas <= MAX_REPLICAS:
        raise DeployError(f"replicas must be between 1 and {MAX_REPLICAS}, not {replicas}")
    if port is not None and not 1 <= port <= 65535 - 2 * replicas:
        raise DeployError(f"--port {port} leaves no room for {replicas} replica(s) above it")
    engine = engine or DockerEngine()
    say = log or (lambda line: None)
    deployment = uuid.uuid4().hex[:12]
    started_at, clock = utc_now(), time.monotonic()
    with Registry(project.registry_path) as registry, deploy_lock(project, role.name, say):

        def finish(result: DeployResult) -> DeployResult:
            final = replace(result, duration_s=round(time.monotonic() - clock, 3))
            registry.record_deployment(
                deployment=deployment, role=role.name, version=final.version, channel=channel,
                strategy=strategy, replicas=replicas, result=final.result, detail=final.message,
                actor=actor(), started_at=started_at, duration_s=final.duration_s,
            )  # fmt: skip
            return final

        named = registry.channels(role.name).get(channel)
        base = DeployResult(
            deployment, role.name, named, channel, strategy, replicas, "refused", ""
        )
        try:
            version = deployable_version(registry, role.name, channel)
            artifact = version.artifact("docker")
            assert artifact is not None
            if engine.image_id(artifact.ref) != artifact.image_id:
                raise DeployError(
                    f"image {artifact.ref} of {version.label} is missing or no longer the "
                    f"recorded {artifact.image_id[:19]}; rebake {role.name} and promote again"
                )
        except DeployError as exc:
            finish(replace(base, message=str(exc)))
            raise
        current = engine.servers(project.image_namespace, role.name)
        if not recreate and _already_deployed(current, version, artifact.image_id, replicas):
            message = (
                f"{len(current)} instance(s) of {role.name} already run v{version.version} "
                f"(channel {channel}); nothing to do (--recreate replaces them anyway)"
            )
            say(message)
            return finish(replace(base, result="unchanged", message=message))

        rollout = _Rollout(
            engine=engine, namespace=project.image_namespace, role=role,
            check=health_check_of(role), deployment=deployment, version=version.version,
            port=port, log=say,
            on_step=on_step, serving=[s.name for s in current if s.running],
            ports_in_use={p for s in current for p in s.ports},
        )  # fmt: skip
        # Stopped servers go first: removing them costs no capacity.
        old = sorted(current, key=lambda s: (s.running, s.started_at))
        say(
            f"deploying {version.label} from channel {channel}: {replicas} replica(s), "
            f"{strategy}, replacing {len(old)} instance(s)"
        )
        recorded = False
        try:
            try:
                with _cleanup(rollout):
                    _roll(rollout, old, version, artifact.ref, channel, replicas, strategy)
            except (_Unhealthy, DeployError) as exc:  # DeployError: a new one did not start
                with _cleanup(rollout):
                    message = _roll_back(rollout, exc, version, channel)
                recorded = True
                finish(_outcome(base, rollout, "failed", message))
                raise DeployError(message) from None
        except KeyboardInterrupt:
            kept = ", ".join(rollout.swapped) or "none"
            finish(
                _outcome(base, rollout, "interrupted", f"interrupted; new instances kept: {kept}")
            )
            raise
        except KilnError as exc:
            if not recorded:
                finish(_outcome(base, rollout, "failed", str(exc)))
            raise
        removed = ", ".join(s.name for s in rollout.removed) or "none"
        message = (
            f"{role.name} runs {version.label} on {replicas} instance(s): "
            f"started {', '.join(rollout.started)}; removed {removed}"
        )
        say(message)
        return finish(_outcome(base, rollout, "succeeded", message))


def _roll(
    rollout: _Rollout,
    old: list[Server],
    version: Version,
    image: str,
    channel: str,
    replicas: int,
    strategy: str,
) -> None:
    queue = list(old)
    if strategy == "blue-green":
        names = [rollout.start(image, version.version, channel) for _ in range(replicas)]
        for name in names:
            rollout.wait(name, version.version)
    else:
        for _ in range(replicas):
            name = rollout.start(image, version.version, channel)
            rollout.wait(name, version.version)
            if queue:
                rollout.retire([queue.pop(0)])
    if queue:
        # Every new instance serves by now: the rest of the old ones go together.
        rollout.retire(queue)
    rollout.pending.clear()


def _roll_back(
    rollout: _Rollout, exc: _Unhealthy | DeployError, version: Version, channel: str
) -> str:
    """After a failed health check or start: the new instances are gone; put back what was
    removed."""
    if isinstance(exc, _Unhealthy):
        rollout.step("failed", exc.instance, version.version)
        why = (
            f"instance {exc.instance} did not pass its health check within "
            f"{rollout.check.timeout_s:g} s: {exc.result.output}"
        )
    else:
        rollout.step("failed", rollout.started[-1], version.version)
        why = str(exc)
    problems = rollout.restore()
    lines = [
        f"deploy of {version.label} (channel {channel}) stopped: {why}",
        f"removed the new instance(s); serving now: {', '.join(rollout.serving) or 'nothing'}",
    ]
    if problems:
        lines.append(
            f"could not restore every old instance ({'; '.join(problems)}); "
            f"kept new instance(s) in their place: {', '.join(rollout.swapped)}"
        )
    lines.append(
        "fix the image or the health check, bake and promote again, then "
        f"`invoke deploy {rollout.role.name} --channel {channel}`"
    )
    return "\n".join(lines)


def _already_deployed(
    current: Sequence[Server], version: Version, image_id: str, replicas: int
) -> bool:
    return len(current) == replicas and all(
        s.running and s.version == version.version and s.image_id == image_id for s in current
    )


def _outcome(base: DeployResult, rollout: _Rollout, result: Outcome, message: str) -> DeployResult:
    return replace(
        base,
        result=result,
        message=message,
        started=tuple(rollout.started),
        removed=tuple(s.name for s in rollout.removed),
        steps=tuple(rollout.steps),
    )


# -- servers and drift ------------------------------------------------------------------------
def servers(
    project: Project, role: str | None = None, *, engine: Engine | None = None
) -> list[ServerStatus]:
    """The deployed instances of role (or of every role), each health-checked once now."""
    if role is not None:
        project.role_named(role)
    engine = engine or DockerEngine()
    found = engine.servers(project.image_namespace, role)
    statuses: list[ServerStatus] = []
    with Registry(project.registry_path) as registry:
        for server in found:
            statuses.append(
                ServerStatus(
                    server, *_health_now(project, engine, server), _standing(registry, server)
                )
            )
    return statuses


def _health_now(
    project: Project, engine: Engine, server: Server
) -> tuple[Literal["healthy", "unhealthy", "stopped", "unknown"], str]:
    if not server.running:
        return "stopped", server.state
    try:
        role = project.role_named(server.role)
    except KilnError:
        return "unknown", f"role {server.role!r} is not defined in tasks.py"
    check = health_check_of(role)
    result = check_once(engine, server.name, check, timeout=min(check.timeout_s, 10.0))
    return ("healthy" if result.healthy else "unhealthy"), result.output


def _standing(registry: Registry, server: Server) -> Literal["current", "outdated", "revoked"]:
    version = registry.get(server.role, server.version)
    if version is not None and version.status == "revoked":
        return "revoked"
    return (
        "current"
        if registry.channels(server.role).get(server.channel) == server.version
        else "outdated"
    )


def drift(
    project: Project, role: str | None = None, *, engine: Engine | None = None
) -> list[InstanceDrift]:
    """Every deployed instance of role (or all roles) with its filesystem changes and problems.

    A change is anything `docker diff` reports outside the role's drift_allow prefixes (and
    BASELINE_DRIFT_ALLOW); a problem is a version that no channel points at any more.
    """
    if role is not None:
        project.role_named(role)
    engine = engine or DockerEngine()
    report: list[InstanceDrift] = []
    with Registry(project.registry_path) as registry:
        for server in engine.servers(project.image_namespace, role):
            problems: list[str] = []
            try:
                allow = (*project.role_named(server.role).drift_allow, *BASELINE_DRIFT_ALLOW)
            except KilnError:
                allow = BASELINE_DRIFT_ALLOW
                problems.append(f"its role {server.role!r} is no longer defined in tasks.py")
            if not registry.channels_pointing_at(server.role, server.version):
                problems.append(
                    f"it runs {server.role} v{server.version}, which no channel points at"
                )
            changes = significant_changes(engine.diff(server.name), allow)
            report.append(InstanceDrift(server, tuple(changes), tuple(problems)))
    return report


_KINDS: dict[str, Literal["added", "changed", "deleted"]] = {
    "A": "added",
    "C": "changed",
    "D": "deleted",
}


def significant_changes(
    entries: Sequence[tuple[str, str]], allow: Sequence[str]
) -> list[FileChange]:
    """`docker diff` entries that matter: not under an allowed prefix, and not a directory
    reported as changed only because something beneath it changed."""
    paths = [path for _, path in entries]
    changes: list[FileChange] = []
    for kind, path in entries:
        if _allowed(path, allow):
            continue
        if kind == "C" and any(other.startswith(path.rstrip("/") + "/") for other in paths):
            continue
        changes.append(FileChange(_KINDS.get(kind, "changed"), path))
    return changes


def _allowed(path: str, allow: Sequence[str]) -> bool:
    return any(path == prefix or path.startswith(prefix.rstrip("/") + "/") for prefix in allow)


# -- presentation -----------------------------------------------------------------------------
def format_age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def server_table(statuses: Sequence[ServerStatus]) -> list[str]:
    header = ("NAME", "ROLE", "VERSION", "CHANNEL", "AGE", "HEALTH", "STANDING", "PORTS")
    rows = [header] + [
        (
            s.server.name,
            s.server.role,
            f"v{s.server.version}",
            s.server.channel,
            format_age(s.server.age_s()),
            s.health,
            s.standing,
            ",".join(f"127.0.0.1:{p}" for p in s.server.ports) or "-",
        )
        for s in statuses
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def drift_lines(report: Sequence[InstanceDrift]) -> list[str]:
    lines: list[str] = []
    for item in report:
        if not item.drifted:
            continue
        lines.append(f"{item.server.name} ({item.server.role} v{item.server.version}) drifted:")
        lines += [f"  {change.kind:<8} {change.path}" for change in item.changes]
        lines += [f"  {problem}" for problem in item.problems]
        lines.append(f"  remedy: replace it, never patch it: {item.remedy}")
    return lines


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
