"""The guard's rules for what runs or is read on the control host, the bake host itself:
controller-side lookups, src paths outside the role, templated includes, secrets in names."""

from __future__ import annotations

from pathlib import Path

import pytest
from kiln.errors import GuardError
from kiln.guard import Rule, Severity, TaskException, audit_playbook, raise_for_findings
from test_guard import WORK_DIR, audit
from test_guard_rules import audit_tasks

# (tasks/main.yml, the rule of each finding in order, a fragment of the first message)
LOOKUP_CASES: dict[str, tuple[str, list[str], str]] = {
    # -- the examples
    "pipe": (
        "- debug: msg=\"{{ lookup('pipe', 'nc 127.0.0.1 9999') }}\"\n",
        ["controller-lookup"],
        "lookup('pipe') runs a command on the bake host",
    ),
    "a file of the bake host": (
        "- debug: msg=\"{{ lookup('file', '/etc/hostname') }}\"\n",
        ["controller-lookup"],
        "lookup('file') of '/etc/hostname' is an absolute path on the bake host",
    ),
    "kiln's environment": (
        "- debug: msg=\"{{ lookup('env', 'AWS_SECRET_ACCESS_KEY') }}\"\n",
        ["controller-lookup"],
        "lookup('env') reads kiln's own environment",
    ),
    # -- every spelling of a call
    "query, q and an FQCN": (
        "- debug: msg=\"{{ query('ansible.builtin.url', 'https://x') }}\"\n"
        '- debug: msg=\'{{ q("lines", "cat /etc/passwd") }}\'\n',
        ["controller-lookup", "controller-lookup"],
        "q('lines') runs a command on the bake host",
    ),
    "in a bare when, until and changed_when": (
        "- ping:\n  when: lookup('env', 'HOME') != ''\n"
        "- ping:\n  until: [\"query('pipe', 'id')\"]\n",
        ["controller-lookup", "controller-lookup"],
        "lookup('env')",
    ),
    "in an assert's that, short and FQCN": (
        "- assert:\n    that: lookup('env', 'KILN_MARK') | length > 0\n"
        "- ansible.builtin.assert:\n    that: [\"query('pipe', 'id') != ''\"]\n",
        ["controller-lookup", "controller-lookup"],
        "lookup('env') reads kiln's own environment",
    ),
    "in vars, a loop and a name": (
        "- debug: msg={{ x }}\n  vars: {x: \"{{ lookup('pipe', 'id') }}\"}\n"
        "- debug: msg={{ item }}\n  loop: \"{{ query('fileglob', '/root/*') }}\"\n"
        "- name: \"Say {{ lookup('env', 'USER') }}\"\n  ping:\n",
        ["controller-lookup"] * 3,
        "lookup('env')",
    ),
    "with_ loops that always reach the bake host": (
        "- debug: msg={{ item }}\n  with_pipe: [id]\n- debug: msg={{ item }}\n  with_env: [HOME]\n",
        ["controller-lookup", "controller-lookup"],
        "with_env reads kiln's own environment",
    ),
    "with_ loops over absolute, home and escaping paths": (
        "- debug: msg={{ item }}\n  with_file: [files/ok, /etc/shadow]\n"
        "- debug: msg={{ item }}\n  with_fileglob: '~/.aws/*'\n"
        "- debug: msg={{ item }}\n  with_template: ['../../other/x.j2']\n",
        ["controller-lookup"] * 3,
        "with_file of '/etc/shadow' is an absolute path",
    ),
    "a templated plugin name": (
        "- debug: msg=\"{{ lookup(kind, 'x') }}\"\n",
        ["controller-lookup"],
        "lookup() of a templated plugin name",
    ),
    "a path built from a literal that leaves the role": (
        "- debug: msg=\"{{ lookup('file', '/home/' ~ user ~ '/.ssh/id_rsa.pub') }}\"\n"
        "- debug: msg=\"{{ lookup('template', role_path + '/../../x.j2') }}\"\n",
        ["controller-lookup", "controller-lookup"],
        "lookup('file') of '/home/{{ ... }}/.ssh/id_rsa.pub' is an absolute path",
    ),
    "password keeps its file on the bake host": (
        "- debug: msg=\"{{ lookup('password', 'credentials/db length=15') }}\"\n"
        "- debug: msg=\"{{ lookup('password', path ~ ' length=15') }}\"\n",
        ["controller-lookup", "controller-lookup"],
        "lookup('password') of 'credentials/db length=15' stores a password in a file",
    ),
    "Jinja kiln cannot parse": (
        "- debug: msg=\"{{ lookup('pipe', 'id' }}\"\n",
        ["controller-lookup"],
        "lookup('pipe') is in Jinja kiln cannot parse",
    ),
    # -- what community roles do, allowed
    "files and templates of the role": (
        "- copy: {content: \"{{ lookup('file', 'motd') }}\", dest: /etc/motd}\n"
        "- debug: msg=\"{{ lookup('template', 'templates/x.j2') }}\"\n"
        "- debug: msg=\"{{ query('fileglob', 'files/*.conf') }}\"\n"
        "- debug: msg={{ item }}\n  with_fileglob: ['conf.d/*']\n"
        "- debug: msg=\"{{ lookup('file', role_path ~ '/files/key.pub') }}\"\n",
        [],
        "",
    ),
    "a path that starts with a variable is left to the sandbox": (
        "- debug: msg=\"{{ lookup('file', item) }}\"\n  loop: [a, b]\n"
        '- debug: msg={{ item }}\n  with_file: "{{ keys }}"\n',
        [],
        "",
    ),
    "password that only generates": (
        "- user: {name: app, password: \"{{ lookup('password', '/dev/null length=15') }}\"}\n"
        "  no_log: true\n"
        "- debug: msg=\"{{ lookup('ansible.builtin.password', '/dev/null', seed=x) }}\"\n",
        [],
        "",
    ),
    "lookups that stay in Ansible": (
        "- debug: msg=\"{{ lookup('vars', 'x') }} {{ query('items', [1]) }}\"\n"
        "- debug: msg={{ item }}\n  with_items: [/etc/shadow]\n"
        '- debug: msg=\'lookup("pipe", "id") in plain text is not Jinja\'\n',
        [],
        "",
    ),
}

