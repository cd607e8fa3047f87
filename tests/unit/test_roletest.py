"""Unit tests of kiln.roletest: name validation, scaffolding, scenario discovery and the
reporting of a Molecule run (against a fake molecule, so no Docker is needed)."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import stat
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from kiln import resources, role_scaffold, role_scenarios, roletest
from kiln.errors import DefinitionError, RenderError, TestFailure, ToolError

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


def test_new_role_in_a_repository_without_kilns_files_brings_the_shared_playbooks(
    tmp_path: Path,
) -> None:
    # An existing Ansible repository: no templates/, no molecule/_shared/ of kiln's.
    (tmp_path / "roles").mkdir()
    written = roletest.new_role("cache", project_root=tmp_path)

    relative = {path.relative_to(tmp_path).as_posix() for path in written}
    assert {"molecule/_shared/create.yml", "molecule/_shared/destroy.yml"} <= relative
    assert "roles/cache/tasks/main.yml" in relative
    shipped = ROOT / "molecule" / "_shared" / "create.yml"
    assert (tmp_path / "molecule/_shared/create.yml").read_text() == shipped.read_text()


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


def test_new_role_writes_nothing_when_a_template_is_broken(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scaffold = project / "templates" / "scaffold"  # a copy of kiln's packaged scaffold
    (scaffold / "role" / "tasks" / "main.yml").write_text("[[ nope ]]\n")
    monkeypatch.setattr(role_scaffold, "SCAFFOLD_DIR", scaffold)
    with pytest.raises(RenderError, match=r"role/tasks/main.yml.*'cache'"):
        roletest.new_role("cache", project_root=project)
    assert not (project / "roles" / "cache").exists()
    assert not (project / "molecule" / "cache").exists()


def test_new_role_needs_a_complete_kiln_installation(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = resources.SCAFFOLD_DIR / "role" / "tasks" / "main.yml"
    monkeypatch.setattr(resources, "missing", lambda: [gone])
    with pytest.raises(ToolError, match=r"lacks .*scaffold/role/tasks/main\.yml; reinstall kiln"):
        roletest.new_role("cache", project_root=project)
    assert not (project / "roles" / "cache").exists()


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

VERIFY_FAILURE = """\
INFO     [{name} > converge] Executing
INFO     [{name} > converge] Executed: Successful
INFO     [{name} > verify] Executing
TASK [Assert that the motd names production] ***********************************
[ERROR]: Task failed: Action failed: the motd does not name production
Origin: @CWD@/molecule/default/verify.yml:11:7
fatal: [instance]: FAILED! => {{
ERROR    [{name} > verify] Executed: Failed
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
                sys.stdout.write(text.replace("@CWD@", os.getcwd()))
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
    # kiln's ansible-playbook (kiln.controller.molecule) first, then the venv's molecule.
    shim, venv = env["PATH"].split(os.pathsep)[:2]
    assert shim == str(Path(env["HOME"]) / "bin") and venv == str(Path(sys.executable).parent)
    assert env["KILN_MOLECULE_SHARED"] == str(project / "molecule" / "_shared")
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


# --- role-shipped scenarios: adapting molecule.yml (pure) ------------------------------------

COMMUNITY_CONFIG: dict[str, Any] = {
    "role_name_check": 1,
    "dependency": {"name": "galaxy", "options": {"ignore-errors": True}},
    "driver": {"name": "docker"},
    "lint": "set -e\nyamllint .\nansible-lint\n",
    "platforms": [
        {
            "name": "instance",
            "image": "geerlingguy/docker-${MOLECULE_DISTRO:-debian12}-ansible:latest",
            "command": "",
            "volumes": ["/sys/fs/cgroup:/sys/fs/cgroup:rw"],
            "cgroupns_mode": "host",
            "privileged": True,
            "pre_build_image": True,
            "groups": ["web"],
        },
        {"name": "second", "image": "ubuntu:24.04", "children": ["edge"]},
    ],
    "provisioner": {
        "name": "ansible",
        "playbooks": {"converge": "${MOLECULE_PLAYBOOK:-converge.yml}"},
        "env": {"ANSIBLE_ROLES_PATH": "../../roles"},
        "config_options": {"defaults": {"callbacks_enabled": "profile_tasks"}},
        "inventory": {"host_vars": {"instance": {"x": 1}}, "group_vars": {"web": {"y": 2}}},
    },
    "verifier": {"name": "testinfra", "options": {"v": True}},
    "scenario": {"test_sequence": ["dependency", "lint", "destroy", "create", "converge"]},
}

ADAPT = {"create_playbook": "/k/create.yml", "destroy_playbook": "/k/destroy.yml"}


def test_adapt_replaces_driver_images_and_galaxy_and_keeps_the_rest() -> None:
    original = copy.deepcopy(COMMUNITY_CONFIG)

    adapted, adaptation = role_scenarios.adapt_molecule_config(
        COMMUNITY_CONFIG, roles_path="/tmp/links:/p/roles", **ADAPT
    )

    assert original == COMMUNITY_CONFIG  # the input is never changed
    assert adapted["driver"] == {"name": "default", "options": {"managed": True}}
    assert adapted["platforms"] == [
        {"name": "instance", "groups": ["web"], "image": role_scenarios.IMAGE_REF},
        {"name": "second", "children": ["edge"], "image": role_scenarios.IMAGE_REF},
    ]
    assert adapted["dependency"] == {
        "name": "galaxy",
        "options": {"ignore-errors": True},
        "enabled": False,
    }
    assert adapted["prerun"] is False and adapted["shared_state"] is False
    assert "lint" not in adapted
    provisioner = adapted["provisioner"]
    assert provisioner["playbooks"] == {
        "converge": "${MOLECULE_PLAYBOOK:-converge.yml}",
        "create": "/k/create.yml",
        "destroy": "/k/destroy.yml",
    }
    assert provisioner["env"] == {"ANSIBLE_ROLES_PATH": "/tmp/links:/p/roles:../../roles"}
    assert provisioner["inventory"] == COMMUNITY_CONFIG["provisioner"]["inventory"]
    assert provisioner["config_options"] == COMMUNITY_CONFIG["provisioner"]["config_options"]
    assert adapted["verifier"] == COMMUNITY_CONFIG["verifier"]
    assert adapted["role_name_check"] == 1
    assert adapted["scenario"]["test_sequence"] == ["create", "converge"]
    assert adaptation.driver == "docker"
    assert adaptation.dropped_steps == ("dependency", "lint")
    assert adaptation.skipped_clearing == ("destroy",)
    assert adaptation.replaced_images == (
        ("instance", "geerlingguy/docker-${MOLECULE_DISTRO:-debian12}-ansible:latest"),
        ("second", "ubuntu:24.04"),
    )
    assert "platform second: ubuntu:24.04 -> kiln/x:1" in adaptation.notes("kiln/x:1")


def test_adapt_gives_a_scenario_without_a_sequence_molecules_default_minus_clearing() -> None:
    from molecule.constants import DEFAULT_CONFIG

    config = {"platforms": [{"name": "instance", "image": "x"}]}

    adapted, adaptation = role_scenarios.adapt_molecule_config(config, roles_path="/r", **ADAPT)

    default = DEFAULT_CONFIG["scenario"]["test_sequence"]
    assert default[:3] == ["dependency", "cleanup", "destroy"], "Molecule changed its default"
    assert adapted["scenario"]["test_sequence"] == default[3:]
    assert adapted["scenario"]["test_sequence"][-1] == "destroy", "the last destroy stays"
    assert adaptation.skipped_clearing == ("cleanup", "destroy")
    assert adaptation.dropped_steps == ("dependency",)
    assert "new instances for this run: skipped cleanup, destroy before create" in (
        adaptation.notes("kiln/x:1")
    )


def test_adapt_keeps_a_destroy_that_follows_a_real_step() -> None:
    config = {
        "platforms": [{"name": "instance", "image": "x"}],
        "scenario": {"test_sequence": ["syntax", "destroy", "create", "verify", "destroy"]},
    }

    adapted, adaptation = role_scenarios.adapt_molecule_config(config, roles_path="/r", **ADAPT)

    assert adapted["scenario"]["test_sequence"] == config["scenario"]["test_sequence"]
    assert adaptation.skipped_clearing == ()


def test_adapt_uses_the_ansible_section_when_the_provisioner_has_none() -> None:
    config = {
        "driver": {"name": "podman"},
        "platforms": [{"name": "instance", "image": "x"}],
        "ansible": {"env": {"FOO": "1"}, "playbooks": {"verify": "check.yml"}},
    }

    adapted, _ = role_scenarios.adapt_molecule_config(config, roles_path="/links", **ADAPT)

    assert adapted["ansible"]["env"] == {"FOO": "1", "ANSIBLE_ROLES_PATH": "/links"}
    assert adapted["ansible"]["playbooks"] == {
        "verify": "check.yml",
        "create": "/k/create.yml",
        "destroy": "/k/destroy.yml",
    }
    assert "provisioner" not in adapted
    assert set(adapted["scenario"]) == {"test_sequence"}  # Molecule's default, less its clearing


def test_adapt_gives_a_scenario_without_platforms_one_instance() -> None:
    adapted, adaptation = role_scenarios.adapt_molecule_config({}, roles_path="/l", **ADAPT)

    assert adapted["platforms"] == [{"name": "instance", "image": role_scenarios.IMAGE_REF}]
    assert adaptation.driver == "default"


@pytest.mark.parametrize(
    "platforms", [["debian"], [{"image": "x"}], {"name": "instance"}, [{"name": ""}]]
)
def test_adapt_refuses_malformed_platforms(platforms: object) -> None:
    with pytest.raises(DefinitionError, match="platform"):
        role_scenarios.adapt_molecule_config({"platforms": platforms}, roles_path="/l", **ADAPT)


def test_instance_names_are_docker_safe_bounded_and_unique() -> None:
    platforms = ["Debian_12.Bookworm-amd64", "x" * 80 + "1", "x" * 80 + "2", "ünïcode host!"]

    names = role_scenarios.instance_names("Acme.My-Role-Default", platforms, "0123abcd4567")

    containers = [names[p]["container"] for p in platforms]
    assert len(set(containers)) == len(platforms)
    for container in containers:
        assert re.fullmatch(r"kiln-molecule-[a-z0-9][a-z0-9_.-]*-0123abcd4567-\d", container)
        assert len(container) <= role_scenarios.MAX_CONTAINER_NAME
    assert containers[0].startswith("kiln-molecule-acme.my-role-default-debian_12.b")
    for platform in platforms:
        assert re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", names[platform]["hostname"])


def _write_role(root: Path, name: str, meta: str, scenarios: dict[str, str]) -> Path:
    role = root / name
    (role / "tasks").mkdir(parents=True)
    (role / "tasks" / "main.yml").write_text("---\n[]\n")
    (role / "meta").mkdir()
    (role / "meta" / "main.yml").write_text(meta)
    (role / ".git").mkdir()
    for scenario, text in scenarios.items():
        (role / "molecule" / scenario).mkdir(parents=True)
        (role / "molecule" / scenario / "molecule.yml").write_text(text)
        (role / "molecule" / scenario / "converge.yml").write_text("---\n[]\n")
    (role / "molecule" / "resources").mkdir(parents=True)  # shared files, not a scenario
    return role


META = "galaxy_info:\n  namespace: acme\n  role_name: cron\n  author: ACME\n"
DOCKER_SCENARIO = "driver:\n  name: docker\nplatforms:\n  - name: instance\n    image: a/b:c\n"


@pytest.mark.parametrize(
    ("directory", "meta", "fqrn"),
    [
        ("acme.cron", META, "acme.cron"),
        ("x", "galaxy_info:\n  author: Jane Doe\n  role_name: cron\n", "cron"),
        ("ansible-role-ntp", "galaxy_info:\n  author: jdoe\n", "jdoe.ntp"),
        ("Acme.My-Role", "galaxy_info:\n  namespace: Acme\n  role_name: my_role\n", "Acme.my_role"),
        ("bare", "dependencies: []\n", "bare"),
    ],
)
def test_role_fqrn_is_the_name_molecule_links(
    tmp_path: Path, directory: str, meta: str, fqrn: str
) -> None:
    role = _write_role(tmp_path, directory, meta, {})
    assert role_scenarios.role_fqrn(role) == fqrn


def _tree(path: Path) -> dict[str, bytes | str]:
    return {
        p.relative_to(path).as_posix(): (str(p.readlink()) if p.is_symlink() else p.read_bytes())
        if not p.is_dir() or p.is_symlink()
        else "dir"
        for p in sorted(path.rglob("*"))
    }


def test_prepare_scenario_mirrors_the_role_and_writes_only_into_the_workdir(
    tmp_path: Path,
) -> None:
    roles = tmp_path / "roles"
    role = _write_role(roles, "acme.cron", META, {"default": DOCKER_SCENARIO, "other": "---\n"})
    before = _tree(role)
    workdir = tmp_path / "work"
    workdir.mkdir()

    prepared = role_scenarios.prepare_scenario(
        role, "default", workdir, shared_dir=Path("/k"), roles_paths=[roles]
    )

    assert _tree(role) == before
    assert prepared.project_dir == workdir / "acme.cron"
    assert (prepared.project_dir / "tasks").resolve() == (role / "tasks").resolve()
    assert not (prepared.project_dir / ".git").exists()
    assert (workdir / "roles" / "acme.cron").resolve() == role.resolve()
    assert not (prepared.project_dir / "molecule").is_symlink()
    assert not (prepared.project_dir / "molecule" / "other" / "molecule.yml").exists()
    assert (prepared.project_dir / "molecule" / "other" / "converge.yml").is_file()
    written = yaml.safe_load((prepared.project_dir / "molecule/default/molecule.yml").read_text())
    assert written["driver"]["name"] == "default"
    assert written["ansible"]["playbooks"]["create"] == "/k/create.yml"
    roles_path = written["ansible"]["env"]["ANSIBLE_ROLES_PATH"].split(os.pathsep)
    assert roles_path == [str(workdir / "roles"), str(roles)]
    assert prepared.platforms == ("instance",)
    assert prepared.adaptation.replaced_images == (("instance", "a/b:c"),)


def test_shipped_scenarios_and_unknown_ones(project: Path) -> None:
    roles = project / "roles"
    _write_role(roles, "acme.cron", META, {"default": DOCKER_SCENARIO, "other": DOCKER_SCENARIO})

    assert role_scenarios.shipped_scenarios(roles / "acme.cron") == ["default", "other"]
    with pytest.raises(DefinitionError, match=r"no Molecule scenario 'nope'.*: default, other$"):
        roletest.test_role("acme.cron", project_root=project, scenario="nope")
    with pytest.raises(DefinitionError, match=r"no Molecule scenario 'default'.*ships: none"):
        roletest.test_role("common", project_root=project, scenario="default")
    with pytest.raises(DefinitionError, match=r"'ghost' has no Molecule scenario.*acme.cron"):
        roletest.test_role("ghost", project_root=project, scenario="default")


def test_a_role_shipped_scenario_runs_adapted_from_a_temporary_project(
    project: Path, fake_molecule: FakeMolecule
) -> None:
    role = _write_role(project / "roles", "Acme.My-Role", META, {"default": DOCKER_SCENARIO})
    before = _tree(role)
    fake_molecule.set_output("default", VERIFY_FAILURE, 2)

    with pytest.raises(roletest.RoleTestFailure) as caught:
        roletest.test_role("Acme.My-Role", project_root=project, image="local/base:3")

    (report,) = caught.value.reports
    assert (report.name, report.scenario, report.label) == (
        "Acme.My-Role",
        "default",
        "Acme.My-Role:default",
    )
    assert report.failed_step == "verify"
    message = str(caught.value)
    assert "Molecule scenario 'default' of role 'Acme.My-Role' failed at step 'verify'" in message
    assert "TASK [Assert that the motd names production]" in message
    assert f"Origin: {role}/molecule/default/verify.yml:11:7" in message
    assert "platform instance: a/b:c -> local/base:3" in message
    assert "invoke test-role Acme.My-Role --scenario default" in message
    env = fake_molecule.env_of("default")
    assert env["KILN_TEST_IMAGE"] == "local/base:3"
    names = json.loads(env["KILN_MOLECULE_NAMES"])
    assert names["instance"]["container"].startswith("kiln-molecule-acme.my-role-default-instance-")
    assert env["PYTHONDONTWRITEBYTECODE"] == "1" and "no:cacheprovider" in env["PYTEST_ADDOPTS"]
    assert _tree(role) == before


def test_test_all_roles_runs_the_scenarios_of_roles_without_a_kiln_scenario(
    project: Path, fake_molecule: FakeMolecule
) -> None:
    _write_role(project / "roles", "acme.cron", META, {"default": DOCKER_SCENARIO, "x": "---\n"})
    for name in ("common", "default", "x"):
        fake_molecule.set_output(name, SUCCESS, 0)

    reports = roletest.test_all_roles(project_root=project)

    assert [r.label for r in reports] == ["acme.cron:default", "acme.cron:x", "common"]
