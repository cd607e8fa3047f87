"""`outdated --upstream`: which recorded images have pending (security) updates upstream, and
rebaking them (and what is built on them) in dependency order.

The images checked are the newest version of every recorded role and base, and every version a
channel points at. Each is checked from what its bake recorded (its packages and its apt
sources, keys and pinning: kiln.image_facts), against the mirror's current, signature-verified
lists (kiln.lifecycle.apt_updates): no image is started and nothing is baked.

A rebake for updates keeps the fingerprint: the inputs kiln controls are unchanged, and the
mirror is not one of them (a plain `bake` afterwards is a cache hit on the new version, not a
third bake). What tells the new version apart is its "bake-reason" document, recorded with it:
the updates that triggered it, or the parent rebaked for them. history, show, diff and the
report print it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kiln.errors import KilnError
from kiln.image_facts import facts_from_document
from kiln.lifecycle._reasons import PARENT_REBAKED, UPSTREAM_UPDATES, reason_document
from kiln.lifecycle.apt_updates import ImageToCheck, PendingUpdate, check_upstream
from kiln.locks import file_lock
from kiln.registry import Registry, Version, utc_now

if TYPE_CHECKING:
    from kiln.bake import BakeOutcome, Baker
    from kiln.model import Node, Project


@dataclass(frozen=True)
class ImageUpdates:
    """One recorded image and what apt would upgrade in it now."""

    role: str
    version: int
    kind: str
    #: Whether this is the role's newest version (only those are rebaked).
    newest: bool
    channels: tuple[str, ...]
    updates: tuple[PendingUpdate, ...]
    #: Why it could not be checked (None: it was); never counted as up to date.
    unchecked: str | None = None

    @property
    def label(self) -> str:
        return f"{self.role} v{self.version}"

    @property
    def security(self) -> tuple[PendingUpdate, ...]:
        return tuple(u for u in self.updates if u.security)


@dataclass(frozen=True)
class UpstreamReport:
    images: tuple[ImageUpdates, ...]
    checked_at: str
    seconds: float

    @property
    def pending(self) -> tuple[ImageUpdates, ...]:
        return tuple(i for i in self.images if i.updates)

    @property
    def unchecked(self) -> tuple[ImageUpdates, ...]:
        return tuple(i for i in self.images if i.unchecked is not None)


def upstream_cache_dir() -> Path:
    """The check's apt lists, kept between runs (a warm check downloads only what changed):
    $XDG_CACHE_HOME/kiln/upstream, shared by the user's projects (sources are not secret)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kiln" / "upstream"


def upstream_updates(
    registry: Registry,
    *,
    cache_dir: Path,
    mirrors: Mapping[str, str] | None = None,
    roles: Sequence[str] | None = None,
) -> UpstreamReport:
    """Check the newest and the channel-pinned versions of roles (default: every recorded one).

    UpstreamError (nothing partial) when a source cannot be reached or verified.
    """
    started = time.monotonic()
    candidates = _versions_to_check(registry, roles)
    to_check: list[ImageToCheck] = []
    unchecked: dict[str, str] = {}
    for version, _newest, _channels in candidates:
        facts = facts_from_document(
            registry.document(version.role, version.version, "image-facts"),
            registry.packages(version.role, version.version),
        )
        if facts.apt is None:
            unchecked[version.label] = (
                "its bake recorded no apt sources (baked before kiln captured them, or on a "
                f"target that does not): rebake it with `invoke bake {version.role} --force`"
            )
            continue
        to_check.append(
            ImageToCheck(
                key=version.label, apt=facts.apt, packages=tuple(p.package for p in facts.packages)
            )
        )
    # One check at a time per cache (a schedule and a person, say): apt's trees are shared.
    cache_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(cache_dir / "check.lock"):
        found = check_upstream(to_check, cache_dir=cache_dir, mirrors=mirrors or {})
    images = tuple(
        ImageUpdates(
            role=version.role,
            version=version.version,
            kind=version.kind,
            newest=newest,
            channels=channels,
            updates=tuple(found.get(version.label, ())),
            unchecked=unchecked.get(version.label),
        )
        for version, newest, channels in candidates
    )
    return UpstreamReport(images, utc_now(), time.monotonic() - started)


