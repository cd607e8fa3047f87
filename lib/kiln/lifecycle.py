"""Image versions as a lifecycle: history, show, diff, channels (promote, rollback), revoke, gc.

Every function reads or changes the registry and returns plain dataclasses; the tasks only print
them. Refusals are RegistryErrors that say what to do next.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import tarfile
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, is_dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from kiln import tools
from kiln.errors import KilnError, RegistryError, ToolError
from kiln.fingerprint import canonical_json
from kiln.registry import Artifact, Package, Registry, Version, VersionSummary, actor

if TYPE_CHECKING:
    from kiln.bake import BakeOutcome, Baker
    from kiln.model import Node, Project

CHANNEL_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
MASK = "********"
#: Statuses a channel may be moved back to by rollback (revoke is stricter: tested only).
ROLLBACK_OK = frozenset({"baked", "untested", "tested"})
#: Pseudo-filesystems that are mount points in a container, never image content.
SKIPPED_TREES = ("proc", "sys", "dev")


def as_json(value: Any) -> Any:
    """A lifecycle result as JSON-ready data (with the labels the text output shows)."""
    if isinstance(value, HistoryEntry):
        return {**{k: as_json(v) for k, v in value._asdict().items()}, **value.json_extras()}
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: as_json(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, list | tuple):
        return [as_json(v) for v in value]
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    return value


# -- history --------------------------------------------------------------------------------
class HistoryEntry(NamedTuple):
    """One version as history lists it: its summary and the channels pointing at it.

    A tuple rather than a dataclass: history builds one per version, ten thousand at a time.
    """

    role: str
    version: int
    kind: str
    target: str
    fingerprint: str
    parent_role: str | None
    parent_version: int | None
    status: str
    status_reason: str | None
    parent_revoked: bool
    git_commit: str
    git_dirty: bool
    bake_seconds: float
    created_at: str
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

    def json_extras(self) -> dict[str, str]:
        return {"short_fingerprint": self.short_fingerprint, "status_label": self.status_label}


@dataclass(frozen=True)
class History:
    """Every version of a role, newest first, with its channel audit log and deployments."""

    role: str
    versions: list[HistoryEntry]
    channel_log: list[dict[str, Any]]
    deployments: list[dict[str, Any]]


def _summary(version: Version) -> VersionSummary:
    return VersionSummary(
        version.role, version.version, version.kind, version.target, version.fingerprint,
        version.parent_role, version.parent_version, version.status, version.status_reason,
        version.parent_revoked, version.git_commit, version.git_dirty, version.bake_seconds,
        version.created_at,
    )  # fmt: skip


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
        versions=[HistoryEntry._make((*row, channels.get(row.version, ()))) for row in rows],
        channel_log=registry.channel_log(role),
        deployments=registry.deployments(role),
    )


def _require(registry: Registry, role: str, version: int | None) -> Version:
    """A recorded version of role (the newest if version is None), or an actionable error."""
    found = registry.get(role, version) if version else registry.latest(role)
    if found is not None:
        return found
    newest = registry.latest(role)
    if newest is None:
        raise RegistryError(f"{role} has no recorded versions; run `invoke bake {role}` first")
    raise RegistryError(
        f"{role} has no version {version} (newest: v{newest.version}); see `invoke history {role}`"
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

    summary: HistoryEntry
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
    test_runs: list[dict[str, Any]]
    timings: dict[str, float]
    #: What lint reported when the version was baked: profile, warning counts by rule, findings.
    lint: dict[str, Any] = field(default_factory=dict)
    #: Roles and collections from requirements.lock that the bake ran with (type:name -> sha256).
    requirements: dict[str, str] = field(default_factory=dict)


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
                node.role, node.version, node.kind, node.status, node.fingerprint,
                node.parent_revoked,
            )
        )  # fmt: skip
        if node.parent_role is None or node.parent_version is None:
            break
        node = registry.get(node.parent_role, node.parent_version)
    return chain


def show(registry: Registry, role: str, version: int | None = None) -> VersionDetails:
    """One version's inputs, Ansible roles, ancestry, artifacts, packages and test runs."""
    found = _require(registry, role, version)
    inputs = dict(found.inputs)
    definition = dict(inputs.get("definition") or {})
    files = inputs.get("ansible_role_files") or {}
    channels = _channels_by_version(registry, role)
    return VersionDetails(
        summary=HistoryEntry(*_summary(found), channels.get(found.version, ())),
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
    )


