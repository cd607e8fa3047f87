"""Fast tests of the image gate: acceptance runs, lint and its cache, and the bake's hooks.

Docker, pytest-in-a-container and ansible-lint are replaced by fakes here; the integration suite
runs the real ones (tests/integration/test_acceptance_gate.py, test_acceptance_real.py,
test_content_defaults.py).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kiln import acceptance, lint
from kiln.acceptance import AcceptanceResult, TestCase
from kiln.bake import Baker
from kiln.bake.failures import idempotence_failure as _idempotence_failure
from kiln.bake.failures import raise_for_run
from kiln.docker import Instance
from kiln.errors import BuildError, DefinitionError, KilnError, ProvisionError, TestFailure
from kiln.fingerprint import Fingerprint
from kiln.model import Project
from kiln.packer import PackerRun
from kiln.redact import Redactor
from kiln.registry import Artifact, Registry, Version

NOOP_TASKS = "---\n- name: Say hello\n  ansible.builtin.debug:\n    msg: hello\n"
VERIFY = "---\n- name: Verify\n  hosts: all\n  tasks:\n    - name: Look\n      ansible.builtin.stat:\n        path: /etc\n"  # noqa: E501


def make_project(
    root: Path, *, lint_allowed: bool = False, lint_profile: str | None = None
) -> Project:
    for name in ("common", "web"):
        (root / "roles" / name / "tasks").mkdir(parents=True, exist_ok=True)
        (root / "roles" / name / "tasks" / "main.yml").write_text(NOOP_TASKS)
    tests = root / "tests" / "images" / "web"
    tests.mkdir(parents=True, exist_ok=True)
    (tests / "test_web.py").write_text("def test_page(host):\n    pass\n")
    (tests / "verify.yml").write_text(VERIFY)
    for ignored in ("conftest.py", "_helpers.py", "README.md"):
        (tests / ignored).write_text("")
    project = Project(root, image_namespace="unit")
    bookworm = project.base("debian-bookworm")
    project.role("base", parent=bookworm, ansible_roles=["common"], variables={"motd": "hi"})
    project.role(
        "web",
        parent="base",
        variables={"web_title": "Hello", "motd": "web's"},
        tests=["tests/images/web"],
        lint_allowed=lint_allowed,
        lint_profile=lint_profile,
    )
    return project


def version(
    role: str,
    number: int,
    *,
    parent: tuple[str, int] | None = None,
    variables: dict[str, Any] | None = None,
    status: str = "baked",
    fingerprint: str = "f" * 64,
) -> Version:
    return Version(
        role=role, version=number, kind="role" if parent else "base", target="docker",
        fingerprint=fingerprint, parent_role=parent[0] if parent else None,
        parent_version=parent[1] if parent else None, status=status, git_commit="0" * 40,
        git_dirty=False, tools={}, inputs={"definition": {"variables": variables or {}}},
        timings={}, bake_seconds=1.0, created_at="2026-01-01T00:00:00.000000Z",
        artifacts=(Artifact("docker", f"unit/{role}:{number}", f"sha256:{number:064d}"),),
    )  # fmt: skip


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with Registry(tmp_path / ".kiln" / "registry.db") as reg:
        reg.record_version(version("debian-bookworm", 1, status="tested"))
        reg.record_version(
            version("base", 1, parent=("debian-bookworm", 1), variables={"motd": "hi", "a": 1})
        )
        reg.record_version(
            version("web", 1, parent=("base", 1), variables={"web_title": "Hello", "motd": "w"})
        )
        yield reg


def result(*cases: TestCase, role: str = "web", number: int = 1) -> AcceptanceResult:
    return AcceptanceResult(
        role=role, version=number, cases=cases, output="the whole output",
        started_at="2026-01-01T00:00:00.000000Z", duration_s=4.2, boot_s=1.5,
    )  # fmt: skip


# -- what runs --------------------------------------------------------------------------------
def test_discovery_runs_the_battery_first_then_declared_files(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    suites = acceptance.discover_suites(project, project.get("web"))
    assert [(s.kind, s.label) for s in suites] == [
        ("testinfra", acceptance.BATTERY_LABEL),
        ("testinfra", "tests/images/web/test_web.py"),
        ("playbook", "tests/images/web/verify.yml"),
    ]
    assert suites[0].path.parent == acceptance.BATTERY_DIR


def test_bases_and_roles_without_tests_get_the_battery(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    for name in ("debian-bookworm", "base"):
        suites = acceptance.discover_suites(project, project.get(name))
        assert [s.label for s in suites] == [acceptance.BATTERY_LABEL]


def test_a_declared_file_that_is_no_test_is_refused(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    (tmp_path / "notes.txt").write_text("")
    project.role("odd", parent="base", ansible_roles=["web"], tests=["notes.txt"])
    with pytest.raises(DefinitionError, match="neither a testinfra file"):
        acceptance.discover_suites(project, project.get("odd"))


def test_the_battery_ships_with_kiln() -> None:
    names = sorted(p.name for p in acceptance.BATTERY_DIR.glob("test_*.py"))
    assert names == ["test_base.py"]
    text = (acceptance.BATTERY_DIR / "test_base.py").read_text()
    for check in ("dpkg --audit", "/proc/1/comm", "sshd -t", "PasswordAuthentication",
                  "authorized_keys", "/home/packer", "/var/cache/apt/archives",
                  "/var/lib/apt/lists"):  # fmt: skip
        assert check in text


def test_variables_come_from_the_registry_nearest_wins(registry: Registry) -> None:
    web = registry.get("web", 1)
    assert web is not None
    assert acceptance.baked_variables(registry, web) == {"a": 1, "motd": "w", "web_title": "Hello"}


# -- reading pytest's verdict -----------------------------------------------------------------
JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite>
<testcase classname="tests.images.web.test_web" name="test_ok[docker://kiln-test-1a2b]"
  file="tests/images/web/test_web.py" line="1" time="0.5"/>
<testcase classname="tests.images.web.test_web" name="test_page[docker://kiln-test-1a2b]"
  file="tests/images/web/test_web.py" line="3" time="0.25">
  <failure message="AssertionError: the page lacks the title 'Hello'&#10;assert ...">
tests/images/web/test_web.py:7: in test_page
    assert f"&lt;title&gt;" in page
E   AssertionError: the page lacks the title 'Hello'
E   assert '&lt;title&gt;Hello&lt;/title&gt;' in '&lt;html&gt;'</failure></testcase>
<testcase classname="x" name="test_sshd[docker://kiln-test-1a2b]" file="{battery}" line="7"
  time="0"><skipped message="openssh-server is not installed"/></testcase>
<testcase classname="" name="tests.images.web.test_broken" time="0">
  <error message="collection failure">SyntaxError: invalid syntax</error></testcase>
</testsuite></testsuites>"""


