"""Tasks that run images: deploy (replace a role's servers), servers, drift, run, boot."""

from __future__ import annotations

import sys

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from kiln.cli.output import emit_json
from kiln.tasks import cli, project


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
            project(),
            role,
            channel=channel,
            replicas=replicas,
            strategy=strategy,
            port=port or None,
            recreate=recreate,
            log=lambda line: reporter.message(role, line),
        )
        if json:
            emit_json(result.to_dict())


@task(
    # Invoke positionals are mandatory: `invoke servers` lists all, `-r web` one.
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


@task(help={"role": "role to run", "version": "version to run (default: newest)"})
def run(c: Context, role: str, version: int = 0) -> None:
    """Start one throwaway instance of a role's image and print how to reach and stop it."""
    from kiln.commands import run_instance

    with cli():
        _instance, how = run_instance(project(), role, version or None)
        print(how)


@task(
    help={
        "role": "the role whose VM image to boot",
        "version": "the version to boot (default: the newest qemu version)",
        "accel": "kvm or tcg (default: probe whether KVM really boots a kernel)",
    }
)
def boot(c: Context, role: str, version: int = 0, accel: str = "") -> None:
    """Boot a throwaway overlay of a role's qcow2 with its web port on 127.0.0.1."""
    from kiln.commands import boot_vm

    with cli():
        boot_vm(project(), role, version or None, accel=accel or None)


TASKS = (deploy, servers, drift, run, boot)
