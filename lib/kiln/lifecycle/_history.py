"""`history` and `show`: every version of a role, and everything recorded about one."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kiln.errors import RegistryError
from kiln.fingerprint import canonical_json
from kiln.lifecycle._lookup import require
from kiln.lifecycle._reasons import describe_reason, reason_data
from kiln.registry import (
    Artifact,
    ChannelLogEntry,
    Deployment,
    Package,
    Push,
    Registry,
    TestRun,
    Version,
    VersionSummary,
)

MASK = "********"


@dataclass(frozen=True)
class History:
    """Every version of a role, newest first, with its channel audit log and deployments."""

    role: str
    versions: list[VersionSummary]
    channel_log: list[ChannelLogEntry]
    deployments: list[Deployment]
    #: version -> why it was baked with unchanged inputs (kiln.lifecycle._reasons); ordinary
    #: bakes are absent.
    reasons: dict[int, str] = field(default_factory=dict)


def _channels_by_version(registry: Registry, role: str) -> dict[int, tuple[str, ...]]:
    out: dict[int, tuple[str, ...]] = {}
    for channel, version in registry.channels(role).items():
        if version is not None:
            out[version] = (*out.get(version, ()), channel)
    return out


def history(registry: Registry, role: str) -> History:
    """Every recorded version of role, newest first, plus its channel log and deployments."""
    rows = registry.version_summaries(role)
    if not rows:
        raise RegistryError(f"{role} has no recorded versions; run `invoke bake {role}` first")
    channels = _channels_by_version(registry, role)
    return History(
        role=role,
        versions=[row._replace(channels=channels.get(row.version, ())) for row in rows],
        channel_log=registry.channel_log(role),
        deployments=registry.deployments(role),
        reasons={
            number: describe_reason(document) or ""
            for number, document in registry.documents(role, "bake-reason").items()
        },
    )


# -- show -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class AnsibleRoleDigest:
    """An applied Ansible role and one digest over its recorded file map."""

    name: str
    digest: str
    files: int


@dataclass(frozen=True)
class Ancestor:
    role: str
    version: int
    kind: str
    status: str
    fingerprint: str
    parent_revoked: bool


@dataclass(frozen=True)
class VersionDetails:
    """Everything recorded about one version; secret values never appear, only MASK."""

    summary: VersionSummary
    kind: str
    target: str
    definition: dict[str, Any]
    variables: dict[str, Any]
    ansible_roles: list[AnsibleRoleDigest]
    templates: dict[str, str]
    tools: dict[str, str]
    ancestry: list[Ancestor]
    artifacts: list[Artifact]
    packages: list[Package]
    test_runs: list[TestRun]
    timings: dict[str, float]
    #: What lint reported when the version was baked: profile, warning counts by rule, findings.
    lint: dict[str, Any] = field(default_factory=dict)
    #: Roles and collections from requirements.lock that the bake ran with (type:name -> sha256).
    requirements: dict[str, str] = field(default_factory=dict)
    #: Where its images were pushed (KILN_IMAGE_REGISTRY); empty: only in the engine that baked it.
    pushes: list[Push] = field(default_factory=list)
    #: Why it was baked although its inputs were unchanged (the recorded document), or None.
    reason: dict[str, Any] | None = None


def role_files_digest(files: Mapping[str, str]) -> str:
    """One digest for an Ansible role's {path: sha256} map, as show prints it."""
    return hashlib.sha256(canonical_json(dict(files)).encode()).hexdigest()


def masked_variables(definition: Mapping[str, Any]) -> dict[str, Any]:
    """Plain variables as recorded, secret ones as MASK (the record holds only their source)."""
    out = dict(definition.get("variables") or {})
    for name in definition.get("secrets") or {}:
        out[name] = MASK
    return dict(sorted(out.items()))


def ancestry(registry: Registry, version: Version) -> list[Ancestor]:
    """version and the versions it was baked from, down to its base."""
    chain: list[Ancestor] = []
    node: Version | None = version
    seen: set[tuple[str, int]] = set()
    while node is not None and (node.role, node.version) not in seen:
        seen.add((node.role, node.version))
        chain.append(
            Ancestor(
                node.role,
                node.version,
                node.kind,
                node.status,
                node.fingerprint,
                node.parent_revoked,
            )
        )
        if node.parent_role is None or node.parent_version is None:
            break
        node = registry.get(node.parent_role, node.parent_version)
    return chain


def show(registry: Registry, role: str, version: int | None = None) -> VersionDetails:
    """One version's inputs, Ansible roles, ancestry, artifacts, packages and test runs."""
    found = require(registry, role, version)
    inputs = dict(found.inputs)
    definition = dict(inputs.get("definition") or {})
    files = inputs.get("ansible_role_files") or {}
    channels = _channels_by_version(registry, role)
    return VersionDetails(
        summary=found.summary(channels.get(found.version, ())),
        kind=found.kind,
        target=found.target,
        definition={k: v for k, v in definition.items() if k not in ("variables", "secrets")},
        variables=masked_variables(definition),
        ansible_roles=[
            AnsibleRoleDigest(name, role_files_digest(role_files), len(role_files))
            for name, role_files in files.items()
        ],
        templates=dict(inputs.get("templates") or {}),
        tools=dict(found.tools),
        ancestry=ancestry(registry, found),
        artifacts=list(found.artifacts),
        packages=registry.packages(role, found.version),
        test_runs=registry.test_runs(role, found.version),
        timings=dict(found.timings),
        lint=dict(inputs.get("lint") or {}),
        requirements=dict(inputs.get("requirements") or {}),
        pushes=registry.pushes(role, found.version),
        reason=reason_data(registry.document(role, found.version, "bake-reason")),
    )