def test_junit_cases_name_the_test_and_keep_the_assertion(tmp_path: Path) -> None:
    battery = acceptance.BATTERY_DIR / "test_base.py"
    report = tmp_path / "junit.xml"
    report.write_text(JUNIT.replace("{battery}", str(battery)))
    cases = acceptance.parse_junit(report, tmp_path)
    assert [(c.name, c.outcome) for c in cases] == [
        ("tests/images/web/test_web.py::test_ok", "passed"),
        ("tests/images/web/test_web.py::test_page", "failed"),
        (f"{acceptance.BATTERY_LABEL}::test_sshd", "skipped"),
        ("tests.images.web.test_broken", "failed"),
    ]
    assert cases[1].message.splitlines() == [
        "AssertionError: the page lacks the title 'Hello'",
        "assert '<title>Hello</title>' in '<html>'",
    ]
    assert cases[1].duration_s == 0.25
    assert cases[3].message == "collection failure"


def test_a_verdict_needs_at_least_one_test() -> None:
    assert not result().passed
    assert result().summary == "no test ran"
    ok = result(TestCase("a", "passed"), TestCase("b", "skipped"))
    assert ok.passed
    assert ok.summary == "1 passed, 1 skipped"


def test_failure_message_names_each_failing_test_and_why() -> None:
    bad = result(
        TestCase("kiln base battery::test_no_build_user", "failed", "the build user is left"),
        TestCase("tests/images/web/test_web.py::test_page", "failed", "lacks the title\nmore"),
        TestCase("tests/images/web/test_web.py::test_ok", "passed"),
    )
    assert bad.summary.startswith("1 passed, 2 failed. Failed: kiln base battery::test_no_build_")
    text = acceptance.failure_message(bad, log=".kiln/logs/web/1/acceptance.log")
    assert "web v1 failed its acceptance tests (2 of 3 failed" in text
    assert "  FAILED tests/images/web/test_web.py::test_page\n      lacks the title\n" in text
    assert "invoke test web --version 1" in text
    assert text.endswith("Full output: .kiln/logs/web/1/acceptance.log")


