"""`gc`: delete the artifacts no channel, recent version or kept child needs; records stay."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kiln.errors import KilnError, Refused
from kiln.registry import Artifact, Registry


@dataclass(frozen=True)
class GcItem:
    role: str
    version: int
    target: str
    ref: str
    why: str  # why it was kept, or "deleted" / "not deleted: ..."


@dataclass(frozen=True)
class GcResult:
    keep: int
    dry_run: bool
    deleted: list[GcItem]
    kept: list[GcItem]
    failed: list[GcItem]


def delete_with_target(artifact: Artifact) -> bool:
    """Delete an artifact through its target; True when it is gone afterwards."""
    from kiln.targets import get_target

    target = get_target(artifact.target).builder()
    target.delete_artifact(artifact)
    return not target.artifact_exists(artifact)


def gc_plan(registry: Registry, keep: int) -> dict[tuple[str, int], str]:
    """The versions whose artifacts gc must keep, each with why.

    Kept: the newest keep versions of every role, every channel's version, and (recursively)
    the parents of anything kept, since a kept image is only reproducible from its parent.
    """
    rows = registry.version_summaries()
    parents = {
        (r.role, r.version): (r.parent_role, r.parent_version)
        for r in rows
        if r.parent_role is not None and r.parent_version is not None
    }
    reasons: dict[tuple[str, int], str] = {}
    seen_per_role: dict[str, int] = {}
    for r in rows:  # ordered by role, newest first
        count = seen_per_role.get(r.role, 0)
        if count < keep:
            reasons[(r.role, r.version)] = f"one of the newest {keep}"
        seen_per_role[r.role] = count + 1
    for entry in registry.channel_entries():
        if entry.version is not None:
            reasons.setdefault((entry.role, entry.version), f"channel {entry.channel}")
    pending = list(reasons)
    while pending:
        key = pending.pop()
        parent = parents.get(key)
        if parent is not None and parent not in reasons:
            reasons[parent] = f"parent of {key[0]} v{key[1]}"
            pending.append(parent)
    return reasons


def gc(
    registry: Registry,
    *,
    keep: int = 3,
    dry_run: bool = False,
    delete: Callable[[Artifact], bool] = delete_with_target,
) -> GcResult:
    """Delete artifacts no channel needs beyond the newest keep per role; records stay."""
    if keep < 1:
        raise Refused(
            f"--keep {keep} is too low: keep at least the newest version of every role, "
            "which the next bake builds on"
        )
    reasons = gc_plan(registry, keep)
    deleted: list[GcItem] = []
    kept: list[GcItem] = []
    failed: list[GcItem] = []
    for role, version, artifact in registry.live_artifacts():
        why = reasons.get((role, version))
        if why is not None:
            kept.append(GcItem(role, version, artifact.target, artifact.ref, why))
            continue
        if dry_run:
            deleted.append(GcItem(role, version, artifact.target, artifact.ref, "would delete"))
            continue
        try:
            gone = delete(artifact)
        except KilnError as exc:
            failed.append(GcItem(role, version, artifact.target, artifact.ref, str(exc)))
            continue
        if not gone:
            failed.append(
                GcItem(role, version, artifact.target, artifact.ref, "still present (in use?)")
            )
            continue
        registry.mark_artifact_deleted(role, version, artifact.target)
        deleted.append(GcItem(role, version, artifact.target, artifact.ref, "deleted"))
    return GcResult(keep, dry_run, deleted, kept, failed)
