"""The library calls behind kiln's tasks: everything a task does is one documented call here."""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from kiln import tools
from kiln.bake import Baker, open_registry
from kiln.docker import (
    recorded_image_present,
    run_command_line,
    start_instance,
    wait_until_booted,
)
from kiln.errors import DefinitionError, RegistryError
from kiln.fingerprint import FingerprintMemo
from kiln.guard import AuditReport, audit_playbook, audit_roles
from kiln.image_registry import ensure_local
from kiln.model import Project, Role
from kiln.registry import Version
from kiln.render import write_if_changed
from kiln.targets import get_target
from kiln.targets.base import BakePlan, playbook_text


def role_table(project: Project) -> list[dict[str, Any]]:
    """Every defined role and base, parents first."""
    return [
        {
            "name": node.name,
            "kind": "role" if isinstance(node, Role) else "base",
            "parent": node.parent.name if node.parent is not None else None,
            "ansible_roles": list(node.ansible_roles) if isinstance(node, Role) else [],
        }
        for node in project
    ]


def render_roles(
    project: Project,
    names: Sequence[str] | None = None,
    *,
    target: str = "docker",
    validate: bool = True,
) -> list[Path]:
    """Render roles' HCL and playbooks (parents need a recorded version) and packer-validate them.

    Rendering needs each parent's artifact, so a role whose parent was never baked is refused
    with a message saying to bake it first.
    """
    roles = [project.role_named(n) for n in names] if names else project.roles
    written: list[Path] = []
    with open_registry(project) as registry:
        baker = Baker(project, target=target, registry=registry)
        tgt = get_target(target)
        packer = tools.packer_version(project.state_path)  # 1.7+: the HCL pins its plugins
        memo = FingerprintMemo()
        for role in roles:
            fingerprints, _ = baker.fingerprints(role, memo)
            # A target that flattens the chain bakes on the base, as Baker.bake does.
            start = role.ancestry()[0] if tgt.flattens_chain() else role.parent
            parent = registry.latest(start.name, target=target)
            if parent is None and tgt.starts_from_recorded_parent():
                raise RegistryError(
                    f"cannot render {role.name}: its parent {start.name} has no recorded "
                    f"version on {target}; run `invoke bake {role.name}` first"
                )
            if not tgt.starts_from_recorded_parent():
                parent = None  # cloud: found by fingerprint tag
            plan = BakePlan(
                project,
                role,
                fingerprints[role.name],
                parent,
                tgt,
                baker.images,
                packer_version=packer,
            )
            files = tgt.render(plan)
            write_if_changed(files)
            if validate:
                tools.run(
                    [
                        tools.which("packer"),
                        "validate",
                        "-syntax-only",
                        plan.relative(plan.hcl_path),
                    ],
                    cwd=project.root,
                )
            written.append(plan.hcl_path)
    return written


def audit_role(project: Project, role: Role) -> AuditReport:
    """The guard's audit of what a bake of role runs: its Ansible roles and kiln's playbook.

    The same rules as before every bake, with the role's exceptions, the project's production
    hosts and its secret names; nothing is written and no Docker is needed.
    """
    options: dict[str, Any] = {
        "work_dir": project.state_path / "work" / role.name,
        "production_hosts": project.production_hosts,
        "secret_vars": list(role.secrets),
    }
    roles_report = audit_roles(
        role.ansible_roles,
        roles_path=project.content,
        root=project.root,
        exceptions=role.audit_exceptions,
        **options,
    )
    shown = f"{project.packer_path.name}/{role.name}.playbook.yml"
    with tempfile.TemporaryDirectory(prefix="kiln-audit-") as tmp:
        path = Path(tmp) / f"{role.name}.playbook.yml"
        path.write_text(playbook_text(project, role))
        own = audit_playbook(path, **options)
    # Findings of the generated playbook name the file a bake writes, not the temporary copy.
    findings = [replace(f, file=shown) for f in own.findings]
    return AuditReport(
        findings=(*roles_report.findings, *findings),
        roles=roles_report.roles,
        files=(*roles_report.files, shown),
    )