# -- running against a fake instance ----------------------------------------------------------
class FakeTools:
    """Stands in for tools.run: writes the reports the real pytest and ansible-playbook would."""

    def __init__(self, *, junit: str, playbook_rc: int = 0) -> None:
        self.junit = junit
        self.playbook_rc = playbook_rc
        self.calls: list[tuple[list[str], dict[str, str]]] = []

    def run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        env = kwargs["env"]
        self.calls.append((list(argv), env))
        if "pytest" in argv:
            report = next(a for a in argv if a.startswith("--junitxml="))
            Path(report.split("=", 1)[1]).write_text(self.junit)
            return subprocess.CompletedProcess(list(argv), 0, "pytest ran\n", "")
        if self.playbook_rc:
            event = {
                "event": "task_result", "status": "failed", "task": "Look",
                "path": f"{kwargs['cwd']}/tests/images/web/verify.yml:6", "msg": "no /etc",
            }  # fmt: skip
            Path(env["KILN_EVENTS_FILE"]).write_text(json.dumps(event) + "\n")
        return subprocess.CompletedProcess(list(argv), self.playbook_rc, "play\n", "")


def fake_instance(monkeypatch: pytest.MonkeyPatch, *, boots: bool = True) -> list[str]:
    started: list[str] = []

    @contextmanager
    def throwaway(image: str, *, purpose: str, labels: dict[str, str]) -> Iterator[Instance]:
        started.append(image)
        if not boots:
            raise TestFailure(f"instance of {image} did not boot within 60 s")
        yield Instance(name="kiln-test-fake", image=image)

    monkeypatch.setattr(acceptance.run, "throwaway_instance", throwaway)
    return started


PASSING = (
    '<testsuites><testsuite><testcase name="test_page[docker://kiln-test-fake]" '
    'file="tests/images/web/test_web.py" time="0.1"/></testsuite></testsuites>'
)


def test_run_passes_the_instance_and_the_baked_variables(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path)
    started = fake_instance(monkeypatch)
    fake = FakeTools(junit=PASSING)
    seen: dict[str, Any] = {}

    def run(argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        if "pytest" in argv:
            seen.update(json.loads(Path(kwargs["env"]["KILN_VARS_FILE"]).read_text()))
        return fake.run(argv, **kwargs)

    monkeypatch.setattr(acceptance.tools, "run", run)
    web = registry.get("web", 1)
    assert web is not None
    got = acceptance.run_acceptance(project, project.get("web"), web, registry=registry)
    assert started == ["unit/web:1"]
    assert got.passed, got.summary
    assert [c.name for c in got.cases] == [
        "tests/images/web/test_web.py::test_page",
        "tests/images/web/verify.yml",
    ]
    (pytest_argv, env), (playbook_argv, playbook_env) = fake.calls
    assert "--hosts=docker://kiln-test-fake" in pytest_argv
    assert pytest_argv[pytest_argv.index("--confcutdir") + 1] == str(
        tmp_path / "tests" / "images" / "web"
    )
    assert str(acceptance.BATTERY_DIR / "test_base.py") in pytest_argv
    assert env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] == "1"
    assert {"-p", "testinfra.plugin", acceptance.PLUGIN} <= set(pytest_argv)
    assert seen == {"a": 1, "motd": "w", "web_title": "Hello"}
    # The verify playbook reaches exactly the one instance, through docker.
    assert playbook_argv[playbook_argv.index("-i") + 1] == "kiln-test-fake,"
    assert "ansible_connection=community.docker.docker" in playbook_argv
    assert playbook_env["ANSIBLE_CALLBACKS_ENABLED"] == "kiln_events"


def test_a_failing_verify_task_is_named_with_its_line(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path)
    fake_instance(monkeypatch)
    monkeypatch.setattr(acceptance.tools, "run", FakeTools(junit=PASSING, playbook_rc=2).run)
    web = registry.get("web", 1)
    assert web is not None
    got = acceptance.run_acceptance(project, project.get("web"), web, registry=registry)
    assert not got.passed
    (failure,) = got.failures
    assert failure.name == "tests/images/web/verify.yml::Look"
    assert failure.message == "task 'Look' at tests/images/web/verify.yml:6\nno /etc"


