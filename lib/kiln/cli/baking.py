"""Tasks that make images from the definitions: bake, outdated, render, list, audit, deps.

Library imports stay inside the tasks: `invoke --list` must not pay for Packer, Ansible or the
registry (see bench/noop.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from kiln.cli.output import emit_json
from kiln.tasks import cli, project

if TYPE_CHECKING:
    from kiln.bake import BakeOptions
    from kiln.console import Reporter


@task(
    help={
        "role": "the role to bake, several as web,worker, or all (stale ancestors bake first)",
        "parallel": "bake up to N independent roles at once (default: the number of CPUs)",
        "force": "bake even if an identical version exists (and any image of the chain whose tag "
        "now names another image)",
        "target": "where to bake: docker (default) or qemu (a bootable qcow2)",
        "accel": "qemu only: kvm or tcg (default: probe whether KVM really boots a kernel)",
        "json": "print one JSON event per line",
        "verbose": "also print Packer's and Ansible's own output",
        "outdated": "rebake those of these roles (and roles built on them) that are outdated",
        "upstream": "with --outdated: rebake those with pending upstream (security) updates",
        "skip_tests": "record new versions as untested instead of running their acceptance tests",
        "check_idempotence": "run Ansible a second time in each builder; any change fails the bake",
    }
)
def bake(
    c: Context,
    role: str,
    parallel: int = 0,
    force: bool = False,
    target: str = "docker",
    accel: str = "",
    json: bool = False,
    verbose: bool = False,
    outdated: bool = False,
    upstream: bool = False,
    skip_tests: bool = False,
    check_idempotence: bool = False,
) -> None:
    """Bake roles' images (and stale parents) in dependency order, or report them up to date.

    `invoke bake web`, `invoke bake web,worker -p 2` or `invoke bake all`: invoke reads a second
    bare word as another task, so several roles are one comma-separated argument.
    """
    from kiln.bake import BakeOptions
    from kiln.console import make_reporter

    options = BakeOptions(skip_tests=skip_tests, check_idempotence=check_idempotence)
    with cli(), make_reporter(json_mode=json, verbose=verbose) as reporter:
        if upstream and not outdated:
            raise Exit(
                "kiln: --upstream goes with --outdated: `invoke bake all --outdated --upstream`"
            )
        if outdated:  # `invoke bake all --outdated`: every role `invoke outdated` lists
            rebake = _bake_upstream if upstream else _bake_outdated
            rebake(role, target=target, accel=accel, options=options, reporter=reporter)
            return
        _bake_roles(
            role,
            parallel=parallel,
            force=force,
            target=target,
            accel=accel,
            options=options,
            reporter=reporter,
        )


def _bake_outdated(
    role: str, *, target: str, accel: str, options: BakeOptions, reporter: Reporter
) -> None:
    """`bake --outdated`: rebake the outdated ones among role (a spec such as web,worker or all)."""
    from kiln import parallel as many
    from kiln.bake import Baker
    from kiln.cli.bake_text import print_bake_summary
    from kiln.lifecycle import bake_outdated

    wanted, everything = many.parse_role_spec(role, project())
    baker = Baker(
        project(),
        target=target,
        reporter=reporter,
        skip_tests=options.skip_tests,
        check_idempotence=options.check_idempotence,
        accel=accel or None,
    )
    baked = bake_outdated(
        baker,
        within=None if everything else wanted,
        on_bake=lambda _name, outcomes: print_bake_summary(reporter, outcomes),
    )
    if not baked:
        reporter.message(role, "nothing outdated; nothing baked")


def _bake_upstream(
    role: str, *, target: str, accel: str, options: BakeOptions, reporter: Reporter
) -> None:
    """`bake --outdated --upstream`: check, then rebake the images with pending updates among
    role (a spec such as web,worker or all) and every role built on them, parents first."""
    from kiln import parallel as many
    from kiln.bake import Baker, open_registry
    from kiln.cli.bake_text import print_bake_summary
    from kiln.lifecycle import bake_upstream, upstream_cache_dir, upstream_scope, upstream_updates

    wanted, everything = many.parse_role_spec(role, project())
    within = None if everything else wanted
    with open_registry(project()) as registry:
        report = upstream_updates(
            registry,
            cache_dir=upstream_cache_dir(),
            mirrors=project().package_sources.mirrors,
            roles=None if within is None else upstream_scope(project(), registry, within),
        )
        baker = Baker(
            project(),
            target=target,
            registry=registry,
            reporter=reporter,
            skip_tests=options.skip_tests,
            check_idempotence=options.check_idempotence,
            accel=accel or None,
        )
        for image in report.unchecked:
            reporter.warning(image.role, f"{image.label} was not checked: {image.unchecked}")
        rebake = bake_upstream(
            baker,
            report,
            within=within,
            on_bake=lambda _name, outcomes: print_bake_summary(reporter, outcomes),
        )
    for line in rebake.still_pending:
        reporter.warning(role, f"still pending after the rebake: {line}")
    if not rebake.bakes:
        reporter.message(role, "no pending upstream updates; nothing baked")


def _bake_roles(
    role: str,
    *,
    parallel: int,
    force: bool,
    target: str,
    accel: str,
    options: BakeOptions,
    reporter: Reporter,
) -> None:
    """Plain `bake`: the roles of the spec, independent ones in parallel, then one summary."""
    from kiln import parallel as many
    from kiln.cli.bake_text import report

    names, every = many.parse_role_spec(role, project())
    roles = many.select_roles(project(), names, all_roles=every)
    result = many.bake_many(
        project(),
        roles,
        jobs=parallel or None,
        force=force,
        target=target,
        accel=accel or None,
        reporter=reporter,
        options=options,
    )
    reporter.close()  # stop the live display: the summary below is plain lines
    report(reporter, result, roles)
    error = many.failure(result)
    if error is not None:
        raise error


@task(
    help={
        "bake": "rebake the outdated roles, parents first",
        "target": "where to rebake: docker (default)",
        "json": "print JSON",
        "upstream": "list images with pending upstream (security) updates instead; no bake",
        "role": "with --upstream: only these roles (web,worker; default: every recorded one)",
        "fail_on": "with --upstream: exit 3 on security (or any) pending updates, for schedules",
    },
)
def outdated(
    c: Context,
    bake: bool = False,
    target: str = "docker",
    json: bool = False,
    upstream: bool = False,
    role: str = "",
    fail_on: str = "",
) -> None:
    """List roles baked from a superseded or revoked parent, or with pending upstream updates."""
    from kiln import lifecycle
    from kiln.bake import Baker, open_registry
    from kiln.cli import lifecycle_text
    from kiln.cli.bake_text import print_bake_summary
    from kiln.console import Reporter

    if upstream:
        _outdated_upstream(role, json=json, fail_on=fail_on)
        return
    with cli(), open_registry(project()) as registry:
        found = lifecycle.outdated(registry)
        if json and not bake:
            emit_json([lifecycle_text.as_json(o) for o in found])
            return
        if not json:
            for o in found:
                print(f"{o.role} v{o.version}: {o.why}")
            if not found:
                print("nothing is outdated")
        if bake:
            reporter = Reporter(json_mode=json)
            baker = Baker(project(), target=target, registry=registry, reporter=reporter)
            lifecycle.bake_outdated(
                baker, on_bake=lambda _name, outcomes: print_bake_summary(reporter, outcomes)
            )


def _outdated_upstream(role: str, *, json: bool, fail_on: str) -> None:
    """`outdated --upstream`: every checked image and its pending updates; exit 3 per fail_on."""
    from kiln import lifecycle
    from kiln.bake import open_registry
    from kiln.cli import upstream_text
    from kiln.cli.output import print_lines

    with cli(), open_registry(project()) as registry:
        report = lifecycle.upstream_updates(
            registry,
            cache_dir=lifecycle.upstream_cache_dir(),
            mirrors=project().package_sources.mirrors,
            roles=[r for r in role.split(",") if r] or None,
        )
        if json:
            emit_json(upstream_text.as_json(report))
        else:
            print_lines(upstream_text.format_report(report))
        upstream_text.raise_for(report, fail_on)


@task(help={"role": "role to render (default: all)", "target": "target template to render"})
def render(c: Context, role: str = "", target: str = "docker") -> None:
    """Render roles to packer/<role>.pkr.hcl, check them and run packer validate."""
    from kiln.commands import render_roles

    with cli():
        for path in render_roles(project(), [role] if role else None, target=target):
            print(f"rendered {path.relative_to(project().root)}")


@task(name="list", help={"json": "print JSON"})
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


@task(
    # Invoke positionals are mandatory: `invoke audit` audits all, `-r web` one.
    positional=[],
    help={
        "role": "the role to audit (default: every role)",
        "json": "print the findings as JSON",
    },
)
def audit(c: Context, role: str | None = None, json: bool = False) -> None:
    """Audit roles' Ansible for anything that could reach the bake host or another host."""
    from kiln.cli.audit_text import audit_lines
    from kiln.commands import audit_project

    with cli():
        reports = audit_project(project(), [role] if role else None)
        errors = sum(len(r.errors) for r in reports.values())
        if json:
            emit_json({"ok": not errors, "roles": {k: r.to_json() for k, r in reports.items()}})
        else:
            print("\n".join(audit_lines(reports)))
        if errors:
            raise Exit(f"kiln: the guard refused {errors} finding(s); a bake would stop", 1)


@task(
    help={
        "server": "Galaxy server URL for entries that name no source of their own",
        "json": "print the lock entries as JSON",
    }
)
def deps(c: Context, server: str = "", json: bool = False) -> None:
    """Install requirements.yml into .kiln/galaxy and write requirements.lock."""
    from kiln.requirements import install

    with cli():
        result = install(project(), server=server)
        if json:
            emit_json([vars(entry) for entry in result.entries])
            return
        for e in result.entries:
            print(f"{e.type:<10} {e.name:<30} {e.version[:12] or '-':<12} {e.source}")
        if result.lock_path is None:
            print("no requirements.yml: removed installed requirements and requirements.lock")
            return
        count = len(result.entries)
        print(f"installed {count} in {result.seconds:.1f}s; wrote {result.lock_path.name}")


TASKS = (bake, outdated, render, list_roles, audit, deps)
