"""requirements.yml: Ansible roles and collections installed into .kiln/galaxy, and their lock.

`install` (kiln.galaxy) installs and locks them; `check_installed` compares all three before a bake.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from kiln.errors import DefinitionError
from kiln.fingerprint import RACY_S, canonical_json, tree_digests
from kiln.model import Project

REQUIREMENTS = "requirements.yml"
LOCK = "requirements.lock"
LOCK_SCHEMA = 1
ROLE_KEYS = frozenset({"src", "name", "version", "scm", "role"})
COLLECTION_KEYS = frozenset({"name", "version", "type", "source", "signatures"})
COLLECTION_TYPES = frozenset({"galaxy", "file", "git", "url", "dir", "subdirs"})
# Rewritten by every install (it holds the install date): not part of what a role is.
INSTALL_INFO = "meta/.galaxy_install_info"
DIGEST_CACHE = ".digests.json"


@dataclass(frozen=True)
class Requirement:
    """One entry of requirements.yml, validated. kind is role or collection; type is its source
    kind (galaxy, file, git, url, dir, subdirs); src the source as written."""

    kind: str
    index: int
    name: str
    src: str
    type: str
    version: str = ""
    server: str = ""

    @property
    def label(self) -> str:
        return f"{REQUIREMENTS} {self.kind} #{self.index + 1} ({self.name!r})"


@dataclass(frozen=True)
class LockEntry:
    """One installed role or collection. version: the resolved version (a git commit for git
    roles); ref: the version asked for; commit: the git commit a git source resolved to."""

    name: str
    type: str
    version: str
    source: str
    sha256: str
    ref: str = ""
    commit: str = ""

    @property
    def key(self) -> str:
        return f"{self.type}:{self.name}"


@dataclass(frozen=True)
class Lock:
    requirements_sha256: str
    entries: tuple[LockEntry, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "kiln_lock": LOCK_SCHEMA,
            "requirements_sha256": self.requirements_sha256,
            "entries": [asdict(e) for e in sorted(self.entries, key=lambda e: e.key)],
        }


@dataclass(frozen=True)
class InstallReport:
    """What `install` did: the entries now installed and locked, and how long it took."""

    entries: tuple[LockEntry, ...]
    lock_path: Path | None
    galaxy_path: Path
    seconds: float


# -- files -------------------------------------------------------------------------------------
def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def install(project: Project, *, server: str = "") -> InstallReport:
    """Install requirements.yml into the galaxy path with ansible-galaxy and write
    requirements.lock; a failure leaves the previous install and lock as they were.

    server, if given, is the Galaxy server for entries that name no source of their own.
    """
    from kiln.galaxy import install as run_install  # subprocess machinery, only for `deps`

    return run_install(project, server=server)


# -- requirements.yml --------------------------------------------------------------------------
def load_requirements(root: Path) -> list[Requirement] | None:
    """The entries of root/requirements.yml, roles first; None when there is no such file."""
    path = root / REQUIREMENTS
    if not path.exists():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DefinitionError(f"{path}: not valid YAML: {where}{problem}") from None
    return parse_requirements(data, path)


def parse_requirements(data: Any, path: Path) -> list[Requirement]:
    """Validate ansible-galaxy's two shapes: a list of roles, or a roles:/collections: mapping."""
    if data is None:
        return []
    if isinstance(data, list):
        data = {"roles": data}
    if not isinstance(data, dict):
        raise DefinitionError(
            f"{path}: expected a list of roles or a mapping with roles: and "
            f"collections:, not {type(data).__name__}"
        )
    unknown = sorted(str(k) for k in data if k not in ("roles", "collections"))
    if unknown:
        raise DefinitionError(
            f"{path}: unknown top-level key(s) {', '.join(unknown)}; "
            "expected roles: and collections:"
        )
    out: list[Requirement] = []
    for kind, parse in (("role", _parse_role), ("collection", _parse_collection)):
        items = data.get(f"{kind}s") or []
        if not isinstance(items, list):
            raise DefinitionError(f"{path}: {kind}s: must be a list")
        for index, item in enumerate(items):
            try:
                out.append(parse(index, item))
            except ValueError as exc:
                raise DefinitionError(f"{path}: {kind} #{index + 1} {exc}") from None
    names = [(r.kind, r.name) for r in out]
    for kind, name in sorted({n for n in names if names.count(n) > 1}):
        raise DefinitionError(f"{path}: {kind} {name!r} is listed more than once")
    return out


