"""Presentation: servers and drift as lines of text, for the command line to print."""

from __future__ import annotations

from collections.abc import Sequence

from kiln.deploy.drift_report import InstanceDrift
from kiln.deploy.status import ServerStatus


def format_age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def server_table(statuses: Sequence[ServerStatus]) -> list[str]:
    header = ("NAME", "ROLE", "VERSION", "CHANNEL", "AGE", "HEALTH", "STANDING", "PORTS")
    rows = [header] + [
        (
            s.server.name,
            s.server.role,
            f"v{s.server.version}",
            s.server.channel,
            format_age(s.server.age_s()),
            s.health,
            s.standing,
            ",".join(f"127.0.0.1:{p}" for p in s.server.ports) or "-",
        )
        for s in statuses
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def drift_lines(report: Sequence[InstanceDrift]) -> list[str]:
    lines: list[str] = []
    for item in report:
        if not item.drifted:
            continue
        lines.append(f"{item.server.name} ({item.server.role} v{item.server.version}) drifted:")
        lines += [f"  {change.kind:<8} {change.path}" for change in item.changes]
        lines += [f"  {problem}" for problem in item.problems]
        lines.append(f"  remedy: replace it, never patch it: {item.remedy}")
    return lines
