"""The rollout: the instances one deployment starts, checks and retires, and its steps."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

from kiln.deploy.engine import Engine
from kiln.deploy.health import Unhealthy, wait_healthy
from kiln.deploy.server import (
    LABEL_CHANNEL,
    LABEL_ID,
    LABEL_NAMESPACE,
    LABEL_ROLE,
    LABEL_VERSION,
    Server,
)
from kiln.errors import DeployError, KilnError
from kiln.model import HealthCheck, Role

StepKind = Literal["started", "healthy", "removed", "failed", "restored"]
LogSink = Callable[[str], None]


@dataclass(frozen=True)
class DeployStep:
    """One step of a rollout, handed to on_step: the instances serving right after it."""

    kind: StepKind
    instance: str
    version: int
    serving: tuple[str, ...]


@dataclass
class Rollout:
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
        """Start one instance of image (a new one, or an old one put back); its name."""
        name = f"{self.namespace}-{self.role.name}-v{version}-{uuid.uuid4().hex[:6]}"
        host_port = self._free_port()
        # Pending before `docker run`: a run that fails half way still leaves a container.
        self.pending.append(name)
        self.started.append(name)
        try:
            self.engine.start(
                image, name=name, labels=self._labels(version, channel), host_port=host_port
            )
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

    def _free_port(self) -> int | None:
        if self.port is None:
            return None
        host_port = self.port
        while host_port in self.ports_in_use:
            host_port += 1
        return host_port

    def _labels(self, version: int, channel: str) -> dict[str, str]:
        return {
            LABEL_NAMESPACE: self.namespace,
            LABEL_ROLE: self.role.name,
            LABEL_VERSION: str(version),
            LABEL_ID: self.deployment,
            LABEL_CHANNEL: channel,
        }

    def wait(self, name: str, version: int) -> None:
        """Wait for name's health check; Unhealthy if it does not pass in time."""
        result = wait_healthy(self.engine, name, self.check)
        if not result.healthy:
            raise Unhealthy(name, result)
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
        """Remove instances this rollout started, and forget them."""
        for name in list(names):
            self.engine.remove(name)
            if name in self.serving:
                self.serving.remove(name)
            for group in (self.pending, self.swapped):
                if name in group:
                    group.remove(name)


@contextmanager
def cleanup(rollout: Rollout) -> Iterator[None]:
    """Whatever stops a rollout, the new instances that replaced nothing are removed."""
    try:
        yield
    finally:
        rollout.discard(list(rollout.pending))