def _entry_name(item: Any) -> str:
    if isinstance(item, dict) and (item.get("name") or item.get("src") or item.get("role")):
        return repr(item.get("name") or item.get("src") or item.get("role"))
    return repr(item)  # no name: the entry itself says which one it is


def _check_keys(item: dict[str, Any], allowed: frozenset[str]) -> None:
    for key, value in item.items():
        if key not in allowed:
            raise ValueError(
                f"({_entry_name(item)}): unknown key {key!r}; allowed: {', '.join(sorted(allowed))}"
            )
        if not isinstance(value, str | int | float) and key != "signatures":
            raise ValueError(f"({_entry_name(item)}): {key} must be a string")


def _parse_role(index: int, item: Any) -> Requirement:
    if isinstance(item, str):
        item = {"src": item}
    if not isinstance(item, dict):
        raise ValueError(f"({_entry_name(item)}): must be a mapping or a string")
    if "include" in item:
        raise ValueError(f"({_entry_name(item)}): include: is not supported; list roles here")
    _check_keys(item, ROLE_KEYS)
    src = str(item.get("src") or item.get("role") or item.get("name") or "")
    if not src:
        raise ValueError(f"({_entry_name(item)}): has neither src nor name")
    parts = src.split(",")  # ansible-galaxy's old "src,version,name" form
    scm = str(item.get("scm") or "")
    if src.startswith("git+") or scm == "git":
        kind = "git"
    elif scm:
        raise ValueError(f"({_entry_name(item)}): unknown scm {scm!r}; kiln supports git")
    elif re.search(r"\.(tar\.gz|tgz|tar)$", parts[0]) and "://" not in parts[0].removeprefix(
        "file://"
    ):
        kind = "file"
    else:
        kind = "url" if "://" in parts[0] else "galaxy"
    name = str(item.get("name") or (parts[2] if len(parts) > 2 else "") or _role_name(parts[0]))
    version = str(item.get("version") or (parts[1] if len(parts) > 1 else ""))
    return Requirement("role", index, name, parts[0], kind, version)


def _role_name(src: str) -> str:
    """The directory ansible-galaxy gives a role that has no name: (RoleRequirement's rule)."""
    if "://" not in src and "+" not in src and "/" not in src:
        return src
    base = src.rstrip("/").rsplit("/", 1)[-1]
    for suffix in (".tar.gz", ".tgz", ".tar", ".git"):
        base = base.removesuffix(suffix)
    return base.split(",")[0]


def _parse_collection(index: int, item: Any) -> Requirement:
    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, dict):
        raise ValueError(f"({_entry_name(item)}): must be a mapping or a string")
    _check_keys(item, COLLECTION_KEYS)
    name = str(item.get("name") or "")
    if not name:
        raise ValueError(f"({_entry_name(item)}): has no name")
    kind = str(item.get("type") or _collection_type(name))
    if kind not in COLLECTION_TYPES:
        raise ValueError(
            f"({name!r}): unknown type {kind!r}; "
            f"expected one of {', '.join(sorted(COLLECTION_TYPES))}"
        )
    if kind == "galaxy" and not re.fullmatch(r"\w+\.\w+", name):
        raise ValueError(f"({name!r}): a Galaxy collection is named namespace.collection")
    version = str(item.get("version") or "")
    return Requirement("collection", index, name, name, kind, version, str(item.get("source", "")))


def _collection_type(name: str) -> str:
    if name.startswith("git+"):
        return "git"
    if "://" in name:
        return "url"
    if name.endswith((".tar.gz", ".tgz")):
        return "file"
    return "dir" if name.startswith(("/", ".", "~")) else "galaxy"


# -- what is installed -------------------------------------------------------------------------
def installed(galaxy: Path) -> dict[str, Path]:
    """Every installed role and collection under a galaxy path, by lock key (type:name)."""
    out: dict[str, Path] = {}
    roles = galaxy / "roles"
    if roles.is_dir():
        for path in sorted(roles.iterdir()):
            if path.is_dir():
                out[f"role:{path.name}"] = path
    namespaces = galaxy / "collections" / "ansible_collections"
    if namespaces.is_dir():
        for namespace in sorted(namespaces.iterdir()):
            if not namespace.is_dir() or namespace.name.endswith(".info"):
                continue  # <ns>.<name>-<version>.info holds Galaxy's install metadata
            for path in sorted(namespace.iterdir()):
                if path.is_dir():
                    out[f"collection:{namespace.name}.{path.name}"] = path
    return out


