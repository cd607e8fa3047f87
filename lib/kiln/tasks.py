"""kiln's Invoke collection: thin verbs over the library. tasks.py hands it the project.

Each task parses its arguments, calls one library function, prints, and turns a KilnError into
``invoke.Exit`` with a non-zero code.
"""

from __future__ import annotations

import json
import signal
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
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


def _excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    """tasks.py defines roles as invoke loads it, outside any task: its errors get one line too."""
    if not isinstance(exc, KilnError):
        _previous_excepthook(kind, exc, tb)
        return
    # The innermost frame outside kiln is the line of tasks.py that made the bad definition.
    where = ""
    for frame, line in traceback.walk_tb(tb):
        path = Path(frame.f_code.co_filename)
        if _PACKAGE not in path.parents and not frame.f_code.co_filename.startswith("<"):
            where = f"{path.name}:{line}: "
    sys.stderr.write(f"kiln: {where}{exc}\n")


_PACKAGE = Path(__file__).resolve().parent
_previous_excepthook = sys.excepthook
sys.excepthook = _excepthook


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


@task(
    help={
        "role": "the role whose servers are replaced",
        "channel": "the channel whose version they run (e.g. prod)",
        "replicas": "how many instances run afterwards (default 1)",
        "strategy": "rolling (default: one at a time) or blue-green (all new ones first)",
        "port": "publish port 80 of the instances on 127.0.0.1:PORT and up (default: none)",
        "recreate": "replace the instances even if they already run that version",
        "json": "print the result as JSON (progress goes to stderr)",
    }
)
def deploy(
    c: Context,
    role: str,
    channel: str,
    replicas: int = 1,
    strategy: str = "rolling",
    port: int = 0,
    recreate: bool = False,
    json: bool = False,
) -> None:
    """Replace a role's servers with new instances of a channel's version; never patch them."""
    from kiln.console import Reporter
    from kiln.deploy import deploy as deploy_role

    with cli():
        reporter = Reporter(sys.stderr if json else sys.stdout)
        result = deploy_role(
            project(), role, channel=channel, replicas=replicas, strategy=strategy,
            port=port or None, recreate=recreate, log=lambda line: reporter.message(role, line),
        )  # fmt: skip
        if json:
            emit_json(result.to_dict())


@task(
    # Invoke has no optional positional arguments: `invoke servers` lists all, `-r web` one.
    positional=[],
    help={"role": "only this role's servers (default: every role)", "json": "print JSON"},
)
def servers(c: Context, role: str | None = None, json: bool = False) -> None:
    """List deployed servers: version, channel, age, health, and whether the version is current."""
    from kiln.deploy import server_table
    from kiln.deploy import servers as list_servers

    with cli():
        statuses = list_servers(project(), role)
        if json:
            emit_json([s.to_dict() for s in statuses])
        elif statuses:
            print("\n".join(server_table(statuses)))
        else:
            print(f"no servers of {role or 'any role'} are deployed")


@task(
    positional=[],
    help={"role": "only this role's servers (default: every role)", "json": "print JSON"},
)
def drift(c: Context, role: str | None = None, json: bool = False) -> None:
    """Report servers whose files changed since they started, or whose version no channel names."""
    from kiln.deploy import drift as find_drift
    from kiln.deploy import drift_lines

    with cli():
        report = find_drift(project(), role)
        drifted = [item for item in report if item.drifted]
        if json:
            emit_json([item.to_dict() for item in report])
        elif drifted:
            print("\n".join(drift_lines(report)))
        else:
            print(f"no drift: {len(report)} server(s) run their image unchanged")
        if drifted:
            raise Exit(
                f"kiln: {len(drifted)} of {len(report)} server(s) drifted; servers are replaced, "
                f"never patched: redeploy, e.g. `{drifted[0].remedy}`",
                1,
            )


@task(
    # Invoke has no optional positional arguments: `invoke audit` audits all, `-r web` one.
    positional=[],
    help={
        "role": "the role to audit (default: every role)",
        "json": "print the findings as JSON",
    },
)
def audit(c: Context, role: str | None = None, json: bool = False) -> None:
    """Audit roles' Ansible for anything that could reach a host other than the builder."""
    from kiln.commands import audit_lines, audit_project

    with cli():
        reports = audit_project(project(), [role] if role else None)
        errors = sum(len(r.errors) for r in reports.values())
        if json:
            emit_json({"ok": not errors, "roles": {k: r.to_json() for k, r in reports.items()}})
        else:
            print("\n".join(audit_lines(reports)))
        if errors:
            raise Exit(f"kiln: the guard refused {errors} finding(s); a bake would stop", 1)


def collection(proj: Project) -> Collection:
    """The Invoke collection for proj; tasks.py sets ``ns = collection(project)``."""
    _state["project"] = proj
    ns = Collection()
    for item in (audit, bake, render, run):
        ns.add_task(item)
    ns.add_task(list_roles, name="list")
    for item in (deploy, servers, drift):
        ns.add_task(item)
    return ns
