"""The pytest plugin kiln loads (``-p kiln.batteries.plugin``) when it runs acceptance tests.

Tests read what kiln knows about the image under test through fixtures, never through kiln's
internals: ``kiln_vars`` (the role's non-secret variables, ancestors' included), ``kiln_role``,
``kiln_version`` and ``kiln_target``. The same values are in the environment (KILN_VARS_FILE,
KILN_ROLE, KILN_VERSION, KILN_TARGET) for tests that run without this plugin.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest


def _required(name: str) -> str:
    value = os.environ.get(name)
    if value is None:
        pytest.fail(f"{name} is not set: run this test through `invoke test ROLE`", pytrace=False)
    return value


@pytest.fixture(scope="session")
def kiln_vars() -> dict[str, Any]:
    """The role's non-secret variables as the image was baked with them."""
    data = json.loads(Path(_required("KILN_VARS_FILE")).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="session")
def kiln_role() -> str:
    return _required("KILN_ROLE")


@pytest.fixture(scope="session")
def kiln_version() -> int:
    return int(_required("KILN_VERSION"))


@pytest.fixture(scope="session")
def kiln_target() -> str:
    return os.environ.get("KILN_TARGET", "docker")
