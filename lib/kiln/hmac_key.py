"""The per-checkout key of secret digests (fingerprint.secret_digest), kept outside the project.

It lives in $XDG_STATE_HOME/kiln/<project key>/secret.key, so that a copy of `.kiln/` (a backup,
a CI artifact) never carries it alongside the registry whose digests it protects.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import tempfile
from pathlib import Path

from kiln.errors import RegistryError
from kiln.private_files import private_dir

KEY_BYTES = 32
KEY_NAME = "secret.key"
#: Where kiln before issue 14 kept the key: moved out on first use, so that digests stay the same.
LEGACY_KEY = Path(".kiln") / KEY_NAME
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def state_home() -> Path:
    """$XDG_STATE_HOME, or ~/.local/state when it is unset or not absolute (as the spec says)."""
    value = os.environ.get("XDG_STATE_HOME", "")
    return Path(value) if os.path.isabs(value) else Path.home() / ".local" / "state"


def project_key(root: Path) -> str:
    """A directory name for root: readable (its name) and unique (a digest of its whole path)."""
    resolved = root.resolve()
    slug = _UNSAFE.sub("-", resolved.name).strip("-.")[:40] or "root"
    return f"{slug}-{hashlib.sha256(str(resolved).encode()).hexdigest()[:16]}"


def key_path(root: Path) -> Path:
    return state_home() / "kiln" / project_key(root) / KEY_NAME


def secret_key(root: Path) -> bytes:
    """The HMAC key of the project rooted at root: read, moved from .kiln/, or made once.

    Made atomically: the key is written to a temp file beside its final name, synced, then
    linked to that name, which fails for every writer but the first; all read the winner's key.
    """
    path = key_path(root)
    legacy = root / LEGACY_KEY
    try:
        try:
            key = _read(path)
        except FileNotFoundError:
            private_dir(path.parent, below=state_home())
            _publish(path, _legacy_or_new(legacy))
            key = _read(path)
        if legacy.exists() and legacy.read_bytes() == key:
            legacy.unlink(missing_ok=True)  # moved: a copy of .kiln/ no longer exposes it
    except OSError as exc:  # a read-only or foreign home, a full disk
        raise RegistryError(
            f"cannot read or make the secret key {path} ({exc.strerror or exc}): set "
            "XDG_STATE_HOME to a directory of yours that kiln may write, or fix that one."
        ) from exc
    return key


def _legacy_or_new(legacy: Path) -> bytes:
    """The key an older kiln kept in .kiln/ (digests recorded with it stay valid), or a new one."""
    try:
        return _read(legacy, private=False)  # made 0600; copied wider, it is tightened as it moves
    except FileNotFoundError:  # none, or another process has just moved it (and published it)
        return secrets.token_bytes(KEY_BYTES)


def _read(path: Path, *, private: bool = True) -> bytes:
    """The key in path, refused when it is too short or (private) when others may read it."""
    with path.open("rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode & 0o777
        key = handle.read()
    if len(key) < KEY_BYTES:
        got = "is empty" if not key else f"holds {len(key)} bytes, fewer than {KEY_BYTES}"
        raise RegistryError(
            f"the secret key {path} {got}: secret digests made with it could be brute-forced "
            f"from the registry. Remove the file and run again: kiln makes a new {KEY_BYTES}-byte "
            "key (the roles with secrets get new fingerprints, and are baked anew once)."
        )
    if private and mode & 0o077:
        raise RegistryError(
            f"the secret key {path} has mode {mode:04o}: others may read it. `chmod 600 {path}`, "
            "and remove it instead (kiln then makes a new key) if someone else may have read it."
        )
    return key


def _publish(path: Path, key: bytes) -> None:
    """Put key at path unless another process got there first (then theirs stays)."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{KEY_NAME}.")  # made 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
            handle.flush()
            os.fsync(handle.fileno())  # whole before it has its name: no reader sees it partial
        try:
            os.link(temp, path)
        except FileExistsError:
            return
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the name too survives a crash, not only the content
        finally:
            os.close(directory)
    finally:
        os.unlink(temp)
