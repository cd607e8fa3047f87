"""Shared test configuration: where the repository is, the integration marker, and CI's rule that a
tool the setup installs is never missing: under CI=true, a skip for want of one is a failure.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from oci_registry import OciRegistry
    from postgres_cluster import PostgresCluster

REPO = Path(__file__).resolve().parents[1]

# Image acceptance tests run inside a baked instance (kiln.acceptance), never on this host.
collect_ignore = ["images"]

# A shell starts a background job with SIGINT ignored, and every child inherits that: the tests
# that press Ctrl-C on a kiln process (bake, boot) need it delivered as from a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

#: Commands scripts/setup.sh (scripts/common.sh) installs, in the apt packages or the venv. In CI
#: (`.ci/run`, CI=true) a test that skips because one of them is missing fails instead.
SETUP_TOOLS = (
    "packer", "docker", "dockerd", "mmdebstrap", "git", "qemu", "qemu-system-x86_64", "qemu-img",
    "genisoimage", "grub-mkimage", "debugfs", "mkfs.ext4", "sfdisk", "ssh-keygen", "chromium",
    "gpg", "gpgv", "ansible-playbook", "ansible-lint", "ansible-galaxy", "molecule", "postgresql",
    "docker-registry",
)  # fmt: skip
#: Skip reasons that say a tool is missing: `missing tool: X`, `needs X`, `X is not installed`.
MISSING = "missing tool: "
_TOOL = "|".join(re.escape(tool) for tool in sorted(SETUP_TOOLS, key=len, reverse=True))
_MISSING_REASON = re.compile(
    rf"^(?:Skipped: )?(?:{re.escape(MISSING)}(?P<named>\S+)"
    rf"|(?:needs|requires) (?:Debian's )?(?P<needed>{_TOOL})\b"
    rf"|.*\b(?P<absent>{_TOOL}) (?:is not installed|is not on PATH|not found)\b)"
)


def in_ci() -> bool:
    """CI=true (or 1, yes): `.ci/run` sets it; tools the setup installs must then be there."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing_tool(reason: str) -> str | None:
    """The setup-installed tool a skip reason says is missing, or None for any other skip."""
    found = _MISSING_REASON.match(reason)
    if found is None:
        return None
    return found.group("named") or found.group("needed") or found.group("absent")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in item.nodeid or item.nodeid.startswith("integration/"):
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Under CI=true, a skip because a setup-installed tool is missing becomes a failure."""
    report: pytest.TestReport = yield
    if report.skipped and in_ci() and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2])
        tool = missing_tool(reason)
        if tool is not None:
            report.outcome = "failed"
            report.longrepr = (
                f"CI=true: {tool} is installed by scripts/setup.sh, so this test may not skip "
                f"({reason}). Install it (bash scripts/setup.sh) or find why it is not on PATH."
            )
    return report


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster for this pytest worker (new_database() per test)."""
    # Imported here: tests/unit/test_ci_skips.py runs this file's text on its own.
    from postgres_cluster import throwaway_cluster

    with throwaway_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def oci_registry() -> Iterator[OciRegistry]:
    """A throwaway OCI registry on 127.0.0.1 for this pytest worker."""
    from oci_registry import throwaway_registry

    with throwaway_registry() as registry:
        yield registry


@pytest.fixture(scope="session", autouse=True)
def no_team_services_from_the_environment() -> Iterator[None]:
    """The tests use their own registries: a team's KILN_REGISTRY_URL or KILN_IMAGE_REGISTRY in
    the caller's environment must never receive test versions or images (tests that want one
    pass it to the process they start)."""
    saved = {
        k: os.environ.pop(k)
        for k in ("KILN_REGISTRY_URL", "KILN_IMAGE_REGISTRY")
        if k in os.environ
    }
    yield
    os.environ.update(saved)


@pytest.fixture(scope="session", autouse=True)
def private_state_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """kiln keeps each project's HMAC key in $XDG_STATE_HOME/kiln/ (kiln.hmac_key): the tests'
    projects keep theirs in this session's temp directory, never in the user's ~/.local/state.
    Set in os.environ, so that the `invoke` processes of the integration sandboxes inherit it."""
    saved = os.environ.get("XDG_STATE_HOME")
    path = tmp_path_factory.mktemp("xdg-state")
    os.environ["XDG_STATE_HOME"] = str(path)
    yield path
    if saved is None:
        os.environ.pop("XDG_STATE_HOME", None)
    else:
        os.environ["XDG_STATE_HOME"] = saved
