"""Running the testinfra suites against the instance in one pytest, read from its JUnit XML."""

from __future__ import annotations

import os
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from kiln import tools
from kiln.acceptance.result import MESSAGE_LINES, TestCase
from kiln.acceptance.suites import BATTERY_DIR, BATTERY_LABEL, TIMEOUT_S, Suite
from kiln.docker import Instance
from kiln.model import Project

PLUGIN = "kiln.batteries.plugin"
# pytest parametrises testinfra tests by host ("test_x[docker://kiln-test-1a2b]"): the instance
# name changes every run, so reports drop it.
_HOST_PARAM = re.compile(r"\[(docker|ansible|local|ssh|paramiko)://[^\]]*\]$")


def run_testinfra(
    project: Project, suites: Sequence[Suite], instance: Instance, env: dict[str, str], work: Path
) -> tuple[list[TestCase], str]:
    """All testinfra files in one pytest process; the verdict per test comes from its JUnit XML."""
    report = work / "junit.xml"
    argv = _pytest_argv(project, suites, instance, work, report)
    proc = tools.run(argv, check=False, timeout=TIMEOUT_S, cwd=project.root, env=env)
    output = f"$ pytest --hosts=docker://{instance.name} {' '.join(s.label for s in suites)}\n"
    output += proc.stdout + proc.stderr
    cases = parse_junit(report, project.root) if report.exists() else []
    if proc.returncode not in (0, 1) or not cases:
        # 2-5: interrupted, internal or usage error, nothing collected. Say so as a test.
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-MESSAGE_LINES:])
        cases.append(TestCase("pytest", "failed", f"pytest exited {proc.returncode}\n{tail}"))
    return cases, output


def _pytest_argv(
    project: Project, suites: Sequence[Suite], instance: Instance, work: Path, report: Path
) -> list[str]:
    ini = work / "pytest.ini"
    ini.write_text("[pytest]\njunit_family = xunit1\n")
    declared = [s.path for s in suites if s.label != BATTERY_LABEL]
    # conftest.py files inside the declared test directories count; the project's own do not.
    confcut = Path(os.path.commonpath([p.parent for p in declared])) if declared else BATTERY_DIR
    return [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "testinfra.plugin",
        "-p",
        PLUGIN,
        "-p",
        "no:cacheprovider",
        "-c",
        str(ini),
        "--rootdir",
        str(project.root),
        "--confcutdir",
        str(confcut),
        "--import-mode=importlib",
        f"--hosts=docker://{instance.name}",
        f"--junitxml={report}",
        "--tb=short",
        "-q",
        "-rfE",
        "--color=no",
        *[str(s.path) for s in suites],
    ]


def parse_junit(path: Path, root: Path) -> list[TestCase]:
    """Test cases from pytest's JUnit XML (xunit1, which names each test's file)."""
    try:
        tree = ET.parse(path)
    except ET.ParseError:
        return []
    cases = []
    for element in tree.iter("testcase"):
        name = _HOST_PARAM.sub("", element.get("name", "?"))
        file = element.get("file")
        if file:
            label = BATTERY_LABEL if _is_battery(root / file) else Path(file).as_posix()
            name = f"{label}::{name}"
        elif element.get("classname"):
            name = f"{element.get('classname')}::{name}"
        duration = float(element.get("time") or 0)
        problem = element.find("failure")
        if problem is None:
            problem = element.find("error")
        if problem is not None:
            cases.append(TestCase(name, "failed", _assertion_tail(problem), duration))
        elif element.find("skipped") is not None:
            skipped = element.find("skipped")
            reason = skipped.get("message", "") if skipped is not None else ""
            cases.append(TestCase(name, "skipped", reason, duration))
        else:
            cases.append(TestCase(name, "passed", "", duration))
    return cases


def _is_battery(path: Path) -> bool:
    try:
        path.resolve().relative_to(BATTERY_DIR)
    except (ValueError, OSError):
        return False
    return True


def _assertion_tail(problem: ET.Element) -> str:
    """The lines that say why: pytest's 'E ' lines, else the message attribute."""
    text = problem.text or ""
    explained = [line[1:].strip() for line in text.splitlines() if line.startswith("E ")]
    lines = explained or [line for line in problem.get("message", "").splitlines() if line]
    lines = lines or text.strip().splitlines()[-MESSAGE_LINES:]
    return "\n".join(lines[:MESSAGE_LINES])
