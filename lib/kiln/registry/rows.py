"""The rows the registry returns: versions, artifacts, packages, channels, runs and events."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple, Protocol, TypeVar

from kiln.registry.status import VersionStatus


@dataclass(frozen=True)
class Artifact:
    target: str
    ref: str
    image_id: str
    sha256: str | None = None
    size_bytes: int | None = None
    deleted_at: str | None = None


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    arch: str


@dataclass(frozen=True)
class Version:
    """One recorded, immutable image version."""

    role: str
    version: int
    kind: str
    target: str
    fingerprint: str
    parent_role: str | None
    parent_version: int | None
    status: VersionStatus
    git_commit: str
    git_dirty: bool
    tools: Mapping[str, str]
    inputs: Mapping[str, Any]
    timings: Mapping[str, float]
    bake_seconds: float
    created_at: str
    artifacts: tuple[Artifact, ...] = field(default=())
    status_reason: str | None = None
    parent_revoked: bool = False

    def __post_init__(self) -> None:
        # A caller may give the plain string (the library's users, tests): it is one of them.
        object.__setattr__(self, "status", VersionStatus(self.status))

    @property
    def label(self) -> str:
        return f"{self.role} v{self.version}"

    def artifact(self, target: str | None = None) -> Artifact | None:
        for artifact in self.artifacts:
            if target is None or artifact.target == target:
                return artifact
        return None

    def summary(self, channels: tuple[str, ...] = ()) -> VersionSummary:
        """This version as history lists it, with the channels pointing at it."""
        # VersionSummary's fields are Version's own, but for channels.
        values = {name: getattr(self, name) for name in VersionSummary._fields[:-1]}
        return VersionSummary(**values, channels=channels)


class VersionSummary(NamedTuple):
    """A version without its bulky JSON columns: what history, gc and outdated read by the
    thousand (a tuple, so that building ten thousand of them stays cheap)."""

    role: str
    version: int
    kind: str
    target: str
    fingerprint: str
    parent_role: str | None
    parent_version: int | None
    #: The stored string: history, gc and outdated read them by the thousand, and
    #: VersionStatus(...) on each would cost more than their tests (kiln.registry.statuses).
    status: str
    status_reason: str | None
    parent_revoked: bool
    git_commit: str
    git_dirty: bool
    bake_seconds: float
    created_at: str
    #: The channels pointing at this version, where the caller asked (history and show do).
    channels: tuple[str, ...] = ()

    @property
    def short_fingerprint(self) -> str:
        return self.fingerprint[:12]

    @property
    def status_label(self) -> str:
        return self.status + (" (built on revoked parent)" if self.parent_revoked else "")

    @property
    def parent_label(self) -> str:
        return f"{self.parent_role} v{self.parent_version}" if self.parent_role else "-"


@dataclass(frozen=True)
class ChannelEntry:
    """Where one channel of a role points now, and since when."""

    role: str
    channel: str
    version: int | None
    updated_at: str


@dataclass(frozen=True)
class Event:
    """One audit event of a role (revoke records one), its detail decoded from JSON."""

    id: int
    role: str
    version: int | None
    kind: str
    detail: Mapping[str, Any]
    actor: str
    at: str


@dataclass(frozen=True)
class ChannelLogEntry:
    """One move of a channel, as its audit log keeps it (rollback and revoke walk these)."""

    id: int
    role: str
    channel: str
    from_version: int | None
    to_version: int | None
    action: str
    actor: str
    reason: str | None
    forced: bool
    at: str

    def as_dict(self) -> dict[str, Any]:
        """The row as `history --json` has always printed it: the columns, forced as 0 or 1."""
        return {**_fields(self), "forced": int(self.forced)}


@dataclass(frozen=True)
class TestRun:
    """One recorded run of a version's acceptance tests, with its whole output."""

    # Not a test class, although its name starts with Test: pytest must not collect it.
    __test__ = False

    id: int
    role: str
    version: int
    suite: str
    passed: bool
    summary: str
    output: str
    started_at: str
    duration_s: float

    def as_dict(self) -> dict[str, Any]:
        """The row as `show --json` has always printed it: the columns, passed as 0 or 1."""
        return {**_fields(self), "passed": int(self.passed)}


@dataclass(frozen=True)
class Deployment:
    """One recorded `invoke deploy` of a role: what it started, and how it ended."""

    id: int
    deployment: str
    role: str
    version: int | None
    channel: str | None
    strategy: str
    replicas: int
    result: str
    detail: str
    actor: str
    started_at: str
    duration_s: float

    def as_dict(self) -> dict[str, Any]:
        """The row as `history --json` has always printed it: its columns, in table order."""
        return _fields(self)


@dataclass(frozen=True)
class Push:
    """One version's image pushed to an OCI registry: where, and the digest it is pulled by."""

    role: str
    version: int
    target: str
    registry: str  # KILN_IMAGE_REGISTRY: host:port/prefix
    reference: str  # host:port/prefix/name@sha256:...: what deploys pull, and verify
    digest: str  # the manifest digest, sha256:...
    pushed_at: str

    def as_dict(self) -> dict[str, Any]:
        return _fields(self)


_Row = TypeVar("_Row")


class Columns(Protocol):
    """A database row read by column name (sqlite3.Row, a dict)."""

    def __getitem__(self, column: str, /) -> Any: ...

    def keys(self) -> Iterable[str]: ...


def from_row(cls: type[_Row], row: Columns, **converted: Any) -> _Row:
    """A row dataclass from a database row: each field from the column of its name, except the
    fields given here already converted (JSON decoded, 0 or 1 as a bool, a renamed column)."""
    names = _FIELD_NAMES.get(cls)
    if names is None:  # once per class: history and gc read rows by the thousand
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
    return cls(**{name: converted[name] if name in converted else row[name] for name in names})


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _fields(row: Any) -> dict[str, Any]:
    # Shallow, unlike dataclasses.asdict: these rows hold only scalars, and this keeps field order.
    return {f.name: getattr(row, f.name) for f in fields(row)}
