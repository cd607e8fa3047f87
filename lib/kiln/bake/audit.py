"""The guard at bake time: a role's Ansible, then the playbook kiln rendered for it, may reach
nothing but the builder. A finding that is not a warning stops the bake before Packer starts."""

from __future__ import annotations

from pathlib import Path

from kiln.console import Reporter
from kiln.guard import AuditReport, audit_playbook, audit_roles, raise_for_findings
from kiln.model import Project, Role


def audit_role(
    project: Project, role: Role, reporter: Reporter, work_dir: Path | None, *, warn: bool
) -> AuditReport:
    """Refuse to bake a role whose Ansible could reach anything but the builder."""
    report = audit_roles(
        role.ansible_roles,
        roles_path=project.content,
        root=project.root,
        work_dir=work_dir,
        exceptions=role.audit_exceptions,
        production_hosts=project.production_hosts,
        secret_vars=list(role.secrets),
    )
    for finding in report.warnings if warn else ():
        reporter.warning(role.name, str(finding))
    raise_for_findings(report, role.name)
    return report


def audit_rendered_playbook(
    project: Project, role: Role, playbook: Path, work_dir: Path
) -> AuditReport:
    """Audit the playbook kiln rendered for role, as it will run; its roles were audited."""
    report = audit_playbook(
        playbook,
        work_dir=work_dir,
        production_hosts=project.production_hosts,
        secret_vars=list(role.secrets),
    )
    raise_for_findings(report, role.name)
    return report