# -- diff -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PackageChange:
    name: str
    arch: str
    change: str  # added, removed, changed
    old: str | None
    new: str | None


@dataclass(frozen=True)
class InputChange:
    """One input that differs; kind is variable, secret, role_file, parent, tool, template..."""

    kind: str
    name: str
    change: str  # added, removed, changed
    old: Any = None
    new: Any = None


@dataclass(frozen=True)
class FileEntry:
    """What identifies a path in an image (mtimes are left out: every bake changes them)."""

    type: str  # file, dir, symlink, hardlink, other
    size: int
    mode: int
    uid: int
    gid: int
    sha256: str | None = None
    link: str | None = None


@dataclass(frozen=True)
class FileChange:
    path: str
    change: str  # added, removed, changed
    old: FileEntry | None
    new: FileEntry | None


@dataclass(frozen=True)
class VersionDiff:
    role: str
    a: int
    b: int
    packages: list[PackageChange]
    inputs: list[InputChange]
    files: list[FileChange] | None
    files_note: str | None = None

    def packages_with(self, change: str) -> list[PackageChange]:
        return [p for p in self.packages if p.change == change]


def _package_key(package: Package) -> tuple[str, str]:
    # dpkg names Multi-Arch: same packages libfoo:amd64; the arch has its own field.
    return package.name.removesuffix(f":{package.arch}"), package.arch


def diff_packages(old: Sequence[Package], new: Sequence[Package]) -> list[PackageChange]:
    a = {_package_key(p): p.version for p in old}
    b = {_package_key(p): p.version for p in new}
    out: list[PackageChange] = []
    for key in sorted(a.keys() | b.keys()):
        before, after = a.get(key), b.get(key)
        if before == after:
            continue
        change = "added" if before is None else "removed" if after is None else "changed"
        out.append(PackageChange(key[0], key[1], change, before, after))
    return out


_ABSENT = object()


