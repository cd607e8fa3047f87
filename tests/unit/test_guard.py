"""The guard's static audit, environment scrub and inventory check, on fixture roles."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from kiln.cli.audit_text import audit_lines
from kiln.errors import DefinitionError, GuardError
from kiln.guard import (
    HOST_CHANGING_ENV,
    RULES,
    AuditReport,
    Finding,
    TaskException,
    ansible_environment,
    audit_playbook,
    audit_roles,
    check_single_host_inventory,
    raise_for_findings,
)

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "guard"
ROLES = FIXTURES / "roles"
WORK_DIR = Path("/srv/kiln-work")
PRODUCTION = ("prod.example.com", "10.9.8.7")
SECRETS = ("db_password", "api_token")


def audit(*roles: str, **kwargs: object) -> AuditReport:
    options: dict[str, object] = {
        "roles_path": ROLES,
        "work_dir": WORK_DIR,
        "production_hosts": PRODUCTION,
        "secret_vars": SECRETS,
    }
    options.update(kwargs)
    return audit_roles(list(roles), **options)  # type: ignore[arg-type]


def summary(report: AuditReport) -> set[tuple[str, int | None, str, str]]:
    return {(f.file, f.line, f.rule, f.task) for f in report.findings}


T = "roles/{}/tasks/main.yml"
CHECK_LENGTH = "Check {{ db_password | length }} characters"

# role -> every finding the audit must report for it: (file, line, rule, task)
EXPECTED: dict[str, set[tuple[str, int | None, str, str]]] = {
    "clean": set(),
    "delegate": {
        (T.format("delegate"), 2, "delegate-to", "Ask the database host"),
        (T.format("delegate"), 6, "delegate-to", "Ask the first web host"),
        (T.format("delegate"), 10, "connection-var", "Point at another machine"),
        (T.format("delegate"), 15, "connection-var", "Redirect every later task"),
        (T.format("delegate"), 19, "delegate-to", "Remote block"),
    },
    "local_write": {
        (T.format("local_write"), 2, "local-write", "Run a script locally"),
        (T.format("local_write"), 5, "local-write", "Copy outside the work directory"),
        (T.format("local_write"), 15, "local-write", "Escape the work directory with dot-dot"),
        (T.format("local_write"), 21, "local-write", "Fetch into the home directory"),
        (T.format("local_write"), 26, "local-write", "Install a package on the control host"),
        (T.format("local_write"), 30, "local-write", "Templated destination"),
        (
            T.format("local_write"),
            36,
            "local-write",
            "Command that creates its output in the work directory",
        ),
    },
    "inventory_changes": {
        (T.format("inventory_changes"), 2, "add-host", "Add the database host"),
        (T.format("inventory_changes"), 7, "group-by", "Group by distribution"),
    },
    "plays": {
        (T.format("plays"), 2, "play-hosts", "A play hidden in a role"),
        ("roles/plays/tasks/more.yml", 6, "play-hosts", "Production play"),
    },
    "prod_url": {
        (T.format("prod_url"), 2, "prod-url", "Call the production API"),
        (T.format("prod_url"), 6, "prod-url", "Download from production"),
        (T.format("prod_url"), 11, "prod-url", "Curl by address"),
        (T.format("prod_url"), 14, "prod-url", "Shout the host name"),
    },
    "remote_sync": {
        (T.format("remote_sync"), 2, "remote-sync", "Push to the backup host"),
        (T.format("remote_sync"), 7, "remote-sync", "Sync from another host"),
        (
            T.format("remote_sync"),
            13,
            "local-write",
            "Pull to the control host outside the work directory",
        ),
    },
    "secrets": {
        (T.format("secrets"), 2, "secret-no-log", "Write the database config"),
        (T.format("secrets"), 9, "secret-no-log", "Log in to the API"),
        (T.format("secrets"), 27, "secret-no-log", "Loop over the secret"),
    },
    "secret_name": {
        # no_log hides the arguments, never the name
        (T.format("secret_name"), 2, "secret-in-name", "Log in as {{ api_token }}"),
        (T.format("secret_name"), 6, "secret-in-name", CHECK_LENGTH),
        (T.format("secret_name"), 6, "secret-no-log", CHECK_LENGTH),
    },
    "with_deps": {
        (T.format("dep_dict"), 2, "delegate-to", "Dependency that delegates"),
        ("roles/with_deps/meta/main.yml", 10, "unknown-role", "dependency missing_dep"),
        (T.format("acme.tools"), 2, "add-host", "Galaxy-style role adds a host"),
    },
    "includes": {
        ("roles/includes/tasks/level3.yml", 6, "delegate-to", "Deep delegate"),
        ("roles/includes/tasks/Debian.yml", 2, "add-host", "Debian only"),
        ("roles/includes/tasks/applied.yml", 2, "local-write", "Write through apply"),
        ("roles/includes/handlers/main.yml", 2, "local-write", "Notify the team"),
        (T.format("includes"), 8, "missing-include", "Missing file"),
        # "{{ role_path }}/files/x.yml" is the role's own file: resolved and audited
        ("roles/includes/files/x.yml", 2, "add-host", "Hidden host"),
        ("roles/includes/files/x.yml", 6, "delegate-to", "Hidden delegation"),
        (T.format("includes"), 24, "dynamic-include", "Include a role kiln cannot name"),
        (T.format("includes"), 28, "dynamic-include", "Include whatever a variable says"),
    },
    "controller": {
        ("roles/controller/defaults/main.yml", 3, "controller-lookup", "variable controller_key"),
        (T.format("controller"), 2, "controller-lookup", "Run a command on the bake host"),
        (T.format("controller"), 6, "controller-lookup", "Read the bake host's hostname"),
        (T.format("controller"), 10, "controller-lookup", "Read kiln's environment in a condition"),
        (T.format("controller"), 15, "controller-lookup", "Loop over the bake host's files"),
        (T.format("controller"), 27, "controller-src", "Copy the bake host's key"),
        (T.format("controller"), 33, "controller-src", "Load the bake host's variables"),
    },
    "broken_yaml": {(T.format("broken_yaml"), 9, "yaml-error", "")},
    "not_utf8": {(T.format("not_utf8"), 4, "not-utf8", "")},
    "acme.tools": {(T.format("acme.tools"), 2, "add-host", "Galaxy-style role adds a host")},
}


@pytest.mark.parametrize("role", sorted(EXPECTED))
def test_each_fixture_role_yields_exactly_its_findings(role: str) -> None:
    report = audit(role)
    assert summary(report) == EXPECTED[role]
    assert report.ok == (not any(f.severity == "error" for f in report.findings))
    for finding in report.findings:
        assert finding.rule in RULES
        assert finding.message and "\n" not in finding.message
        assert finding.ansible_role  # every finding in a role names it


def test_every_rule_except_exception_bookkeeping_is_covered_by_a_fixture() -> None:
    covered = {rule for findings in EXPECTED.values() for _, _, rule, _ in findings}
    assert set(RULES) - covered == {"unused-exception"}  # covered by the exception tests


def test_the_clean_role_really_reads_its_includes_and_handlers() -> None:
    report = audit("clean")
    assert report.findings == ()
    assert report.ok
    assert report.roles == ("clean",)
    assert set(report.files) == {
        "roles/clean/meta/main.yml",
        "roles/clean/tasks/main.yml",
        "roles/clean/tasks/extra.yml",
        "roles/clean/handlers/main.yml",
    }


def test_dependencies_come_first_and_are_audited_once() -> None:
    report = audit("with_deps")
    assert report.roles == ("dep_dict", "dep_string", "acme.tools", "with_deps")
    # dep_dict is a dependency of both with_deps and dep_string, yet reported once
    assert [f.rule for f in report.findings].count("delegate-to") == 1


def test_nested_includes_are_followed_through_subdirectories() -> None:
    report = audit("includes")
    for name in ("level1.yml", "sub/level2.yml", "level3.yml", "applied.yml"):
        assert f"roles/includes/tasks/{name}" in report.files
    assert "clean" in report.roles  # include_role


def test_warnings_do_not_fail_the_audit() -> None:
    report = audit("secrets")
    assert report.ok
    assert report.errors == ()
    assert len(report.warnings) == 3
    assert all("no_log: true" in f.message for f in report.warnings)


def test_secrets_are_only_checked_for_the_names_given() -> None:
    assert audit("secrets", secret_vars=()).findings == ()
    only_token = audit("secrets", secret_vars=("api_token",))
    assert {f.task for f in only_token.findings} == {"Log in to the API"}


def test_production_hosts_must_be_listed_to_be_refused() -> None:
    assert audit("prod_url", production_hosts=()).findings == ()
    by_ip = audit("prod_url", production_hosts=("10.9.8.7",))
    assert {f.task for f in by_ip.findings} == {"Curl by address"}


def test_prod_url_names_the_listed_domain_for_a_suffix_match() -> None:
    (finding,) = [f for f in audit("prod_url").findings if f.line == 2]
    assert "api.db.prod.example.com" in finding.message
    assert "under prod.example.com" in finding.message


def test_without_a_work_dir_no_local_write_is_allowed() -> None:
    report = audit("clean", work_dir=None)
    assert {(f.line, f.rule) for f in report.findings} == {(13, "local-write"), (46, "local-write")}
    assert all("run the task on the builder" in f.message for f in report.findings)


def test_the_builder_group_is_configurable() -> None:
    report = audit("plays", builder_group="webservers")
    flagged = {f.task for f in report.findings}
    assert flagged == {"Production play"}
    assert "'builder'" in report.findings[0].message  # builder is no longer the group


def test_yaml_error_reports_the_problem() -> None:
    (finding,) = audit("broken_yaml").findings
    assert finding.severity == "error"
    assert "not valid YAML" in finding.message


def test_non_utf8_file_names_the_byte_and_line() -> None:
    (finding,) = audit("not_utf8").findings
    assert "0xe9" in finding.message
    assert "line 4" in finding.message


# --- exceptions -------------------------------------------------------------------------


def test_an_exception_allows_a_finding_and_keeps_its_reason() -> None:
    reason = "pg_isready against the read replica only reads"
    allowed = TaskException("delegate", "Ask the database host", "delegate-to", reason)
    unused = TaskException("delegate", "No such task", "delegate-to", "a typo")
    report = audit("delegate", exceptions=[allowed, unused])

    assert [(f.task, f.reason) for f in report.allowed] == [("Ask the database host", reason)]
    assert len(report.errors) == 4
    (warning,) = report.warnings
    assert warning.rule == "unused-exception"
    assert warning.task == "No such task"
    assert warning.file == "roles/delegate"
    assert warning.line is None


def test_an_exception_must_match_the_rule_as_well_as_the_task() -> None:
    wrong_rule = TaskException("delegate", "Ask the database host", "add-host", "mismatch")
    report = audit("delegate", exceptions=[wrong_rule])
    assert report.allowed == ()
    assert [f.rule for f in report.warnings] == ["unused-exception"]


def test_allowing_every_error_makes_the_audit_pass() -> None:
    exceptions = [
        TaskException(f.ansible_role, f.task, f.rule, "reviewed") for f in audit("delegate").errors
    ]
    report = audit("delegate", exceptions=exceptions)
    assert report.ok
    assert len(report.allowed) == 5
    raise_for_findings(report, "db")  # does not raise


@dataclass(frozen=True)
class OtherException:
    """A role definition's own exception class: anything with the same four fields works."""

    ansible_role: str
    task: str
    rule: str
    reason: str