SRC_CASES: dict[str, tuple[str, list[str], str]] = {
    "the issue's copy of a key": (
        "- copy: src=/root/.ssh/id_rsa dest=/root/.ssh/id_rsa\n",
        ["controller-src"],
        "copy src '/root/.ssh/id_rsa' is an absolute path on the bake host, which Ansible reads",
    ),
    "the issue's include_vars": (
        "- include_vars: /etc/kiln/secrets.yml\n",
        ["controller-src"],
        "include_vars '/etc/kiln/secrets.yml' is an absolute path",
    ),
    "include_vars file= and dir=, FQCN": (
        "- ansible.builtin.include_vars: file=/etc/x.yml\n"
        "- ansible.builtin.include_vars: {dir: ../../../other/vars}\n",
        ["controller-src", "controller-src"],
        "ansible.builtin.include_vars dir '../../../other/vars' climbs out of the role",
    ),
    "template, unarchive, script and assemble from the bake host": (
        "- ansible.builtin.template: {src: ~/site.j2, dest: /etc/site}\n"
        "- unarchive: {src: /srv/dist.tgz, dest: /opt}\n"
        "- script: /usr/local/bin/setup.sh --fast\n"
        "- assemble: {src: /etc/fragments, dest: /etc/x, remote_src: false}\n"
        "- ansible.posix.patch: {src: /tmp/fix.patch, dest: /etc/x}\n"
        "- copy: {src: /srv/kiln-work/../secrets.json, dest: /etc/x}\n",
        ["controller-src"] * 6,
        "ansible.builtin.template src '~/site.j2' is in a home directory",
    ),
    "paths in the role, on the builder or templated": (
        "- copy: {src: files/app.conf, dest: /etc/app.conf}\n"
        "- template: src=app.j2 dest=/etc/app\n"
        "- copy: {src: /etc/hosts, dest: /tmp/hosts, remote_src: true}\n"
        "- unarchive: {src: /opt/a.tgz, dest: /opt, remote_src: yes}\n"
        "- unarchive: {src: /opt/a.tgz, dest: /opt, copy: no}\n"
        "- unarchive: {src: 'https://example.org/a.tgz', dest: /opt}\n"
        "- assemble: {src: /etc/fragments, dest: /etc/x}\n"
        "- script: setup.sh --fast\n"
        '- script: "{{ role_path }}/files/setup.sh"\n'
        '- include_vars: "{{ ansible_os_family }}.yml"\n'
        "- include_vars: {file: vars/extra.yml}\n"
        "- copy: {src: \"{{ item }}\", dest: /etc/}\n  with_fileglob: ['files/*']\n"
        "- file: {src: /usr/share/zoneinfo/UTC, dest: /etc/localtime, state: link}\n"
        "- copy: {src: /srv/kiln-work/fetched/os-release, dest: /etc/x}\n",
        [],
        "",
    ),
}


