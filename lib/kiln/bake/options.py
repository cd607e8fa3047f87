"""What one bake is asked to do (BakeOptions) and what it hands back per node (BakeOutcome)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from kiln.registry import Version


@dataclass(frozen=True)
class BakeOptions:
    """How a bake treats new versions; one Baker holds defaults, each bake() call may override."""

    #: Record new versions as untested instead of running their acceptance tests.
    skip_tests: bool = False
    #: Run Ansible twice in each builder; a change in the second pass fails the bake.
    check_idempotence: bool = False

    def overridden(
        self, *, skip_tests: bool | None = None, check_idempotence: bool | None = None
    ) -> BakeOptions:
        """These options with each override that is not None applied."""
        return replace(
            self,
            skip_tests=self.skip_tests if skip_tests is None else skip_tests,
            check_idempotence=(
                self.check_idempotence if check_idempotence is None else check_idempotence
            ),
        )


@dataclass(frozen=True)
class BakeOutcome:
    """What happened to one node of the chain: baked anew, or found up to date."""

    version: Version
    baked: bool
    timings: Mapping[str, float] = field(default_factory=dict)
    log_dir: Path | None = None