def test_an_instance_that_does_not_boot_fails_the_gate(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path)
    fake_instance(monkeypatch, boots=False)
    web = registry.get("web", 1)
    assert web is not None
    got = acceptance.run_acceptance(project, project.get("web"), web, registry=registry)
    assert [(c.name, c.outcome) for c in got.cases] == [("boot", "failed")]
    assert "did not boot" in got.summary


def test_pytest_crashing_is_a_failure_not_a_pass(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path)
    fake_instance(monkeypatch)
    monkeypatch.setattr(acceptance.tools, "run", FakeTools(junit="not xml").run)
    web = registry.get("web", 1)
    assert web is not None
    got = acceptance.run_acceptance(project, project.get("web"), web, registry=registry)
    assert "pytest" in [c.name for c in got.failures]


def test_an_artifact_that_is_gone_cannot_be_tested(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path)
    registry.mark_artifact_deleted("web", 1, "docker")
    web = registry.get("web", 1)
    assert web is not None
    with pytest.raises(Exception, match="no docker image left to test"):
        acceptance.run_acceptance(project, project.get("web"), web, registry=registry)


# -- recording the verdict --------------------------------------------------------------------
def test_verdicts_set_the_status_and_keep_the_output(registry: Registry) -> None:
    web = registry.get("web", 1)
    assert web is not None
    tested = acceptance.record_result(registry, web, result(TestCase("a", "passed")))
    assert tested.status == "tested"
    bad = result(TestCase("t::test_page", "failed", "lacks the title"))
    failed = acceptance.record_result(registry, web, bad)
    assert (failed.status, failed.status_reason) == ("failed", bad.summary)
    stored = registry.get("web", 1)
    assert stored is not None
    assert (stored.status, stored.status_reason) == ("failed", bad.summary)
    runs = registry.test_runs("web", 1)
    assert [(r.suite, r.passed) for r in runs] == [("acceptance", 1), ("acceptance", 0)]
    assert runs[-1].output == "the whole output"


def test_a_revoked_version_stays_revoked_after_a_passing_retest(registry: Registry) -> None:
    registry.set_status("web", 1, "revoked", "CVE")
    web = registry.get("web", 1)
    assert web is not None
    kept = acceptance.record_result(registry, web, result(TestCase("a", "passed")))
    assert kept.status == "revoked"
    stored = registry.get("web", 1)
    assert stored is not None and stored.status == "revoked"


def test_retest_records_then_raises(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path)
    bad = result(TestCase("t::test_page", "failed", "lacks the title"))
    monkeypatch.setattr(acceptance, "run_acceptance", lambda *a, **k: bad)
    monkeypatch.setattr(acceptance.run, "recorded_image_present", lambda *a, **k: True)
    with pytest.raises(TestFailure, match="FAILED t::test_page"):
        acceptance.retest(project, registry, "web", 1)
    stored = registry.get("web", 1)
    assert stored is not None and stored.status == "failed"
    assert (tmp_path / ".kiln" / "logs" / "web" / "1" / "acceptance.log").exists()
    _, got = acceptance.retest(project, registry, "web", raise_on_failure=False)
    assert not got.passed


# -- the bake's hooks -------------------------------------------------------------------------
def packer_run(*events: dict[str, Any]) -> PackerRun:
    return PackerRun(returncode=0, events=list(events))