def _check(tmp_path: Path, tasks: str, rules: list[str], fragment: str) -> None:
    found = audit_tasks(tmp_path, tasks)
    assert [str(rule) for rule, _ in found] == rules, found
    if fragment:
        assert any(fragment in message for _, message in found), found


@pytest.mark.parametrize("case", list(LOOKUP_CASES))
def test_controller_lookups(tmp_path: Path, case: str) -> None:
    _check(tmp_path, *LOOKUP_CASES[case])


@pytest.mark.parametrize("case", list(SRC_CASES))
def test_controller_src_paths(tmp_path: Path, case: str) -> None:
    _check(tmp_path, *SRC_CASES[case])


def test_the_new_rules_are_errors_an_exception_can_allow() -> None:
    for rule in (Rule.CONTROLLER_LOOKUP, Rule.CONTROLLER_SRC, Rule.SECRET_IN_NAME):
        assert rule.severity is Severity.ERROR and rule.exceptable
    assert Rule.DYNAMIC_INCLUDE.severity is Severity.ERROR and Rule.DYNAMIC_INCLUDE.exceptable
    assert Rule.SECRET_NO_LOG.severity is Severity.WARNING


def test_a_lookup_in_a_role_s_defaults_or_vars_is_found_and_can_be_allowed(tmp_path: Path) -> None:
    role = tmp_path / "roles" / "r"
    (role / "defaults").mkdir(parents=True)
    (role / "vars").mkdir()
    (role / "defaults" / "main.yml").write_text(
        "user: app\nhome: \"{{ lookup('env', 'HOME') }}\"\n"
    )
    (role / "vars" / "Debian.yml").write_text("key: \"{{ lookup('file', '/etc/ssh/key') }}\"\n")
    found = audit_tasks(tmp_path, "- ping:\n")
    assert [rule for rule, _ in found] == ["controller-lookup", "controller-lookup"]
    report = audit("r", roles_path=tmp_path / "roles")
    assert {(f.file, f.line, f.task) for f in report.findings} == {
        ("roles/r/defaults/main.yml", 2, "variable home"),
        ("roles/r/vars/Debian.yml", 1, "variable key"),
    }
    allowed = [
        TaskException("r", "variable home", "controller-lookup", "the builder's HOME, reviewed"),
        TaskException("r", "variable key", "controller-lookup", "a public key, reviewed"),
    ]
    assert audit("r", roles_path=tmp_path / "roles", exceptions=allowed).ok


def test_a_lookup_in_a_play_or_block_keyword_is_found(tmp_path: Path) -> None:
    (tmp_path / "site.yml").write_text(
        "- hosts: all\n  vars: {k: \"{{ lookup('pipe', 'id') }}\"}\n  tasks:\n"
        "    - block: [{ping: }]\n      when: lookup('env', 'CI') == '1'\n"
    )
    report = audit_playbook(tmp_path / "site.yml", work_dir=WORK_DIR)
    assert sorted((f.line, f.rule) for f in report.findings) == [
        (1, "controller-lookup"),
        (4, "controller-lookup"),
    ]