def content_digest(path: Path) -> str:
    """sha256 over an installed role or collection: relative paths and file digests."""
    files = tree_digests(path)
    files.pop(INSTALL_INFO, None)
    return hashlib.sha256(canonical_json(files).encode()).hexdigest()


def _stat_signature(path: Path) -> tuple[str, bool]:
    """A digest of every file's identity under path, and whether all of them are settled."""
    hasher, newest = hashlib.sha256(), 0
    for directory, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            st = os.lstat(os.path.join(directory, name))
            newest = max(newest, st.st_mtime_ns, st.st_ctime_ns)
            hasher.update(
                f"{directory}/{name}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}\0"
                f"{st.st_ctime_ns}\0{st.st_mode}\n".encode()
            )
    return hasher.hexdigest(), time.time() - newest / 1e9 > RACY_S


def installed_digests(galaxy: Path) -> dict[str, str]:
    """content_digest of each installed entry; digests of unchanged trees come from a cache
    kept in the galaxy path and keyed by every file's stat, so a bake's check stats, not reads."""
    cache_path = galaxy / DIGEST_CACHE
    try:
        cache: dict[str, Any] = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        cache = {}
    out, fresh = {}, {}
    for key, path in installed(galaxy).items():
        signature, settled = _stat_signature(path)
        hit = cache.get(key)
        if isinstance(hit, dict) and hit.get("stat") == signature:
            out[key] = str(hit["sha256"])
        else:
            out[key] = content_digest(path)
        if settled:
            fresh[key] = {"stat": signature, "sha256": out[key]}
    if fresh != cache and galaxy.is_dir():
        with contextlib.suppress(OSError):  # a read-only checkout still checks, only slower
            write_atomically(cache_path, json.dumps(fresh, sort_keys=True))
    return out


# -- the lock ----------------------------------------------------------------------------------
def read_lock(root: Path) -> Lock | None:
    """requirements.lock of root, or None if there is none."""
    path = root / LOCK
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("kiln_lock") != LOCK_SCHEMA:
            raise ValueError(f"unknown lock schema {data.get('kiln_lock')!r}")
        entries = tuple(LockEntry(**entry) for entry in data["entries"])
        return Lock(str(data["requirements_sha256"]), entries)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DefinitionError(f"{path} is unreadable ({exc}); run `invoke deps`") from None


def locked_content(project: Project) -> dict[str, str]:
    """type:name -> sha256 of every locked role and collection (empty without a lock)."""
    lock = read_lock(project.root)
    return {e.key: e.sha256 for e in lock.entries} if lock else {}


def differences(project: Project) -> list[str]:
    """What differs between requirements.yml, requirements.lock and the galaxy path."""
    root = project.root
    lock, has_requirements = read_lock(root), (root / REQUIREMENTS).exists()
    if lock is None:
        return [f"{REQUIREMENTS} has no {LOCK} yet"] if has_requirements else []
    problems = []
    if not has_requirements:
        problems.append(f"{REQUIREMENTS} was removed since {LOCK} was written")
    elif sha256_file(root / REQUIREMENTS) != lock.requirements_sha256:
        problems.append(f"{REQUIREMENTS} changed since {LOCK} was written")
    have = installed_digests(project.galaxy_path)
    for entry in lock.entries:
        digest = have.pop(entry.key, None)
        if digest is None:
            problems.append(f"{entry.type} {entry.name} is locked but not installed")
        elif digest != entry.sha256:
            problems.append(
                f"{entry.type} {entry.name} {entry.version}: installed content "
                f"differs from the lock ({digest[:12]} != {entry.sha256[:12]})"
            )
    for key in sorted(have):
        kind, name = key.split(":", 1)
        problems.append(f"{kind} {name} is installed but not in the lock")
    return problems


def check_installed(project: Project) -> None:
    """Raise DefinitionError unless what is installed is exactly what requirements.lock says."""
    problems = differences(project)
    if problems:
        raise DefinitionError(f"Ansible requirements: {'; '.join(problems)}; run `invoke deps`")
