"""The audit record: a deploy's result, written to the registry whatever the outcome."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from kiln.deploy.rollout import DeployStep, Rollout
from kiln.registry import Registry, actor

Outcome = Literal["succeeded", "unchanged", "failed", "refused", "interrupted"]


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
class AuditLog:
    """Records one deployment's result; `base` holds what is known before it runs (refused)."""

    registry: Registry
    base: DeployResult
    started_at: str
    clock: float  # time.monotonic() when the deploy began, lock wait included

    def record(self, result: DeployResult) -> DeployResult:
        """Write result, timed from the start of the deploy, and return it so timed."""
        final = replace(result, duration_s=round(time.monotonic() - self.clock, 3))
        self.registry.record_deployment(
            deployment=final.deployment,
            role=final.role,
            version=final.version,
            channel=final.channel,
            strategy=final.strategy,
            replicas=final.replicas,
            result=final.result,
            detail=final.message,
            actor=actor(),
            started_at=self.started_at,
            duration_s=final.duration_s,
        )
        return final

    def refused(self, message: str) -> DeployResult:
        return self.record(replace(self.base, message=message))

    def unchanged(self, message: str) -> DeployResult:
        return self.record(replace(self.base, result="unchanged", message=message))

    def outcome(self, rollout: Rollout, result: Outcome, message: str) -> DeployResult:
        """Record how a rollout ended, with the instances it started and removed."""
        return self.record(
            replace(
                self.base,
                result=result,
                message=message,
                started=tuple(rollout.started),
                removed=tuple(s.name for s in rollout.removed),
                steps=tuple(rollout.steps),
            )
        )