def test_a_controller_lookup_refuses_the_bake_until_allowed_with_a_reason(tmp_path: Path) -> None:
    tasks = "- name: Read the key\n  debug: msg=\"{{ lookup('file', '/etc/key') }}\"\n"
    audit_tasks(tmp_path, tasks)
    with pytest.raises(GuardError, match=r"\[controller-lookup\] Read the key"):
        raise_for_findings(audit("r", roles_path=tmp_path / "roles"), "web")
    allowed = TaskException("r", "Read the key", "controller-lookup", "a fixture of the test")
    report = audit("r", roles_path=tmp_path / "roles", exceptions=[allowed])
    assert report.ok and [f.reason for f in report.allowed] == ["a fixture of the test"]


# -- templated includes -------------------------------------------------------------------

HIDDEN = "- add_host: {name: hidden}\n- command: id\n  delegate_to: other.internal\n"


def test_role_path_is_the_role_s_own_directory(tmp_path: Path) -> None:
    """The issue's example: the file is resolved and its add_host and delegate_to found."""
    (tmp_path / "roles" / "r" / "files").mkdir(parents=True)
    (tmp_path / "roles" / "r" / "files" / "x.yml").write_text(HIDDEN)
    found = audit_tasks(tmp_path, '- include_tasks: "{{ role_path }}/files/x.yml"\n')
    assert [rule for rule, _ in found] == ["add-host", "delegate-to"]
    found = audit_tasks(tmp_path, "- include_tasks: '{{role_path}}/files/nowhere.yml'\n")
    assert found == [
        ("missing-include", "the included file '{{role_path}}/files/nowhere.yml' does not exist")
    ]


@pytest.mark.parametrize(
    "target",
    [
        "{{ tasks_file }}",
        "{{ x }}.yml",
        "/opt/{{ x }}.yml",
        "../{{ x }}.yml",
        "{{ role_path }}/../{{ x }}.yml",
        "setup-{{ ansible_os_family }}.yml",  # no such file in the role
        "setup-{{ a }}{{ b }}.yml",  # two templated parts side by side are one glob star
        "{{ lookup_path | default('a') }}.yml",
    ],
)
def test_a_templated_include_kiln_cannot_resolve_is_an_error(tmp_path: Path, target: str) -> None:
    found = audit_tasks(tmp_path, f'- include_tasks: "{target}"\n')
    assert [rule for rule, _ in found] == ["dynamic-include"]
    report = audit("r", roles_path=tmp_path / "roles")
    assert not report.ok


def test_a_templated_file_name_part_is_resolved_to_every_file_it_can_match(tmp_path: Path) -> None:
    tasks = tmp_path / "roles" / "r" / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "setup-Debian.yml").write_text(HIDDEN)
    (tasks / "setup-RedHat.yml").write_text("- group_by: {key: x}\n")
    (tasks / "other.yml").write_text("- add_host: {name: never}\n")
    found = audit_tasks(tmp_path, "- include_tasks: setup-{{ ansible_os_family }}.yml\n")
    assert [rule for rule, _ in found] == ["add-host", "delegate-to", "group-by"]
    # A fact may begin the name too: then every top-level file of tasks/ is one it can pick.
    found = audit_tasks(tmp_path, "- include_tasks: '{{ ansible_distribution|lower }}.yml'\n")
    assert [rule for rule, _ in found] == ["add-host", "add-host", "delegate-to", "group-by"]
    found = audit_tasks(tmp_path, "- include_tasks: 'setup-{{ ansible_os_family }}.yaml'\n")
    assert [rule for rule, _ in found] == ["dynamic-include"]  # it matches no file


