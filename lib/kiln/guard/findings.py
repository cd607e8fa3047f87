"""The audit's findings: the rules, task exceptions, the report, and how findings are recorded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from kiln.errors import DefinitionError, GuardError
from kiln.guard.arguments import _TEMPLATED_RE
from kiln.guard.rule import Rule, Severity

#: Each rule's name and what it catches (Rule owns them; this is the plain mapping).
RULES: Mapping[str, str] = {rule.value: rule.description for rule in Rule}


@dataclass(frozen=True)
class Finding:
    """One thing the audit found: where, which rule, which task, and what to do about it."""

    file: str
    line: int | None
    rule: Rule
    task: str
    message: str
    ansible_role: str = ""
    reason: str | None = None  # set when a TaskException allows the finding

    def __post_init__(self) -> None:
        object.__setattr__(self, "rule", Rule(self.rule))  # a rule's plain name is accepted too

    @property
    def severity(self) -> Severity:
        return self.rule.severity

    @property
    def allowed(self) -> bool:
        return self.reason is not None

    @property
    def status(self) -> str:
        return "allowed" if self.allowed else str(self.severity)

    @property
    def location(self) -> str:
        return self.file if self.line is None else f"{self.file}:{self.line}"

    def __str__(self) -> str:
        """`file:line [rule] task: message`, as every listing of findings shows one."""
        return f"{self.location} [{self.rule}] {self.task or '-'}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "rule": self.rule,
            "task": self.task,
            "message": self.message,
            "ansible_role": self.ansible_role,
            "severity": str(self.severity),
            "allowed": self.allowed,
            "reason": self.reason,
        }


class ExceptionLike(Protocol):
    """Anything shaped like a TaskException (the role definition may carry its own class)."""

    @property
    def ansible_role(self) -> str: ...
    @property
    def task(self) -> str: ...
    @property
    def rule(self) -> str: ...
    @property
    def reason(self) -> str: ...


@dataclass(frozen=True)
class TaskException:
    """Allows one task of one Ansible role to break one rule; the reason is recorded per version."""

    ansible_role: str
    task: str
    rule: str
    reason: str

    def __post_init__(self) -> None:
        _validate_exception(self)


def _validate_exception(exc: ExceptionLike) -> None:
    where = f"the exception for task {exc.task!r} of Ansible role {exc.ansible_role!r}"
    if not exc.ansible_role.strip() or not exc.task.strip():
        raise DefinitionError(f"{where} needs both an Ansible role and a task name")
    if exc.rule not in RULES or not Rule(exc.rule).exceptable:
        allowed = ", ".join(rule for rule in Rule if rule.exceptable)
        raise DefinitionError(f"{where} names rule {exc.rule!r}; rules it can allow: {allowed}")
    if not exc.reason.strip():
        raise DefinitionError(f"{where} needs a reason: say why the task is safe")


@dataclass(frozen=True)
class AuditReport:
    """Every finding of one audit, plus the roles and files it read."""

    findings: tuple[Finding, ...]
    roles: tuple[str, ...] = ()
    files: tuple[str, ...] = ()

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if not f.allowed and f.severity is Severity.ERROR)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if not f.allowed and f.severity is Severity.WARNING)

    @property
    def allowed(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.allowed)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "roles": list(self.roles),
            "files": list(self.files),
            "counts": {
                "errors": len(self.errors),
                "warnings": len(self.warnings),
                "allowed": len(self.allowed),
            },
            "findings": [f.to_json() for f in self.findings],
        }


def raise_for_findings(report: AuditReport, role_name: str) -> None:
    """Raise GuardError listing every error finding of ``report``, with how to allow a task."""
    errors = report.errors
    if not errors:
        return
    lines = [
        f"role {role_name}: the guard refused {len(errors)} Ansible finding(s) "
        "that could reach a host other than the builder:"
    ]
    lines += [f"  {finding}" for finding in errors]
    example = next((f for f in errors if f.rule.exceptable and f.ansible_role), None)
    if example is None:
        lines.append(
            "Fix the files above: kiln could not audit them, so no exception can allow them."
        )
    else:
        lines.append(
            "If a task is safe, allow it in the role definition with a reason, for example "
            f"TaskException(ansible_role={example.ansible_role!r}, task={example.task!r}, "
            f"rule={example.rule.value!r}, reason='why this cannot reach another host')."
        )
    raise GuardError("\n".join(lines))


# --- recording findings during an audit ----------------------------------------------------


@dataclass(frozen=True)
class _Where:
    """The place a finding points at: file as displayed, line, task name and Ansible role."""

    file: str
    line: int | None
    task: str
    role: str


class _Recorder:
    """Collects one audit's findings; shows paths relative to the first root that holds them."""

    def __init__(self, roots: Sequence[Path]) -> None:
        self._roots = tuple(roots)
        self.findings: list[Finding] = []

    def add(self, where: _Where, rule: Rule, message: str) -> None:
        self.findings.append(Finding(where.file, where.line, rule, where.task, message, where.role))

    def static_name(
        self, where: _Where, value: object, *, missing: str, templated: str
    ) -> str | None:
        """value stripped, when it names a file or role kiln can follow; otherwise None, and the
        finding that says why: `missing` (no name at all) or `templated` (a Jinja expression)."""
        if not isinstance(value, str) or not value.strip():
            self.add(where, Rule.YAML_ERROR, missing)
            return None
        if _TEMPLATED_RE.search(value):
            self.add(where, Rule.DYNAMIC_INCLUDE, templated)
            return None
        return value.strip()

    def display(self, path: Path) -> str:
        for root in self._roots:
            try:
                return path.relative_to(root).as_posix()
            except ValueError:
                continue
        return str(path)


def _apply_exceptions(
    findings: Sequence[Finding], exceptions: Sequence[ExceptionLike]
) -> tuple[list[Finding], list[ExceptionLike]]:
    """Each distinct finding, with the reason of the first exception that allows it; and the
    exceptions that allowed none."""
    used: set[int] = set()
    allowed: list[Finding] = []
    for f in dict.fromkeys(findings):  # one finding per place, rule and task, in order
        for i, exc in enumerate(exceptions):
            if (exc.ansible_role, exc.task, exc.rule) == (f.ansible_role, f.task, f.rule):
                used.add(i)
                f = replace(f, reason=exc.reason.strip())
                break
        allowed.append(f)
    return allowed, [exc for i, exc in enumerate(exceptions) if i not in used]


def _unused_exception(exc: ExceptionLike, where: str) -> Finding:
    return Finding(
        where,
        None,
        Rule.UNUSED_EXCEPTION,
        exc.task,
        f"the exception for rule {exc.rule} matched no task named {exc.task!r} in "
        f"Ansible role {exc.ansible_role}: remove it, or fix the task name",
        exc.ansible_role,
    )