def test_exceptions_are_matched_by_shape() -> None:
    exc = OtherException("inventory_changes", "Group by distribution", "group-by", "legacy")
    report = audit("inventory_changes", exceptions=[exc])
    assert [f.task for f in report.allowed] == ["Group by distribution"]


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        (("web", "Task", "delegate-to", "  "), "needs a reason"),
        (("web", "Task", "delegate_to", "why"), "rules it can allow"),
        (("web", "Task", "yaml-error", "why"), "rules it can allow"),
        (("", "Task", "delegate-to", "why"), "needs both"),
    ],
)
def test_invalid_exceptions_are_refused_at_definition_time(
    fields: tuple[str, str, str, str], needle: str
) -> None:
    with pytest.raises(DefinitionError, match=needle):
        TaskException(*fields)


def test_audit_validates_foreign_exceptions_too() -> None:
    with pytest.raises(DefinitionError, match="rules it can allow"):
        audit("delegate", exceptions=[OtherException("delegate", "x", "no-such-rule", "why")])


# --- role names ---------------------------------------------------------------------------


def test_unknown_role_lists_the_known_roles() -> None:
    with pytest.raises(DefinitionError) as caught:
        audit("wbe")
    message = str(caught.value)
    assert "'wbe'" in message
    assert "clean" in message and "acme.tools" in message


