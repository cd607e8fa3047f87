"""Tasks over the registry itself, rather than the versions in it: registry-copy."""

from __future__ import annotations

from invoke.context import Context
from invoke.tasks import task

from kiln.cli.output import emit_json
from kiln.tasks import cli, project


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


TASKS = (registry_copy,)
