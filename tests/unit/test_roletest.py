"""Unit tests of kiln.roletest: name validation, scaffolding, scenario discovery and the
reporting of a Molecule run (against a fake molecule, so no Docker is needed)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from kiln import roletest
from kiln.errors import DefinitionError, RenderError, TestFailure

ROOT = Path(__file__).resolve().parents[2]
SCENARIO_FILES = {"molecule.yml", "create.yml", "destroy.yml", "converge.yml", "verify.yml"}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of what new_role needs: the scaffold, the shared playbooks and one existing role."""
    shutil.copytree(ROOT / "templates" / "scaffold", tmp_path / "templates" / "scaffold")
    shutil.copytree(ROOT / "molecule" / "_shared", tmp_path / "molecule" / "_shared")
    shutil.copytree(ROOT / "roles" / "common", tmp_path / "roles" / "common")
    shutil.copytree(ROOT / "molecule" / "common", tmp_path / "molecule" / "common")
    return tmp_path


# --- name validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["", "Web", "1web", "_web", "web-server", "web.server", "web server", "wéb", "web/x", "../x"],
)
def test_new_role_refuses_invalid_names(project: Path, name: str) -> None:
    with pytest.raises(DefinitionError, match="invalid role name"):
        roletest.new_role(name, project_root=project)
    assert sorted(p.name for p in (project / "roles").iterdir()) == ["common"]


@pytest.mark.parametrize("name", ["redis", "app_server", "x", "db2"])
def test_new_role_accepts_valid_names(project: Path, name: str) -> None:
    roletest.new_role(name, project_root=project)
    assert (project / "roles" / name / "tasks" / "main.yml").is_file()


def test_new_role_refuses_an_existing_role(project: Path) -> None:
    before = sorted(p.relative_to(project) for p in project.rglob("*"))
    with pytest.raises(DefinitionError, match=r"'common' already exists.*existing roles: common"):
        roletest.new_role("common", project_root=project)
    assert sorted(p.relative_to(project) for p in project.rglob("*")) == before


def test_new_role_refuses_a_name_whose_scenario_exists(project: Path) -> None:
    (project / "molecule" / "orphan").mkdir()
    with pytest.raises(DefinitionError, match="already exists"):
        roletest.new_role("orphan", project_root=project)
    assert not (project / "roles" / "orphan").exists()


# --- scaffold --------------------------------------------------------------------------------


def test_new_role_writes_the_role_and_its_scenario(project: Path) -> None:
    written = roletest.new_role("cache", project_root=project)

    assert all(path.is_absolute() and path.is_file() for path in written)
    assert sorted(path.relative_to(project).as_posix() for path in written) == sorted(
        [
            "roles/cache/defaults/main.yml",
            "roles/cache/handlers/main.yml",
            "roles/cache/meta/main.yml",
            "roles/cache/tasks/main.yml",
            "roles/cache/templates/cache.conf.j2",
            *(f"molecule/cache/{name}" for name in SCENARIO_FILES),
        ]
    )


def test_scaffolded_files_are_rendered_yaml_that_names_the_role(project: Path) -> None:
    written = roletest.new_role("cache", project_root=project)

    for path in written:
        text = path.read_text()
        assert "[[" not in text and "[%" not in text, path
        if path.suffix == ".yml":
            yaml.safe_load(text)  # parses

    role = project / "roles" / "cache"
    meta = yaml.safe_load((role / "meta" / "main.yml").read_text())
    assert meta["galaxy_info"]["namespace"] == "kiln"
    assert meta["galaxy_info"]["role_name"] == "cache"
    assert meta["dependencies"] == []
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text())
    assert set(defaults) == {"cache_config_dir", "cache_message"}
    tasks = yaml.safe_load((role / "tasks" / "main.yml").read_text())
    assert tasks[1]["ansible.builtin.template"]["src"] == "cache.conf.j2"
    assert "{{ cache_config_dir }}" in tasks[0]["ansible.builtin.file"]["path"]
    # Ansible's own expressions pass through the scaffold untouched.
    assert "{{ cache_message }}" in (role / "templates" / "cache.conf.j2").read_text()

    scenario = project / "molecule" / "cache"
    converge = yaml.safe_load((scenario / "converge.yml").read_text())
    assert converge[0]["roles"] == [{"role": "cache"}]
    assert "roles/cache/defaults/main.yml" in (scenario / "verify.yml").read_text()
    assert roletest.role_scenarios(project) == ["cache", "common"]


