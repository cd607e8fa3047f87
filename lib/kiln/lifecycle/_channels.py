"""Channels: `promote`, `rollback` and `revoke` move them; `channels` lists them."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from kiln.errors import Refused, RegistryError
from kiln.lifecycle._lookup import require
from kiln.registry import (
    Artifact,
    ChannelLogEntry,
    Push,
    Registry,
    Version,
    VersionStatus,
    actor,
)

CHANNEL_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")


@dataclass(frozen=True)
class ChannelChange:
    """What promote, rollback or revoke did to one channel (changed is False for a no-op)."""

    role: str
    channel: str
    from_version: int | None
    to_version: int | None
    action: str
    actor: str
    reason: str | None = None
    forced: bool = False
    changed: bool = True


@dataclass(frozen=True)
class ChannelState:
    """Where one channel points, with that version's status, as `invoke channels` lists it."""

    channel: str
    version: int | None
    status: str | None
    updated_at: str


@dataclass(frozen=True)
class ChannelVersion:
    """What a channel points at, for other tools (`invoke channel ROLE CHANNEL --json`): the
    version, its fingerprint, its artifacts and, once pushed, its digest-pinned image."""

    role: str
    channel: str
    version: int
    status: str
    fingerprint: str
    image: str | None  # host:port/prefix/name@sha256:... (pushed), else the local engine's ref
    digest: str | None  # the pushed manifest digest; None while only the local engine has it
    artifacts: tuple[Artifact, ...]
    pushes: tuple[Push, ...]
    updated_at: str


def resolve_channel(registry: Registry, role: str, channel: str) -> ChannelVersion:
    """The version channel names for role, with what a deploy or another tool pulls."""
    check_channel(channel)
    entry = next((e for e in registry.channel_entries(role) if e.channel == channel), None)
    if entry is None or entry.version is None:
        known = ", ".join(e.channel for e in registry.channel_entries(role)) or "none"
        raise RegistryError(
            f"{role} has no channel {channel!r} pointing at a version (its channels: {known}); "
            f"`invoke promote {role} N --channel {channel}` points it"
        )
    version = require(registry, role, entry.version)
    pushes = tuple(p for p in registry.pushes(role, version.version) if p.target == "docker")
    local = version.artifact("docker")
    image = pushes[0].reference if pushes else (local.ref if local else None)
    return ChannelVersion(
        role=role,
        channel=channel,
        version=version.version,
        status=str(version.status),
        fingerprint=version.fingerprint,
        image=image,
        digest=pushes[0].digest if pushes else None,
        artifacts=version.artifacts,
        pushes=pushes,
        updated_at=entry.updated_at,
    )


def check_channel(channel: str) -> None:
    """Refuse a channel name before it reaches the registry, with the rule it broke."""
    if not CHANNEL_RE.match(channel):
        raise RegistryError(
            f"channel {channel!r} is invalid: use 1-32 lowercase letters, digits and '-', "
            "starting with a letter (for example dev, staging, prod)"
        )


def channels(registry: Registry, role: str) -> list[ChannelState]:
    """The channels of role, the version each points at and that version's status."""
    statuses: dict[int | None, str] = {
        r.version: r.status for r in registry.version_summaries(role)
    }
    return [
        ChannelState(e.channel, e.version, statuses.get(e.version), e.updated_at)
        for e in registry.channel_entries(role)
    ]


def channel_stack(log: Iterable[ChannelLogEntry]) -> list[int]:
    """The versions a channel held, oldest first, with rolled-back ones popped off.

    log is the channel's audit log in any order; promote pushes, rollback and revoke pop back to
    the version they moved to, so rolling back twice goes two steps back, never forth.
    """
    stack: list[int] = []
    for entry in sorted(log, key=lambda e: e.id):
        to = entry.to_version
        if to is None:
            stack.clear()
        elif entry.action in ("rollback", "revoke") and to in stack:
            while stack[-1] != to:
                stack.pop()
        elif not stack or stack[-1] != to:
            stack.append(to)
    return stack


def _status_label(version: Version) -> str:
    return version.status + (" on a revoked parent" if version.parent_revoked else "")


def _refusal(version: Version) -> str | None:
    """Why version may not be promoted without --force, or None."""
    status = VersionStatus(version.status)
    if not status.usable:  # failed or revoked
        return f"{version.label} is {status} ({version.status_reason or 'no reason recorded'})"
    if version.parent_revoked:
        return (
            f"{version.label} was built on a revoked parent "
            f"({version.parent_role} v{version.parent_version}); rebake it"
        )
    if not status.promotable:
        return (
            f"{version.label} is {version.status}, not tested; "
            f"run its acceptance tests first (`invoke test {version.role}`)"
        )
    return None


