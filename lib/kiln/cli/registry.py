"""Tasks over where versions live, rather than the versions themselves: registry-copy, push."""

from __future__ import annotations

from invoke.context import Context
from invoke.tasks import task

from kiln.cli.output import emit_json
from kiln.tasks import cli, open_registry, project


@task(
    help={
        "to": "the empty registry to copy into: postgresql://... or sqlite:///PATH",
        "json": "print JSON",
    }
)
def registry_copy(c: Context, to: str, json: bool = False) -> None:
    """Copy this project's whole registry history into another, empty registry."""
    from kiln.registry import Registry
    from kiln.registry.copy import copy_history

    with cli():
        proj = project()
        with Registry(proj.registry_url) as source, Registry(to) as destination:
            copied = copy_history(source, destination)
            where = (source.location, destination.location)
        if json:
            emit_json({"from": where[0], "to": where[1], "rows": copied})
            return
        print(f"copied the registry {where[0]} into {where[1]}:")
        for table, count in copied.items():
            print(f"  {table:<12} {count}")
        print(f"point kiln at it with KILN_REGISTRY_URL={where[1]} (or Project(registry_url=...))")


@task(
    help={
        "role": "the role whose tested versions to push",
        "version": "only this version (default: every tested one not pushed yet)",
        "json": "print JSON",
    }
)
def push(c: Context, role: str, version: int = 0, json: bool = False) -> None:
    """Push a role's tested images that are not in the OCI registry yet (KILN_IMAGE_REGISTRY)."""
    from kiln.image_registry import push_role

    with cli():
        proj = project()
        proj.get(role)
        with open_registry() as registry:
            pushed = push_role(registry, role, proj.image_registry, version or None)
        if json:
            emit_json([p.as_dict() for p in pushed])
            return
        for p in pushed:
            print(f"pushed {p.role} v{p.version}: {p.reference}")
        if not pushed:
            print(f"every tested version of {role} is in {proj.image_registry} already")


TASKS = (registry_copy, push)
