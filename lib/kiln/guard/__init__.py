"""The guard: configuration tooling runs only against the throwaway builder, never production.

It statically audits every Ansible task a bake would run before any builder starts, and it
checks the environment and inventory handed to ansible-playbook.

- rule: the rules (name, description, severity, whether an exception may allow it)
- findings: Finding, TaskException, AuditReport and raise_for_findings
- auditor: audit_roles, audit_playbook and the walk through roles and their files
- plays: the walk through the plays, blocks, tasks and includes of one file
- rules, control_host: the checks each play and task must pass
- lookups, sources: lookups and module src files that Ansible runs or reads on the bake host
- arguments: a task's module and arguments, free-form key=value included
- yaml_lines: the YAML loader that keeps line numbers
- environment: the environment and inventory handed to ansible-playbook
"""

from __future__ import annotations

from kiln.guard.auditor import DEFAULT_BUILDER_GROUP, audit_playbook, audit_roles
from kiln.guard.environment import (
    HOST_CHANGING_ENV,
    SafeEnvironment,
    ansible_environment,
    check_single_host_inventory,
)
from kiln.guard.findings import (
    RULES,
    AuditReport,
    ExceptionLike,
    Finding,
    TaskException,
    raise_for_findings,
)
from kiln.guard.rule import Rule, Severity

__all__ = [
    "DEFAULT_BUILDER_GROUP",
    "HOST_CHANGING_ENV",
    "RULES",
    "AuditReport",
    "ExceptionLike",
    "Finding",
    "Rule",
    "SafeEnvironment",
    "Severity",
    "TaskException",
    "ansible_environment",
    "audit_playbook",
    "audit_roles",
    "check_single_host_inventory",
    "raise_for_findings",
]