def promote(
    registry: Registry,
    role: str,
    version: int,
    *,
    channel: str,
    force: bool = False,
    reason: str | None = None,
    who: str | None = None,
) -> ChannelChange:
    """Point channel at version. Only tested versions, unless force with a recorded reason."""
    check_channel(channel)
    if force and not (reason or "").strip():
        raise RegistryError(
            "--force needs --reason '...': the reason is recorded in the channel's audit log"
        )
    who = who or actor()
    with registry.transaction() as tx:
        # Read under the write lock, so a concurrent revoke cannot slip in between.
        found = require(registry, role, version)
        artifact = found.artifact()
        if artifact is None or artifact.deleted_at is not None:
            raise Refused(
                f"{found.label} has no artifact left (deleted by gc); it cannot be deployed, "
                f"so it cannot be promoted: bake a new version with `invoke bake {role}`"
            )
        refusal = _refusal(found)
        if refusal is not None and not force:
            raise Refused(f"{refusal}; promote it with --force --reason '...' if you must")
        current = registry.channels(role).get(channel)
        if current == version:
            return ChannelChange(role, channel, current, version, "promote", who, changed=False)
        previous = tx.set_channel(
            role=role,
            channel=channel,
            version=version,
            action="promote",
            actor=who,
            reason=reason,
            forced=force and refusal is not None,
        )
    return ChannelChange(
        role, channel, previous, version, "promote", who, reason, force and refusal is not None
    )


def rollback(
    registry: Registry,
    role: str,
    *,
    channel: str,
    reason: str | None = None,
    who: str | None = None,
) -> ChannelChange:
    """Move channel back to the version it held before, skipping revoked and failed ones."""
    check_channel(channel)
    who = who or actor()
    with registry.transaction() as tx:
        current = registry.channels(role).get(channel)
        if current is None:
            raise Refused(
                f"channel {channel} of {role} points at nothing; promote a version with "
                f"`invoke promote {role} VERSION --channel {channel}`"
            )
        stack = channel_stack(registry.channel_log(role, channel))
        while stack and stack[-1] == current:
            stack.pop()
        skipped: list[str] = []
        target: int | None = None
        for candidate in reversed(stack):
            found = registry.get(role, candidate)
            if candidate == current or found is None:
                continue
            if not VersionStatus(found.status).rollback_target or found.parent_revoked:
                skipped.append(f"v{candidate} ({_status_label(found)})")
                continue
            target = candidate
            break
        if target is None:
            detail = f" (skipped {', '.join(skipped)})" if skipped else ""
            raise Refused(
                f"channel {channel} of {role} has no earlier version to roll back to{detail}; "
                f"promote one with `invoke promote {role} VERSION --channel {channel}`"
            )
        previous = tx.set_channel(
            role=role,
            channel=channel,
            version=target,
            action="rollback",
            actor=who,
            reason=reason,
        )
    return ChannelChange(role, channel, previous, target, "rollback", who, reason)


# -- revoke ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class RevokeResult:
    """What revoke changed: channels moved or emptied, descendants flagged, and warnings."""

    role: str
    version: int
    reason: str
    moved: list[ChannelChange]
    emptied: list[str]
    descendants: list[tuple[str, int]]
    warnings: list[str] = field(default_factory=list)


def _good_fallback(registry: Registry, role: str, stack: list[int], revoked: int) -> int | None:
    """The newest version the channel held before that is still promotable, or None."""
    for candidate in reversed(stack):
        if candidate == revoked:
            continue
        found = registry.get(role, candidate)
        if (
            found is not None
            and VersionStatus(found.status).promotable
            and not found.parent_revoked
        ):
            return candidate
    return None


def _children_in_channels(
    registry: Registry, descendants: list[tuple[str, int]], revoked: str
) -> list[str]:
    """A warning for each channel that points at a version built on the revoked one."""
    return [
        f"channel {channel} of {child_role} points at v{child_version}, built on "
        f"revoked {revoked}; rebake with `invoke bake {child_role} --outdated`"
        for child_role, child_version in descendants
        for channel in registry.channels_pointing_at(child_role, child_version)
    ]


def revoke(
    registry: Registry, role: str, version: int, *, reason: str, who: str | None = None
) -> RevokeResult:
    """Revoke a version in one transaction: status, channels moved back, descendants flagged.

    A channel pointing at it moves back to the previous tested version it held, or is emptied.
    """
    if not reason.strip():
        raise RegistryError("revoke needs --reason '...': it is recorded with the version")
    who = who or actor()
    moved: list[ChannelChange] = []
    emptied: list[str] = []
    warnings: list[str] = []
    with registry.transaction() as tx:
        found = require(registry, role, version)
        if found.status == VersionStatus.REVOKED:
            raise Refused(
                f"{found.label} is already revoked ({found.status_reason or 'no reason'})"
            )
        tx.set_status(role, version, VersionStatus.REVOKED, reason)
        for channel in registry.channels_pointing_at(role, version):
            stack = channel_stack(registry.channel_log(role, channel))
            target = _good_fallback(registry, role, stack, version)
            tx.set_channel(
                role=role,
                channel=channel,
                version=target,
                action="revoke",
                actor=who,
                reason=reason,
            )
            moved.append(ChannelChange(role, channel, version, target, "revoke", who, reason))
            if target is None:
                emptied.append(channel)
                warnings.append(
                    f"channel {channel} of {role} is now EMPTY: it held no earlier tested "
                    f"version; promote one with `invoke promote {role} VERSION "
                    f"--channel {channel}`"
                )
        descendants = registry.descendants(role, version)
        tx.mark_parent_revoked(descendants)
        warnings += _children_in_channels(registry, descendants, found.label)
        tx.log_event(
            role,
            version,
            "revoke",
            {
                "reason": reason,
                "channels": {c.channel: c.to_version for c in moved},
                "descendants": [f"{r} v{v}" for r, v in descendants],
            },
            who,
        )
    return RevokeResult(role, version, reason, moved, emptied, descendants, warnings)
