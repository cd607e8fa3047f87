"""Running ansible-galaxy for requirements.yml: a sealed environment, git refs pinned to commits,
and an install staged under .kiln/ that is renamed into place only once it is complete.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kiln.errors import DefinitionError, ToolError
from kiln.model import Project
from kiln.requirements import (
    INSTALL_INFO,
    LOCK,
    REQUIREMENTS,
    InstallReport,
    Lock,
    LockEntry,
    Requirement,
    content_digest,
    installed,
    load_requirements,
    sha256_file,
    write_atomically,
)

# What ansible-galaxy and git may see of the caller's environment; never ANSIBLE_*.
KEPT_ENV = (
    *("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR"),
    *("SSH_AUTH_SOCK", "GIT_SSH", "GIT_SSH_COMMAND"),
    *("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"),
)
TIMEOUT_S = 900


def install(project: Project, *, server: str = "") -> InstallReport:
    """Install requirements.yml into the galaxy path and write requirements.lock.

    Everything happens in a temporary directory under .kiln/ that is renamed into place at the
    end, so a failure leaves the previous install and lock exactly as they were. server, if
    given, is the Galaxy server for entries that name no source of their own.
    """
    started = time.monotonic()
    root, target = project.root, project.galaxy_path
    requirements = load_requirements(root)
    with _deps_lock(root / ".kiln"), _workspace(root / ".kiln") as work:
        if requirements is None:  # requirements.yml removed: so is what it installed
            _swap_in(None, target, work)
            (root / LOCK).unlink(missing_ok=True)
            return InstallReport((), None, target, time.monotonic() - started)
        staged = work / "galaxy"
        entries = _run_galaxy(root, requirements, staged, work, server)
        staged.mkdir(exist_ok=True)  # an empty requirements.yml installs nothing, and that is fine
        lock = Lock(sha256_file(root / REQUIREMENTS), entries)
        _swap_in(staged, target, work)
        write_atomically(root / LOCK, json.dumps(lock.to_json(), indent=2) + "\n")
    return InstallReport(entries, root / LOCK, target, time.monotonic() - started)


@contextmanager
def _deps_lock(state: Path) -> Iterator[None]:
    """One `invoke deps` at a time per checkout; a second one waits."""
    (state / "locks").mkdir(parents=True, exist_ok=True)
    with (state / "locks" / "deps.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _workspace(state: Path) -> Iterator[Path]:
    # Leftovers of a killed run (we hold the deps lock, so no live run owns them).
    for stale in state.glob("galaxy-tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix="galaxy-tmp-", dir=state))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _swap_in(staged: Path | None, target: Path, work: Path) -> None:
    """Move the previous install aside, then staged into place (two renames, same filesystem)."""
    if target.exists():
        os.rename(target, work / "previous")
    if staged is not None:
        os.rename(staged, target)


@dataclass
class _Prepared:
    """An entry as handed to ansible-galaxy, and what kiln knows of it before installing."""

    req: Requirement
    spec: dict[str, str]
    commit: str = ""
    collections: tuple[str, ...] = ()


def _run_galaxy(
    root: Path, requirements: list[Requirement], staged: Path, work: Path, server: str
) -> tuple[LockEntry, ...]:
    prepared = [_prepare(root, req, work / "git" / str(i)) for i, req in enumerate(requirements)]
    roles = [p for p in prepared if p.req.kind == "role"]
    collections = [p for p in prepared if p.req.kind == "collection"]
    (work / "ansible.cfg").write_text("")  # an empty config: no project or user ansible.cfg
    (work / "cwd").mkdir()
    spec = {"roles": [p.spec for p in roles], "collections": [p.spec for p in collections]}
    (work / "requirements.yml").write_text(yaml.safe_dump(spec, sort_keys=True))
    server_args = ["--server", server] if server else []
    if roles:
        argv = ["role", "install", "-r", str(work / "requirements.yml"), *server_args]
        _galaxy([*argv, "-p", str(staged / "roles")], work, staged, prepared)
    if collections:
        # --offline only when no entry needs a Galaxy server; local sources still resolve
        # each other's dependencies offline.
        needs_server = any(p.req.type == "galaxy" for p in collections)
        offline = [] if needs_server or server else ["--offline"]
        argv = ["collection", "install", "-r", str(work / "requirements.yml"), *server_args]
        _galaxy([*argv, *offline, "-p", str(staged / "collections")], work, staged, prepared)
    return _lock_entries(staged, prepared)


def _local(root: Path, text: str) -> Path:
    path = Path(text.removeprefix("file://")).expanduser()
    return path if path.is_absolute() else root / path


def _prepare(root: Path, req: Requirement, clone: Path) -> _Prepared:
    """Check local sources exist and pin git refs to a commit before ansible-galaxy runs."""
    if req.type in ("file", "dir", "subdirs"):
        path = _local(root, req.src)
        if not path.exists():
            raise DefinitionError(f"{req.label}: {path} does not exist")
        if req.kind == "role":
            return _Prepared(req, _spec(name=req.name, src=str(path), version=req.version))
        names = _collection_names(path) if req.type != "subdirs" else ()
        spec = _spec(name=str(path), type=req.type, version=req.version)
        return _Prepared(req, spec, collections=names)
    if req.type == "git":
        return _prepare_git(root, req, clone)
    if req.kind == "role":
        return _Prepared(req, _spec(name=req.name, src=req.src, version=req.version))
    spec = _spec(name=req.src, type=req.type, version=req.version, source=req.server)
    return _Prepared(req, spec, collections=(req.name,) if req.type == "galaxy" else ())


def _spec(**values: str) -> dict[str, str]:
    return {k: v for k, v in values.items() if v}


def _prepare_git(root: Path, req: Requirement, clone: Path) -> _Prepared:
    """Clone once, resolve the ref to a commit, and have ansible-galaxy install that commit from
    the clone: what is locked is exactly what was installed, and the remote is fetched once."""
    url, _, subdir = req.src.removeprefix("git+").partition("#")
    url, _, inline_version = url.partition(",")
    ref = req.version or inline_version
    if "://" not in url and ":" not in url:  # a path, relative to the project
        url = str(_local(root, url))
    clone.parent.mkdir(parents=True, exist_ok=True)
    _git(req, f"cloning {url}", "clone", "--quiet", "--bare", "--", url, str(clone))
    wanted = ref or "HEAD"
    commit = _git(
        req,
        f"ref {wanted!r} not found in {url}",
        "-C",
        str(clone),
        "rev-parse",
        "--verify",
        "--quiet",
        f"{wanted}^{{commit}}",
    )
    local = f"git+file://{clone}" + (f"#{subdir}" if subdir else "")
    if req.kind == "role":
        return _Prepared(req, _spec(name=req.name, src=local, version=commit), commit=commit)
    galaxy_yml = f"{commit}:{subdir.strip('/') + '/' if subdir.strip('/') else ''}galaxy.yml"
    meta = _git(req, f"no galaxy.yml at {wanted!r}", "-C", str(clone), "show", galaxy_yml)
    names = tuple(_name_from(yaml.safe_load(meta) or {}))
    return _Prepared(req, _spec(name=local, type="git", version=commit), commit, names)


def _git(req: Requirement, step: str, *args: str) -> str:
    env = {k: os.environ[k] for k in KEPT_ENV if k in os.environ}
    env["GIT_TERMINAL_PROMPT"] = "0"  # never wait for a password
    try:
        proc = subprocess.run(
            ["git", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError:
        raise ToolError("git is not installed; it is needed for git sources") from None
    if proc.returncode != 0:
        detail = _tail(proc.stderr)
        raise DefinitionError(f"{req.label}: {step}" + (f": {detail}" if detail else ""))
    return proc.stdout.strip()


def _name_from(info: Mapping[str, Any]) -> list[str]:
    info = info.get("collection_info", info)
    return [f"{info['namespace']}.{info['name']}"] if "namespace" in info else []


def _collection_names(path: Path) -> tuple[str, ...]:
    """The namespace.name a collection tarball or directory holds, for its lock source."""
    try:
        if path.is_dir():
            for name in ("MANIFEST.json", "galaxy.yml"):
                if (path / name).exists():
                    return tuple(_name_from(yaml.safe_load((path / name).read_text()) or {}))
            return ()
        with tarfile.open(path) as archive:
            member = archive.extractfile("MANIFEST.json")
            return tuple(_name_from(json.load(member))) if member else ()
    except (OSError, KeyError, ValueError, tarfile.TarError, yaml.YAMLError):
        return ()  # ansible-galaxy reports what is wrong with it


def galaxy_env(work: Path, staged: Path) -> dict[str, str]:
    """ansible-galaxy's environment: own HOME and config, no inherited ANSIBLE_* variables."""
    env = {k: os.environ[k] for k in KEPT_ENV if k in os.environ}
    gitconfig = Path.home() / ".gitconfig"
    if gitconfig.exists():  # credentials and URL rewrites for private git repositories
        env["GIT_CONFIG_GLOBAL"] = str(gitconfig)
    env.update(
        HOME=str(work / "home"),
        ANSIBLE_HOME=str(work / "home" / ".ansible"),
        ANSIBLE_CONFIG=str(work / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(staged / "collections"),
        ANSIBLE_ROLES_PATH=str(staged / "roles"),
        ANSIBLE_NOCOLOR="1",
        GIT_TERMINAL_PROMPT="0",
    )
    return env


def _galaxy(args: list[str], work: Path, staged: Path, prepared: list[_Prepared]) -> None:
    executable = Path(sys.executable).parent / "ansible-galaxy"
    if not executable.exists():
        raise ToolError(f"ansible-galaxy not found next to {sys.executable}; install ansible-core")
    try:
        proc = subprocess.run(
            [str(executable), *args],
            cwd=work / "cwd",
            env=galaxy_env(work, staged),
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise DefinitionError(f"ansible-galaxy {args[0]} install timed out") from None
    if proc.returncode == 0:
        return
    output = f"{proc.stdout}\n{proc.stderr}"
    culprits = [p.req.label for p in prepared if _blamed(p, output)]
    who = ", ".join(culprits) or REQUIREMENTS
    raise DefinitionError(
        f"{who}: ansible-galaxy {args[0]} install failed (exit {proc.returncode}): {_tail(output)}"
    )


def _blamed(prepared: _Prepared, output: str) -> bool:
    if prepared.req.kind == "role":
        return f"- {prepared.req.name} was NOT installed" in output
    return any(v in output for v in (prepared.spec["name"], *prepared.collections))


def _tail(text: str, lines: int = 6) -> str:
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(kept[-lines:])


def _lock_entries(staged: Path, prepared: list[_Prepared]) -> tuple[LockEntry, ...]:
    by_role = {p.req.name: p for p in prepared if p.req.kind == "role"}
    by_collection = {n: p for p in prepared for n in p.collections}
    entries: list[LockEntry] = []
    for key, path in installed(staged).items():
        kind, name = key.split(":", 1)
        digest = content_digest(path)
        p = by_role.get(name) if kind == "role" else by_collection.get(name)
        source = p.req.src if p else "dependency"
        ref, commit = (p.req.version, p.commit) if p else ("", "")
        if kind == "role":
            version = commit or (p.req.version if p else "") or _install_info_version(path)
        else:
            version = _manifest_version(path)
        entries.append(LockEntry(name, kind, version, source, digest, ref, commit))
    return tuple(sorted(entries, key=lambda e: e.key))


def _install_info_version(path: Path) -> str:
    try:
        info = yaml.safe_load((path / INSTALL_INFO).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return ""
    return str(info.get("version") or "")


def _manifest_version(path: Path) -> str:
    try:
        return str(json.loads((path / "MANIFEST.json").read_text())["collection_info"]["version"])
    except (OSError, ValueError, KeyError):
        return ""
