"""Where Ansible content lives: role names resolved to directories across the project's roles
paths and installed collections, their meta dependencies and the closure a bake applies.

One owner for the guard, the fingerprint, lint and the rendered Ansible settings.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from kiln.errors import DefinitionError

__all__ = [
    "AnsibleContent",
    "AnsibleRole",
    "dependency_name",
    "is_role_name",
    "role_dependencies",
]

# Galaxy accepts letters (either case), digits, "_", "-" and "." in role names (ns.repo-epel,
# Acme.MyRole); a collection role is ns.collection.role with lowercase identifiers.
_ROLE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")
_FQCN = re.compile(r"(?P<ns>[a-z0-9_]+)\.(?P<coll>[a-z0-9_]+)\.(?P<role>[a-z0-9_]+)")

_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def is_role_name(name: object) -> bool:
    """True for a name Galaxy or a collection (FQCN) gives a role; never a path."""
    return (
        isinstance(name, str)
        and bool(_ROLE_NAME.fullmatch(name))
        and ".." not in name
        and not name.endswith(".")
    )


@dataclass(frozen=True)
class AnsibleRole:
    """A resolved Ansible role: the name as written, its directory, and its collection if any."""

    name: str
    path: Path
    collection: str | None = None


@dataclass(frozen=True)
class AnsibleContent:
    """The directories Ansible finds roles in: roles paths, then installed collections."""

    roles_paths: tuple[Path, ...]
    collections_paths: tuple[Path, ...] = ()

    def find(self, name: str, *, collection: str | None = None) -> AnsibleRole | None:
        """The role called name, looked up the way ansible-core does, or None.

        An FQCN, or a short name used inside a collection role, is looked up in that collection
        first; then the roles paths in order.
        """
        if not is_role_name(name):
            return None
        fqcn = _FQCN.fullmatch(name)
        if fqcn is not None:
            found = self._collection_role(fqcn["ns"], fqcn["coll"], fqcn["role"], name)
            if found is not None:
                return found
        elif collection is not None and "." not in name:
            ns, coll = collection.split(".")
            found = self._collection_role(ns, coll, name, f"{collection}.{name}")
            if found is not None:
                return found
        for roles_path in self.roles_paths:
            path = roles_path / name
            if (path / "tasks").is_dir() or (path / "meta").is_dir():
                return AnsibleRole(name, path)
        return None

    def _collection_role(self, ns: str, coll: str, role: str, name: str) -> AnsibleRole | None:
        for root in self.collections_paths:
            path = root / "ansible_collections" / ns / coll / "roles" / role
            if path.is_dir():
                return AnsibleRole(name, path, collection=f"{ns}.{coll}")
        return None

    def resolve(self, name: str, *, wanted_by: str | None = None) -> AnsibleRole:
        """The role called name, or a DefinitionError that says where kiln looked."""
        found = self.find(name)
        if found is None:
            raise self.not_found(name, wanted_by=wanted_by)
        return found

    def not_found(self, name: str, *, wanted_by: str | None = None) -> DefinitionError:
        what = f"Ansible role {name!r}" + (f" (a dependency of {wanted_by!r})" if wanted_by else "")
        if not is_role_name(name):
            return DefinitionError(f"{what} is not a valid Ansible role name")
        places = [f"  {p}/{name}" for p in self.roles_paths]
        fqcn = _FQCN.fullmatch(name)
        if fqcn is not None:
            ns, coll, role = fqcn.group("ns", "coll", "role")
            places += [
                f"  {root}/ansible_collections/{ns}/{coll}/roles/{role}"
                for root in self.collections_paths
            ]
        known = ", ".join(self.role_names()) or "none"
        return DefinitionError(
            f"{what} was not found. kiln looked in:\n"
            + "\n".join(places)
            + f"\nRoles found: {known}.\nFix the name, vendor the role into a roles path, or "
            "list it in requirements.yml and run `invoke deps`."
        )

    def closure(self, names: Iterable[str]) -> list[AnsibleRole]:
        """The roles applied, with their meta dependencies, dependencies first."""
        ordered: dict[Path, AnsibleRole] = {}

        def visit(role: AnsibleRole, path: tuple[str, ...]) -> None:
            if role.path in ordered:
                return
            if role.name in path:
                cycle = " -> ".join((*path[path.index(role.name) :], role.name))
                raise DefinitionError(
                    f"Ansible role {role.name!r}: meta dependencies form a cycle: {cycle}; "
                    "remove one of them from its meta/main.yml"
                )
            for dep in role_dependencies(role.path):
                found = self.find(dep, collection=role.collection)
                if found is None:
                    raise self.not_found(dep, wanted_by=role.name)
                visit(found, (*path, role.name))
            ordered[role.path] = role

        for name in names:
            visit(self.resolve(name), ())
        return list(ordered.values())

    def closure_names(self, names: Iterable[str]) -> list[str]:
        return [role.name for role in self.closure(names)]

    def role_names(self) -> list[str]:
        """Every role in the roles paths and, by FQCN, in the installed collections."""
        names: set[str] = set()
        for roles_path in self.roles_paths:
            if roles_path.is_dir():
                names.update(p.name for p in roles_path.iterdir() if (p / "tasks").is_dir())
        for root in self.collections_paths:
            for role in (root / "ansible_collections").glob("*/*/roles/*/tasks"):
                ns, coll, _, name = role.parent.parts[-4:]
                names.add(f"{ns}.{coll}.{name}")
        return sorted(names)

    def roles_path_env(self) -> str:
        """ANSIBLE_ROLES_PATH for these roles paths."""
        return os.pathsep.join(str(p) for p in self.roles_paths)

    def collections_path_env(self) -> str:
        """ANSIBLE_COLLECTIONS_PATH; ansible-core still scans sys.path for bundled collections."""
        return os.pathsep.join(str(p) for p in self.collections_paths)


# Parsed meta dependencies by file identity: fingerprinting many roles reads each meta once. A
# file changed in the last RACY_S seconds is parsed again (time stamps have a clock tick).
_DEPENDENCIES: dict[tuple[str, int, int, int, int], list[str]] = {}
RACY_S = 2.0


def role_dependencies(role_dir: Path) -> list[str]:
    """Names of the roles listed under dependencies in meta/main.yml (both list forms)."""
    meta = next((m for m in _meta_files(role_dir) if m.is_file()), None)
    if meta is None:
        return []
    st = meta.stat()
    key = (str(meta), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    cached = _DEPENDENCIES.get(key)
    if cached is not None:
        return list(cached)
    names = _parse_dependencies(role_dir, meta)
    if time.time() - max(st.st_mtime_ns, st.st_ctime_ns) / 1e9 > RACY_S:
        _DEPENDENCIES[key] = list(names)
    return names


def _parse_dependencies(role_dir: Path, meta: Path) -> list[str]:
    try:
        data = yaml.load(meta.read_text(encoding="utf-8"), Loader=_SafeLoader)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DefinitionError(
            f"Ansible role {role_dir.name!r}: {meta} is malformed: {exc}"
        ) from exc
    deps = (data or {}).get("dependencies") or [] if isinstance(data, dict) else []
    named = (dependency_name(dep) for dep in (deps if isinstance(deps, list) else []))
    return [name for name in named if isinstance(name, str)]


def dependency_name(entry: object) -> object:
    """The role one entry under meta/main.yml's dependencies names: the entry itself, or its
    `role:` (else `name:`) key. Whatever is there, so that the guard can say what is wrong."""
    if isinstance(entry, dict):
        return entry.get("role") or entry.get("name")
    return entry


def _meta_files(role_dir: Path) -> Sequence[Path]:
    return (role_dir / "meta" / "main.yml", role_dir / "meta" / "main.yaml")
