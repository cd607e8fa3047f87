"""Directories (0700) and files (0600) that only their owner may read: kiln's logs, event files,
work directories, HMAC key and secret files all go through here, never through scattered chmods.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Literal, TextIO

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path, *, below: Path) -> Path:
    """path made, with every directory between below (itself left as it is) and it, mode 0700.

    below is made if missing, with the umask's mode: it is the user's (~/.local/state) or the
    project's (.kiln/). Directories this user owns that were made wider (by an older kiln, or
    a umask of 022) are tightened; another user's are left alone, as chmod would fail on them.
    """
    below.mkdir(parents=True, exist_ok=True)
    current = below
    for part in path.relative_to(below).parts:
        current = current / part
        with contextlib.suppress(FileExistsError):
            os.mkdir(current, DIR_MODE)
        _tighten(current, DIR_MODE)
    return path


def _tighten(path: Path, mode: int) -> None:
    info = os.stat(path)
    if info.st_mode & 0o777 != mode and info.st_uid == os.getuid():
        os.chmod(path, mode)


def private_open(path: Path, mode: Literal["w", "a"] = "w") -> TextIO:
    """path opened for writing text (truncated, or appended to with "a"), mode 0600 from the start.

    The mode is given to open(2), so that no moment exists in which the file is readable by
    others; a file that already existed wider (a log rewritten by `invoke test`) is tightened.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
    flags |= os.O_APPEND if mode == "a" else os.O_TRUNC
    fd = os.open(path, flags, FILE_MODE)
    try:
        if os.fstat(fd).st_mode & 0o777 != FILE_MODE:
            os.fchmod(fd, FILE_MODE)
        return open(fd, mode, encoding="utf-8")
    except BaseException:
        os.close(fd)
        raise


def write_private(path: Path, text: str) -> Path:
    """Write text to path (UTF-8) as a 0600 file; returns path."""
    with private_open(path) as handle:
        handle.write(text)
    return path


def log_dir(state: Path, role: str, version: int) -> Path:
    """A version's log directory, .kiln/logs/<role>/<version>/, with logs/ and <role>/ 0700."""
    return private_dir(state / "logs" / role / str(version), below=state)
