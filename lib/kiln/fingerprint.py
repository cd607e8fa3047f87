"""Fingerprints: a sha256 over the contents of everything that shapes an image.

Same fingerprint, same image: kiln does not bake it twice. Secret values enter only as a keyed
digest (HMAC with a per-checkout key), so the registry never holds anything that reveals them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets as _secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kiln.errors import DefinitionError
from kiln.model import Base, Node, Role, Secret

FINGERPRINT_SCHEMA = 1
# Files that never reach the image: editor and VCS debris, Molecule scenarios kept inside roles.
IGNORED_NAMES = frozenset({".git", "__pycache__", ".pytest_cache", "molecule", ".DS_Store"})
IGNORED_SUFFIXES = (".pyc", ".retry", ".swp", "~")


@dataclass(frozen=True)
class Fingerprint:
    """A node's fingerprint and the inputs it was computed from (recorded for diff and show)."""

    digest: str
    inputs: Mapping[str, Any]

    @property
    def short(self) -> str:
        return self.digest[:12]


@dataclass
class FingerprintMemo:
    """What one run over many roles has already computed: shared ancestors and the digests of
    each Ansible role's files are worked out once. A snapshot: make a new one for each run."""

    fingerprints: dict[str, Fingerprint] = field(default_factory=dict)
    trees: dict[str, dict[str, str]] = field(default_factory=dict)

    def tree(self, roles_path: Path, name: str) -> dict[str, str]:
        if name not in self.trees:
            self.trees[name] = tree_digests(roles_path / name)
        return self.trees[name]


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# Digests by file identity, so that fingerprinting many roles reads each shared file once. The
# key holds ctime, which every write changes; a file changed in the last RACY_S seconds is hashed
# each time (a second write within one clock tick can leave every time stamp as it was).
FileKey = tuple[str, int, int, int, int, int]
_DIGESTS: dict[FileKey, str] = {}
_DEPENDENCIES: dict[FileKey, list[str]] = {}
RACY_S = 2.0


def _identity(path: Path) -> tuple[FileKey, bool]:
    st = os.stat(path)
    key = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    settled = time.time() - max(st.st_mtime_ns, st.st_ctime_ns) / 1e9 > RACY_S
    return key, settled


def file_digest(path: Path) -> str:
    key, settled = _identity(path)
    cached = _DIGESTS.get(key)
    if cached is not None:
        return cached
    # Streamed: the same call hashes role files and multi-GB VM images.
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(chunk)
    digest = hasher.hexdigest()
    if settled:
        _DIGESTS[key] = digest
    return digest


def tree_digests(root: Path) -> dict[str, str]:
    """sha256 of every file under root by relative path; the executable bit counts too.

    Files are walked like os.walk (sorted, IGNORED_NAMES left out, symlinked directories not
    followed); each directory's listing is remembered while its time stamps stay the same.
    """
    out: dict[str, str] = {}

    def walk(directory: str, prefix: str) -> None:
        dirs, files = _listing(directory)
        for name in files:
            path = os.path.join(directory, name)
            digest = file_digest(Path(path))
            if os.access(path, os.X_OK):
                digest += "+x"
            out[prefix + name] = digest
        for name in dirs:
            walk(os.path.join(directory, name), f"{prefix}{name}/")

    walk(str(root), "")
    return out


_LISTINGS: dict[tuple[str, int, int, int, int], tuple[list[str], list[str]]] = {}