def _map_changes(kind: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[InputChange]:
    out: list[InputChange] = []
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if before == after:
            continue
        if before is _ABSENT:
            out.append(InputChange(kind, key, "added", None, after))
        elif after is _ABSENT:
            out.append(InputChange(kind, key, "removed", before, None))
        else:
            out.append(InputChange(kind, key, "changed", before, after))
    return out


def diff_inputs(a: Version, b: Version) -> list[InputChange]:
    """What changed between the recorded inputs of a and b (secret values never appear)."""
    ia, ib = dict(a.inputs), dict(b.inputs)
    da, db = dict(ia.pop("definition", {}) or {}), dict(ib.pop("definition", {}) or {})
    out = _map_changes("variable", da.pop("variables", {}) or {}, db.pop("variables", {}) or {})
    out += _map_changes("secret", da.pop("secrets", {}) or {}, db.pop("secrets", {}) or {})
    out += _map_changes("definition", da, db)
    files_a, files_b = (
        ia.pop("ansible_role_files", {}) or {},
        ib.pop("ansible_role_files", {}) or {},
    )
    for name in sorted(files_a.keys() | files_b.keys()):
        if name not in files_a or name not in files_b:
            change = "added" if name not in files_a else "removed"
            out.append(InputChange("ansible_role", name, change))
        prefixed_a = {f"{name}/{p}": d for p, d in (files_a.get(name) or {}).items()}
        prefixed_b = {f"{name}/{p}": d for p, d in (files_b.get(name) or {}).items()}
        out += _map_changes("role_file", prefixed_a, prefixed_b)
    parent_a = (a.parent_role, a.parent_version)
    parent_b = (b.parent_role, b.parent_version)
    if parent_a != parent_b:
        out.append(
            InputChange(
                "parent", "version", "changed",
                f"{a.parent_role} v{a.parent_version}" if a.parent_role else None,
                f"{b.parent_role} v{b.parent_version}" if b.parent_role else None,
            )
        )  # fmt: skip
    out += _map_changes("parent", ia.pop("parent", {}) or {}, ib.pop("parent", {}) or {})
    out += _map_changes("tool", ia.pop("tools", {}) or {}, ib.pop("tools", {}) or {})
    out += _map_changes("template", ia.pop("templates", {}) or {}, ib.pop("templates", {}) or {})
    out += _map_changes("recipe", ia.pop("recipe", {}) or {}, ib.pop("recipe", {}) or {})
    out += _map_changes("input", ia, ib)  # target, schema, and anything added later
    return out


def _file_entry(member: tarfile.TarInfo, tar: tarfile.TarFile) -> FileEntry:
    kind, digest, link = "other", None, None
    if member.isreg():
        kind = "file"
        handle = tar.extractfile(member)
        assert handle is not None
        hasher = hashlib.sha256()
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
        digest = hasher.hexdigest()
    elif member.issym():
        kind, link = "symlink", member.linkname
    elif member.islnk():
        kind, link = "hardlink", "/" + member.linkname.removeprefix("./").lstrip("/")
    elif member.isdir():
        kind = "dir"
    return FileEntry(kind, member.size, member.mode, member.uid, member.gid, digest, link)


def image_filesystem(ref: str) -> dict[str, FileEntry]:
    """Every path of a docker image, read by streaming `docker export` of a created container.

    The container is never started, and it is removed whatever happens.
    """
    name = f"kiln-diff-{uuid.uuid4().hex[:10]}"
    tools.docker("create", "--name", name, "--label", "kiln.purpose=diff", ref, timeout=120)
    entries: dict[str, FileEntry] = {}
    try:
        with (
            tempfile.TemporaryFile() as errors,
            subprocess.Popen(
                ["docker", "export", name], stdout=subprocess.PIPE, stderr=errors
            ) as proc,
        ):
            assert proc.stdout is not None
            try:
                with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                    for member in tar:
                        path = member.name.removeprefix("./").strip("/")
                        if not path or path.split("/", 1)[0] in SKIPPED_TREES:
                            continue
                        entries["/" + path] = _file_entry(member, tar)
            except tarfile.TarError as exc:
                proc.kill()
                raise ToolError(f"cannot read the filesystem of {ref}: {exc}") from exc
            if proc.wait() != 0:
                errors.seek(0)
                tail = errors.read().decode(errors="replace").strip().splitlines()[-5:]
                raise ToolError(f"docker export of {ref} failed: {' '.join(tail)}")
    finally:
        tools.run(["docker", "rm", "-f", "-v", name], check=False, timeout=120)
    return entries


def diff_filesystems(
    old: Mapping[str, FileEntry], new: Mapping[str, FileEntry]
) -> list[FileChange]:
    out: list[FileChange] = []
    for path in sorted(old.keys() | new.keys()):
        before, after = old.get(path), new.get(path)
        if before == after:
            continue
        change = "added" if before is None else "removed" if after is None else "changed"
        out.append(FileChange(path, change, before, after))
    return out


def _diff_files(a: Version, b: Version) -> tuple[list[FileChange] | None, str | None]:
    refs: list[str] = []
    for version in (a, b):
        artifact = version.artifact("docker")
        if artifact is None:
            return None, f"{version.label} has no docker image; files are compared for docker"
        if artifact.deleted_at is not None:
            return None, f"{version.label}'s image was deleted by gc at {artifact.deleted_at}"
        if tools.docker_image_id(artifact.ref) != artifact.image_id:
            return None, f"{version.label}'s image {artifact.ref} is not in the Docker engine"
        refs.append(artifact.ref)
    with ThreadPoolExecutor(max_workers=2) as pool:
        old, new = pool.map(image_filesystem, refs)
    return diff_filesystems(old, new), None


def diff(registry: Registry, role: str, a: int, b: int, *, files: bool = True) -> VersionDiff:
    """Packages, recorded inputs and (for docker, optionally) image files between a and b."""
    va, vb = _require(registry, role, a), _require(registry, role, b)
    file_changes, note = _diff_files(va, vb) if files else (None, "not compared (--no-files)")
    return VersionDiff(
        role=role,
        a=a,
        b=b,
        packages=diff_packages(registry.packages(role, a), registry.packages(role, b)),
        inputs=diff_inputs(va, vb),
        files=file_changes,
        files_note=note,
    )


# -- channels -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChannelChange:
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
    channel: str
    version: int | None
    status: str | None
    updated_at: str


def check_channel(channel: str) -> None:
    if not CHANNEL_RE.match(channel):
        raise RegistryError(
            f"channel {channel!r} is invalid: use 1-32 lowercase letters, digits and '-', "
            "starting with a letter (for example dev, staging, prod)"
        )


def channels(registry: Registry, role: str) -> list[ChannelState]:
    """The channels of role, the version each points at and that version's status."""
    statuses = {r.version: r.status for r in registry.version_summaries(role)}
    return [
        ChannelState(e["channel"], e["version"], statuses.get(e["version"]), e["updated_at"])
        for e in registry.channel_entries(role)
    ]


def channel_stack(log: Iterable[Mapping[str, Any]]) -> list[int]:
    """The versions a channel held, oldest first, with rolled-back ones popped off.

    log is the channel's audit log in any order; promote pushes, rollback and revoke pop back to
    the version they moved to, so rolling back twice goes two steps back, never forth.
    """
    stack: list[int] = []
    for entry in sorted(log, key=lambda e: int(e["id"])):
        to = entry["to_version"]
        if to is None:
            stack.clear()
        elif entry["action"] in ("rollback", "revoke") and to in stack:
            while stack[-1] != to:
                stack.pop()
        elif not stack or stack[-1] != to:
            stack.append(int(to))
    return stack


def _status_label(version: Version) -> str:
    return version.status + (" on a revoked parent" if version.parent_revoked else "")


def _refusal(version: Version) -> str | None:
    """Why version may not be promoted without --force, or None."""
    if version.status == "revoked":
        return f"{version.label} is revoked ({version.status_reason or 'no reason recorded'})"
    if version.status == "failed":
        return f"{version.label} is failed ({version.status_reason or 'no reason recorded'})"
    if version.parent_revoked:
        return (
            f"{version.label} was built on a revoked parent "
            f"({version.parent_role} v{version.parent_version}); rebake it"
        )
    if version.status != "tested":
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
    with registry.transaction() as conn:
        # Read under the write lock, so a concurrent revoke cannot slip in between.
        found = _require(registry, role, version)
        artifact = found.artifact()
        if artifact is None or artifact.deleted_at is not None:
            raise RegistryError(
                f"{found.label} has no artifact left (deleted by gc); it cannot be deployed, "
                f"so it cannot be promoted: bake a new version with `invoke bake {role}`"
            )
        refusal = _refusal(found)
        if refusal is not None and not force:
            raise RegistryError(f"{refusal}; promote it with --force --reason '...' if you must")
        current = registry.channels(role).get(channel)
        if current == version:
            return ChannelChange(role, channel, current, version, "promote", who, changed=False)
        previous = registry.set_channel(
            conn, role=role, channel=channel, version=version, action="promote", actor=who,
            reason=reason, forced=force and refusal is not None,
        )  # fmt: skip
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
    with registry.transaction() as conn:
        current = registry.channels(role).get(channel)
        if current is None:
            raise RegistryError(
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
            if found.status not in ROLLBACK_OK or found.parent_revoked:
                skipped.append(f"v{candidate} ({_status_label(found)})")
                continue
            target = candidate
            break
        if target is None:
            detail = f" (skipped {', '.join(skipped)})" if skipped else ""
            raise RegistryError(
                f"channel {channel} of {role} has no earlier version to roll back to{detail}; "
                f"promote one with `invoke promote {role} VERSION --channel {channel}`"
            )
        previous = registry.set_channel(
            conn, role=role, channel=channel, version=target, action="rollback", actor=who,
            reason=reason,
        )  # fmt: skip
    return ChannelChange(role, channel, previous, target, "rollback", who, reason)


# -- revoke ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class RevokeResult:
    role: str
    version: int
    reason: str
    moved: list[ChannelChange]
    emptied: list[str]
    descendants: list[tuple[str, int]]
    warnings: list[str] = field(default_factory=list)


def _good_fallback(registry: Registry, role: str, stack: list[int], revoked: int) -> int | None:
    for candidate in reversed(stack):
        if candidate == revoked:
            continue
        found = registry.get(role, candidate)
        if found is not None and found.status == "tested" and not found.parent_revoked:
            return candidate
    return None


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
    with registry.transaction() as conn:
        found = _require(registry, role, version)
        if found.status == "revoked":
            raise RegistryError(
                f"{found.label} is already revoked ({found.status_reason or 'no reason'})"
            )
        registry.set_status(role, version, "revoked", reason, conn=conn)
        for channel in registry.channels_pointing_at(role, version):
            stack = channel_stack(registry.channel_log(role, channel))
            target = _good_fallback(registry, role, stack, version)
            registry.set_channel(
                conn, role=role, channel=channel, version=target, action="revoke", actor=who,
                reason=reason,
            )  # fmt: skip
            moved.append(ChannelChange(role, channel, version, target, "revoke", who, reason))
            if target is None:
                emptied.append(channel)
                warnings.append(
                    f"channel {channel} of {role} is now EMPTY: it held no earlier tested "
                    f"version; promote one with `invoke promote {role} VERSION "
                    f"--channel {channel}`"
                )
        descendants = registry.descendants(role, version)
        registry.mark_parent_revoked(conn, descendants)
        for child_role, child_version in descendants:
            for channel in registry.channels_pointing_at(child_role, child_version):
                warnings.append(
                    f"channel {channel} of {child_role} points at v{child_version}, built on "
                    f"revoked {found.label}; rebake with `invoke bake {child_role} --outdated`"
                )
        registry.log_event(
            role, version, "revoke",
            {"reason": reason, "channels": {c.channel: c.to_version for c in moved},
             "descendants": [f"{r} v{v}" for r, v in descendants]},
            who, conn=conn,
        )  # fmt: skip
    return RevokeResult(role, version, reason, moved, emptied, descendants, warnings)


# -- gc -------------------------------------------------------------------------------------
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

    target = get_target(artifact.target)
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
        if entry["version"] is not None:
            key = (entry["role"], int(entry["version"]))
            reasons.setdefault(key, f"channel {entry['channel']}")
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
        raise RegistryError(
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


# -- outdated -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outdated:
    role: str
    version: int
    parent_role: str
    parent_version: int
    why: str
    newest_parent: int | None


def outdated(registry: Registry) -> list[Outdated]:
    """Roles whose newest version was baked from a parent since superseded or revoked.

    Superseded means a newer version of the parent role exists that is neither failed nor
    revoked.
    """
    by_role: dict[str, list[VersionSummary]] = {}
    for row in registry.version_summaries():
        by_role.setdefault(row.role, []).append(row)
    found: list[Outdated] = []
    for role, rows in sorted(by_role.items()):
        newest = rows[0]
        parent_role, parent_version = newest.parent_role, newest.parent_version
        if parent_role is None or parent_version is None:
            continue
        parent_rows = by_role.get(parent_role, [])
        parent = next((r for r in parent_rows if r.version == parent_version), None)
        newer = [
            r.version for r in parent_rows
            if r.version > parent_version and r.status not in ("failed", "revoked")
        ]  # fmt: skip
        why = None
        if parent is not None and parent.status == "revoked":
            why = f"its parent {parent_role} v{parent_version} is revoked"
        elif newest.parent_revoked:
            why = f"its parent {parent_role} v{parent_version} descends from a revoked version"
        elif newer:
            why = f"its parent {parent_role} v{parent_version} is superseded by v{max(newer)}"
        if why is not None:
            found.append(
                Outdated(
                    role, newest.version, parent_role, parent_version, why,
                    max(newer) if newer else None,
                )
            )  # fmt: skip
    return found


def bake_outdated(
    baker: Baker,
    *,
    within: Sequence[str] | None = None,
    on_bake: Callable[[str, list[BakeOutcome]], None] | None = None,
) -> list[tuple[str, list[BakeOutcome]]]:
    """Rebake outdated roles, parents first; a rebaked parent makes its children outdated too.

    within limits it to those roles and the roles built on them. Roles no longer defined are
    skipped.
    """
    from kiln.model import Role

    project = baker.project
    allowed: set[str] | None = None
    if within is not None:
        allowed = set()
        todo: list[Role] = [project.role_named(name) for name in within]
        while todo:
            node = todo.pop()
            allowed.add(node.name)
            todo.extend(project.children(node))
    done: list[tuple[str, list[BakeOutcome]]] = []
    baked: set[str] = set()
    while True:
        candidates = [
            o.role for o in outdated(baker.registry)
            if o.role not in baked and (allowed is None or o.role in allowed)
            and isinstance(_defined(project, o.role), Role)
        ]  # fmt: skip
        if not candidates:
            return done
        # Shallowest first: its rebake may make deeper roles outdated, which the next pass sees.
        name = min(candidates, key=lambda n: (len(project.role_named(n).ancestry()), n))
        outcomes = baker.bake(name, force=True)
        baked.add(name)
        done.append((name, outcomes))
        if on_bake is not None:
            on_bake(name, outcomes)


def _defined(project: Project, name: str) -> Node | None:
    try:
        return project.get(name)
    except KilnError:
        return None


# -- text -----------------------------------------------------------------------------------
def format_history(result: History) -> list[str]:
    lines = [
        f"{'VERSION':>7}  {'FINGERPRINT':<12}  {'PARENT':<22}  {'STATUS':<36}  "
        f"{'CHANNELS':<14}  {'COMMIT':<14}  {'BAKE':>7}  CREATED"
    ]
    for e in result.versions:
        commit = e.git_commit[:12] + ("+" if e.git_dirty else "")
        lines.append(
            f"{e.version:>7}  {e.short_fingerprint:<12}  {e.parent_label:<22}  "
            f"{e.status_label:<36}  {','.join(e.channels) or '-':<14}  {commit:<14}  "
            f"{e.bake_seconds:>6.1f}s  {e.created_at}"
        )
    lines.append("(+ after a commit: the tree was dirty)")
    lines.append("")
    lines.append("channel log:" if result.channel_log else "channel log: (empty)")
    for c in result.channel_log:
        lines.append(
            f"  {c['at']}  {c['channel']:<10} {_v(c['from_version'])} -> {_v(c['to_version'])}"
            f"  {c['action']}{' (forced)' if c['forced'] else ''} by {c['actor']}"
            f"{': ' + c['reason'] if c['reason'] else ''}"
        )
    lines.append("deployments:" if result.deployments else "deployments: (none)")
    for d in result.deployments:
        lines.append(
            f"  {d['started_at']}  {d['deployment']} {_v(d['version'])} "
            f"channel={d['channel'] or '-'} {d['strategy']} x{d['replicas']}: {d['result']}"
        )
    return lines


def _v(version: int | None) -> str:
    return "-" if version is None else f"v{version}"


def format_show(d: VersionDetails) -> list[str]:
    s = d.summary
    lines = [
        f"{s.role} v{s.version}  ({d.kind} on {d.target})",
        f"  status       {s.status_label}{': ' + s.status_reason if s.status_reason else ''}",
        f"  fingerprint  {s.fingerprint}",
        f"  channels     {', '.join(s.channels) or '-'}",
        f"  commit       {s.git_commit}{' (dirty tree)' if s.git_dirty else ''}",
        f"  baked        {s.created_at} in {s.bake_seconds:.1f}s",
        "ancestry:",
    ]
    for a in d.ancestry:
        flag = " (built on revoked parent)" if a.parent_revoked else ""
        lines.append(f"  {a.role} v{a.version}  {a.kind}  {a.status}{flag}  {a.fingerprint[:12]}")
    lines.append("definition:")
    for key, value in sorted(d.definition.items()):
        lines.append(f"  {key} = {canonical_json(value)}")
    lines.append("variables:" if d.variables else "variables: (none)")
    for key, value in d.variables.items():
        lines.append(f"  {key} = {value if value == MASK else canonical_json(value)}")
    lines.append("ansible roles:" if d.ansible_roles else "ansible roles: (none)")
    for r in d.ansible_roles:
        lines.append(f"  {r.name:<24} {r.digest[:16]}  ({r.files} files)")
    for key, digest in d.requirements.items():
        lines.append(f"  {key:<24} {digest[:16]}  (requirements.lock)")
    if d.tools:
        lines.append("tools: " + ", ".join(f"{k} {v}" for k, v in sorted(d.tools.items())))
    if d.lint:
        rules = ", ".join(f"{rule} {n}" for rule, n in d.lint.get("by_rule", {}).items())
        lines.append(
            f"lint: profile {d.lint.get('profile')}, {d.lint.get('warnings', 0)} warning(s)"
            + (f" ({rules})" if rules else "")
        )
    lines.append("artifacts:" if d.artifacts else "artifacts: (none)")
    for art in d.artifacts:
        size = f"{art.size_bytes / 1e6:.1f} MB" if art.size_bytes else "-"
        gone = f"  DELETED {art.deleted_at}" if art.deleted_at else ""
        lines.append(f"  {art.target}: {art.ref}  {art.image_id[:19]}  {size}{gone}")
    lines.append(f"packages: {len(d.packages)}")
    for p in d.packages:
        lines.append(f"  {p.name} {p.version} {p.arch}")
    lines.append("test runs:" if d.test_runs else "test runs: (none)")
    for t in d.test_runs:
        lines.append(
            f"  {t['started_at']}  {t['suite']}  {'passed' if t['passed'] else 'FAILED'}"
            f"  {t['duration_s']:.1f}s  {t['summary']}"
        )
    return lines


def format_diff(d: VersionDiff) -> list[str]:
    lines = [f"{d.role} v{d.a} -> v{d.b}"]
    lines.append(f"packages: {len(d.packages)} change(s)")
    mark = {"added": "+", "removed": "-", "changed": "~"}
    for p in d.packages:
        versions = p.new if p.change == "added" else p.old if p.change == "removed" else (
            f"{p.old} -> {p.new}"
        )  # fmt: skip
        lines.append(f"  {mark[p.change]} {p.name}:{p.arch} {versions}")
    lines.append(f"inputs: {len(d.inputs)} change(s)")
    for i in d.inputs:
        if i.kind == "role_file":
            lines.append(f"  {mark[i.change]} {i.kind} {i.name}")
        else:
            lines.append(
                f"  {mark[i.change]} {i.kind} {i.name}: {_short(i.old)} -> {_short(i.new)}"
            )
    if d.files is None:
        lines.append(f"files: {d.files_note}")
    else:
        lines.append(f"files: {len(d.files)} change(s)")
        for f in d.files:
            lines.append(f"  {mark[f.change]} {f.path}")
    return lines


def _short(value: Any) -> str:
    if value is None:
        return "-"
    text = value if isinstance(value, str) else canonical_json(value)
    return text if len(text) <= 60 else text[:57] + "..."


def format_change(c: ChannelChange) -> str:
    if not c.changed:
        return f"{c.role}: channel {c.channel} already points at v{c.to_version}; nothing changed"
    forced = " (forced)" if c.forced else ""
    return (
        f"{c.role}: channel {c.channel} {_v(c.from_version)} -> {_v(c.to_version)} "
        f"({c.action}{forced} by {c.actor}{': ' + c.reason if c.reason else ''})"
    )