def test_a_templated_role_outside_the_roles_paths_is_an_error_unless_allowed(
    tmp_path: Path,
) -> None:
    tasks = '- name: Apply the outside role\n  include_role:\n    name: "{{ outside }}"\n'
    found = audit_tasks(tmp_path, tasks)
    assert found == [
        (
            "dynamic-include",
            "the included role '{{ outside }}' (or its tasks_from) is templated, so kiln "
            "cannot tell which role runs and cannot audit it: name the role and file",
        )
    ]
    allowed = TaskException("r", "Apply the outside role", "dynamic-include", "pinned by CI")
    assert audit("r", roles_path=tmp_path / "roles", exceptions=[allowed]).ok


# -- secrets in names -----------------------------------------------------------------------

SECRET_CASES: dict[str, tuple[str, list[str]]] = {
    "a secret in a task name, even with no_log": (
        "- name: 'Log in with {{ api_token }}'\n  command: login\n  no_log: true\n",
        ["secret-in-name"],
    ),
    "a transformed secret in a name, and in the arguments without no_log": (
        '- name: "Use {{ db_password[:4] }}"\n  command: "use {{ db_password }}"\n',
        ["secret-in-name", "secret-no-log"],
    ),
    "a secret in a handler's or play-less block task's name": (
        "- block:\n    - name: 'Inner {{ api_token | b64encode }}'\n      ping:\n  no_log: true\n",
        ["secret-in-name"],
    ),
    "names that only mention a secret": (
        "- name: Rotate the api_token and db_password_hint\n  ping:\n"
        "- name: \"{{ 'db_password' }} is set\"\n  ping:\n",
        [],
    ),
}


@pytest.mark.parametrize("case", list(SECRET_CASES))
def test_secrets_in_names(tmp_path: Path, case: str) -> None:
    tasks, rules = SECRET_CASES[case]
    assert [rule for rule, _ in audit_tasks(tmp_path, tasks)] == rules


def test_a_secret_in_a_play_name_is_found(tmp_path: Path) -> None:
    (tmp_path / "site.yml").write_text("- hosts: all\n  name: 'Deploy {{ api_token }}'\n")
    report = audit_playbook(tmp_path / "site.yml", secret_vars=("api_token",))
    assert [f.rule for f in report.findings] == ["secret-in-name"]


def test_the_readme_lists_every_rule_and_which_ones_only_warn() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    security = readme[readme.index("## Security") :]
    for rule in Rule:
        assert f"`{rule}`" in security, rule
    warnings = security[security.index("Warnings do not stop a bake") :].split("\n- ")[0]
    assert {rule for rule in Rule if f"`{rule}`" in warnings} == {
        rule for rule in Rule if rule.severity is Severity.WARNING
    }


def test_a_lookup_in_a_role_s_template_is_found(tmp_path: Path) -> None:
    """The template module renders templates/ on the controller: a lookup there runs there."""
    templates = tmp_path / "roles" / "r" / "templates"
    (templates / "conf.d").mkdir(parents=True)
    (templates / "motd.j2").write_text("Hello {{ ansible_hostname }}\n{{ lookup('file', 'x') }}\n")
    (templates / "conf.d" / "app.conf.j2").write_text(
        "# app\nkey = {{ lookup('pipe', 'cat /root/.ssh/id_rsa') }}\n"
    )
    (templates / "logo.png").write_bytes(b"\x89PNG\r\n\xff\xfe")
    report = audit("r", roles_path=_role(tmp_path, "- ping:\n"))
    assert [(f.file, f.line, f.rule, f.task) for f in report.findings] == [
        (
            "roles/r/templates/conf.d/app.conf.j2",
            2,
            "controller-lookup",
            "template conf.d/app.conf.j2",
        )
    ]
    assert "roles/r/templates/motd.j2" in report.files


def _role(tmp_path: Path, tasks: str) -> Path:
    (tmp_path / "roles" / "r" / "tasks").mkdir(parents=True, exist_ok=True)
    (tmp_path / "roles" / "r" / "tasks" / "main.yml").write_text(tasks)
    return tmp_path / "roles"