@pytest.mark.parametrize("name", ["../roles", "clean/tasks", ".hidden"])
def test_path_like_role_names_are_refused(name: str) -> None:
    with pytest.raises(DefinitionError):
        audit(name)


def test_a_missing_roles_path_is_a_definition_error(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match="not a directory"):
        audit_roles(["web"], roles_path=tmp_path / "nope")


# --- the repository's own roles -----------------------------------------------------------


def test_the_real_roles_pass_the_audit() -> None:
    real = REPO / "roles"
    names = sorted(p.name for p in real.iterdir() if p.is_dir())
    assert {"common", "web"} <= set(names)
    report = audit_roles(
        names,
        roles_path=real,
        work_dir=WORK_DIR,
        production_hosts=PRODUCTION,
        secret_vars=SECRETS,
    )
    assert report.errors == (), [str(f) for f in report.errors]
    assert set(names) <= set(report.roles)
    assert "roles/web/tasks/main.yml" in report.files
    assert "roles/web/handlers/main.yml" in report.files


# --- playbooks ------------------------------------------------------------------------------


def test_a_builder_playbook_passes_and_its_roles_are_audited() -> None:
    site = FIXTURES / "playbooks" / "site.yml"
    report = audit_playbook(site, roles_path=ROLES, work_dir=WORK_DIR)
    assert report.findings == ()
    assert report.roles == ("clean",)
    assert "site.yml" in report.files


