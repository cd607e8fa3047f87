"""What is running: a deployed server as the engine reports it, and the labels that mark it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

LABEL_ROLE = "kiln.deploy.role"
LABEL_VERSION = "kiln.deploy.version"
LABEL_ID = "kiln.deploy.id"
LABEL_CHANNEL = "kiln.deploy.channel"
# Several checkouts (and test sandboxes) share one engine: each only ever sees its own servers.
LABEL_NAMESPACE = "kiln.deploy.namespace"


@dataclass(frozen=True)
class Server:
    """One deployed instance, as the engine reports it."""

    name: str
    container_id: str
    role: str
    version: int
    channel: str
    deployment: str
    image: str
    image_id: str
    state: str
    started_at: str
    ports: tuple[int, ...] = ()

    @property
    def running(self) -> bool:
        return self.state == "running"

    def age_s(self, now: datetime | None = None) -> float:
        started = parse_docker_time(self.started_at)
        if started is None:
            return 0.0
        return max(0.0, ((now or datetime.now(UTC)) - started).total_seconds())


_DOCKER_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def parse_docker_time(text: str) -> datetime | None:
    """Docker's RFC 3339 times carry nanoseconds, which datetime cannot read; None if unset."""
    match = _DOCKER_TIME.match(text)
    if not match or text.startswith("0001-"):
        return None
    base, fraction, zone = match.groups()
    micro = (fraction or "0")[:6].ljust(6, "0")
    return datetime.fromisoformat(f"{base}.{micro}{'+00:00' if zone == 'Z' else zone}")
