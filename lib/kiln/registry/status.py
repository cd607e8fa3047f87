"""VersionStatus: the statuses a recorded version can have, and the rules each one obeys."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum


class VersionStatus(StrEnum):
    """A version's status; a StrEnum, so it is stored, printed and compared as the plain string."""

    BAKED = "baked"  # built; its acceptance tests have not run yet
    UNTESTED = "untested"  # recorded without tests (--skip-tests, or a target that cannot run them)
    TESTED = "tested"  # passed its acceptance tests
    FAILED = "failed"  # failed its acceptance tests
    REVOKED = "revoked"  # withdrawn by hand (`invoke revoke`); never reused, never built on

    @property
    def reusable(self) -> bool:
        """A cache hit may stand in for a new bake (baked ones only once their tests pass)."""
        return self in (VersionStatus.BAKED, VersionStatus.UNTESTED, VersionStatus.TESTED)

    @property
    def awaiting_tests(self) -> bool:
        """Built, but the acceptance gate has not decided yet."""
        return self is VersionStatus.BAKED

    @property
    def usable(self) -> bool:
        """Neither failed nor revoked: may be built on, and counts as a newer parent."""
        return self not in (VersionStatus.FAILED, VersionStatus.REVOKED)

    @property
    def promotable(self) -> bool:
        """A channel may point at it without --force (and revoke falls back to it)."""
        return self is VersionStatus.TESTED

    @property
    def deployable(self) -> bool:
        """`invoke deploy` may start instances of it."""
        return self is VersionStatus.TESTED

    @property
    def rollback_target(self) -> bool:
        """rollback may move a channel back to it (revoke is stricter: promotable only)."""
        return self.reusable


#: Every status, in lifecycle order (the error message of an unknown status lists them).
STATUSES: tuple[str, ...] = tuple(VersionStatus)


def statuses(rule: Callable[[VersionStatus], bool]) -> frozenset[str]:
    """The statuses rule holds for, as plain strings: for SQL and loops over thousands of rows,
    where parsing each stored string into a VersionStatus would cost more than the test."""
    return frozenset(s.value for s in VersionStatus if rule(s))
