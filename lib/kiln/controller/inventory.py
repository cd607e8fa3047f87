"""What Packer's inventory says about the builder: only where a loopback SSH port is bridged."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

_HOST_VAR = re.compile(r"\bansible(?:_ssh)?_host=(\S+)")
_PORT_VAR = re.compile(r"\bansible(?:_ssh)?_port=(\d+)")
LOOPBACK = ("127.0.0.1", "localhost")


def inventory_path(args: Sequence[str]) -> Path | None:
    """The -i file Packer passed (it writes one, naming its one host, for every run)."""
    for index, arg in enumerate(args[:-1]):
        if arg in ("-i", "--inventory", "--inventory-file"):
            path = Path(args[index + 1])
            return path if path.is_file() else None
    return None


def loopback_ssh_port(inventory: Path) -> int | None:
    """The builder's SSH port when the inventory reaches it on the host's loopback (qemu)."""
    text = inventory.read_text(encoding="utf-8", errors="replace")
    host, port = _HOST_VAR.search(text), _PORT_VAR.search(text)
    if host is None or port is None or host.group(1) not in LOOPBACK:
        return None
    return int(port.group(1))
