"""Who acts and when, as the registry's audit columns record them."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def actor() -> str:
    """Who is acting, for audit logs: $KILN_ACTOR, else user@host."""
    # Imported here, as before the split: only commands that write audit rows pay for them.
    import getpass
    import os
    import socket

    return os.environ.get("KILN_ACTOR") or f"{getpass.getuser()}@{socket.gethostname()}"
