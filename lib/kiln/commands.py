"""The library calls behind kiln's tasks: everything a task does is one documented call here."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kiln import tools
from kiln.bake import BakeOutcome, Baker, open_registry
from kiln.console import Reporter
from kiln.errors import DefinitionError, RegistryError
from kiln.model import Project, Role
from kiln.registry import Version
from kiln.render import write_if_changed
from kiln.targets import get_target
from kiln.targets.base import BakePlan
from kiln.targets.docker import run_command_line, start_instance, wait_until_booted


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
        for role in roles:
            fingerprints, _ = baker.fingerprints(role)
            parent = registry.latest(role.parent.name, target=target)
            if parent is None:
                raise RegistryError(
                    f"cannot render {role.name}: its parent {role.parent.name} has no recorded "
                    f"version on {target}; run `invoke bake {role.name}` first"
                )
            plan = BakePlan(project, role, fingerprints[role.name], parent, target)
            files = tgt.render(plan)
            write_if_changed(files)
            if validate:
                tools.run(
                    [tools.which("packer"), "validate", "-syntax-only",
                     plan.relative(plan.hcl_path)], cwd=project.root,
                )  # fmt: skip
            written.append(plan.hcl_path)
    return written


def resolve_version(project: Project, role: str, version: int | None) -> Version:
    """A recorded version of role: the given one, or the newest."""
    project.get(role)
    with open_registry(project) as registry:
        found = registry.get(role, version) if version else registry.latest(role)
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
    name = f"kiln-run-{role}-{found.version}-{uuid.uuid4().hex[:6]}"
    instance = start_instance(
        artifact.ref, name=name,
        labels={"kiln.purpose": "run", "kiln.role": role, "kiln.version": str(found.version)},
    )  # fmt: skip
    state = wait_until_booted(instance)
    return name, (
        f"started {name} from {artifact.ref} (systemd {state})\n"
        f"  reach it:  docker exec -it {name} bash\n"
        f'  the page:  docker exec {name} python3 -c "import urllib.request as u; '
        f"print(u.urlopen('http://127.0.0.1/').read().decode())\"\n"
        f"  stop it:   docker rm -f {name}\n"
        f"  (started as: {run_command_line(artifact.ref)})"
    )


def print_bake_summary(reporter: Reporter, outcomes: list[BakeOutcome]) -> None:
    """The closing lines of a bake: what was baked or reused, and the time per phase."""
    leaf = outcomes[-1]
    version = leaf.version
    artifact = version.artifacts[0] if version.artifacts else None
    size = f"{artifact.size_bytes / 1e6:.1f} MB" if artifact and artifact.size_bytes else "-"
    chain = ", ".join(
        f"{o.version.role} v{o.version.version} ({'baked' if o.baked else 'cached'})"
        for o in outcomes
    )
    lines = [
        ("version", f"{version.role} v{version.version} ({version.status})"),
        ("fingerprint", version.fingerprint[:12]),
        (
            "parent",
            f"{version.parent_role} v{version.parent_version}" if version.parent_role else "-",
        ),
        ("artifact", f"{artifact.ref} {artifact.image_id[:19]}" if artifact else "-"),
        ("size", size),
        ("chain", chain),
    ]
    for outcome in outcomes:
        if outcome.baked:
            phases = ", ".join(f"{k} {v:.1f}s" for k, v in outcome.timings.items())
            lines.append((f"{outcome.version.role} time", phases))
    reporter.summary(version.role, lines, outcomes=[
        {"role": o.version.role, "version": o.version.version, "baked": o.baked,
         "fingerprint": o.version.fingerprint, "timings": dict(o.timings)} for o in outcomes
    ])  # fmt: skip
