"""A run's private directory on a tmpfs, and what is kept of it (redacted) when it ends."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kiln.errors import ToolError
from kiln.redact import Redactor

#: kiln-ansible-<pid>-<random>: the pid tells a live run's directory from a killed one's.
RUN_PREFIX = "kiln-ansible-"
TMPFS = Path("/dev/shm")


@contextmanager
def run_directory() -> Iterator[Path]:
    """A 0700 directory on a tmpfs for one run (config, runner's files, output); removed after.

    Ansible's output can hold what a careless task printed: it stays in memory until redacted.
    """
    if not TMPFS.is_dir():
        raise ToolError(f"{TMPFS} is not available: kiln keeps each Ansible run's files on a tmpfs")
    path = Path(tempfile.mkdtemp(prefix=f"{RUN_PREFIX}{os.getpid()}-", dir=TMPFS))
    try:
        for sub in ("home", "runner", "artifacts"):
            (path / sub).mkdir(mode=0o700)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def secret_values(args: Sequence[str]) -> list[str]:
    """The values of the `-e @FILE` extra-vars files kiln passes: its secrets file."""
    values: list[str] = []
    for arg in args:
        if arg.startswith("@"):
            try:
                values += _strings(json.loads(Path(arg[1:]).read_text(encoding="utf-8")))
            except (OSError, ValueError):
                continue
    return values


def keep_artifacts(artifacts: Path, keep: Path, secrets: Sequence[str]) -> None:
    """Copy runner's artifacts into keep, every file redacted, 0600 files in 0700 directories."""
    redact = Redactor(secrets)
    for source in sorted(artifacts.rglob("*")):
        if not source.is_file():
            continue
        target = keep / source.relative_to(artifacts)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        text = source.read_text(encoding="utf-8", errors="replace")
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(redact(text))
