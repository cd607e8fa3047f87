"""Paths as a user reads them in messages and rendered files: relative to the project root."""

from __future__ import annotations

from pathlib import Path

__all__ = ["relative_to"]


def relative_to(path: Path | str, root: Path) -> str:
    """path below root in POSIX form (rendered files stay reproducible); otherwise path as given."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return path if isinstance(path, str) else path.as_posix()
