"""`invoke audit` as text: each role's counts, then its findings, errors first."""

from __future__ import annotations

from kiln.guard import AuditReport, Finding


def audit_lines(reports: dict[str, AuditReport]) -> list[str]:
    """Findings as `file:line [rule] task: message`, errors first; allowed ones with reasons."""
    lines: list[str] = []
    order = {"error": 0, "warning": 1, "allowed": 2}
    for name, report in reports.items():
        lines.append(
            f"{name}: {len(report.errors)} error(s), {len(report.warnings)} warning(s), "
            f"{len(report.allowed)} allowed ({len(report.roles)} Ansible role(s), "
            f"{len(report.files)} file(s): {', '.join(report.roles)})"
        )
        for finding in sorted(report.findings, key=lambda f: order[f.status]):
            lines.append(f"  {finding.status:<8} {_finding_line(finding)}")
    return lines


def _finding_line(finding: Finding) -> str:
    return str(finding) if finding.reason is None else f"{finding} (allowed: {finding.reason})"
