"""Health checking: run a role's check in an instance, once or until it passes."""

from __future__ import annotations

import time
from dataclasses import dataclass

from kiln.deploy.engine import Engine
from kiln.model import HealthCheck, Role

# A role without a health check is ready when systemd says every unit started.
BOOT_CHECK = HealthCheck(command=("systemctl", "is-system-running"), timeout_s=60, interval_s=0.5)


@dataclass(frozen=True)
class CheckResult:
    healthy: bool
    output: str
    seconds: float


class Unhealthy(Exception):
    """A new instance did not pass its health check in time: the rollout stops."""

    def __init__(self, instance: str, result: CheckResult) -> None:
        super().__init__(instance)
        self.instance = instance
        self.result = result


def health_check_of(role: Role) -> HealthCheck:
    return role.health_check or BOOT_CHECK


def check_once(engine: Engine, name: str, check: HealthCheck, *, timeout: float) -> CheckResult:
    started = time.monotonic()
    code, output = engine.exec(name, check.command, timeout=max(1.0, timeout))
    detail = output if code == 0 else f"`{' '.join(check.command)}` exited {code}: {output}"
    return CheckResult(code == 0, _tail(detail), time.monotonic() - started)


def wait_healthy(engine: Engine, name: str, check: HealthCheck) -> CheckResult:
    """Run the check until it passes; a CheckResult with healthy=False once timeout_s is spent."""
    started = time.monotonic()
    deadline = started + check.timeout_s
    while True:
        result = check_once(engine, name, check, timeout=deadline - time.monotonic())
        if result.healthy:
            return CheckResult(True, result.output, time.monotonic() - started)
        if time.monotonic() + check.interval_s >= deadline:
            return CheckResult(False, result.output, time.monotonic() - started)
        time.sleep(check.interval_s)


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
