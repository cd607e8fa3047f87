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


_WARNINGS = frozenset(
    {Rule.SECRET_NO_LOG, Rule.DYNAMIC_INCLUDE, Rule.MISSING_INCLUDE, Rule.UNUSED_EXCEPTION}
)
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
    Rule.SECRET_NO_LOG: "a task uses a secret variable without no_log: true",
    Rule.DYNAMIC_INCLUDE: "an included file or role name is templated",
    Rule.MISSING_INCLUDE: "an included task file does not exist",
    Rule.UNUSED_EXCEPTION: "an exception allowed no finding",
}