def test_without_roles_path_a_playbook_leaves_roles_to_audit_roles() -> None:
    report = audit_playbook(FIXTURES / "playbooks" / "site.yml")
    assert report.roles == ()
    assert report.files == ("site.yml",)


def test_a_bad_playbook_is_refused_play_by_play() -> None:
    report = audit_playbook(FIXTURES / "playbooks" / "bad.yml", work_dir=WORK_DIR)
    assert summary(report) == {
        ("bad.yml", 5, "add-host", "Add a host"),
        ("bad.yml", 9, "play-hosts", "Production and builder"),
        ("bad.yml", 14, "play-hosts", "Templated hosts"),
        ("bad.yml", 17, "play-hosts", "Control host play"),
        ("bad.yml", 21, "local-write", "Write on the control host"),
        ("nested.yml", 2, "play-hosts", "Nested production play"),
    }


def test_a_missing_playbook_is_a_guard_error(tmp_path: Path) -> None:
    with pytest.raises(GuardError, match="does not exist"):
        audit_playbook(tmp_path / "nope.yml")


# --- report rendering -----------------------------------------------------------------------


def test_the_listing_puts_errors_first_with_location_rule_and_task() -> None:
    exc = TaskException("delegate", "Ask the database host", "delegate-to", "read-only probe")
    lines = audit_lines({"delegate": audit("delegate", exceptions=[exc])})
    assert lines[0].startswith("delegate: 4 error(s), 0 warning(s), 1 allowed (1 Ansible role(s)")
    assert lines[1].startswith("  error    roles/delegate/tasks/main.yml:")
    assert "roles/delegate/tasks/main.yml:6 [delegate-to]" in "".join(lines[1:-1])
    assert lines[-1].startswith("  allowed  ") and "(allowed: read-only probe)" in lines[-1]


def test_the_listing_of_a_clean_audit_says_so() -> None:
    lines = audit_lines({"clean": audit("clean")})
    assert lines == [
        "clean: 0 error(s), 0 warning(s), 0 allowed (1 Ansible role(s), 4 file(s): clean)"
    ]


def test_report_to_json_round_trips_through_json() -> None:
    data = json.loads(json.dumps(audit("secrets").to_json()))
    assert data["ok"] is True
    assert data["counts"] == {"errors": 0, "warnings": 3, "allowed": 0}
    assert data["findings"][0]["rule"] == "secret-no-log"
    assert data["findings"][0]["severity"] == "warning"
    assert data["findings"][0]["line"] == 2


