"""Channels: where each points, moving them inside a transaction, and their audit log."""

from __future__ import annotations

from kiln.registry.audit import utc_now
from kiln.registry.backend import Session
from kiln.registry.connection import Connection
from kiln.registry.rows import ChannelEntry, ChannelLogEntry, from_row


class Channels(Connection):
    """Named pointers (dev, staging, prod...) at versions, each move logged in channel_log."""

    def channels(self, role: str) -> dict[str, int | None]:
        """Each channel of role and the version it points at (None once revoke emptied it)."""
        rows = self._query(
            "SELECT channel, version FROM channels WHERE role = ? ORDER BY channel", (role,)
        )
        return {r["channel"]: r["version"] for r in rows}

    def channels_pointing_at(self, role: str, version: int) -> list[str]:
        """The channels revoke must move off version, and warn about, by name."""
        rows = self._query(
            "SELECT channel FROM channels WHERE role = ? AND version = ? ORDER BY channel",
            (role, version),
        )
        return [r["channel"] for r in rows]

    def channel_log(self, role: str, channel: str | None = None) -> list[ChannelLogEntry]:
        """The moves of role's channels (or of one channel), newest first."""
        rows = self._query(
            "SELECT * FROM channel_log WHERE role = ? AND (? IS NULL OR channel = ?)"
            " ORDER BY id DESC",
            (role, channel, channel),
        )
        return [from_row(ChannelLogEntry, r, forced=bool(r["forced"])) for r in rows]

    def channel_entries(self, role: str | None = None) -> list[ChannelEntry]:
        """Channels (of role, or of all roles) with the version they point at and since when."""
        if role is None:
            rows = self._query("SELECT * FROM channels ORDER BY role, channel")
        else:
            rows = self._query("SELECT * FROM channels WHERE role = ? ORDER BY channel", (role,))
        return [from_row(ChannelEntry, r) for r in rows]


def write_channel(
    conn: Session,
    *,
    role: str,
    channel: str,
    version: int | None,
    action: str,
    actor: str,
    reason: str | None,
    forced: bool,
) -> int | None:
    """Point channel at version inside the open transaction of conn, logging the move;
    returns the version it pointed at before."""
    row = conn.one("SELECT version FROM channels WHERE role = ? AND channel = ?", (role, channel))
    previous = row["version"] if row else None
    now = utc_now()
    conn.execute(
        "INSERT INTO channels (role, channel, version, updated_at) VALUES (?,?,?,?) "
        "ON CONFLICT (role, channel) DO UPDATE SET version = excluded.version,"
        " updated_at = excluded.updated_at",
        (role, channel, version, now),
    )
    conn.execute(
        "INSERT INTO channel_log (role, channel, from_version, to_version, action, actor,"
        " reason, forced, at) VALUES (?,?,?,?,?,?,?,?,?)",
        (role, channel, previous, version, action, actor, reason, int(forced), now),
    )
    return int(previous) if previous is not None else None
