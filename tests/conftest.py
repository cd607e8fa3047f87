"""Shared test configuration: where the repository is, and the integration marker."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Image acceptance tests run inside a baked instance (kiln.acceptance), never on this host.
collect_ignore = ["images"]

# A shell starts a background job with SIGINT ignored, and every child inherits that: the tests
# that press Ctrl-C on a kiln process (bake, boot) need it delivered as from a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in item.nodeid or item.nodeid.startswith("integration/"):
            item.add_marker(pytest.mark.integration)
