"""One deployment: check the plan, resolve the image, roll out, record the result."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

from kiln.deploy.audit import AuditLog, DeployResult
from kiln.deploy.engine import DockerEngine, Engine
from kiln.deploy.health import Unhealthy, health_check_of
from kiln.deploy.plan import Plan, deployable_image
from kiln.deploy.rollback import roll_back
from kiln.deploy.rollout import DeployStep, LogSink, Rollout, cleanup
from kiln.deploy.server import Server
from kiln.deploy.strategies import roll
from kiln.errors import DeployError, KilnError
from kiln.locks import project_lock
from kiln.model import Project
from kiln.registry import Registry, Version, utc_now


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
    plan = Plan(project.role_named(role_name), channel, replicas, strategy, port, recreate)
    plan.check()
    engine = engine or DockerEngine()
    say = log or (lambda line: None)
    deployment = uuid.uuid4().hex[:12]
    # Timed from here: a wait for another deploy's lock counts in the recorded duration.
    started_at, clock = utc_now(), time.monotonic()
    with Registry(project.registry_url) as registry, deploy_lock(project, plan.role.name, say):
        named = registry.channels(plan.role.name).get(channel)
        base = DeployResult(
            deployment, plan.role.name, named, channel, strategy, replicas, "refused", ""
        )
        audit = AuditLog(registry, base, started_at, clock)
        try:
            version, artifact = deployable_image(registry, engine, plan.role.name, channel)
        except DeployError as exc:
            audit.refused(str(exc))
            raise
        current = engine.servers(project.image_namespace, plan.role.name)
        if not recreate and plan.satisfied_by(current, version, artifact.image_id):
            message = (
                f"{len(current)} instance(s) of {plan.role.name} already run "
                f"v{version.version} (channel {channel}); nothing to do (--recreate replaces "
                "them anyway)"
            )
            say(message)
            return audit.unchanged(message)
        rollout = _rollout(project, plan, engine, deployment, version, current, say, on_step)
        return _replace(rollout, audit, plan, current, version, artifact.ref)


def deploy_lock(project: Project, role: str, log: LogSink) -> AbstractContextManager[None]:
    """One deploy per role at a time, across processes (across machines with PostgreSQL)."""
    return project_lock(
        project,
        f"deploy-{role}",
        on_wait=lambda: log(f"another deploy of {role} is running; waiting for it"),
    )


def _rollout(
    project: Project,
    plan: Plan,
    engine: Engine,
    deployment: str,
    version: Version,
    current: Sequence[Server],
    say: LogSink,
    on_step: Callable[[DeployStep], None] | None,
) -> Rollout:
    """A rollout of version that starts from the current servers: those running serve."""
    return Rollout(
        engine=engine,
        namespace=project.image_namespace,
        role=plan.role,
        check=health_check_of(plan.role),
        deployment=deployment,
        version=version.version,
        port=plan.port,
        log=say,
        on_step=on_step,
        serving=[s.name for s in current if s.running],
        ports_in_use={p for s in current for p in s.ports},
    )


def _replace(
    rollout: Rollout,
    audit: AuditLog,
    plan: Plan,
    current: Sequence[Server],
    version: Version,
    image: str,
) -> DeployResult:
    """Roll out, roll back if a new instance fails, and record how it ended."""
    # Stopped servers go first: removing them costs no capacity.
    old = sorted(current, key=lambda s: (s.running, s.started_at))
    rollout.log(
        f"deploying {version.label} from channel {plan.channel}: {plan.replicas} replica(s), "
        f"{plan.strategy}, replacing {len(old)} instance(s)"
    )
    recorded = False
    try:
        try:
            with cleanup(rollout):
                roll(
                    rollout, old, image, version.version, plan.channel, plan.replicas, plan.strategy
                )
        except (Unhealthy, DeployError) as exc:  # DeployError: a new one did not start
            with cleanup(rollout):
                message = roll_back(rollout, exc, version, plan.channel)
            recorded = True
            audit.outcome(rollout, "failed", message)
            raise DeployError(message) from None
    except KeyboardInterrupt:
        kept = ", ".join(rollout.swapped) or "none"
        audit.outcome(rollout, "interrupted", f"interrupted; new instances kept: {kept}")
        raise
    except KilnError as exc:
        if not recorded:  # the rollback's own DeployError is recorded already
            audit.outcome(rollout, "failed", str(exc))
        raise
    removed = ", ".join(s.name for s in rollout.removed) or "none"
    message = (
        f"{plan.role.name} runs {version.label} on {plan.replicas} instance(s): "
        f"started {', '.join(rollout.started)}; removed {removed}"
    )
    rollout.log(message)
    return audit.outcome(rollout, "succeeded", message)
