"""Rollback: once a new instance fails, put back the old servers that were already removed."""

from __future__ import annotations

from kiln.deploy.health import Unhealthy
from kiln.deploy.rollout import Rollout
from kiln.errors import DeployError
from kiln.registry import Version


def restore(rollout: Rollout) -> list[str]:
    """Put back every old server removed so far (from its own image), one new one at a time.

    Returns what could not be restored; the new instances that still stand in for those
    are kept, so that the role never has fewer instances serving than when the deploy began.
    """
    problems: list[str] = []
    for old in list(rollout.removed):
        if not rollout.swapped:
            break
        try:
            name = rollout.start(old.image, old.version, old.channel)
            rollout.wait(name, old.version)
        except Unhealthy as exc:
            rollout.discard([exc.instance])
            problems.append(f"{old.role} v{old.version} did not come back: {exc.result.output}")
            break
        except DeployError as exc:
            problems.append(str(exc))
            break
        rollout.pending.remove(name)
        rollout.log(f"restored {old.role} v{old.version} as {name}")
        rollout.step("restored", name, old.version)
        victim = rollout.swapped[-1]
        rollout.discard([victim])
        rollout.log(f"removed {victim}")
        rollout.step("removed", victim, rollout.version)
    return problems


def roll_back(
    rollout: Rollout, exc: Unhealthy | DeployError, version: Version, channel: str
) -> str:
    """After a failed health check or start: the new instances are gone; put back what was
    removed. Returns the message the deploy fails with."""
    if isinstance(exc, Unhealthy):
        rollout.step("failed", exc.instance, version.version)
        why = (
            f"instance {exc.instance} did not pass its health check within "
            f"{rollout.check.timeout_s:g} s: {exc.result.output}"
        )
    else:
        rollout.step("failed", rollout.started[-1], version.version)
        why = str(exc)
    problems = restore(rollout)
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
