"""What every task prints besides its own text: JSON documents, line lists and warnings."""

from __future__ import annotations

import json
import sys
from typing import Any


def emit_json(value: Any) -> None:
    """One indented, key-sorted JSON document on stdout; anything else becomes its str()."""
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def print_lines(lines: list[str]) -> None:
    sys.stdout.write("\n".join(lines) + "\n")


def warn(warnings: list[str]) -> None:
    # stderr, so that the JSON or text on stdout stays what a script reads
    for text in warnings:
        sys.stderr.write(f"kiln: WARNING: {text}\n")