def test_new_role_writes_nothing_when_a_template_is_broken(project: Path) -> None:
    (project / "templates" / "scaffold" / "role" / "tasks" / "main.yml").write_text("[[ nope ]]\n")
    with pytest.raises(RenderError, match=r"role/tasks/main.yml.*'cache'"):
        roletest.new_role("cache", project_root=project)
    assert not (project / "roles" / "cache").exists()
    assert not (project / "molecule" / "cache").exists()


def test_new_role_needs_the_scaffold_and_the_shared_playbooks(project: Path) -> None:
    shutil.rmtree(project / "molecule" / "_shared")
    with pytest.raises(DefinitionError, match=r"_shared/create\.yml"):
        roletest.new_role("cache", project_root=project)
    shutil.rmtree(project / "templates" / "scaffold")
    with pytest.raises(DefinitionError, match="scaffold"):
        roletest.new_role("cache", project_root=project)


# --- scenario discovery ----------------------------------------------------------------------


def test_role_scenarios_lists_roles_that_have_a_scenario(tmp_path: Path) -> None:
    for role in ("alpha", "beta", "acme.vendored"):
        (tmp_path / "roles" / role / "tasks").mkdir(parents=True)
    for scenario in ("alpha", "acme.vendored", "orphan", "_shared"):
        (tmp_path / "molecule" / scenario).mkdir(parents=True)
    for scenario in ("alpha", "acme.vendored", "orphan"):
        (tmp_path / "molecule" / scenario / "molecule.yml").write_text("---\n")
    (tmp_path / "roles" / "README.md").write_text("not a role\n")

    assert roletest.role_scenarios(tmp_path) == ["acme.vendored", "alpha"]


def test_role_scenarios_of_a_project_without_roles(tmp_path: Path) -> None:
    assert roletest.role_scenarios(tmp_path) == []


def test_every_role_of_the_project_has_a_complete_offline_scenario() -> None:
    roles = sorted(p.name for p in (ROOT / "roles").iterdir() if p.is_dir())
    assert roletest.role_scenarios(ROOT) == roles
    for role in roles:
        scenario = ROOT / "molecule" / role
        assert {p.name for p in scenario.iterdir()} >= SCENARIO_FILES, role
        config = yaml.safe_load((scenario / "molecule.yml").read_text())
        assert config["dependency"]["enabled"] is False, role  # never Galaxy
        assert config["prerun"] is False, role
        assert config["driver"]["name"] == "default", role
        assert config["platforms"][0]["image"].startswith("${KILN_TEST_IMAGE:-"), role
        assert {"create", "converge", "idempotence", "verify", "destroy"} <= set(
            config["scenario"]["test_sequence"]
        ), role
        roles_path = config["ansible"]["env"]["ANSIBLE_ROLES_PATH"]
        assert roles_path == "${MOLECULE_PROJECT_DIRECTORY}/roles", role


def test_shared_create_starts_systemd_offline_without_privileged() -> None:
    create = (ROOT / "molecule" / "_shared" / "create.yml").read_text()
    (play,) = yaml.safe_load(create)
    (run,) = [t for t in play["tasks"] if t["name"] == "Start the instances with systemd as PID 1"]
    argv = run["ansible.builtin.command"]["argv"]
    for flag in (
        "--cap-add=SYS_ADMIN",
        "--security-opt=seccomp=unconfined",
        "--cgroupns=host",
        "--volume=/sys/fs/cgroup:/sys/fs/cgroup:rw",
        "--tmpfs=/run",
        "--tmpfs=/run/lock",
        "--pull=never",
        "--label=kiln.purpose=molecule",
        "/sbin/init",
    ):
        assert flag in argv
    assert "--privileged" not in argv
    assert argv[-1] == "/sbin/init"
    assert "community.docker.docker" in create


