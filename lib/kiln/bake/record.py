"""The Version record of a bake (base or role), its image's facts, and writing it down."""

from __future__ import annotations

import time
from collections.abc import Mapping

from kiln.ansible_events import StrategyEvent
from kiln.errors import RegistryError
from kiln.fingerprint import Fingerprint
from kiln.image_facts import ImageFacts
from kiln.lint import LintVerdict
from kiln.model import Base, Role
from kiln.packer import PackerRun
from kiln.registry import Artifact, Registry, Version, VersionStatus, utc_now
from kiln.targets.base import MITOGEN_STRATEGY

#: (commit, dirty) of the project's git checkout.
GitState = tuple[str, bool]


def base_record(
    base: Base,
    version: int,
    fingerprint: Fingerprint,
    *,
    target: str,
    status: VersionStatus,
    git: GitState,
    took: float,
    artifact: Artifact,
) -> Version:
    commit, dirty = git
    return Version(
        role=base.name,
        version=version,
        kind="base",
        target=target,
        fingerprint=fingerprint.digest,
        parent_role=None,
        parent_version=None,
        status=status,
        git_commit=commit,
        git_dirty=dirty,
        tools={},
        inputs=dict(fingerprint.inputs),
        timings={"base": round(took, 3)},
        bake_seconds=round(took, 3),
        created_at=utc_now(),
        artifacts=(artifact,),
    )


def role_record(
    role: Role,
    version: int,
    fingerprint: Fingerprint,
    parent: Version,
    *,
    target: str,
    status: VersionStatus,
    git: GitState,
    timings: Mapping[str, float],
    took: float,
    artifact: Artifact,
    lint: LintVerdict | None,
    strategy: StrategyEvent | None = None,
) -> Version:
    commit, dirty = git
    # What was fingerprinted (secrets as keyed digests), plus the audit exceptions and lint.
    inputs = {
        **fingerprint.inputs,
        "definition": {**role.inputs(), **fingerprint.inputs["definition"]},
        **({"lint": lint.record()} if lint is not None else {}),
    }
    return Version(
        role=role.name,
        version=version,
        kind="role",
        target=target,
        fingerprint=fingerprint.digest,
        parent_role=parent.role,
        parent_version=parent.version,
        status=status,
        git_commit=commit,
        git_dirty=dirty,
        tools={**fingerprint.inputs.get("tools", {}), **_strategy_tool(strategy)},
        inputs=inputs,
        timings={k: round(v, 3) for k, v in timings.items()},
        bake_seconds=round(took, 3),
        created_at=utc_now(),
        artifacts=(artifact,),
    )


def _strategy_tool(strategy: StrategyEvent | None) -> dict[str, str]:
    """How Ansible ran, beside the tools' versions (not fingerprinted: it bakes the same image)."""
    if strategy is None:
        return {}
    if strategy.mitogen:
        return {"ansible strategy": "mitogen"}
    # kiln_linear without Mitogen is Ansible's linear strategy.
    plain = strategy.name in ("", MITOGEN_STRATEGY)
    return {"ansible strategy": "linear" if plain else strategy.name}


def record_version(
    registry: Registry, record: Version, facts: ImageFacts | None, reason: str | None = None
) -> None:
    """Record a version with its image's facts (None: a render-only or older target captured
    none) and the reason it was baked (None: its inputs changed, the usual reason); the
    caller's pending artifact goes if this raises."""
    documents = {}
    if facts is not None:
        documents["image-facts"] = facts.document()
    if reason is not None:
        documents["bake-reason"] = reason
    packages = [p.package for p in facts.packages] if facts is not None else []
    try:
        registry.record_version(record, packages=packages, documents=documents)
    except OSError as exc:
        raise RegistryError(f"cannot record {record.label}: {exc}") from exc


def packer_phases(run: PackerRun, started: float) -> dict[str, float]:
    """Split packer's wall time into builder start, provision and capture from event times."""
    wall_started = time.time() - (time.monotonic() - started)
    times = [e.time for e in run.events if e.time is not None]
    if not times:
        return {"packer": run.duration_s}
    first, last = min(times), max(times)
    end = wall_started + run.duration_s
    return {
        "builder start": max(0.0, first - wall_started),
        "provision": max(0.0, last - first),
        "capture and commit": max(0.0, end - last),
    }