def test_raise_for_findings_lists_each_error_and_how_to_allow_it() -> None:
    with pytest.raises(GuardError) as caught:
        raise_for_findings(audit("inventory_changes"), "web")
    message = str(caught.value)
    assert message.startswith("role web:")
    assert (
        "roles/inventory_changes/tasks/main.yml:2 [add-host] Add the database host: add_host"
        in message
    )
    assert "roles/inventory_changes/tasks/main.yml:7 [group-by] Group by distribution:" in message
    assert "TaskException(ansible_role='inventory_changes', task='Add the database host'" in message
    assert "reason=" in message


def test_raise_for_findings_on_unreadable_files_says_to_fix_them() -> None:
    with pytest.raises(GuardError, match="no exception can allow them"):
        raise_for_findings(audit("broken_yaml"), "web")


def test_raise_for_findings_ignores_warnings() -> None:
    raise_for_findings(audit("secrets"), "web")


def test_finding_location_without_a_line() -> None:
    finding = Finding("roles/web", None, "unused-exception", "t", "m", "web")
    assert finding.location == "roles/web"
    assert finding.severity == "warning"


# --- environment and inventory ------------------------------------------------------------


def test_ansible_environment_drops_what_changes_the_targets() -> None:
    base = {
        "PATH": "/usr/bin",
        "ANSIBLE_INVENTORY": "/etc/ansible/prod",
        "ANSIBLE_HOSTS": "/etc/ansible/hosts",
        "ANSIBLE_INVENTORY_ENABLED": "aws_ec2",
        "ANSIBLE_CONFIG": "/home/me/ansible.cfg",
        "ANSIBLE_STDOUT_CALLBACK": "yaml",
    }
    env, dropped = ansible_environment(base)
    assert env == {"PATH": "/usr/bin", "ANSIBLE_STDOUT_CALLBACK": "yaml"}
    assert dropped == (
        "ANSIBLE_CONFIG",
        "ANSIBLE_HOSTS",
        "ANSIBLE_INVENTORY",
        "ANSIBLE_INVENTORY_ENABLED",
    )
    assert "ANSIBLE_INVENTORY" in base  # the caller's mapping is not changed
    assert {"ANSIBLE_INVENTORY", "ANSIBLE_HOSTS", "ANSIBLE_INVENTORY_PLUGINS"} <= HOST_CHANGING_ENV


def test_ansible_environment_with_nothing_to_drop() -> None:
    safe = ansible_environment({"HOME": "/root"})
    assert safe.env == {"HOME": "/root"}
    assert safe.dropped == ()


@pytest.mark.parametrize(
    "inventory",
    [
        {"all": {"hosts": {"kiln-builder": {"ansible_connection": "community.docker.docker"}}}},
        {"all": {"children": {"builder": {"hosts": {"b1": None}}}}},
        {"builder": {"hosts": {"b1": None}}, "all": {"hosts": {"b1": None}, "vars": {"x": 1}}},
        "[builder]\nb1 ansible_host=abc ansible_connection=community.docker.docker\n"
        "\n[builder:vars]\nansible_python_interpreter=/usr/bin/python3\n",
        "# one host\nb1:2222\n",
        "b1,",
        "all:\n  hosts:\n    b1:\n      ansible_host: 10.0.0.5\n",
    ],
)
def test_a_single_host_inventory_passes(inventory: object) -> None:
    check_single_host_inventory(inventory)


@pytest.mark.parametrize(
    ("inventory", "needle"),
    [
        ({"all": {"hosts": {"b1": None, "db1": None}}}, "holds 2: b1, db1"),
        ({"all": {"hosts": {"b1": None}, "children": {"db": {"hosts": {"db1": None}}}}}, "2"),
        ({}, "holds 0"),
        ("[builder]\nb1\n[db]\ndb1\n", "holds 2"),
        ("b1,b2", "holds 2"),
        ("web[01:03].example.com", "range"),
        ({"all": {"hosts": {"b1": None}, "inventory": "x"}}, "cannot read"),
        (42, "cannot check an inventory of type int"),
    ],
)
def test_other_inventories_are_refused(inventory: object, needle: str) -> None:
    with pytest.raises(GuardError, match=needle):
        check_single_host_inventory(inventory)
