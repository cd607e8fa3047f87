"""CI's rule, run on a tiny suite with the repository's own tests/conftest.py: under CI=true a skip
because a tool scripts/setup.sh installs is missing fails; any other skip stays a skip.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[2]

TINY_SUITE = """
import pytest

@pytest.mark.skipif(True, reason="needs Debian's chromium package")
def test_report():
    pass

@pytest.mark.skipif(True, reason="packer is not installed")
def test_validate():
    pass

def test_molecule():
    pytest.skip("missing tool: molecule")

@pytest.mark.skipif(True, reason="mounting a tmpfs needs root")
def test_tmpfs():
    pass

def test_no_kvm():
    pytest.skip("KVM does not boot a kernel here")

def test_plain():
    pass
"""
TOOL_SKIPS = ("test_report", "test_validate", "test_molecule")
OTHER_SKIPS = ("test_tmpfs", "test_no_kvm")


def run(pytester: pytest.Pytester) -> tuple[dict[str, str], str]:
    """Each tiny test's outcome (passed, failed, skipped) from a real pytest run, and its output."""
    pytester.makeconftest((REPO / "tests" / "conftest.py").read_text())
    pytester.makepyfile(test_tiny=TINY_SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--junitxml=report.xml")
    outcomes = {}
    for case in ET.parse(pytester.path / "report.xml").getroot().iter("testcase"):
        kinds = {child.tag for child in case} & {"failure", "error", "skipped"}
        outcomes[case.attrib["name"]] = (
            "failed" if kinds & {"failure", "error"} else "skipped" if kinds else "passed"
        )
    return outcomes, result.stdout.str()


def test_under_ci_a_missing_setup_tool_fails_and_says_why(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    outcomes, output = run(pytester)
    assert outcomes == {
        **dict.fromkeys(TOOL_SKIPS, "failed"),
        **dict.fromkeys(OTHER_SKIPS, "skipped"),
        "test_plain": "passed",
    }
    assert "CI=true: chromium is installed by scripts/setup.sh, so this test may not skip" in output


def test_outside_ci_every_skip_stays_a_skip(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    outcomes, _ = run(pytester)
    assert outcomes == {
        **dict.fromkeys(TOOL_SKIPS + OTHER_SKIPS, "skipped"),
        "test_plain": "passed",
    }


def test_no_two_test_files_share_a_name() -> None:
    """pytest imports test files by basename (no packages under tests/): a name used in both
    tests/unit and tests/integration stops the whole run at collection."""
    names = [p.name for p in (REPO / "tests").glob("*/test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