def test_test_role_refuses_a_role_without_scenario(project: Path) -> None:
    with pytest.raises(DefinitionError, match=r"'nope' has no Molecule scenario.*: common"):
        roletest.test_role("nope", project_root=project)
    with pytest.raises(DefinitionError, match=r"'nope'.*: common"):
        roletest.test_all_roles(project_root=project, names=["nope"])


def test_library_functions_are_not_collected_as_tests() -> None:
    assert getattr(roletest.test_role, "__test__", True) is False
    assert getattr(roletest.test_all_roles, "__test__", True) is False


# --- running Molecule (a fake one) -----------------------------------------------------------

CONVERGE_FAILURE = """\
INFO     [{name} > discovery] scenario test matrix: destroy, syntax, create, converge, destroy
INFO     [{name} > create] Executing
INFO     [{name} > create] Executed: Successful
INFO     [{name} > converge] Executing
TASK [{name} : Write the configuration] ****************************************
changed: [instance]

TASK [{name} : Fail on purpose] ************************************************
[ERROR]: Task failed: Module failed: non-zero return code
Origin: /project/roles/{name}/tasks/main.yml:19:3

fatal: [instance]: FAILED! => {{"msg": "non-zero return code", "stderr": "/bin/false: boom"}}
CRITICAL Ansible return code was 2, command was: ansible-playbook converge.yml
ERROR    [{name} > converge] Executed: Failed
INFO     [{name} > destroy] Executing
TASK [Remove the instances] ****************************************************
changed: [localhost]
INFO     [{name} > destroy] Executed: Successful
"""

IDEMPOTENCE_FAILURE = """\
INFO     [{name} > converge] Executing
INFO     [{name} > converge] Executed: Successful
INFO     [{name} > idempotence] Executing
TASK [{name} : Ignored] ********************************************************
fatal: [instance]: FAILED! => {{"msg": "ignored"}}
...ignoring
CRITICAL Idempotence test failed because of the following tasks:
*  => {name} : Restart on every run
ERROR    [{name} > idempotence] Executed: Failed
INFO     [{name} > destroy] Executing
INFO     [{name} > destroy] Executed: Successful
"""

SUCCESS = """\
INFO     [{name} > converge] Executing
INFO     [{name} > converge] Executed: Successful
INFO     [{name} > verify] Executing
INFO     [{name} > verify] Executed: Successful
"""


class FakeMolecule:
    """A molecule stand-in that prints canned output per scenario and records its environment."""

    def __init__(self, root: Path) -> None:
        self.outputs = root / "outputs"
        self.outputs.mkdir(parents=True)
        self.script = root / "bin" / "molecule"
        self.script.parent.mkdir()
        self.script.write_text(
            textwrap.dedent(
                f"""\
                #!{sys.executable}
                import json, os, sys
                name = sys.argv[sys.argv.index("--scenario-name") + 1]
                with open(os.path.join({str(self.outputs)!r}, name + ".env"), "w") as f:
                    json.dump(dict(os.environ), f)
                with open(os.path.join({str(self.outputs)!r}, name)) as f:
                    rc, text = f.read().split("\\n", 1)
                sys.stdout.write(text)
                sys.exit(int(rc))
                """
            )
        )
        self.script.chmod(self.script.stat().st_mode | stat.S_IXUSR)
        self.reaped: list[str] = []

    def set_output(self, name: str, text: str, rc: int) -> None:
        (self.outputs / name).write_text(f"{rc}\n" + text.format(name=name))

    def env_of(self, name: str) -> dict[str, str]:
        env: dict[str, str] = json.loads((self.outputs / f"{name}.env").read_text())
        return env


@pytest.fixture
def fake_molecule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeMolecule:
    fake = FakeMolecule(tmp_path / "fake")
    monkeypatch.setattr(roletest, "_molecule_executable", lambda: fake.script)
    monkeypatch.setattr(roletest, "_reap_instances", fake.reaped.append)
    return fake


