"""The acceptance gate: a new version's tests run, and their verdict is recorded, before it counts.

testinfra's machinery (kiln.acceptance) is imported only when tests run: the no-op bake stays fast.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kiln.bake.options import BakeOutcome
from kiln.console import Reporter
from kiln.errors import TestFailure
from kiln.model import Node, Project
from kiln.paths import relative_to
from kiln.redact import Redactor
from kiln.registry import Registry, Version
from kiln.targets.base import Renderer


@dataclass(frozen=True)
class AcceptanceGate:
    """Runs a version's acceptance tests on one target, or says why they do not run."""

    project: Project
    registry: Registry
    target: Renderer
    reporter: Reporter
    skip_tests: bool = False

    def check(
        self,
        node: Node,
        version: Version,
        *,
        baked: bool,
        timings: Mapping[str, float],
        log_dir: Path | None,
        redact: Redactor | None = None,
    ) -> BakeOutcome:
        """Run version's acceptance tests and record the verdict; a failure raises TestFailure."""
        from kiln import acceptance

        untested = BakeOutcome(version=version, baked=baked, timings=timings, log_dir=log_dir)
        if not self.target.builder().runs_acceptance_tests():
            self.reporter.message(
                node.name,
                f"{version.label} recorded untested: acceptance tests run on docker instances; "
                f"boot this {self.target.name} image with `invoke boot {node.name}`",
            )
            return untested
        if self.skip_tests:
            self.reporter.message(node.name, f"{version.label} recorded untested (--skip-tests)")
            return untested
        self.reporter.phase(node.name, "tests", f"acceptance tests of {version.label}")
        result = acceptance.run_acceptance(
            self.project,
            node,
            version,
            registry=self.registry,
            reporter=self.reporter,
            redact=redact or str,
            target=self.target.name,
        )
        tested = acceptance.record_result(self.registry, version, result)
        log = acceptance.write_log(self.project, result)
        if not result.passed:
            where = relative_to(str(log), self.project.root)
            raise TestFailure(acceptance.failure_message(result, log=where))
        summary = f"{result.summary} in {result.duration_s:.1f}s"
        self.reporter.phase(node.name, "tests", f"{version.label} {tested.status}: {summary}")
        timings = {**timings, "tests": round(result.duration_s, 3)}
        return BakeOutcome(version=tested, baked=baked, timings=timings, log_dir=log_dir)
