"""Acceptance tests: the gate between a baked version and a tested one (see run.py)."""

from __future__ import annotations

from kiln import tools
from kiln.acceptance.result import (
    MESSAGE_LINES,
    AcceptanceResult,
    TestCase,
    failure_message,
    write_log,
)
from kiln.acceptance.run import (
    SUITE,
    baked_variables,
    record_result,
    retest,
    run_acceptance,
)
from kiln.acceptance.suites import BATTERY_DIR, BATTERY_LABEL, TIMEOUT_S, Suite, discover_suites
from kiln.acceptance.testinfra import PLUGIN, parse_junit

__all__ = [
    "BATTERY_DIR",
    "BATTERY_LABEL",
    "MESSAGE_LINES",
    "PLUGIN",
    "SUITE",
    "TIMEOUT_S",
    "AcceptanceResult",
    "Suite",
    "TestCase",
    "baked_variables",
    "discover_suites",
    "failure_message",
    "parse_junit",
    "record_result",
    "retest",
    "run_acceptance",
    "tools",
    "write_log",
]
