"""The container engine deploy drives: the Engine protocol and the local Docker engine."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from kiln import tools
from kiln.deploy.server import (
    LABEL_CHANNEL,
    LABEL_ID,
    LABEL_NAMESPACE,
    LABEL_ROLE,
    LABEL_VERSION,
    Server,
)
from kiln.docker import remove_instance, start_instance
from kiln.errors import DeployError, KilnError

ROLE_PORT = 80
# Graceful stop for servers being replaced: systemd shuts nginx down and lets requests finish.
STOP_TIMEOUT_S = 10


class Engine(Protocol):
    """What deploy needs from a container engine; unit tests pass a fake one."""

    def start(
        self, image: str, *, name: str, labels: Mapping[str, str], host_port: int | None
    ) -> None: ...

    def exec(self, name: str, command: Sequence[str], *, timeout: float) -> tuple[int, str]: ...

    def diff(self, name: str) -> list[tuple[str, str]]: ...

    def stop(self, names: Sequence[str]) -> None: ...

    def remove(self, name: str) -> None: ...

    def servers(self, namespace: str, role: str | None = None) -> list[Server]: ...

    def image_id(self, ref: str) -> str | None: ...


class DockerEngine:
    """The local Docker engine. Every process deploy runs starts here, with `docker`."""

    def start(
        self, image: str, *, name: str, labels: Mapping[str, str], host_port: int | None
    ) -> None:
        publish = ("-p", f"127.0.0.1:{host_port}:{ROLE_PORT}") if host_port is not None else ()
        # unless-stopped: a server comes back when the engine restarts, a replaced one does not.
        start_instance(
            image, name=name, labels=labels, extra_flags=("--restart", "unless-stopped", *publish)
        )

    def exec(self, name: str, command: Sequence[str], *, timeout: float) -> tuple[int, str]:
        try:
            proc = tools.run(["docker", "exec", name, *command], check=False, timeout=timeout)
        except KilnError as exc:
            return 124, str(exc)
        return proc.returncode, (proc.stdout + proc.stderr).strip()

    def diff(self, name: str) -> list[tuple[str, str]]:
        out = tools.run(["docker", "diff", name], timeout=120).stdout
        return [(line[0], line[2:]) for line in out.splitlines() if len(line) > 2]

    def stop(self, names: Sequence[str]) -> None:
        # One call: the engine stops them concurrently, each given the same grace period.
        tools.run(
            ["docker", "stop", "--time", str(STOP_TIMEOUT_S), *names], check=False, timeout=120
        )

    def remove(self, name: str) -> None:
        remove_instance(name)

    def servers(self, namespace: str, role: str | None = None) -> list[Server]:
        filters = ["--filter", f"label={LABEL_NAMESPACE}={namespace}"]
        if role is not None:
            filters += ["--filter", f"label={LABEL_ROLE}={role}"]
        ids = tools.run(["docker", "ps", "-a", "-q", "--no-trunc", *filters]).stdout.split()
        if not ids:
            return []
        # A container removed between ps and inspect is simply no longer a server.
        proc = tools.run(["docker", "inspect", *ids], check=False)
        try:
            records = json.loads(proc.stdout or "[]")
        except ValueError as exc:
            raise DeployError(f"docker inspect returned unreadable output: {exc}") from exc
        return sorted((server_from_inspect(r) for r in records), key=lambda s: s.started_at)

    def image_id(self, ref: str) -> str | None:
        return tools.docker_image_id(ref)


def server_from_inspect(record: Mapping[str, Any]) -> Server:
    """The Server one `docker inspect` record describes, read from kiln's labels."""
    config = record.get("Config") or {}
    labels = config.get("Labels") or {}
    state = record.get("State") or {}
    bindings = (record.get("HostConfig") or {}).get("PortBindings") or {}
    ports = sorted(
        int(b["HostPort"]) for spec in bindings.values() for b in spec or () if b.get("HostPort")
    )
    return Server(
        name=str(record.get("Name", "")).lstrip("/"),
        container_id=str(record.get("Id", "")),
        role=labels.get(LABEL_ROLE, ""),
        version=int(labels.get(LABEL_VERSION) or 0),
        channel=labels.get(LABEL_CHANNEL, ""),
        deployment=labels.get(LABEL_ID, ""),
        image=str(config.get("Image", "")),
        image_id=str(record.get("Image", "")),
        state=str(state.get("Status", "unknown")),
        started_at=str(state.get("StartedAt") or record.get("Created") or ""),
        ports=tuple(ports),
    )
