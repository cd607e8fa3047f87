"""Fingerprints: a sha256 over the contents of everything that shapes an image.

Same fingerprint, same image: kiln does not bake it twice. Secret values enter only as a keyed
digest (HMAC with a per-checkout key, see kiln.hmac_key), so the registry never holds anything
that reveals them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiln.ansible_content import AnsibleContent
from kiln.errors import DefinitionError
from kiln.model import Base, Node, Role, Secret

FINGERPRINT_SCHEMA = 2
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

    def tree(self, path: Path) -> dict[str, str]:
        if str(path) not in self.trees:
            self.trees[str(path)] = tree_digests(path)
        return self.trees[str(path)]


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# Digests by file identity, so that fingerprinting many roles reads each shared file once. The
# key holds ctime, which every write changes; a file changed in the last RACY_S seconds is hashed
# each time (a second write within one clock tick can leave every time stamp as it was).
FileKey = tuple[str, int, int, int, int, int]
_DIGESTS: dict[FileKey, str] = {}
RACY_S = 2.0


def _identity(path: Path) -> tuple[FileKey, bool]:
    st = os.stat(path)
    key = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return key, _settled(st)


def _settled(st: os.stat_result) -> bool:
    """Unchanged for longer than RACY_S: what its time stamps say can be trusted to remember it."""
    return time.time() - max(st.st_mtime_ns, st.st_ctime_ns) / 1e9 > RACY_S


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
    if _settled(st):
        _LISTINGS[key] = result
    return result


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
    content: AnsibleContent,
    templates: Mapping[str, Path],
    recipe: Mapping[str, Any],
    parent: Fingerprint,
    target: str,
    tools: Mapping[str, str],
    secret_values: Mapping[str, str],
    key: bytes,
    requirements: Mapping[str, str] | None = None,
    memo: FingerprintMemo | None = None,
) -> Fingerprint:
    """Fingerprint of a role from its definition, files, templates, parent, target and tools."""
    memo = memo or FingerprintMemo()
    definition = role.inputs()
    for unshaping in ("audit_exceptions", "lint_allowed", "lint_profile"):  # recorded only
        definition.pop(unshaping)
    definition["secrets"] = {
        name: secret_digest(key, secret_values[name]) for name in sorted(role.secrets)
    }
    try:
        closure = content.closure(role.ansible_roles)
    except DefinitionError as exc:
        raise DefinitionError(f"role {role.name!r}: {exc}") from None
    files = {found.name: memo.tree(found.path) for found in closure}
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
    if requirements:  # roles and collections installed by `invoke deps`, as locked
        inputs["requirements"] = dict(sorted(requirements.items()))
    return Fingerprint(_digest(inputs), inputs)


def _digest(inputs: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(inputs).encode()).hexdigest()


def fingerprint_chain(
    node: Node,
    *,
    content: AnsibleContent,
    templates_for: Mapping[str, Path],
    recipe: Mapping[str, Any],
    target: str,
    tools: Mapping[str, str],
    secret_values: Mapping[str, Mapping[str, str]],
    key: bytes,
    requirements: Mapping[str, str] | None = None,
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
                content=content,
                templates=templates_for,
                recipe=recipe,
                parent=out[item.parent.name],
                target=target,
                tools=tools,
                secret_values=secret_values.get(item.name, {}),
                key=key,
                requirements=requirements,
                memo=memo,
            )
        memo.fingerprints[item.name] = out[item.name]
    return out