def _versions_to_check(
    registry: Registry, roles: Sequence[str] | None
) -> list[tuple[Version, bool, tuple[str, ...]]]:
    """(version, is newest, channels pointing at it), newest of each role first."""
    names = sorted(set(roles)) if roles is not None else registry.roles()
    found: list[tuple[Version, bool, tuple[str, ...]]] = []
    for role in names:
        newest = registry.latest(role)
        if newest is None:
            raise KilnError(f"{role} has no recorded version to check: bake it first")
        pinned: dict[int, list[str]] = {}
        for channel, number in sorted(registry.channels(role).items()):
            if number is not None:
                pinned.setdefault(number, []).append(channel)
        found.append((newest, True, tuple(pinned.pop(newest.version, ()))))
        for number, channels in sorted(pinned.items(), reverse=True):
            version = registry.get(role, number)
            if version is not None:
                found.append((version, False, tuple(channels)))
    return found


@dataclass(frozen=True)
class UpstreamRebake:
    """What `bake --outdated --upstream` did: the bakes, parents first, and each update that a
    new version still lacks (the role pins the old version, say, or the package came from a
    parent outside the roles asked for): "web v4: kiln-demo 1.0 (candidate 1.1)"."""

    bakes: list[tuple[str, list[BakeOutcome]]]
    still_pending: list[str]


def bake_upstream(
    baker: Baker,
    report: UpstreamReport,
    *,
    within: Sequence[str] | None = None,
    on_bake: Callable[[str, list[BakeOutcome]], None] | None = None,
) -> UpstreamRebake:
    """Rebake the newest images with pending updates and every role built on them, parents first.

    Each new version records its reason. within limits it to those roles and what is built on
    them; versions of roles no longer defined are skipped.
    """
    project = baker.project
    triggers = {
        image.role: image
        for image in report.pending
        if image.newest and _defined(project, image.role) is not None
    }
    if within is not None:
        allowed = {n.name for r in within for n in _with_descendants(project, r)}
        triggers = {name: image for name, image in triggers.items() if name in allowed}
    todo = {n.name for name in triggers for n in _with_descendants(project, name)}
    done = UpstreamRebake([], [])
    rebaked: set[str] = set()
    for role in sorted(project.roles, key=lambda r: (len(r.ancestry()), r.name)):
        if role.name not in todo:
            continue
        reasons = {
            node.name: _reason(baker.registry, node.name, triggers.get(node.name), report)
            for node in role.ancestry()
            if node.name in todo and node.name not in rebaked
        }
        outcomes = baker.bake(role.name, reasons=reasons)
        rebaked.update(reasons)
        done.bakes.append((role.name, outcomes))
        for outcome in outcomes:
            if outcome.baked and outcome.version.role in triggers:
                done.still_pending.extend(
                    _still_pending(baker.registry, outcome.version, triggers[outcome.version.role])
                )
        if on_bake is not None:
            on_bake(role.name, outcomes)
    return done


def _still_pending(registry: Registry, version: Version, image: ImageUpdates) -> list[str]:
    """The triggering updates the new version did not get: it holds an older version still."""
    have = {(p.name, p.arch): p.version for p in registry.packages(version.role, version.version)}
    return [
        f"{version.label}: {u.name} {have[(u.name, u.arch)]} (candidate {u.candidate})"
        for u in image.updates
        if have.get((u.name, u.arch)) == u.installed
    ]


def _reason(
    registry: Registry, name: str, image: ImageUpdates | None, report: UpstreamReport
) -> str:
    replaces = registry.latest(name)
    if image is None:  # rebaked because what it is built on was
        parent = replaces.parent_role if replaces is not None else None
        return reason_document(PARENT_REBAKED, replaces, parent=parent)
    return reason_document(
        UPSTREAM_UPDATES,
        replaces,
        checked_at=report.checked_at,
        updates=[u.as_dict() for u in image.updates],
    )


def upstream_scope(project: Project, registry: Registry, names: Sequence[str]) -> list[str]:
    """The recorded roles among names and every role built on them: what `bake NAMES
    --outdated --upstream` checks (and may rebake)."""
    recorded = set(registry.roles())
    wanted = {n.name for name in names for n in _with_descendants(project, name)}
    return sorted(wanted & recorded)


def _with_descendants(project: Project, name: str) -> list[Node]:
    """name's node and every role built on it, at any depth."""
    start = _defined(project, name)
    if start is None:
        return []
    found: list[Node] = []
    todo: list[Node] = [start]
    while todo:
        node = todo.pop()
        found.append(node)
        todo.extend(project.children(node))
    return found


def _defined(project: Project, name: str) -> Node | None:
    try:
        return project.get(name)
    except KilnError:
        return None
