"""The image gate for real: acceptance tests on throwaway instances, lint, idempotence.

The session's baked sandbox shows the gate of a whole chain; one clone of it serves the rest of
the module (bakes are slow on two cores). The tests run in file order and each leaves the
clone's roles as it found them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Sandbox, clone_sandbox
from kiln import lifecycle
from kiln.errors import RegistryError

pytestmark = pytest.mark.integration

INDEX = Path("roles/web/templates/index.html.j2")


@pytest.fixture(scope="module")
def box(baked_sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A clone of the baked sandbox: web v1 tested."""
    sandbox = clone_sandbox(baked_sandbox, tmp_path_factory.mktemp("acceptance"))
    try:
        yield sandbox
    finally:
        sandbox.cleanup()


def phase_seconds(output: str, role: str, phase: str) -> float:
    """A phase's time from the bake summary line `<role> time  render 0.2s, ..., tests 9.8s`."""
    line = next(line for line in output.splitlines() if line.strip().startswith(f"{role} time"))
    match = re.search(rf"{phase} (\d+\.\d)s", line)
    assert match, line
    return float(match.group(1))


def test_a_bake_runs_the_gate_and_records_tested(baked_sandbox: Sandbox) -> None:
    box, proc = baked_sandbox, baked_sandbox.first_bake
    assert proc is not None
    took = baked_sandbox.first_bake_seconds
    assert "web v1 (tested)" in proc.stdout
    gate = phase_seconds(proc.stdout, "web", "tests")
    print(f"\nbake of the chain {took:.1f}s; web's gate {gate:.1f}s")
    with box.registry() as registry:
        for role in ("debian-bookworm", "base", "web"):
            newest = registry.latest(role)
            assert newest is not None and newest.status == "tested", (role, newest)
            (run,) = registry.test_runs(role, newest.version)
            assert run.suite == "acceptance" and run.passed == 1
        (run,) = registry.test_runs("web", 1)
        for role in ("debian-bookworm", "base", "web"):
            (each,) = registry.test_runs(role, 1)
            print(f"gate of {role} v1: {each.duration_s:.1f}s ({each.summary})")
    # The base battery and the role's own tests both ran against web's instance.
    assert "kiln base battery tests/images/web/test_web.py" in run.output
    assert re.search(r"\d+ passed", run.summary)
    assert box.containers() == []  # the throwaway instances are gone
    # Lint ran before the builders: its verdict is recorded with the version (the verdicts'
    # cache is checked in test_bake.py::test_lint_ran_and_its_verdicts_are_cached_and_recorded).
    with box.registry() as registry:
        web = registry.get("web", 1)
    assert web is not None and web.inputs["lint"]["profile"] == "min"


def test_skip_tests_records_untested_and_test_tests_it_later(box: Sandbox) -> None:
    box.set_web_variables(web_title="Skipped, then tested")
    try:
        proc = box.invoke("bake", "web", "--skip-tests", check=True)
        assert "web v2 (untested)" in proc.stdout
        with box.registry() as registry:
            web = registry.get("web", 2)
            assert web is not None and web.status == "untested"
            assert registry.test_runs("web", 2) == []
        # `invoke test` checks the page against the title version 2 was baked with.
        proc = box.invoke("test", "web", "--version", "2", check=True)
        assert proc.stdout.startswith("web v2 tested:") or "web v2 tested:" in proc.stdout
        with box.registry() as registry:
            web = registry.get("web", 2)
            assert web is not None and web.status == "tested"
            assert len(registry.test_runs("web", 2)) == 1
        assert box.containers() == []
    finally:
        box.set_web_variables(web_title="Hello from kiln")


def test_a_broken_page_fails_the_version_and_nothing_builds_on_it(box: Sandbox) -> None:
    index = box.root / INDEX
    original = index.read_text()
    index.write_text(original.replace("{{ web_title | e }}", "Untitled"))
    try:
        proc = box.invoke("bake", "web")
        assert proc.returncode != 0
        message = proc.stderr + proc.stdout
        assert "failed its acceptance tests" in message
        assert "FAILED tests/images/web/test_web.py::test_page_shows_the_title" in message
        assert "the page lacks the title 'Hello from kiln'" in message
        with box.registry() as registry:
            failed = registry.latest("web")
            assert failed is not None and failed.status == "failed"
            assert "test_page_shows_the_title" in (failed.status_reason or "")
            runs = registry.test_runs("web", failed.version)
            assert [r.passed for r in runs] == [0]
            with pytest.raises(RegistryError, match="is failed"):
                lifecycle.promote(registry, "web", failed.version, channel="dev")
        assert box.containers() == []
        # The same inputs again: refused at once, before any builder, saying what to do.
        again = box.invoke("bake", "web")
        assert again.returncode != 0
        assert f"web v{failed.version} has the same inputs and failed" in again.stderr
        assert "invoke test web --version" in again.stderr
        with box.registry() as registry:
            newest = registry.latest("web")
            assert newest is not None and newest.version == failed.version
    finally:
        index.write_text(original)


CLOCK_TASKS = """---
- name: Record the time of the bake
  ansible.builtin.command: date
"""

CLOCK_ROLE = """
project.role("clock", parent="base", ansible_roles=["clock"], lint_profile={profile})
"""


def test_lint_and_idempotence_stop_a_task_that_always_changes(box: Sandbox) -> None:
    tasks = box.root / "roles" / "clock" / "tasks" / "main.yml"
    tasks.parent.mkdir(parents=True)
    tasks.write_text(CLOCK_TASKS)
    box.write_tasks(CLOCK_ROLE.format(profile='"production"'))
    # Opted into ansible-lint's production profile, it is refused before any builder starts.
    proc = box.invoke("bake", "clock", "--check-idempotence")
    assert proc.returncode != 0
    assert "roles/clock/tasks/main.yml:2: [no-changed-when]" in proc.stderr
    assert "builder start" not in proc.stdout
    # With the default policy no-changed-when is a warning; the second Ansible pass catches the
    # task. Nothing is recorded or left.
    box.write_tasks(CLOCK_ROLE.format(profile=None))
    proc = box.invoke("bake", "clock", "--check-idempotence")
    assert proc.returncode != 0, proc.stdout
    assert "clock v1 is not idempotent: 1 task(s)" in proc.stderr
    assert "'Record the time of the bake' of role clock at roles/clock/tasks/main.yml:2" in (
        proc.stderr
    )
    with box.registry() as registry:
        assert registry.history("clock") == []
    assert box.docker("images", "-q", box.repository("clock")) == ""
    assert box.containers() == []
    box.write_tasks()
