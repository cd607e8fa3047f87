"""kiln's Invoke collection: thin verbs over the library. tasks.py hands it the project.

Each task parses its arguments, calls one library function, prints, and turns a KilnError into
``invoke.Exit`` with a non-zero code.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from kiln.errors import KilnError
from kiln.model import Project

_state: dict[str, Project] = {}


def project() -> Project:
    try:
        return _state["project"]
    except KeyError:
        raise Exit("tasks.py must call kiln.tasks.collection(project)", 2) from None


def _raise_interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


@contextmanager
def cli() -> Iterator[None]:
    """Errors a user can act on become one message and a non-zero exit, never a traceback."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    except KilnError as exc:
        raise Exit(f"kiln: {exc}", exc.exit_code) from None
    except KeyboardInterrupt:
        raise Exit("kiln: interrupted", 130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


@task(
    help={
        "role": "the role to bake (its stale ancestors are baked first)",
        "force": "bake even if an identical version exists",
        "target": "where to bake: docker (default)",
        "json": "print one JSON event per line",
        "verbose": "also print Packer's and Ansible's own output",
    }
)
def bake(
    c: Context,
    role: str,
    force: bool = False,
    target: str = "docker",
    json: bool = False,
    verbose: bool = False,
) -> None:
    """Bake a role's image (and stale parents), or report that it is up to date."""
    from kiln.bake import Baker
    from kiln.commands import print_bake_summary
    from kiln.console import Reporter

    with cli():
        reporter = Reporter(json_mode=json, verbose=verbose)
        outcomes = Baker(project(), target=target, reporter=reporter).bake(role, force=force)
        print_bake_summary(reporter, outcomes)


@task(help={"role": "role to render (default: all)", "target": "target template to render"})
def render(c: Context, role: str = "", target: str = "docker") -> None:
    """Render roles to packer/<role>.pkr.hcl, check them and run packer validate."""
    from kiln.commands import render_roles

    with cli():
        for path in render_roles(project(), [role] if role else None, target=target):
            print(f"rendered {path.relative_to(project().root)}")


@task(help={"json": "print JSON"})
def list_roles(c: Context, json: bool = False) -> None:
    """List the defined roles with their parents and Ansible roles."""
    from kiln.commands import role_table

    with cli():
        rows = role_table(project())
        if json:
            emit_json(rows)
            return
        for row in rows:
            print(
                f"{row['name']:<20} parent={row['parent'] or '-':<20} "
                f"ansible={','.join(row['ansible_roles']) or '-'}"
            )


@task(help={"role": "role to run", "version": "version to run (default: newest)"})
def run(c: Context, role: str, version: int = 0) -> None:
    """Start one throwaway instance of a role's image and print how to reach and stop it."""
    from kiln.commands import run_instance

    with cli():
        _instance, how = run_instance(project(), role, version or None)
        print(how)


def collection(proj: Project) -> Collection:
    """The Invoke collection for proj; tasks.py sets ``ns = collection(project)``."""
    _state["project"] = proj
    ns = Collection()
    for item in (bake, render, run):
        ns.add_task(item)
    ns.add_task(list_roles, name="list")
    return ns
