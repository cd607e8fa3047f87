"""Running the acceptance tests of a version on a throwaway instance, and recording the verdict."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from kiln.acceptance.playbook import run_playbook
from kiln.acceptance.result import AcceptanceResult, TestCase, failure_message, write_log
from kiln.acceptance.suites import Suite, discover_suites
from kiln.acceptance.testinfra import run_testinfra
from kiln.console import Reporter
from kiln.docker import Instance, recorded_image_present, throwaway_instance
from kiln.errors import RegistryError, TestFailure
from kiln.guard import ansible_environment
from kiln.image_registry import ensure_local
from kiln.model import Node, Project
from kiln.paths import relative_to
from kiln.registry import Registry, Version, VersionStatus, utc_now

SUITE = "acceptance"

Redact = Callable[[str], str]


def baked_variables(registry: Registry, version: Version) -> dict[str, Any]:
    """The non-secret variables version was baked with, its ancestors' included (nearest wins).

    They come from the registry, not from tasks.py, so that retesting an old version checks it
    against what it was built from.
    """
    chain: list[Version] = []
    node: Version | None = version
    while node is not None and len(chain) < 64:
        chain.append(node)
        if node.parent_role is None or node.parent_version is None:
            break
        node = registry.get(node.parent_role, node.parent_version)
    merged: dict[str, Any] = {}
    for item in reversed(chain):
        definition = item.inputs.get("definition")
        if isinstance(definition, Mapping):
            merged.update(definition.get("variables") or {})
    return merged


def run_acceptance(
    project: Project,
    node: Node,
    version: Version,
    *,
    registry: Registry,
    reporter: Reporter | None = None,
    redact: Redact = str,
    target: str = "docker",
) -> AcceptanceResult:
    """Start a throwaway instance of version's image, run every suite on it, and remove it.

    Failing tests are a result, not an exception; an instance that does not boot is a failure
    too. Only infrastructure trouble (docker not answering) raises.
    """
    artifact = version.artifact(target)
    if artifact is None or artifact.deleted_at is not None:
        raise RegistryError(f"{version.label} has no {target} image left to test")
    suites = discover_suites(project, node)
    variables = baked_variables(registry, version)
    started_at = utc_now()
    started = time.monotonic()
    labels = {"kiln.role": version.role, "kiln.version": str(version.version)}
    cases: list[TestCase] = []
    outputs: list[str] = []
    boot_s = 0.0
    with tempfile.TemporaryDirectory(prefix="kiln-acceptance-") as tmp:
        work = Path(tmp)
        vars_file = work / "vars.json"
        vars_file.write_text(json.dumps(variables, sort_keys=True, ensure_ascii=False))
        env = _test_env(project, version, vars_file, target)
        try:
            with throwaway_instance(artifact.ref, purpose="test", labels=labels) as instance:
                boot_s = time.monotonic() - started
                if reporter is not None:
                    reporter.phase(
                        version.role,
                        "tests",
                        f"{len(suites)} suite(s) on {instance.name} (booted in {boot_s:.1f}s)",
                    )
                _run_suites(project, suites, instance, env, work, cases, outputs)
        except TestFailure as exc:  # the image did not boot: that is its verdict
            cases.append(TestCase("boot", "failed", str(exc)))
            outputs.append(str(exc))
    return AcceptanceResult(
        role=version.role,
        version=version.version,
        cases=tuple(replace(c, message=redact(c.message)) for c in cases),
        output=redact("\n".join(outputs)),
        started_at=started_at,
        duration_s=time.monotonic() - started,
        boot_s=boot_s,
    )


def _run_suites(
    project: Project,
    suites: Sequence[Suite],
    instance: Instance,
    env: dict[str, str],
    work: Path,
    cases: list[TestCase],
    outputs: list[str],
) -> None:
    """The testinfra suites in one pytest, then each playbook; appends to cases and outputs."""
    testinfra = [s for s in suites if s.kind == "testinfra"]
    if testinfra:
        got, text = run_testinfra(project, testinfra, instance, env, work)
        cases += got
        outputs.append(text)
    for index, suite in enumerate(s for s in suites if s.kind == "playbook"):
        got, text = run_playbook(project, suite, instance, env, work, index)
        cases += got
        outputs.append(text)


def _test_env(project: Project, version: Version, vars_file: Path, target: str) -> dict[str, str]:
    env, _dropped = ansible_environment(os.environ)
    env.update(
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        KILN_ROLE=version.role,
        KILN_VERSION=str(version.version),
        KILN_TARGET=target,
        KILN_VARS_FILE=str(vars_file),
        KILN_PROJECT_ROOT=str(project.root),
        PYTHONDONTWRITEBYTECODE="1",
        # Only the plugins kiln names: a stray plugin in the environment cannot change a verdict.
        PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
    )
    return env


def record_result(registry: Registry, version: Version, result: AcceptanceResult) -> Version:
    """Record the run and set the status (tested or failed); returns the updated version.

    A revoked version keeps its status: a passing retest does not bring it back.
    """
    status: VersionStatus | None = VersionStatus.TESTED if result.passed else VersionStatus.FAILED
    if version.status == VersionStatus.REVOKED:
        status = None
    registry.record_test_run(
        version.role,
        version.version,
        suite=SUITE,
        passed=result.passed,
        summary=result.summary,
        output=result.output,
        started_at=result.started_at,
        duration_s=round(result.duration_s, 3),
        status=status,
    )
    if status is None:
        return version
    return replace(version, status=status, status_reason=None if result.passed else result.summary)


def retest(
    project: Project,
    registry: Registry,
    role: str,
    version: int | None = None,
    *,
    reporter: Reporter | None = None,
    target: str = "docker",
    raise_on_failure: bool = True,
) -> tuple[Version, AcceptanceResult]:
    """Rerun the acceptance tests of a recorded version (default: the newest) and set its status.

    When a test fails the verdict is recorded first, then TestFailure is raised (unless
    raise_on_failure is False: then the caller reads result.passed).
    """
    # Through the package, like every caller: a patched kiln.acceptance.run_acceptance holds.
    from kiln import acceptance

    node = project.get(role)
    found = registry.get(role, version) if version else registry.latest(role, target=target)
    if found is None:
        which = f"version {version}" if version else "any version"
        raise RegistryError(f"{role} has no recorded {which}; run `invoke bake {role}` first")
    artifact = found.artifact("docker")
    if artifact is not None:
        ensure_local(registry, found, artifact)  # pulled by digest if pushed and missing here
        recorded_image_present(artifact, owner=found)  # ImageMoved: never test another image
    result = acceptance.run_acceptance(project, node, found, registry=registry, reporter=reporter)
    updated = record_result(registry, found, result)
    log = write_log(project, result)
    if raise_on_failure and not result.passed:
        raise TestFailure(failure_message(result, log=relative_to(log.resolve(), project.root)))
    return updated, result
