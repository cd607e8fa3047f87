"""The audit's rules: each one's name, what it catches, its severity, whether it can be allowed."""

from __future__ import annotations

from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"  # refuses the bake
    WARNING = "warning"  # reported, the bake goes on


class Rule(StrEnum):
    """A rule of the audit; a StrEnum, so findings print and store it as its plain name."""

    DELEGATE_TO = "delegate-to"
    LOCAL_WRITE = "local-write"
    ADD_HOST = "add-host"
    GROUP_BY = "group-by"
    PLAY_HOSTS = "play-hosts"
    PROD_URL = "prod-url"
    REMOTE_SYNC = "remote-sync"
    CONNECTION_VAR = "connection-var"
    UNKNOWN_ROLE = "unknown-role"
    YAML_ERROR = "yaml-error"
    NOT_UTF8 = "not-utf8"
    CONTROLLER_LOOKUP = "controller-lookup"
    CONTROLLER_SRC = "controller-src"
    SECRET_IN_NAME = "secret-in-name"
    SECRET_NO_LOG = "secret-no-log"
    DYNAMIC_INCLUDE = "dynamic-include"
    MISSING_INCLUDE = "missing-include"
    UNUSED_EXCEPTION = "unused-exception"

    @property
    def description(self) -> str:
        """What a finding of this rule means, as `invoke audit` and the README list it."""
        return _DESCRIPTIONS[self]

    @property
    def severity(self) -> Severity:
        return Severity.WARNING if self in _WARNINGS else Severity.ERROR

    @property
    def exceptable(self) -> bool:
        """A TaskException may allow it. Not where kiln could not read a file: a file that was
        not audited at all cannot be made safe by a reason."""
        return self not in (Rule.YAML_ERROR, Rule.NOT_UTF8, Rule.UNUSED_EXCEPTION)


_WARNINGS = frozenset({Rule.SECRET_NO_LOG, Rule.MISSING_INCLUDE, Rule.UNUSED_EXCEPTION})
_DESCRIPTIONS = {
    Rule.DELEGATE_TO: "a task is delegated to a host other than localhost",
    Rule.LOCAL_WRITE: "a task on the control host runs a command or writes outside the work "
    "directory",
    Rule.ADD_HOST: "add_host puts a new host in the inventory",
    Rule.GROUP_BY: "group_by builds groups of hosts at run time",
    Rule.PLAY_HOSTS: "a play targets hosts other than all or the builder group",
    Rule.PROD_URL: "a task names a production host (URL, host argument or command)",
    Rule.REMOTE_SYNC: "synchronize copies to or from another host",
    Rule.CONNECTION_VAR: "a task or play sets ansible_host or another connection variable",
    Rule.UNKNOWN_ROLE: "a role is not under the roles path, so kiln cannot audit it",
    Rule.YAML_ERROR: "a file is not valid YAML, or not the shape Ansible expects",
    Rule.NOT_UTF8: "a file is not valid UTF-8",
    # Lookups run on the controller, the bake host. Plugins that reach it whatever their
    # arguments are refused; file plugins only when the path visibly leaves the role, because
    # lookup('file', 'x') relative to the role's files/ is how community roles ship content.
    Rule.CONTROLLER_LOOKUP: "a lookup (lookup, query, q or with_<lookup>) reaches the bake host "
    "that runs Ansible: pipe, lines, env and url always, a templated plugin name, file, "
    "fileglob, template and unvault of an absolute, ~ or '..' path, password other than "
    "/dev/null (it keeps its file there); a relative path inside the role is allowed, and one "
    "that starts with a variable is left to the sandbox",
    Rule.CONTROLLER_SRC: "a task reads a file of the bake host: src of copy, template, "
    "unarchive, patch and assemble (unless remote_src), script, include_vars file or dir, "
    "given as an absolute, ~ or '..' path outside the work directory; relative paths are "
    "found in the role",
    # no_log hides a task's arguments and results, never its name: only renaming helps, and a
    # transformed secret in a name ({{ token[:8] }}) is beyond any redaction.
    Rule.SECRET_IN_NAME: "a task or play name uses a secret variable, which Ansible prints "
    "whatever no_log says",
    # A warning: kiln masks every encoding of a secret in what it writes and prints, and many
    # community roles pass passwords without no_log; no_log also hides a failure's output.
    Rule.SECRET_NO_LOG: "a task uses a secret variable without no_log: true (a warning: kiln "
    "redacts the value in its logs and output)",
    Rule.DYNAMIC_INCLUDE: "an include, import or role name is templated so that kiln cannot "
    "resolve it; {{ role_path }} is the role's directory, and a relative file name templated "
    "within its last parts is resolved to every file of the role it can match",
    Rule.MISSING_INCLUDE: "an included task file does not exist",
    Rule.UNUSED_EXCEPTION: "an exception allowed no finding",
}