def audit_project(project: Project, names: Sequence[str] | None = None) -> dict[str, AuditReport]:
    """Audit the named roles (default: every role), by role name."""
    roles = [project.role_named(n) for n in names] if names else project.roles
    return {role.name: audit_role(project, role) for role in roles}


def boot_vm(
    project: Project,
    role: str,
    version: int | None,
    *,
    accel: str | None = None,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Boot a throwaway overlay of a role's VM image until Ctrl-C; the image never changes.

    announce gets each line for the user (by default printed at once, even into a pipe: the
    URL must reach whoever waits for it while the VM runs).
    """
    announce = announce or partial(print, flush=True)
    from kiln.targets.qemu import choose_accelerator
    from kiln.targets.qemu.machine import booted_vm, wait_for_http

    found = resolve_version(project, role, version, target="qemu")
    artifact = found.artifact("qemu")
    if artifact is None or artifact.deleted_at is not None:
        raise DefinitionError(f"{found.label} has no qcow2 image to boot")
    chosen = choose_accelerator(accel)
    announce(f"booting {found.label} ({artifact.ref}) under {chosen}; Ctrl-C stops it")
    with booted_vm(Path(artifact.ref), accel=chosen, forwards={80: 0}) as running:
        url = running.url(80)
        announce(f"  overlay: {running.overlay}")
        announce(f"  waiting for {url} ...")
        wait_for_http(url, timeout_s=900 if chosen == "tcg" else 180, running=running)
        announce(f"  {role} v{found.version} serves {url}")
        announce(
            f"  stop it: Ctrl-C here, or kill {running.pid} (the overlay is removed either way)"
        )
        try:
            while running.alive():
                time.sleep(1)
        except KeyboardInterrupt:
            announce("stopping the VM and removing its overlay")


def molecule_image(project: Project) -> str | None:
    """The image Molecule instances start from: the newest version of the first base."""
    bases = [node for node in project if node.parent is None]
    if not bases:
        return None
    with open_registry(project) as registry:
        newest = registry.latest(bases[0].name, target="docker")
    artifact = newest.artifact("docker") if newest is not None else None
    return artifact.ref if artifact is not None else None


def resolve_version(
    project: Project, role: str, version: int | None, *, target: str | None = None
) -> Version:
    """A recorded version of role: the given one, or the newest (on target, if given)."""
    project.get(role)
    with open_registry(project) as registry:
        found = registry.get(role, version) if version else registry.latest(role, target=target)
    if found is None:
        which = f"version {version}" if version else "any version"
        raise RegistryError(f"{role} has no recorded {which}; run `invoke bake {role}` first")
    return found


def run_instance(project: Project, role: str, version: int | None) -> tuple[str, str]:
    """Start one throwaway container of a role's image; returns its name and how to use it."""
    found = resolve_version(project, role, version)
    artifact = found.artifact("docker")
    if artifact is None or artifact.deleted_at is not None:
        raise DefinitionError(f"{found.label} has no docker image to run")
    with open_registry(project) as registry:
        ensure_local(registry, found, artifact)  # pulled by digest if pushed and missing here
    recorded_image_present(artifact, owner=found)  # ImageMoved: never start another image
    name = f"kiln-run-{role}-{found.version}-{uuid.uuid4().hex[:6]}"
    instance = start_instance(
        artifact.ref,
        name=name,
        labels={"kiln.purpose": "run", "kiln.role": role, "kiln.version": str(found.version)},
    )
    state = wait_until_booted(instance)
    return name, (
        f"started {name} from {artifact.ref} (systemd {state})\n"
        f"  reach it:  docker exec -it {name} bash\n"
        f'  the page:  docker exec {name} python3 -c "import urllib.request as u; '
        f"print(u.urlopen('http://127.0.0.1/').read().decode())\"\n"
        f"  stop it:   docker rm -f {name}\n"
        f"  (started as: {run_command_line(artifact.ref)})"
    )