def _listing(directory: str) -> tuple[list[str], list[str]]:
    """(subdirectories to descend into, files) of directory, sorted, without ignored names."""
    st = os.stat(directory)
    key = (directory, st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
    cached = _LISTINGS.get(key)
    if cached is not None:
        return cached
    dirs: list[str] = []
    files: list[str] = []
    with os.scandir(directory) as entries:
        for entry in entries:
            name = entry.name
            if name in IGNORED_NAMES:
                continue
            if entry.is_dir():
                if not entry.is_symlink():  # os.walk lists but never enters linked directories
                    dirs.append(name)
            elif not name.endswith(IGNORED_SUFFIXES):
                files.append(name)
    result = (sorted(dirs), sorted(files))
    if time.time() - max(st.st_mtime_ns, st.st_ctime_ns) / 1e9 > RACY_S:
        _LISTINGS[key] = result
    return result


def role_dependencies(role_dir: Path) -> list[str]:
    """Names of the roles listed under dependencies in meta/main.yml (both list forms)."""
    for name in ("main.yml", "main.yaml"):
        meta = role_dir / "meta" / name
        if meta.exists():
            break
    else:
        return []
    key, settled = _identity(meta)
    cached = _DEPENDENCIES.get(key)
    if cached is not None:
        return list(cached)
    names = _meta_dependencies(role_dir, meta)
    if settled:
        _DEPENDENCIES[key] = list(names)
    return names


def _meta_dependencies(role_dir: Path, meta: Path) -> list[str]:
    try:
        data = yaml.load(meta.read_text(encoding="utf-8"), Loader=_SafeLoader)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DefinitionError(
            f"Ansible role {role_dir.name!r}: {meta} is malformed: {exc}"
        ) from exc
    deps = (data or {}).get("dependencies") or [] if isinstance(data, dict) else []
    names: list[str] = []
    for dep in deps:
        if isinstance(dep, str):
            names.append(dep)
        elif isinstance(dep, dict) and isinstance(dep.get("role") or dep.get("name"), str):
            names.append(dep.get("role") or dep["name"])
    return names


_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def ansible_role_closure(roles_path: Path, ansible_roles: tuple[str, ...]) -> list[str]:
    """The Ansible roles applied, with their meta dependencies, dependencies first."""
    ordered: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in ordered:
            return
        if name in path:
            cycle = " -> ".join((*path[path.index(name) :], name))
            raise DefinitionError(
                f"Ansible role {name!r}: meta dependencies form a cycle: {cycle}; "
                "remove one of them from its meta/main.yml"
            )
        # A dependency names a directory of roles_path, never a path out of it.
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise DefinitionError(
                f"Ansible role {path[-1] if path else name!r}: dependency {name!r} in "
                f"meta/main.yml is not a role name under {roles_path}"
            )
        role_dir = roles_path / name
        if not (role_dir / "tasks").is_dir():
            raise DefinitionError(f"Ansible role {name!r} (a dependency) not found in {roles_path}")
        for dep in role_dependencies(role_dir):
            visit(dep, (*path, name))
        ordered.append(name)

    for name in ansible_roles:
        visit(name, ())
    return ordered


def secret_key(state_path: Path) -> bytes:
    """The per-checkout HMAC key for secret digests, created once with mode 0600."""
    path = state_path / "secret.key"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        state_path.mkdir(parents=True, exist_ok=True)
        key = _secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
        return key


def read_secret(role: str, name: str, secret: Secret, root: Path) -> str:
    """The secret's value from its environment variable or file; never logged."""
    if secret.env is not None:
        value = os.environ.get(secret.env)
        if value is None:
            raise DefinitionError(
                f"role {role!r}: secret {name!r} needs environment variable {secret.env} to be set"
            )
        return value
    assert secret.file is not None
    path = (root / secret.file).expanduser()
    try:
        return path.read_text(encoding="utf-8").rstrip("\n")
    except OSError as exc:
        raise DefinitionError(
            f"role {role!r}: secret {name!r} cannot be read from {path}: {exc.strerror}"
        ) from exc


def secret_digest(key: bytes, value: str) -> str:
    return "hmac-sha256:" + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def fingerprint_base(base: Base, *, target: str) -> Fingerprint:
    inputs = {"schema": FINGERPRINT_SCHEMA, "target": target, "definition": base.inputs()}
    # The base is bootstrapped by mmdebstrap, not packer: only the suite and packages shape it.
    return Fingerprint(_digest(inputs), inputs)


def fingerprint_role(
    role: Role,
    *,
    roles_path: Path,
    templates: Mapping[str, Path],
    recipe: Mapping[str, Any],
    parent: Fingerprint,
    target: str,
    tools: Mapping[str, str],
    secret_values: Mapping[str, str],
    key: bytes,
    memo: FingerprintMemo | None = None,
) -> Fingerprint:
    """Fingerprint of a role from its definition, files, templates, parent, target and tools."""
    memo = memo or FingerprintMemo()
    definition = role.inputs()
    for unshaping in ("audit_exceptions", "lint_allowed"):  # recorded, not image-shaping
        definition.pop(unshaping)
    definition["secrets"] = {
        name: secret_digest(key, secret_values[name]) for name in sorted(role.secrets)
    }
    files = {
        name: memo.tree(roles_path, name)
        for name in ansible_role_closure(roles_path, role.ansible_roles)
    }
    inputs = {
        "schema": FINGERPRINT_SCHEMA,
        "target": target,
        "definition": definition,
        "ansible_role_files": files,
        "templates": {name: file_digest(path) for name, path in sorted(templates.items())},
        "recipe": dict(recipe),
        "parent": {"name": role.parent.name, "fingerprint": parent.digest},
        "tools": dict(tools),
    }
    return Fingerprint(_digest(inputs), inputs)


def _digest(inputs: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(inputs).encode()).hexdigest()


def fingerprint_chain(
    node: Node,
    *,
    roles_path: Path,
    templates_for: Mapping[str, Path],
    recipe: Mapping[str, Any],
    target: str,
    tools: Mapping[str, str],
    secret_values: Mapping[str, Mapping[str, str]],
    key: bytes,
    memo: FingerprintMemo | None = None,
) -> dict[str, Fingerprint]:
    """Fingerprints of node and all its ancestors, keyed by name.

    Pass one memo to the calls of one run over many roles (render, bake all) so that each
    ancestor and Ansible role is fingerprinted once.
    """
    memo = memo or FingerprintMemo()
    out: dict[str, Fingerprint] = {}
    chain = node.ancestry() if isinstance(node, Role) else [node]
    for item in chain:
        if item.name in memo.fingerprints:
            out[item.name] = memo.fingerprints[item.name]
        elif isinstance(item, Base):
            out[item.name] = fingerprint_base(item, target=target)
        else:
            out[item.name] = fingerprint_role(
                item,
                roles_path=roles_path,
                templates=templates_for,
                recipe=recipe,
                parent=out[item.parent.name],
                target=target,
                tools=tools,
                secret_values=secret_values.get(item.name, {}),
                key=key,
                memo=memo,
            )
        memo.fingerprints[item.name] = out[item.name]
    return out
