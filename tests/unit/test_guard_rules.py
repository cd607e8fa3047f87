"""The guard rule by rule, on tasks, plays and inventories written for each test."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from kiln.cli.audit_text import audit_lines
from kiln.errors import DefinitionError, GuardError
from kiln.guard import (
    RULES,
    TaskException,
    audit_playbook,
    check_single_host_inventory,
    raise_for_findings,
)
from test_guard import REPO, ROLES, WORK_DIR, audit

# audit() is test_guard.py's: the fixture roles, a work dir, production hosts and secrets.


# --- one rule at a time, on tasks written for the test ------------------------------------


def audit_tasks(tmp_path: Path, tasks: str, **kwargs: object) -> list[tuple[str, str]]:
    """(rule, message) of each finding for a role whose tasks/main.yml is tasks."""
    (tmp_path / "roles" / "r" / "tasks").mkdir(parents=True, exist_ok=True)
    (tmp_path / "roles" / "r" / "tasks" / "main.yml").write_text(tasks)
    report = audit("r", roles_path=tmp_path / "roles", **kwargs)
    return sorted((f.rule, f.message) for f in report.findings)


TASK_CASES: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "local_action, free-form command": (
        "- local_action: command touch /tmp/x\n",
        [("local-write", "runs command on the control host, where kiln cannot contain it")],
    ),
    "local_action dict inside the work directory": (
        "- local_action: {module: copy, dest: /srv/kiln-work/out, src: a}\n"
        "- local_action: {module: copy, dest: /srv/kiln-work}\n",
        [],
    ),
    "a sibling of the work directory is outside it": (
        "- local_action: {module: copy, dest: /srv/kiln-workshop/x}\n",
        [
            (
                "local-write",
                "copy runs on the control host and dest '/srv/kiln-workshop/x' is outside",
            )
        ],
    ),
    "read-only action on localhost": ("- action: debug msg=hi\n  delegate_to: localhost\n", []),
    "delegate_to the builder itself": (
        "- shell: rm -rf /\n  delegate_to: '{{ inventory_hostname }}'\n",
        [],
    ),
    "a relative path on the control host": (
        "- copy: {src: a, dest: out.txt}\n  delegate_to: LocalHost\n",
        [("local-write", "copy runs on the control host and dest 'out.txt' is relative, so kiln")],
    ),
    "a write without a path": (
        "- copy: {src: a}\n  delegate_to: 127.0.0.1\n",
        [("local-write", "copy runs on the control host without a dest to check")],
    ),
    "a path that is not a string": (
        "- file: {path: [a, b]}\n  delegate_to: ::1\n",
        [("local-write", "file runs on the control host and path ['a', 'b'] is not a path: write")],
    ),
    "uri without dest writes nothing": ("- uri: url=http://example.org\n  connection: local\n", []),
    "uri with dest writes": (
        "- uri: {url: 'http://example.org', dest: /etc/x}\n  connection: ansible.builtin.local\n",
        [("local-write", "uri runs on the control host and dest '/etc/x' is outside")],
    ),
    "an unknown module on the control host": (
        "- acme.tools.frobnicate: {}\n  delegate_to: localhost\n",
        [("local-write", "runs acme.tools.frobnicate on the control host; only read-only")],
    ),
    "ansible_connection local in vars": (
        "- shell: make\n  vars: {ansible_connection: local}\n",
        [("local-write", "runs shell on the control host")],
    ),
    "ansible_connection local by its full name, beside a host": (
        "- shell: make\n  vars: {ansible_connection: ansible.builtin.local, ansible_host: db1}\n",
        [
            ("connection-var", "vars sets ansible_host: 'db1', which points Ansible"),
            ("local-write", "runs shell on the control host"),
        ],
    ),
    "ansible_connection to another machine": (
        "- ping:\n  vars: {ansible_connection: ssh, ansible_ssh_host: db1}\n",
        [
            ("connection-var", "vars sets ansible_connection: 'ssh', which points Ansible"),
            ("connection-var", "vars sets ansible_ssh_host: 'db1', which points Ansible"),
        ],
    ),
    "set_fact of a connection variable": (
        "- set_fact: {ansible_docker_host: 'tcp://x', harmless: 1}\n",
        [("connection-var", "set_fact sets ansible_docker_host, which points every later task")],
    ),
    "args merged into the module's arguments": (
        "- copy:\n  args: {dest: /etc/x}\n  delegate_to: localhost\n",
        [("local-write", "copy runs on the control host and dest '/etc/x' is outside the work")],
    ),
    "quoted free-form values": (
        "- copy: dest=\"/srv/kiln-work/a b\" src='x y'\n  delegate_to: localhost\n"
        "- copy: src=x dest='/etc/a b' mode={{ m | default('0644 x') }}\n"
        "  delegate_to: localhost\n",
        [("local-write", "copy runs on the control host and dest '/etc/a b' is outside the work")],
    ),
    "a templated delegate_to": (
        "- ping:\n  delegate_to: '{{ target }}'\n",
        [("delegate-to", "delegate_to '{{ target }}' is templated, so kiln cannot prove it")],
    ),
    "delegate_to none is no delegation": ("- ping:\n  delegate_to:\n", []),
    "synchronize from rsync://": (
        "- synchronize: {src: 'rsync://mirror/x', dest: /srv}\n",
        [("remote-sync", "synchronize src 'rsync://mirror/x' names another host")],
    ),
    "synchronize to a templated host": (
        "- synchronize: {src: /srv, dest: '{{ host }}:/x'}\n",
        [("remote-sync", "synchronize dest '{{ host }}:/x' names another host")],
    ),
    "synchronize pull into the work directory": (
        "- synchronize: {src: /var/log, dest: /srv/kiln-work/logs, mode: PULL}\n",
        [],
    ),
    "synchronize pull to a remote dest is not a local write": (
        "- synchronize: {src: /var/log, dest: 'other:/x', mode: pull}\n",
        [("remote-sync", "synchronize dest 'other:/x' names another host")],
    ),
    "synchronize push to the builder": ("- synchronize: {src: /srv/kiln-work/a, dest: /a}\n", []),
    "fetch inside the work directory": (
        "- fetch: {src: /etc/hostname, dest: /srv/kiln-work/}\n",
        [],
    ),
    "production host in any case, with a trailing dot": (
        "- get_url: url=https://WWW.Prod.Example.COM./x dest=/tmp/x\n",
        [("prod-url", "reaches production host www.prod.example.com (under prod.example.com)")],
    ),
    "a host that only ends like a production host": (
        "- get_url: url=https://notprod.example.com/x dest=/tmp/x\n"
        "- name: Mentions prod.example.com in its name only\n  ping:\n",
        [],
    ),
    "secrets in Jinja only, whole names only": (
        "- debug: msg='{{ db_password_hash }} {{ vault.db_password }} db_password'\n"
        "- debug: msg=\"{{ query('items', 'db_password') }}\"\n",
        [],
    ),
    "a secret through a filter": (
        "- debug: msg='{{ db_password | b64encode }}'\n",
        [("secret-no-log", "uses secret db_password without no_log: true")],
    ),
    "no_log given as a string": (
        "- debug: msg='{{ api_token }}'\n  no_log: 'yes'\n"
        "- name: Not hidden\n  debug: msg='{{ api_token }}'\n  no_log: 'false'\n",
        [("secret-no-log", "uses secret api_token without no_log: true")],
    ),
    "no_log in every spelling Ansible reads as true": (
        "".join(
            f"- debug: msg='{{{{ api_token }}}}'\n  no_log: '{spelling}'\n"
            for spelling in ("on", "ON", "1", "y", "Y", "t", " True ")
        )
        + "- name: Not hidden\n  debug: msg='{{ api_token }}'\n  no_log: 'off'\n",
        [("secret-no-log", "uses secret api_token without no_log: true")],
    ),
    "no_log on a block covers its tasks": (
        "- block:\n    - debug: msg='{{ api_token }}'\n  no_log: true\n",
        [],
    ),
    "block keywords must be lists": (
        "- block: {debug: {}}\n  rescue: oops\n",
        [
            ("yaml-error", "block should be a list of tasks"),
            ("yaml-error", "rescue should be a list of tasks"),
        ],
    ),
    "a task that is not a mapping": (
        "- just a string\n",
        [("yaml-error", "each task should be a mapping")],
    ),
    "a task file that is not a list": (
        "debug: {}\n",
        [("yaml-error", "a task file should be a list of tasks")],
    ),
    "an include without a file name": (
        "- include_tasks: {apply: {}}\n",
        [("yaml-error", "the include needs a file name")],
    ),
    "include_role without a name": (
        "- include_role: {}\n",
        [("yaml-error", "include_role needs a role name")],
    ),
    "include_role with a templated tasks_from": (
        "- include_role: {name: clean, tasks_from: '{{ x }}'}\n",
        [("dynamic-include", "the included role 'clean' (or its tasks_from) is templated")],
    ),
    "include_role with a missing tasks_from": (
        "- include_role: {name: clean, tasks_from: nowhere}\n",
        [("missing-include", "tasks/nowhere does not exist in clean")],
    ),
    "include_role with a missing handlers_from": (
        "- import_role: {name: clean, handlers_from: nowhere}\n",
        [("missing-include", "handlers/nowhere does not exist in clean")],
    ),
    "include_role by its free-form name": (
        "- include_role: nowhere\n",
        [("unknown-role", "role 'nowhere' is in no roles path")],
    ),
    "import_role with a templated handlers_from": (
        "- import_role: {name: clean, handlers_from: '{{ h }}'}\n",
        [("dynamic-include", "the included role 'clean' (or its tasks_from) is templated")],
    ),
    "tasks_from that is not a string is ignored": (
        "- include_role: {name: clean, tasks_from: 3, handlers_from: [x]}\n",
        [],
    ),
    "include_role of an unknown role": (
        "- include_role: name=nowhere\n",
        [("unknown-role", "role 'nowhere' is in no roles path")],
    ),
    "a play where a task was expected": (
        "- hosts: db\n  tasks: []\n",
        [("play-hosts", "the play targets 'db'")],
    ),
}


@pytest.mark.parametrize("case", list(TASK_CASES))
def test_each_rule_on_a_task_written_for_it(tmp_path: Path, case: str) -> None:
    (ROLES_COPY := tmp_path / "roles").mkdir()
    shutil.copytree(ROLES / "clean", ROLES_COPY / "clean")
    tasks, expected = TASK_CASES[case]
    found = audit_tasks(tmp_path, tasks)
    assert [rule for rule, _ in found] == [rule for rule, _ in expected], found
    for (_, message), (_, fragment) in zip(found, expected, strict=True):
        assert message.startswith(fragment), message


def audit_play(tmp_path: Path, playbook: str) -> list[tuple[str, str]]:
    (tmp_path / "site.yml").write_text(playbook)
    report = audit_playbook(tmp_path / "site.yml", roles_path=ROLES, work_dir=WORK_DIR)
    return sorted((f.rule, f.message) for f in report.findings)


PLAY_CASES: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "exclusions and intersections only narrow": ("- hosts: 'builder:!prod:&web'\n", []),
    "every host, by star or in a list": ("- hosts: '*'\n- hosts: [all, builder]\n", []),
    "a list with another group": (
        "- hosts: [builder, web, '!db']\n",
        [("play-hosts", "the play targets 'web'; a bake may only target")],
    ),
    "two other groups": (
        "- hosts: web,db\n",
        [("play-hosts", "the play targets 'web', 'db'; a bake may only target 'all' or the")],
    ),
    "every task list of a play is audited": (
        "- hosts: all\n  pre_tasks:\n    - add_host: {name: a}\n  post_tasks:\n"
        "    - add_host: {name: b}\n  handlers:\n    - add_host: {name: c}\n",
        [
            ("add-host", "add_host puts"),
            ("add-host", "add_host puts"),
            ("add-host", "add_host puts"),
        ],
    ),
    "a templated host pattern": (
        "- hosts: 'builder:{{ extra }}'\n",
        [("play-hosts", "the play targets 'builder:{{ extra }}'; a bake may only target")],
    ),
    "a templated host in a list": (
        "- hosts: ['{{ x }}']\n",
        [("play-hosts", "the play targets '{{ x }}'")],
    ),
    "a play without hosts, or with hosts: null": (
        "- tasks: []\n  name: p\n- hosts:\n",
        [("play-hosts", "the play targets no hosts"), ("play-hosts", "the play targets no hosts")],
    ),
    "import_playbook templated": (
        "- import_playbook: '{{ which }}.yml'\n",
        [("dynamic-include", "import_playbook '{{ which }}.yml' is templated")],
    ),
    "import_playbook missing": (
        "- import_playbook: nowhere.yml\n",
        [("missing-include", "playbook 'nowhere.yml' does not exist")],
    ),
    "import_playbook empty": (
        "- import_playbook: ' '\n",
        [("yaml-error", "import_playbook needs a file name")],
    ),
    "tasks and roles of the wrong shape": (
        "- hosts: all\n  tasks: {debug: {}}\n  roles: clean\n",
        [
            ("yaml-error", "roles should be a list"),
            ("yaml-error", "tasks should be a list of tasks"),
        ],
    ),
    "roles without names or templated": (
        "- hosts: all\n  roles:\n    - role: '{{ r }}'\n    - name: ''\n    - 3\n",
        [
            ("dynamic-include", "role '{{ r }}' is templated, so kiln cannot audit it"),
            ("yaml-error", "a play's role needs a name"),
            ("yaml-error", "a play's role needs a name"),
        ],
    ),
    "a play's vars point elsewhere": (
        "- hosts: all\n  vars: {ansible_host: 10.0.0.9}\n",
        [("connection-var", "vars sets ansible_host: '10.0.0.9'")],
    ),
    "a play on the control host": (
        "- hosts: all\n  connection: local\n  tasks:\n    - shell: make\n",
        [("local-write", "runs shell on the control host")],
    ),
    "not a list of plays": (
        "hosts: all\n",
        [("yaml-error", "a playbook should be a list of plays")],
    ),
    "a play that is not a mapping": ("- all\n", [("yaml-error", "each play should be a mapping")]),
}


@pytest.mark.parametrize("case", list(PLAY_CASES))
def test_each_play_rule_on_a_playbook_written_for_it(tmp_path: Path, case: str) -> None:
    playbook, expected = PLAY_CASES[case]
    found = audit_play(tmp_path, playbook)
    assert [rule for rule, _ in found] == [rule for rule, _ in expected], found
    for (_, message), (_, fragment) in zip(found, expected, strict=True):
        assert message.startswith(fragment), message


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ("- not a mapping\n", [("yaml-error", "meta/main.yml should be a mapping")]),
        (
            "dependencies: common\n",
            [("yaml-error", "dependencies in meta/main.yml should be a list")],
        ),
        ("dependencies: [{role: ''}]\n", [("yaml-error", "a dependency needs a role name")]),
        (
            "dependencies: [{name: '{{ x }}'}]\n",
            [("dynamic-include", "dependency '{{ x }}' is templated, so kiln cannot audit it")],
        ),
        ("dependencies:\n", []),
        ("# nothing\n", []),
    ],
)
def test_meta_dependencies_of_the_wrong_shape(
    tmp_path: Path, meta: str, expected: list[tuple[str, str]]
) -> None:
    (tmp_path / "roles" / "r" / "meta").mkdir(parents=True)
    (tmp_path / "roles" / "r" / "meta" / "main.yml").write_text(meta)
    found = audit_tasks(tmp_path, "- ping:\n")
    assert [rule for rule, _ in found] == [rule for rule, _ in expected], found
    for (_, message), (_, fragment) in zip(found, expected, strict=True):
        assert message.startswith(fragment), message


def test_a_templated_include_outside_a_role_audits_nothing_else(tmp_path: Path) -> None:
    playbook = "- hosts: all\n  tasks:\n    - include_tasks: '{{ x }}.yml'\n"
    ((rule, message),) = audit_play(tmp_path, playbook)
    assert rule == "dynamic-include"
    assert message == (
        "the included file '{{ x }}.yml' is templated, so kiln cannot tell which file runs and "
        "cannot audit it: name the file, or template only a file name part "
        "(setup-{{ ansible_os_family }}.yml) that matches files of the role"
    )


def test_an_unreadable_file_is_a_yaml_error(tmp_path: Path) -> None:
    (tmp_path / "roles" / "r" / "tasks").mkdir(parents=True)
    (tmp_path / "roles" / "r" / "tasks" / "main.yml").mkdir()  # found, but cannot be read
    (tmp_path / "roles" / "r" / "tasks" / "main.yaml").write_text("- ping:\n")
    report = audit("r", roles_path=tmp_path / "roles")
    assert report.findings == ()  # a directory is not a task file: main.yaml is the one
    (tmp_path / "roles" / "r" / "handlers").mkdir()
    (tmp_path / "roles" / "r" / "handlers" / "main.json").write_text('[{"ping": null}]')
    assert "roles/r/handlers/main.json" in audit("r", roles_path=tmp_path / "roles").files


def test_a_yaml_error_names_its_line_and_problem(tmp_path: Path) -> None:
    found = audit_tasks(tmp_path, "- debug:\n    msg: [unclosed\n")
    ((rule, message),) = found
    assert rule == "yaml-error"
    assert message.startswith("is not valid YAML (") and "fix the syntax" in message
    report = audit("r", roles_path=tmp_path / "roles")
    assert report.findings[0].line == 3


def test_secret_variable_names_must_be_identifiers() -> None:
    with pytest.raises(DefinitionError, match=r"secret variable name 'db-password' is not a valid"):
        audit("clean", secret_vars=("db-password",))


def test_production_hosts_are_normalized_before_matching(tmp_path: Path) -> None:
    tasks = "- get_url: url=https://api.prod.example.com/x dest=/tmp/x\n"
    for listed in ("https://*.Prod.Example.com/path", ".prod.example.com.", "PROD.example.com"):
        found = audit_tasks(tmp_path, tasks, production_hosts=(listed, " "))
        assert [rule for rule, _ in found] == ["prod-url"], listed
        assert "under prod.example.com" in found[0][1]
    assert audit_tasks(tmp_path, tasks, production_hosts=("", "/")) == []


def test_the_listing_puts_warnings_between_errors_and_allowed_findings() -> None:
    exc = TaskException("delegate", "Remote block", "delegate-to", "reviewed")
    report = audit("delegate", exceptions=[exc, TaskException("delegate", "x", "add-host", "y")])
    lines = audit_lines({"delegate": report})
    assert [line.split()[0] for line in lines[1:]] == ["error"] * 4 + ["warning", "allowed"]
    assert lines[0] == (
        "delegate: 4 error(s), 1 warning(s), 1 allowed (1 Ansible role(s), 1 file(s): delegate)"
    )


def test_findings_and_reports_as_json_name_every_field() -> None:
    exc = TaskException("delegate", "Remote block", "delegate-to", "  reviewed  ")
    report = audit("delegate", exceptions=[exc])
    data = report.to_json()
    assert data["ok"] is False and data["roles"] == ["delegate"]
    assert data["files"] == ["roles/delegate/tasks/main.yml"]
    assert data["counts"] == {"errors": 4, "warnings": 0, "allowed": 1}
    allowed = next(f for f in data["findings"] if f["allowed"])
    assert allowed == {
        "file": "roles/delegate/tasks/main.yml",
        "line": 19,
        "rule": "delegate-to",
        "task": "Remote block",
        "message": allowed["message"],
        "ansible_role": "delegate",
        "severity": "error",
        "allowed": True,
        "reason": "reviewed",
    }
    assert report.allowed[0].status == "allowed" and report.errors[0].status == "error"


def test_raise_for_findings_counts_and_lists_only_errors() -> None:
    with pytest.raises(GuardError) as caught:
        raise_for_findings(audit("remote_sync"), "web")
    lines = str(caught.value).splitlines()
    assert lines[0] == (
        "role web: the guard refused 3 Ansible finding(s) that could reach a host other than "
        "the builder:"
    )
    assert lines[1].startswith("  roles/remote_sync/tasks/main.yml:2 [remote-sync] Push to")
    assert len(lines) == 5
    assert lines[-1] == (
        "If a task is safe, allow it in the role definition with a reason, for example "
        "TaskException(ansible_role='remote_sync', task='Push to the backup host', "
        "rule='remote-sync', reason='why this cannot reach another host')."
    )


def test_raise_for_findings_on_files_it_could_not_read_offers_no_exception() -> None:
    with pytest.raises(GuardError) as caught:
        raise_for_findings(audit("broken_yaml"), "web")
    lines = str(caught.value).splitlines()
    assert lines[1].startswith("  roles/broken_yaml/tasks/main.yml:9 [yaml-error] -: is not valid")
    assert lines[2:] == [
        "Fix the files above: kiln could not audit them, so no exception can allow them."
    ]


def test_a_playbook_s_own_tasks_belong_to_no_role_and_its_roles_show_relative_paths() -> None:
    playbooks = REPO / "tests" / "fixtures" / "guard" / "playbooks"
    bad = audit_playbook(playbooks / "bad.yml", roles_path=ROLES, work_dir=WORK_DIR)
    assert bad.findings and all(f.ansible_role == "" for f in bad.findings)
    site = audit_playbook(playbooks / "site.yml", roles_path=ROLES, work_dir=WORK_DIR)
    assert "roles/clean/tasks/main.yml" in site.files


@pytest.mark.parametrize(
    ("inventory", "needle"),
    [
        ({"all": {"hosts": ["a", "b", "c", "d", "e", "f"]}}, "holds 6: a, b, c, d, e, ..."),
        ({"all": {"hosts": "b1"}}, "cannot read the hosts of inventory group 'all'"),
        ({"all": {"children": ["b1"]}}, "cannot read the children of inventory group 'all'"),
        (
            {"all": {"children": {"web": {"hosts": "w1"}}}},
            "cannot read the hosts of inventory group 'web'",
        ),
        (
            {"all": {"children": {"web": {"hosts": {"w1": None}}}, "hosts": {"b1": None}}},
            "holds 2: b1, w1",
        ),
        ("[web]\nw1\n[db]\n; comment\ndb1 x=1\n[web:vars]\nnot_a_host=1\n", "holds 2: db1, w1"),
        ("b1:22, b2:22", "holds 2: b1, b2"),
    ],
)
def test_inventories_of_several_hosts_are_named(inventory: object, needle: str) -> None:
    with pytest.raises(GuardError, match=re.escape(needle)):
        check_single_host_inventory(inventory)


@pytest.mark.parametrize(
    "inventory",
    [
        "[builder:children]\nweb\n[web]\nb1\n",
        "b1 ansible_port=22\n# b2\n",
        "fe80::1,",
        {"all": {"hosts": ["b1:2222"]}, "ungrouped": None},
        {"all": {"hosts": {"b1": None}, "children": {"builder": None}, "vars": {"x": 1}}},
    ],
)
def test_more_single_host_inventories_pass(inventory: object) -> None:
    check_single_host_inventory(inventory)


# Every message template of the fixture roles' findings, word for word: what a user reads.
MESSAGES: list[tuple[str, int, str, str]] = [
    (
        "acme.tools",
        2,
        "add-host",
        (
            "add_host puts a new host in the inventory, so later tasks could reach it: remove "
            "the task, the bake only configures the builder"
        ),
    ),
    (
        "broken_yaml",
        9,
        "yaml-error",
        (
            "is not valid YAML (expected <block end>, but found '<block mapping start>'), so "
            "kiln cannot audit it: fix the syntax"
        ),
    ),
    (
        "delegate",
        2,
        "delegate-to",
        (
            "delegate_to 'db1.internal' runs the task on another host; only the builder may "
            "be touched: remove delegate_to (localhost is allowed for steps that stay in the "
            "work directory)"
        ),
    ),
    (
        "delegate",
        6,
        "delegate-to",
        (
            "delegate_to \"{{ groups['web'][0] }}\" is templated, so kiln cannot prove it is "
            "the builder; only the builder may be touched: remove delegate_to (localhost is "
            "allowed for steps that stay in the work directory)"
        ),
    ),
    (
        "delegate",
        10,
        "connection-var",
        (
            "vars sets ansible_host: '10.1.2.3', which points Ansible at another machine: "
            "remove it, the inventory already reaches the builder"
        ),
    ),
    (
        "delegate",
        15,
        "connection-var",
        (
            "set_fact sets ansible_host, which points every later task at another machine: "
            "remove it, the inventory already reaches the builder"
        ),
    ),
    (
        "delegate",
        19,
        "delegate-to",
        (
            "delegate_to 'backup.internal' runs the task on another host; only the builder "
            "may be touched: remove delegate_to (localhost is allowed for steps that stay in "
            "the work directory)"
        ),
    ),
    (
        "includes",
        6,
        "delegate-to",
        (
            "delegate_to 'deep.internal' runs the task on another host; only the builder may "
            "be touched: remove delegate_to (localhost is allowed for steps that stay in the "
            "work directory)"
        ),
    ),
    (
        "includes",
        28,
        "dynamic-include",
        (
            "the included file '{{ tasks_file }}' is templated, so kiln cannot tell which file "
            "runs and cannot audit it: name the file, or template only a file name part "
            "(setup-{{ ansible_os_family }}.yml) that matches files of the role"
        ),
    ),
    (
        "includes",
        8,
        "missing-include",
        "the included file 'nowhere.yml' does not exist",
    ),
    (
        "includes",
        2,
        "local-write",
        (
            "ansible.builtin.copy runs on the control host and dest '/etc/x' is outside the "
            "work directory: write inside the work directory /srv/kiln-work, or run the task "
            "on the builder"
        ),
    ),
    (
        "includes",
        2,
        "local-write",
        (
            "runs ansible.builtin.shell on the control host, where kiln cannot contain it: "
            "run it on the builder (drop delegate_to/local_action)"
        ),
    ),
    (
        "inventory_changes",
        7,
        "group-by",
        (
            "group_by builds host groups at run time, so plays could reach other hosts: "
            "target the builder group 'builder' instead"
        ),
    ),
    (
        "local_write",
        15,
        "local-write",
        (
            "ansible.builtin.file runs on the control host and path "
            "'/srv/kiln-work/../etc/cron.d/job' is outside the work directory: write inside "
            "the work directory /srv/kiln-work, or run the task on the builder"
        ),
    ),
    (
        "local_write",
        21,
        "local-write",
        (
            "fetch copies files to the control host and dest '/root/hostname' is outside the "
            "work directory: write inside the work directory /srv/kiln-work, or run the task "
            "on the builder"
        ),
    ),
    (
        "local_write",
        26,
        "local-write",
        (
            "runs ansible.builtin.apt on the control host; only read-only modules and file "
            "writes inside the work directory may run there: run it on the builder"
        ),
    ),
    (
        "local_write",
        30,
        "local-write",
        (
            "ansible.builtin.template runs on the control host and dest '{{ out_dir }}/x' is "
            "templated, so kiln cannot prove where it writes: write inside the work directory "
            "/srv/kiln-work, or run the task on the builder"
        ),
    ),
    (
        "local_write",
        36,
        "local-write",
        (
            "runs ansible.builtin.command on the control host, where kiln cannot contain it: "
            "run it on the builder (drop delegate_to/local_action)"
        ),
    ),
    (
        "not_utf8",
        4,
        "not-utf8",
        ("byte 0xe9 on line 4 is not UTF-8, so kiln cannot audit this file: save it as UTF-8"),
    ),
    (
        "plays",
        2,
        "play-hosts",
        (
            "the play targets 'webservers'; a bake may only target 'all' or the builder group "
            "'builder': set hosts: builder"
        ),
    ),
    (
        "plays",
        6,
        "play-hosts",
        (
            "the play targets 'prod'; a bake may only target 'all' or the builder group "
            "'builder': set hosts: builder"
        ),
    ),
    (
        "prod_url",
        2,
        "prod-url",
        (
            "reaches production host api.db.prod.example.com (under prod.example.com); "
            "bake-time tasks may only touch the builder: use a non-production mirror or bake "
            "the file into the role"
        ),
    ),
    (
        "prod_url",
        6,
        "prod-url",
        (
            "reaches production host prod.example.com; bake-time tasks may only touch the "
            "builder: use a non-production mirror or bake the file into the role"
        ),
    ),
    (
        "prod_url",
        11,
        "prod-url",
        (
            "reaches production host 10.9.8.7; bake-time tasks may only touch the builder: "
            "use a non-production mirror or bake the file into the role"
        ),
    ),
    (
        "prod_url",
        14,
        "prod-url",
        (
            "reaches production host www.prod.example.com (under prod.example.com); bake-time "
            "tasks may only touch the builder: use a non-production mirror or bake the file "
            "into the role"
        ),
    ),
    (
        "remote_sync",
        2,
        "remote-sync",
        (
            "synchronize dest 'backup@store.internal:/srv/backup/' names another host: sync "
            "only between the control host's work directory and the builder"
        ),
    ),
    (
        "remote_sync",
        7,
        "remote-sync",
        (
            "synchronize with delegate_to 'other.internal' runs the task on another host, "
            "copying between that host and the builder: sync from the control host instead"
        ),
    ),
    (
        "remote_sync",
        13,
        "local-write",
        (
            "synchronize mode=pull writes to the control host and dest '/tmp/logs/' is "
            "outside the work directory: write inside the work directory /srv/kiln-work, or "
            "run the task on the builder"
        ),
    ),
    (
        "secrets",
        2,
        "secret-no-log",
        (
            "uses secret db_password without no_log: true, so its value can reach the bake "
            "log: add no_log: true to the task"
        ),
    ),
    (
        "secrets",
        9,
        "secret-no-log",
        (
            "uses secret api_token without no_log: true, so its value can reach the bake log: "
            "add no_log: true to the task"
        ),
    ),
    (
        "with_deps",
        2,
        "delegate-to",
        (
            "delegate_to 'prod-db' runs the task on another host; only the builder may be "
            "touched: remove delegate_to (localhost is allowed for steps that stay in the "
            "work directory)"
        ),
    ),
    (
        "with_deps",
        10,
        "unknown-role",
        (
            "role 'missing_dep' is in no roles path and no installed collection, so kiln "
            "cannot audit it: vendor it, or list it in requirements.yml (`invoke deps`)"
        ),
    ),
]


@pytest.mark.parametrize(("role", "line", "rule", "message"), MESSAGES)
def test_each_finding_says_what_is_wrong_and_what_to_do(
    role: str, line: int, rule: str, message: str
) -> None:
    assert message in {f.message for f in audit(role).findings if (f.line, f.rule) == (line, rule)}


def test_ansible_tags_are_read_through(tmp_path: Path) -> None:
    """!unsafe and !vault values are still audited, whether scalars, lists or mappings."""
    tasks = (
        "- name: Tagged mapping\n  copy: !unsafe {dest: /etc/x}\n  delegate_to: localhost\n"
        "- name: Tagged list\n  debug: {msg: x}\n  loop: !unsafe ['{{ db_password }}']\n"
        "- name: Tagged scalar\n  get_url: {url: !unsafe 'https://prod.example.com/x'}\n"
        "- name: Vault\n  debug: {msg: !vault '$ANSIBLE_VAULT;1.1;AES256'}\n"
    )
    found = audit_tasks(tmp_path, tasks)
    assert [rule for rule, _ in found] == ["local-write", "prod-url", "secret-no-log"], found
    report = audit_tasks(tmp_path, "!unsafe\n- just a string\n")
    assert report == [("yaml-error", "each task should be a mapping")]


def test_the_listing_sorts_by_status_and_marks_only_allowed_findings(tmp_path: Path) -> None:
    tasks = (
        "- name: Allowed\n  add_host: {name: x}\n"
        "- name: Warned\n  debug: msg='{{ api_token }}'\n"
        "- name: Refused\n  add_host: {name: y}\n"
        "- debug: [not, a, mapping\n"
    )
    (tmp_path / "roles" / "r" / "tasks").mkdir(parents=True)
    (tmp_path / "roles" / "r" / "tasks" / "main.yml").write_text(tasks)
    allow = TaskException("r", "Allowed", "add-host", "a throwaway in-memory host")
    report = audit("r", roles_path=tmp_path / "roles", exceptions=[allow])
    rows = [_status_and_task(line) for line in audit_lines({"r": report})[1:]]
    # A broken file is audited no further: its error (no task: "-") and the now unused exception.
    assert rows == [("error", "-"), ("warning", "Allowed")]
    (tmp_path / "roles" / "r" / "tasks" / "main.yml").write_text(tasks.rsplit("- debug", 1)[0])
    report = audit("r", roles_path=tmp_path / "roles", exceptions=[allow])
    lines = audit_lines({"r": report})[1:]
    assert [_status_and_task(line) for line in lines] == [
        ("error", "Refused"), ("warning", "Warned"), ("allowed", "Allowed"),
    ]  # fmt: skip
    assert lines[2].endswith("(allowed: a throwaway in-memory host)")
    assert not any("(allowed" in line for line in lines[:2])


def _status_and_task(line: str) -> tuple[str, str]:
    """(status, task) of one line of `invoke audit`: `  STATUS  FILE:LINE [RULE] TASK: MESSAGE`."""
    found = re.match(r"  (\w+) +\S+ \[[\w-]+\] ([^:]+): ", line)
    assert found, line
    return found[1], found[2]


def test_an_exception_for_a_rule_it_cannot_allow_lists_the_ones_it_can() -> None:
    with pytest.raises(DefinitionError) as caught:
        TaskException("web", "Task", "not-utf8", "why")
    allowed = [r for r in RULES if r not in {"yaml-error", "not-utf8", "unused-exception"}]
    assert str(caught.value) == (
        "the exception for task 'Task' of Ansible role 'web' names rule 'not-utf8'; "
        f"rules it can allow: {', '.join(allowed)}"
    )


def test_a_playbook_is_audited_once_even_when_it_imports_itself(tmp_path: Path) -> None:
    playbook = "- import_playbook: site.yml\n- hosts: all\n  tasks:\n    - add_host: {name: x}\n"
    assert [rule for rule, _ in audit_play(tmp_path, playbook)] == ["add-host"]


def test_an_empty_or_broken_playbook(tmp_path: Path) -> None:
    assert audit_play(tmp_path, "") == []
    (tmp_path / "site.yml").write_text("- hosts: all\n  tasks: [\n")
    (finding,) = audit_playbook(tmp_path / "site.yml").findings
    assert (finding.file, finding.rule, finding.task, finding.ansible_role) == (
        "site.yml", "yaml-error", "", "",
    )  # fmt: skip
    (tmp_path / "site.yml").write_text("hosts: all\n")
    (finding,) = audit_playbook(tmp_path / "site.yml").findings
    assert (finding.location, finding.task, finding.ansible_role) == ("site.yml:1", "", "")


def test_an_unnamed_play_is_named_so(tmp_path: Path) -> None:
    (tmp_path / "site.yml").write_text("- hosts: web\n")
    (finding,) = audit_playbook(tmp_path / "site.yml").findings
    assert (finding.task, finding.location) == ("(unnamed play)", "site.yml:1")


def test_findings_on_a_play_s_parts_point_at_the_item(tmp_path: Path) -> None:
    playbook = "- hosts: all\n  name: Site\n  roles:\n    - name: clean\n    - role: ''\n- oops\n"
    (tmp_path / "site.yml").write_text(playbook)
    report = audit_playbook(tmp_path / "site.yml", roles_path=ROLES, work_dir=WORK_DIR)
    assert report.roles == ("clean",)  # {name: clean} names the role as {role: clean} does
    assert sorted((f.location, f.task, f.ansible_role, f.rule) for f in report.findings) == [
        ("site.yml:5", "Site", "", "yaml-error"),
        ("site.yml:6", "", "", "yaml-error"),
    ]


@pytest.mark.parametrize(
    ("text", "line"), [("oops\n", 1), ("# a comment\nhosts: all\n", 2), ("---\n\n- 3\n", 3)]
)
def test_a_playbook_of_the_wrong_shape_names_the_line(tmp_path: Path, text: str, line: int) -> None:
    (tmp_path / "site.yml").write_text(text)
    (finding,) = audit_playbook(tmp_path / "site.yml").findings
    assert (finding.rule, finding.line) == ("yaml-error", line)


def test_an_unknown_role_in_a_play_is_named_where_the_play_lists_it(tmp_path: Path) -> None:
    (tmp_path / "site.yml").write_text("- hosts: all\n  name: Site\n  roles:\n    - nowhere\n")
    report = audit_playbook(tmp_path / "site.yml", roles_path=ROLES)
    assert [(f.location, f.rule, f.task) for f in report.findings] == [
        ("site.yml:4", "unknown-role", "Site")
    ]


# --- survivors of the mutation run (scripts/mutation.sh) that would let a task escape -----------

DELEGATED = "- shell: 'true'\n  delegate_to: db.example.net\n"


def test_a_production_entry_with_a_deep_path_still_names_its_host(tmp_path: Path) -> None:
    tasks = "- get_url: url=https://api.prod.example.com/x dest=/tmp/x\n"
    found = audit_tasks(tmp_path, tasks, production_hosts=("https://prod.example.com/v1/a/b",))
    assert [rule for rule, _ in found] == ["prod-url"]


def test_tasks_under_always_are_audited_like_block_and_rescue(tmp_path: Path) -> None:
    for section in ("block", "rescue", "always"):
        tasks = (
            f"- name: Around\n  {section}:\n"
            "    - name: Reach out\n      shell: 'true'\n      delegate_to: db.example.net\n"
        )
        assert [rule for rule, _ in audit_tasks(tmp_path, tasks)] == ["delegate-to"], section


def test_include_tasks_apply_keywords_are_audited_at_the_include(tmp_path: Path) -> None:
    (tmp_path / "roles" / "r" / "tasks").mkdir(parents=True)
    (tmp_path / "roles" / "r" / "tasks" / "other.yml").write_text("- debug: msg=hi\n")
    tasks = (
        "- name: Pull in the rest\n  include_tasks:\n    file: other.yml\n"
        "    apply: {delegate_to: db.example.net}\n"
    )
    (tmp_path / "roles" / "r" / "tasks" / "main.yml").write_text(tasks)
    report = audit("r", roles_path=tmp_path / "roles")
    assert [(f.rule, f.task, f.line) for f in report.findings] == [
        ("delegate-to", "Pull in the rest", 1)
    ]


def test_an_include_is_found_next_to_the_file_that_includes_it(tmp_path: Path) -> None:
    tasks_dir = tmp_path / "roles" / "r" / "tasks"
    (tasks_dir / "sub").mkdir(parents=True)
    (tasks_dir / "sub" / "b.yml").write_text("- include_tasks: c.yml\n")
    (tasks_dir / "sub" / "c.yml").write_text("- shell: 'true'\n  delegate_to: db.example.net\n")
    found = audit_tasks(tmp_path, "- include_tasks: sub/b.yml\n")
    assert [rule for rule, _ in found] == ["delegate-to"]  # not missing-include


def test_a_templated_include_audits_yaml_files_of_both_spellings(tmp_path: Path) -> None:
    tasks_dir = tmp_path / "roles" / "r" / "tasks"
    tasks_dir.mkdir(parents=True)
    (tasks_dir / "debian.yaml").write_text(DELEGATED)
    found = audit_tasks(tmp_path, "- include_tasks: '{{ ansible_os_family | lower }}.yaml'\n")
    # Resolved: the fact stands for a file name part, and each file it can match is audited.
    assert sorted(rule for rule, _ in found) == ["delegate-to"]


def test_a_templated_no_log_is_not_true_and_does_not_stop_the_audit(tmp_path: Path) -> None:
    tasks = "- debug: msg='{{ api_token }}'\n  no_log: '{{ hide_secrets }}'\n"
    assert [rule for rule, _ in audit_tasks(tmp_path, tasks)] == ["secret-no-log"]


def test_arguments_ansible_cannot_split_are_still_read_whole(tmp_path: Path) -> None:
    # Unbalanced quotes: Ansible's own splitter refuses them (the task would fail at run time),
    # and the audit still reads every word, so a production URL in them is found.
    tasks = '- get_url: url=https://api.prod.example.com/x dest="/tmp/x\n'
    assert [rule for rule, _ in audit_tasks(tmp_path, tasks)] == ["prod-url"]
    tasks = "- local_action: shell curl https://api.prod.example.com/{{ path\n"
    assert sorted(rule for rule, _ in audit_tasks(tmp_path, tasks)) == ["local-write", "prod-url"]
