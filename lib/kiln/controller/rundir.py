"""A run's private directory on a tmpfs, and what is kept of it (redacted) when it ends."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kiln.private_files import private_dir, write_private
from kiln.redact import Redactor
from kiln.secret_files import ANSIBLE_RUN_PREFIX, memory_directory


@contextmanager
def run_directory() -> Iterator[Path]:
    """A 0700 directory on a tmpfs for one run (config, runner's files, output); removed after.

    Ansible's output can hold what a careless task printed: it stays in memory until redacted.
    A kill -9 leaves it to the sweep every kiln command starts with (kiln.secret_files).
    """
    # kiln-ansible-<pid namespace>-<pid>-<start time>-<random>, swept like secrets directories.
    with memory_directory(ANSIBLE_RUN_PREFIX) as path:
        for sub in ("home", "runner", "artifacts"):
            (path / sub).mkdir(mode=0o700)
        yield path


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
        private_dir(target.parent, below=keep.parent)
        write_private(target, redact(source.read_text(encoding="utf-8", errors="replace")))
