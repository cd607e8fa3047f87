"""Turning a Packer run that went wrong into one actionable error: what failed, where, what next."""

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence
from pathlib import Path

from kiln.ansible_events import GuardEvent, InventoryEvent, TaskResult
from kiln.errors import BuildError, GuardError, Interrupted, PluginInitError, ProvisionError
from kiln.guard import check_single_host_inventory
from kiln.model import Role
from kiln.packer import PackerRun
from kiln.paths import relative_to
from kiln.redact import Redactor

NOTHING_RECORDED = "The builder was removed and no version was recorded."


def raise_for_run(
    role: Role,
    version: int,
    run: PackerRun,
    *,
    log_dir: Path,
    root: Path,
    redact: Redactor,
    check_idempotence: bool,
) -> None:
    """Raise the error of a run that must not be recorded: refused, failed or not idempotent."""
    refused = inventory_refusal(run, required=not (run.interrupted or run.returncode))
    if refused:
        raise GuardError(redact(f"bake of {role.name} v{version}: {refused}"))
    if run.interrupted or run.returncode != 0:
        raise failure(role, version, run, log_dir, root, redact)
    if check_idempotence:
        problem = idempotence_failure(role, version, run, log_dir, root, redact)
        if problem is not None:  # nothing is recorded: the image goes, like the builder
            raise problem


def inventory_refusal(run: PackerRun, *, required: bool) -> str | None:
    """Why Ansible's own report of its inventory does not prove it held only the builder.

    kiln's callback reports every inventory source (packer's temporary `-i` file) and the hosts
    Ansible parsed from it, and stops Ansible before its first task if they are not one host.
    """
    reports = [e for e in run.events if isinstance(e, InventoryEvent)]
    refused = [e for e in run.events if isinstance(e, GuardEvent)]
    if refused:
        return f"the guard stopped Ansible: {refused[0].message}"
    if not reports:
        if required:
            return (
                "Ansible did not report its inventory, so kiln cannot prove it held only the "
                "builder; no version was recorded (is the kiln_events callback enabled?)"
            )
        return None
    for event in reports:
        hosts = event.hosts or ()
        try:
            if len(hosts) != 1:
                raise GuardError(f"Ansible parsed {len(hosts)} host(s): {', '.join(hosts[:5])}")
            for source in event.sources:
                check_single_host_inventory(source.content)
        except GuardError as exc:
            return f"the inventory Ansible was given is not the builder alone: {exc}"
    return None


def write_failure(role: Role, version: int, exc: OSError, path: Path, root: Path) -> BuildError:
    """A write that failed during a bake, with errno's name (ENOSPC) so that it can be searched."""
    code = errno.errorcode.get(exc.errno or 0, "")
    reason = exc.strerror or str(exc)
    where = relative_to(str(exc.filename or path), root)
    advice = "Free some disk space and bake again. " if exc.errno == errno.ENOSPC else ""
    return BuildError(
        f"bake of {role.name} v{version} failed: cannot write {where}: {reason}"
        f"{f' ({code})' if code else ''}. {advice}{NOTHING_RECORDED}",
        role=role.name,
        version=version,
    )


def idempotence_failure(
    role: Role,
    version: int,
    run: PackerRun,
    log_dir: Path,
    root: Path,
    redact: Callable[[str], str] = str,
) -> ProvisionError | BuildError | None:
    """The error for a second Ansible pass that changed something (or never ran), else None."""
    second = [e for e in run.events if isinstance(e, TaskResult) and e.ansible_pass == "2"]
    if not second:
        return BuildError(
            f"bake of {role.name} v{version}: --check-idempotence found no second Ansible pass "
            "in the events (does this target's template render it?). No version was recorded.",
            role=role.name,
            version=version,
            log_dir=log_dir,
        )
    changed = [e for e in second if e.changed]
    if not changed:
        return None
    lines = []
    for event in changed:
        where = relative_to(event.path, root)
        owner = event.role
        # Masked before repr() escapes it: the task's name may hold a secret's value.
        task = redact(event.task.removeprefix(f"{owner} : "))  # Ansible's "role : name"
        lines.append(f"  {task!r} {task_owner(owner)} at {where}")
    return ProvisionError(
        f"bake of {role.name} v{version} is not idempotent: {len(changed)} task(s) reported "
        "changes in a second Ansible pass over the finished builder:\n"
        + "\n".join(lines)
        + "\nMake them report changes only when they make one (changed_when, creates, a module "
        "instead of a command). The image was deleted and no version was recorded.\n"
        f"Full logs: {relative_to(str(log_dir), root)}/ansible-events.jsonl",
        role=role.name,
        version=version,
        log_dir=log_dir,
    )


