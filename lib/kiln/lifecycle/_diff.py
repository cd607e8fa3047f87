"""`diff`: packages, recorded inputs and (for docker) image files between two versions."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from kiln.docker import FileEntry, image_filesystem, recorded_image_present
from kiln.errors import ImageMoved, ImageRegistryError
from kiln.image_registry import ensure_local
from kiln.lifecycle._lookup import require
from kiln.lifecycle._reasons import describe_reason
from kiln.registry import Package, Registry, Version

_Key = TypeVar("_Key", str, tuple[str, str])
_Value = TypeVar("_Value")


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
    #: Why b was baked although its inputs were unchanged (kiln.lifecycle._reasons), or None.
    reason: str | None = None

    def packages_with(self, change: str) -> list[PackageChange]:
        return [p for p in self.packages if p.change == change]


def _package_key(package: Package) -> tuple[str, str]:
    # dpkg names Multi-Arch: same packages libfoo:amd64; the arch has its own field.
    return package.name.removesuffix(f":{package.arch}"), package.arch


def _changes(
    old: Mapping[_Key, _Value], new: Mapping[_Key, _Value]
) -> Iterator[tuple[_Key, str, _Value | None, _Value | None]]:
    """(key, added/removed/changed, old value, new value) for each key that differs, sorted."""
    for key in sorted(old.keys() | new.keys()):
        if key not in old:
            yield key, "added", None, new[key]
        elif key not in new:
            yield key, "removed", old[key], None
        elif old[key] != new[key]:
            yield key, "changed", old[key], new[key]


def diff_packages(old: Sequence[Package], new: Sequence[Package]) -> list[PackageChange]:
    a = {_package_key(p): p.version for p in old}
    b = {_package_key(p): p.version for p in new}
    return [PackageChange(*key, change, x, y) for key, change, x, y in _changes(a, b)]


def _map_changes(kind: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[InputChange]:
    return [InputChange(kind, key, change, x, y) for key, change, x, y in _changes(old, new)]


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
                "parent",
                "version",
                "changed",
                f"{a.parent_role} v{a.parent_version}" if a.parent_role else None,
                f"{b.parent_role} v{b.parent_version}" if b.parent_role else None,
            )
        )
    out += _map_changes("parent", ia.pop("parent", {}) or {}, ib.pop("parent", {}) or {})
    out += _map_changes("tool", ia.pop("tools", {}) or {}, ib.pop("tools", {}) or {})
    out += _map_changes("template", ia.pop("templates", {}) or {}, ib.pop("templates", {}) or {})
    out += _map_changes("recipe", ia.pop("recipe", {}) or {}, ib.pop("recipe", {}) or {})
    out += _map_changes("input", ia, ib)  # target, schema, and anything added later
    return out


def diff_filesystems(
    old: Mapping[str, FileEntry], new: Mapping[str, FileEntry]
) -> list[FileChange]:
    return [FileChange(path, change, x, y) for path, change, x, y in _changes(old, new)]


def _diff_files(
    registry: Registry, a: Version, b: Version
) -> tuple[list[FileChange] | None, str | None]:
    refs: list[str] = []
    for version in (a, b):
        artifact = version.artifact("docker")
        if artifact is None:
            return None, f"{version.label} has no docker image; files are compared for docker"
        if artifact.deleted_at is not None:
            return None, f"{version.label}'s image was deleted by gc at {artifact.deleted_at}"
        try:
            ensure_local(registry, version, artifact)  # pulled by digest if pushed, not here
            present = recorded_image_present(artifact, owner=version)
        except (ImageMoved, ImageRegistryError) as why:  # its files cannot be read: say why
            return None, str(why)
        if not present:
            return None, f"{version.label}'s image {artifact.ref} is not in the Docker engine"
        refs.append(artifact.ref)
    with ThreadPoolExecutor(max_workers=2) as pool:
        old, new = pool.map(image_filesystem, refs)
    return diff_filesystems(old, new), None


def diff(registry: Registry, role: str, a: int, b: int, *, files: bool = True) -> VersionDiff:
    """Packages, recorded inputs and (for docker, optionally) image files between a and b."""
    va, vb = require(registry, role, a), require(registry, role, b)
    file_changes, note = (
        _diff_files(registry, va, vb) if files else (None, "not compared (--no-files)")
    )
    return VersionDiff(
        role=role,
        a=a,
        b=b,
        packages=diff_packages(registry.packages(role, a), registry.packages(role, b)),
        inputs=diff_inputs(va, vb),
        files=file_changes,
        files_note=note,
        reason=describe_reason(registry.document(role, b, "bake-reason")),
    )
