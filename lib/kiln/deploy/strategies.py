"""The strategies: rolling swaps one old server per healthy new one; blue-green all at once."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kiln.deploy.rollout import Rollout
from kiln.deploy.server import Server

# (rollout, old servers still to retire, image, version, channel, replicas)
Strategy = Callable[[Rollout, list[Server], str, int, str, int], None]


def _rolling(
    rollout: Rollout, queue: list[Server], image: str, version: int, channel: str, replicas: int
) -> None:
    """One new instance at a time, each healthy before an old one goes: capacity never drops."""
    for _ in range(replicas):
        name = rollout.start(image, version, channel)
        rollout.wait(name, version)
        if queue:
            rollout.retire([queue.pop(0)])


def _blue_green(
    rollout: Rollout, queue: list[Server], image: str, version: int, channel: str, replicas: int
) -> None:
    """Every new instance started and healthy before any old one goes."""
    names = [rollout.start(image, version, channel) for _ in range(replicas)]
    for name in names:
        rollout.wait(name, version)


_STRATEGIES: dict[str, Strategy] = {"rolling": _rolling, "blue-green": _blue_green}
STRATEGIES = tuple(_STRATEGIES)


def roll(
    rollout: Rollout,
    old: Sequence[Server],
    image: str,
    version: int,
    channel: str,
    replicas: int,
    strategy: str,
) -> None:
    """Replace old with replicas new instances of image by strategy (one of STRATEGIES)."""
    queue = list(old)
    _STRATEGIES[strategy](rollout, queue, image, version, channel, replicas)
    if queue:
        # Every new instance serves by now: the rest of the old ones go together.
        rollout.retire(queue)
    rollout.pending.clear()