def test_a_passing_scenario_gives_a_report(project: Path, fake_molecule: FakeMolecule) -> None:
    fake_molecule.set_output("common", SUCCESS, 0)
    lines: list[str] = []

    report = roletest.test_role("common", project_root=project, on_line=lines.append)

    assert report.name == "common" and report.passed and report.returncode == 0
    assert report.failed_step is None and report.failure_detail == ""
    assert report.duration_s >= 0
    assert lines == SUCCESS.format(name="common").splitlines()
    assert report.output_tail.splitlines() == lines[-roletest.TAIL_LINES :]
    assert len(fake_molecule.reaped) == 1


def test_molecule_runs_isolated_with_the_image_override(
    project: Path, fake_molecule: FakeMolecule
) -> None:
    fake_molecule.set_output("common", SUCCESS, 0)

    roletest.test_role("common", project_root=project, image="local/other:1")

    env = fake_molecule.env_of("common")
    assert env["KILN_TEST_IMAGE"] == "local/other:1"
    assert env["HOME"] != os.environ.get("HOME") and "kiln-molecule-" in env["HOME"]
    assert env["ANSIBLE_HOME"].startswith(env["HOME"])
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert env["KILN_MOLECULE_RUN"] == fake_molecule.reaped[0]
    assert not Path(env["HOME"]).exists()  # the temporary home is gone


def test_a_failing_converge_names_the_step_the_task_and_the_tail(
    project: Path, fake_molecule: FakeMolecule
) -> None:
    fake_molecule.set_output("common", CONVERGE_FAILURE, 2)

    with pytest.raises(TestFailure) as caught:
        roletest.test_role("common", project_root=project)

    message = str(caught.value)
    assert "Molecule scenario 'common' failed at step 'converge' (exit code 2" in message
    assert "TASK [common : Fail on purpose]" in message
    assert "Origin: /project/roles/common/tasks/main.yml:19:3" in message
    assert "fatal: [instance]: FAILED! => non-zero return code | /bin/false: boom" in message
    assert "TASK [common : Write the configuration]" not in message.split("Last ")[0]
    assert "Last 20 lines of output:" in message
    last = CONVERGE_FAILURE.format(name="common").splitlines()[-roletest.TAIL_LINES :]
    assert all(f"  | {line}" in message for line in last)
    assert "molecule test -s common" in message
    assert isinstance(caught.value, roletest.RoleTestFailure)
    (report,) = caught.value.reports
    assert not report.passed and report.failed_step == "converge" and report.returncode == 2


def test_a_failing_idempotence_lists_the_changed_tasks(
    project: Path, fake_molecule: FakeMolecule
) -> None:
    fake_molecule.set_output("common", IDEMPOTENCE_FAILURE, 1)

    with pytest.raises(roletest.RoleTestFailure) as caught:
        roletest.test_role("common", project_root=project)

    report = caught.value.reports[0]
    assert report.failed_step == "idempotence"
    assert report.failure_detail.splitlines() == [
        "CRITICAL Idempotence test failed because of the following tasks:",
        "*  => common : Restart on every run",
    ]


def test_test_all_roles_runs_every_scenario_and_fails_at_the_end(
    project: Path, fake_molecule: FakeMolecule
) -> None:
    shutil.copytree(project / "roles" / "common", project / "roles" / "zeta")
    shutil.copytree(project / "molecule" / "common", project / "molecule" / "zeta")
    fake_molecule.set_output("common", CONVERGE_FAILURE, 2)
    fake_molecule.set_output("zeta", SUCCESS, 0)
    seen: list[roletest.RoleTestReport] = []

    with pytest.raises(roletest.RoleTestFailure) as caught:
        roletest.test_all_roles(project_root=project, on_report=seen.append)

    assert [(r.name, r.passed) for r in seen] == [("common", False), ("zeta", True)]
    assert caught.value.reports == tuple(seen)
    assert str(caught.value).startswith("1 of 2 role scenarios failed: common\n")
    assert "failed at step 'converge'" in str(caught.value)


def test_test_all_roles_returns_the_reports_when_all_pass(
    project: Path, fake_molecule: FakeMolecule
) -> None:
    fake_molecule.set_output("common", SUCCESS, 0)

    reports = roletest.test_all_roles(project_root=project)

    assert [(r.name, r.passed) for r in reports] == [("common", True)]