def task_owner(role: str | None) -> str:
    """Whose task it is: an Ansible role's, or the play kiln generated (its own first task)."""
    return f"of role {role}" if role else "of the play kiln generated"


def failure(
    role: Role, version: int, run: PackerRun, log_dir: Path, root: Path, redact: Redactor
) -> BuildError:
    """The error of an interrupted run, a failed Ansible task, or packer's own failure."""
    where = f"Full logs: {relative_to(str(log_dir), root)}/packer.log"
    if run.interrupted:
        return Interrupted(
            f"bake of {role.name} v{version} was interrupted. {NOTHING_RECORDED}\n{where}",
            role=role.name,
            version=version,
            log_dir=log_dir,
        )
    failed = run.failed_tasks
    if failed:
        event = failed[-1]
        parts = (event.msg, event.module_stderr, event.stderr, event.stdout)
        output = "\n".join(part for part in parts if part)
        lines = redact(output).splitlines()[-20:]
        body = "\n".join(f"    {line}" for line in lines)
        # Masked before repr() escapes it: the task's name may hold a secret's value.
        task = redact(event.task)
        return ProvisionError(
            f"bake of {role.name} v{version} failed: Ansible task {task!r} "
            f"{task_owner(event.role)} failed\n"
            f"  at {relative_to(event.path, root)}\n"
            f"  output (last {len(lines)} lines):\n{body}\n"
            f"{NOTHING_RECORDED}\n{where}",
            role=role.name,
            version=version,
            log_dir=log_dir,
        )
    errors = (
        "\n".join(f"    {redact(line)}" for line in run.errors[-20:]) or "    (no error output)"
    )
    return BuildError(
        f"bake of {role.name} v{version} failed: packer exited with {run.returncode}\n"
        f"{errors}\n{NOTHING_RECORDED}\n{where}",
        role=role.name,
        version=version,
        log_dir=log_dir,
    )


def init_failure(
    role: Role,
    version: int,
    run: PackerRun,
    *,
    plugins: Sequence[str],
    output: Sequence[str],
    log: Path,
    root: Path,
) -> BuildError:
    """The error of a `packer init` that was interrupted or failed; output is its last lines."""
    where = f"Full logs: {relative_to(str(log), root)}"
    nothing = "Nothing was built and no version was recorded."
    if run.interrupted:
        return Interrupted(
            f"bake of {role.name} v{version} was interrupted during packer init. {nothing}\n"
            f"{where}",
            role=role.name,
            version=version,
            log_dir=log.parent,
        )
    body = "\n".join(f"    {line}" for line in output[-20:]) or "    (no output)"
    return PluginInitError(
        f"bake of {role.name} v{version} failed: packer init exited with {run.returncode} "
        f"installing the plugins its HCL pins ({', '.join(plugins)}):\n{body}\n"
        "Packer downloads them (from GitHub; from releases.hashicorp.com since Packer 1.14): "
        "check that this machine reaches them (set PACKER_GITHUB_API_TOKEN if GitHub limits "
        "its rate), or install them by hand with `packer plugins install`. The pins are in "
        f"lib/kiln/packer_plugins.py. {nothing}\n{where}",
        plugins=plugins,
        role=role.name,
        version=version,
        log_dir=log.parent,
    )