def test_idempotence_passes_when_the_second_pass_changes_nothing(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    run = packer_run(
        {"event": "task_result", "ansible_pass": "1", "changed": True, "task": "Install"},
        {"event": "task_result", "ansible_pass": "2", "changed": False, "task": "Install"},
    )
    assert _idempotence_failure(project.role_named("web"), 3, run, tmp_path, tmp_path) is None


def test_idempotence_names_each_task_that_changed_again(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    run = packer_run(
        {"event": "task_result", "ansible_pass": "2", "changed": False, "task": "Install"},
        {"event": "task_result", "ansible_pass": "2", "changed": True,
         "task": "web : Print the date", "role": "web",
         "path": f"{tmp_path}/roles/web/tasks/main.yml:12"},
    )  # fmt: skip
    error = _idempotence_failure(project.role_named("web"), 3, run, tmp_path / "logs", tmp_path)
    assert isinstance(error, ProvisionError)
    assert (error.role, error.version, error.log_dir) == ("web", 3, tmp_path / "logs")
    assert "web v3 is not idempotent: 1 task(s)" in str(error)
    assert "'Print the date' of role web at roles/web/tasks/main.yml:12" in str(error)
    assert "no version was recorded" in str(error)


def test_idempotence_without_a_second_pass_is_an_error(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    run = packer_run({"event": "task_result", "ansible_pass": "1", "changed": True})
    error = _idempotence_failure(project.role_named("web"), 3, run, tmp_path, tmp_path)
    assert isinstance(error, BuildError) and "no second Ansible pass" in str(error)


def test_the_gate_sets_the_status_and_times_itself(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path)
    baker = Baker(project, registry=registry)
    monkeypatch.setattr(
        acceptance, "run_acceptance", lambda *a, **k: result(TestCase("a", "passed"))
    )
    web = registry.get("web", 1)
    assert web is not None
    outcome = baker.gate().check(
        project.get("web"), web, baked=True, timings={"record": 0.1}, log_dir=None
    )
    assert outcome.version.status == "tested"
    assert outcome.timings == {"record": 0.1, "tests": 4.2}


def test_a_failing_gate_marks_the_version_and_fails_the_bake(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path)
    baker = Baker(project, registry=registry)
    bad = result(TestCase("tests/images/web/test_web.py::test_page", "failed", "lacks the title"))
    monkeypatch.setattr(acceptance, "run_acceptance", lambda *a, **k: bad)
    web = registry.get("web", 1)
    assert web is not None
    with pytest.raises(TestFailure) as caught:
        baker.gate().check(project.get("web"), web, baked=True, timings={}, log_dir=None)
    assert "FAILED tests/images/web/test_web.py::test_page\n      lacks the title" in str(
        caught.value
    )
    stored = registry.get("web", 1)
    assert stored is not None and stored.status == "failed"


def test_skipping_tests_records_untested(tmp_path: Path, registry: Registry) -> None:
    baker = Baker(make_project(tmp_path), registry=registry, skip_tests=True)
    assert baker.policy().new_status() == "untested"
    assert Baker(make_project(tmp_path / "b"), registry=registry).policy().new_status() == "baked"


def test_a_failed_twin_refuses_the_bake_with_what_to_do(tmp_path: Path, registry: Registry) -> None:
    project = make_project(tmp_path)
    baker = Baker(project, registry=registry)
    registry.set_status("base", 1, "failed", "1 failed. Failed: test_no_build_user: left")
    same = Fingerprint(digest="f" * 64, inputs={})
    with pytest.raises(TestFailure) as caught:
        baker.policy().refuse_failed_twin(project.get("base"), same, project.role_named("web"))
    text = str(caught.value)
    assert "cannot bake web: base v1 has the same inputs and failed its acceptance tests" in text
    assert "web is never baked on a failed parent" in text
    assert "invoke test base --version 1" in text
    other = Fingerprint(digest="0" * 64, inputs={})
    baker.policy().refuse_failed_twin(project.get("base"), other, project.role_named("web"))


# -- lint -------------------------------------------------------------------------------------
class FakeLint:
    """Answers for ansible-playbook --syntax-check and ansible-lint, counting the calls."""

    def __init__(self, issues: list[dict[str, Any]] | None = None, syntax_rc: int = 0) -> None:
        self.issues = issues or []
        self.syntax_rc = syntax_rc
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
        self.calls.append(list(argv))
        if "--syntax-check" in argv:
            err = f"[ERROR]: YAML parsing failed\nOrigin: {cwd}/roles/web/tasks/main.yml:3:1"
            return self.syntax_rc, "", err if self.syntax_rc else ""
        assert {"--offline", "--profile", lint.PROFILE} <= set(argv)
        return (2 if self.issues else 0), json.dumps(self.issues), ""

    @property
    def lint_runs(self) -> int:
        return sum(1 for argv in self.calls if "--offline" in argv)


ISSUE = {
    "check_name": "no-changed-when",
    "severity": "major",
    "description": "Commands should not change things if nothing needs doing.",
    "location": {"path": "roles/web/tasks/main.yml", "lines": {"begin": 5}},
}


def test_lint_results_are_cached_by_content(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    fake = FakeLint()
    first = lint.lint_ansible_roles(project, ["common", "web"], runner=fake)
    assert [r.ok and not r.cached for r in first] == [True, True]
    assert fake.lint_runs == 1  # one ansible-lint process for every uncached role
    again = lint.lint_ansible_roles(project, ["common", "web"], runner=fake)
    assert [r.cached for r in again] == [True, True] and fake.lint_runs == 1
    (tmp_path / "roles" / "web" / "tasks" / "main.yml").write_text(NOOP_TASKS + "# edited\n")
    third = lint.lint_ansible_roles(project, ["common", "web"], runner=fake)
    assert [r.cached for r in third] == [True, False] and fake.lint_runs == 2
    last_lint = [argv for argv in fake.calls if "--offline" in argv][-1]
    assert last_lint[-1] == "roles/web"


def test_prepare_lints_every_role_of_a_bake_in_one_run_and_the_checks_say_it_ran(
    tmp_path: Path,
) -> None:
    project = make_project(tmp_path)
    roles = [project.role_named("base"), project.role_named("web")]
    fake = FakeLint()
    lint.prepare(project, roles, runner=fake)
    lint_argvs = [argv for argv in fake.calls if "--offline" in argv]
    assert len(lint_argvs) == 1 and {"roles/common", "roles/web"} <= set(lint_argvs[0])
    for role in roles:
        verdict = lint.check_role(project, role, reporter=_Recorder())
        assert not verdict.cached  # it ran in this process: the progress must not say "cached"
    assert fake.lint_runs == 1  # the checks read the verdicts prepare() stored


def test_prepare_leaves_errors_to_each_roles_check(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    # With a requirements.yml, names are resolved at bake time (after `invoke deps`), not here.
    (tmp_path / "requirements.yml").write_text("---\nroles: []\n")
    role = project.role("unknown", parent="base", ansible_roles=["no-such-role"])
    fake = FakeLint()
    lint.prepare(project, [role], runner=fake)  # no exception: the role's own check reports it
    assert fake.calls == []
    with pytest.raises(KilnError, match="no-such-role"):
        lint.check_role(project, role, reporter=_Recorder())


class _Recorder(lint.Reporter):
    def __init__(self) -> None:
        super().__init__(None)
        self.warnings: list[str] = []

    def _write(self, role: str, text: str, **data: Any) -> None:
        pass

    def warning(self, role: str, text: str) -> None:
        self.warnings.append(text)


def test_style_findings_are_warnings_by_default_and_counted(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    recorder = _Recorder()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lint, "lint_ansible_roles", _with_runner(FakeLint([ISSUE])))
        verdict = lint.check_role(project, project.role_named("web"), reporter=recorder)
    assert not verdict.blocking
    assert recorder.warnings == [
        "lint: roles/web/tasks/main.yml:5: [no-changed-when] Commands should not change things "
        "if nothing needs doing."
    ]
    assert verdict.record()["warnings"] == 1
    assert verdict.record()["by_rule"] == {"no-changed-when": 1}


def test_a_roles_own_molecule_and_tests_are_excluded_and_the_role_still_linted(
    tmp_path: Path,
) -> None:
    project = make_project(tmp_path)
    for part in ("molecule/default", "tests"):
        (tmp_path / "roles" / "web" / part).mkdir(parents=True)
    fake = FakeLint()
    lint.lint_ansible_roles(project, ["web"], runner=fake)
    (argv,) = [call for call in fake.calls if "--syntax-check" not in call]
    assert argv[argv.index("--exclude") + 1] == "roles/web/molecule"
    # --exclude takes several values: the role's path must not be one of them.
    assert argv[argv.index("--") + 1 :] == ["roles/web"]
    assert argv.index("--") > max(i for i, arg in enumerate(argv) if arg == "--exclude")


def test_a_load_failure_blocks_by_default(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    broken = {**ISSUE, "check_name": "load-failure[runtimeerror]", "description": "Failed to load"}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lint, "lint_ansible_roles", _with_runner(FakeLint([broken])))
        with pytest.raises(lint.LintError, match=r"1 blocking finding\(s\) \(profile min\)"):
            lint.check_role(project, project.role_named("web"), reporter=_Recorder())


def test_lint_findings_refuse_the_bake_with_file_and_line(tmp_path: Path) -> None:
    project = make_project(tmp_path, lint_profile="production")
    fake = FakeLint([ISSUE])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lint, "lint_ansible_roles", _with_runner(fake))
        with pytest.raises(lint.LintError) as caught:
            lint.check_role(project, project.role_named("web"), reporter=_Recorder())
    text = str(caught.value)
    assert "1 blocking finding(s) (profile production)" in text
    assert "roles/web/tasks/main.yml:5: [no-changed-when] Commands should not" in text
    assert "lint_allowed=True" in text


def test_a_looser_profile_does_not_block_on_stricter_rules(tmp_path: Path) -> None:
    project = make_project(tmp_path, lint_profile="basic")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lint, "lint_ansible_roles", _with_runner(FakeLint([ISSUE])))
        verdict = lint.check_role(project, project.role_named("web"), reporter=_Recorder())
    assert not verdict.blocking  # no-changed-when is a rule of the shared profile


def test_lint_allowed_turns_findings_into_warnings(tmp_path: Path) -> None:
    project = make_project(tmp_path, lint_allowed=True, lint_profile="production")
    warnings: list[str] = []

    class Recorder(lint.Reporter):
        def warning(self, role: str, text: str) -> None:
            warnings.append(text)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lint, "lint_ansible_roles", _with_runner(FakeLint([ISSUE])))
        lint.check_role(project, project.role_named("web"), reporter=Recorder())
    assert warnings == [
        "lint: roles/web/tasks/main.yml:5: [no-changed-when] Commands should not change things "
        "if nothing needs doing."
    ]


def test_a_syntax_error_stops_even_an_allowed_role(tmp_path: Path) -> None:
    project = make_project(tmp_path, lint_allowed=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lint, "lint_ansible_roles", _with_runner(FakeLint(syntax_rc=4)))
        with pytest.raises(lint.LintError, match=r"roles/web/tasks/main.yml:3:1"):
            lint.check_role(project, project.role_named("web"), reporter=lint.Reporter())


def _with_runner(fake: FakeLint) -> Any:
    real = lint.lint_ansible_roles

    def call(project: Project, names: Sequence[str]) -> list[lint.LintResult]:
        return real(project, names, runner=fake)

    return call


def test_ansible_lint_positions_of_both_shapes_are_read() -> None:
    with_column = {**ISSUE, "location": {"path": "a.yml", "positions": {"begin": {"line": 9}}}}
    assert lint.parse_issue(with_column).location == "a.yml:9"
    assert lint.parse_issue(ISSUE).location == "roles/web/tasks/main.yml:5"
    assert lint.parse_issue({**ISSUE, "severity": "minor"}).level == "warning"


def test_the_failure_report_masks_a_secret_in_the_task_name_and_output(tmp_path: Path) -> None:
    """Even events no redactor read yet: the report masks the name before repr() escapes it."""
    secret = "Tk\"e\\y%$ é,ß'Ж-7"
    project = make_project(tmp_path)
    failed = {
        "event": "task_result", "status": "failed", "role": "web", "path": "roles/web:3",
        "task": f"web : Call the API with {secret}", "stdout": f"token={secret}",
        "msg": f"bad token {json.dumps(secret)}",
    }  # fmt: skip
    run = PackerRun(returncode=2, events=[failed], errors=[f"error: {secret}"])
    with pytest.raises(ProvisionError) as caught:
        raise_for_run(
            project.role_named("web"),
            3,
            run,
            log_dir=tmp_path / "logs",
            root=tmp_path,
            redact=Redactor([secret]),
            check_idempotence=False,
        )
    message = str(caught.value)
    assert "Ansible task 'web : Call the API with ********'" in message
    assert "token=********" in message and 'bad token "********"' in message
    for form in (secret, repr(secret)[1:-1], json.dumps(secret)[1:-1]):
        assert form not in message
    changed = {**failed, "status": "ok", "changed": True, "ansible_pass": "2"}
    error = _idempotence_failure(
        project.role_named("web"), 3, packer_run(changed), tmp_path, tmp_path, Redactor([secret])
    )
    assert error is not None and "'Call the API with ********' of role web" in str(error)
    assert secret not in str(error) and repr(secret)[1:-1] not in str(error)
