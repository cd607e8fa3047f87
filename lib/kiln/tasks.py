"""kiln's Invoke collection: thin verbs over the library. tasks.py hands it the project.

Each task parses its arguments, calls one library function, prints, and turns a KilnError into
``invoke.Exit`` with a non-zero code.
"""

from __future__ import annotations

import functools
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
from invoke.program import Program
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
        "role": "the role to bake, several as web,worker, or all (stale ancestors bake first)",
        "parallel": "bake up to N independent roles at once (default: the number of CPUs)",
        "force": "bake even if an identical version exists",
        "target": "where to bake: docker (default) or qemu (a bootable qcow2)",
        "accel": "qemu only: kvm or tcg (default: probe whether KVM really boots a kernel)",
        "json": "print one JSON event per line",
        "verbose": "also print Packer's and Ansible's own output",
        "outdated": "rebake those of these roles (and roles built on them) that are outdated",
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
    skip_tests: bool = False,
    check_idempotence: bool = False,
) -> None:
    """Bake roles' images (and stale parents) in dependency order, or report them up to date.

    `invoke bake web`, `invoke bake web,worker -p 2` or `invoke bake all`: invoke reads a second
    bare word as another task, so several roles are one comma-separated argument.
    """
    from kiln.bake import BakeOptions, Baker
    from kiln.cli.bake_text import print_bake_summary, report
    from kiln.console import make_reporter

    options = BakeOptions(skip_tests=skip_tests, check_idempotence=check_idempotence)
    with cli(), make_reporter(json_mode=json, verbose=verbose) as reporter:
        from kiln import parallel as many

        if outdated:  # `invoke bake all --outdated`: every role `invoke outdated` lists
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
            return

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
        reporter.close()
        report(reporter, result, roles)
        error = many.failure(result)
        if error is not None:
            raise error


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
    # Invoke positionals are mandatory: `invoke audit` audits all, `-r web` one.
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


# -- version lifecycle (kiln.lifecycle) ---------------------------------------------------------
def _version_number(text: str | int, what: str = "VERSION") -> int:
    try:
        number = int(str(text).removeprefix("v"))
    except ValueError:
        raise Exit(f"kiln: {what} must be a version number such as 3, not {text!r}", 2) from None
    if number < 1:
        raise Exit(f"kiln: {what} must be 1 or more, not {number}", 2)
    return number


def _print_lines(lines: list[str]) -> None:
    sys.stdout.write("\n".join(lines) + "\n")


def _warn(warnings: list[str]) -> None:
    for text in warnings:
        sys.stderr.write(f"kiln: WARNING: {text}\n")


@task(help={"role": "the role whose versions to list", "json": "print JSON"})
def history(c: Context, role: str, json: bool = False) -> None:
    """List every version of a role, newest first, with its channel log and deployments."""
    from kiln import lifecycle
    from kiln.bake import open_registry
    from kiln.cli import lifecycle_text

    with cli(), open_registry(project()) as registry:
        result = lifecycle.history(registry, role)
        if json:
            emit_json(lifecycle_text.as_json(result))
        else:
            _print_lines(lifecycle_text.format_history(result))


@task(
    # Invoke positionals are mandatory, so the version is a flag: show web -v 3.
    help={
        "role": "the role to show",
        "version": "the version to show (default: the newest)",
        "json": "print JSON",
    },
)
def show(c: Context, role: str, version: int = 0, json: bool = False) -> None:
    """Show one version: inputs, Ansible roles, ancestry, artifacts, packages, test runs."""
    from kiln import lifecycle
    from kiln.bake import open_registry
    from kiln.cli import lifecycle_text

    with cli(), open_registry(project()) as registry:
        details = lifecycle.show(registry, role, _version_number(version) if version else None)
        if json:
            emit_json(lifecycle_text.as_json(details))
        else:
            _print_lines(lifecycle_text.format_show(details))


@task(
    help={
        "role": "the role whose versions to compare",
        "a": "the older version",
        "b": "the newer version",
        "files": "compare the images' filesystems too (default; takes seconds)",
        "json": "print JSON",
    },
)
def diff(c: Context, role: str, a: str, b: str, files: bool = True, json: bool = False) -> None:
    """Compare two versions: packages, inputs, and files in the image."""
    from kiln import lifecycle
    from kiln.bake import open_registry
    from kiln.cli import lifecycle_text

    with cli(), open_registry(project()) as registry:
        result = lifecycle.diff(
            registry, role, _version_number(a, "A"), _version_number(b, "B"), files=files
        )
        if json:
            emit_json(lifecycle_text.as_json(result))
        else:
            _print_lines(lifecycle_text.format_diff(result))


@task(
    help={
        "role": "the role to promote",
        "version": "the version to point the channel at",
        "channel": "the channel to move (dev, staging, prod...)",
        "force": "promote a version that is not tested (needs --reason)",
        "reason": "why; recorded in the channel's audit log",
        "json": "print JSON",
    },
)
def promote(
    c: Context,
    role: str,
    version: str,
    channel: str = "",
    force: bool = False,
    reason: str = "",
    json: bool = False,
) -> None:
    """Point a channel at a tested version of a role."""
    from kiln import lifecycle
    from kiln.bake import open_registry
    from kiln.cli import lifecycle_text

    if not channel:
        raise Exit("kiln: promote needs --channel NAME (for example --channel prod)", 2)
    with cli(), open_registry(project()) as registry:
        change = lifecycle.promote(
            registry,
            role,
            _version_number(version),
            channel=channel,
            force=force,
            reason=reason or None,
        )
        if json:
            emit_json(lifecycle_text.as_json(change))
        else:
            print(lifecycle_text.format_change(change))


@task(
    help={
        "role": "the role whose channel to roll back",
        "channel": "the channel to move back to the version it held before",
        "reason": "why; recorded in the channel's audit log",
        "json": "print JSON",
    },
)
def rollback(
    c: Context, role: str, channel: str = "", reason: str = "", json: bool = False
) -> None:
    """Move a channel back to its previous version, skipping revoked and failed ones."""
    from kiln import lifecycle
    from kiln.bake import open_registry
    from kiln.cli import lifecycle_text

    if not channel:
        raise Exit("kiln: rollback needs --channel NAME (for example --channel prod)", 2)
    with cli(), open_registry(project()) as registry:
        change = lifecycle.rollback(registry, role, channel=channel, reason=reason or None)
        if json:
            emit_json(lifecycle_text.as_json(change))
        else:
            print(lifecycle_text.format_change(change))


@task(help={"role": "the role whose channels to list", "json": "print JSON"})
def channels(c: Context, role: str, json: bool = False) -> None:
    """List a role's channels and the version each points at."""
    from kiln import lifecycle
    from kiln.bake import open_registry
    from kiln.cli import lifecycle_text

    with cli(), open_registry(project()) as registry:
        states = lifecycle.channels(registry, role)
        if json:
            emit_json([lifecycle_text.as_json(s) for s in states])
            return
        if not states:
            print(f"{role} has no channels; point one with `invoke promote {role} N --channel dev`")
        for s in states:
            where = f"v{s.version} ({s.status})" if s.version is not None else "EMPTY"
            print(f"{s.channel:<12} {where:<24} since {s.updated_at}")


@task(
    help={
        "role": "the role of the version to revoke",
        "version": "the version to revoke",
        "reason": "why (required); recorded with the version",
        "json": "print JSON",
    },
)
def revoke(c: Context, role: str, version: str, reason: str = "", json: bool = False) -> None:
    """Revoke a version: move channels off it and flag versions baked from it."""
    from kiln import lifecycle
    from kiln.bake import open_registry
    from kiln.cli import lifecycle_text

    with cli(), open_registry(project()) as registry:
        result = lifecycle.revoke(registry, role, _version_number(version), reason=reason)
        if json:
            emit_json(lifecycle_text.as_json(result))
        else:
            print(f"{role} v{result.version} revoked: {result.reason}")
            for change in result.moved:
                print("  " + lifecycle_text.format_change(change))
            for child_role, child_version in result.descendants:
                print(f"  {child_role} v{child_version} is now built on a revoked parent")
        _warn(result.warnings)


@task(
    help={
        "keep": "how many of the newest versions of each role to keep (default 3)",
        "dry_run": "only list what would be deleted",
        "json": "print JSON",
    },
)
def gc(c: Context, keep: int = 3, dry_run: bool = False, json: bool = False) -> None:
    """Delete old artifacts no channel needs; their records stay in the registry."""
    from kiln import lifecycle
    from kiln.bake import open_registry
    from kiln.cli import lifecycle_text

    with cli(), open_registry(project()) as registry:
        result = lifecycle.gc(registry, keep=keep, dry_run=dry_run)
        if json:
            emit_json(lifecycle_text.as_json(result))
            return
        verb = "would delete" if dry_run else "deleted"
        for item in result.deleted:
            print(f"{verb} {item.role} v{item.version} {item.target} {item.ref}")
        for item in result.kept:
            print(f"kept    {item.role} v{item.version} {item.target} {item.ref} ({item.why})")
        for item in result.failed:
            print(f"FAILED  {item.role} v{item.version} {item.target} {item.ref}: {item.why}")
        print(f"{verb} {len(result.deleted)}, kept {len(result.kept)}, failed {len(result.failed)}")
        if result.failed:
            raise Exit("kiln: gc could not delete every artifact (see FAILED above)", 1)


@task(
    help={
        "bake": "rebake the outdated roles, parents first",
        "target": "where to rebake: docker (default)",
        "json": "print JSON",
    },
)
def outdated(c: Context, bake: bool = False, target: str = "docker", json: bool = False) -> None:
    """List roles whose newest version was baked from a superseded or revoked parent."""
    from kiln import lifecycle
    from kiln.bake import Baker, open_registry
    from kiln.cli import lifecycle_text
    from kiln.cli.bake_text import print_bake_summary
    from kiln.console import Reporter

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


LIFECYCLE_TASKS = (history, show, diff, promote, rollback, channels, revoke, gc, outdated)


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


@task(
    # Invoke positionals are mandatory, so the version is a flag: test web -v 3.
    help={
        "role": "the role (or base) whose version to test",
        "version": "the version to test (default: the newest)",
        "json": "print the result as JSON",
    },
)
def test(c: Context, role: str, version: int = 0, json: bool = False) -> None:
    """Rerun the acceptance tests of a recorded version and set its status from the verdict."""
    from kiln.acceptance import retest
    from kiln.bake import open_registry
    from kiln.console import Reporter

    with cli(), open_registry(project()) as registry:
        reporter = Reporter(sys.stderr if json else sys.stdout)
        tested, result = retest(
            project(),
            registry,
            role,
            _version_number(version) if version else None,
            reporter=reporter,
            raise_on_failure=not json,
        )
        if json:
            emit_json({**result.as_dict(), "status": tested.status})
            if not result.passed:
                raise Exit(f"kiln: {tested.label} failed its acceptance tests", 1)
        else:
            print(f"{tested.label} {tested.status}: {result.summary} ({result.duration_s:.1f}s)")


test.__test__ = False  # an invoke task, not a pytest test


@task(help={"output": "where to write the page (default: .kiln/report/index.html)"})
def report(c: Context, output: str = "") -> None:
    """Write a self-contained HTML report of every role, version, test and package change."""
    from kiln.bake import open_registry
    from kiln.report import write_report

    with cli(), open_registry(project()) as registry:
        path = write_report(project(), registry, Path(output) if output else None)
        print(f"wrote {path}")


@task(
    help={
        "role": "the Ansible role to test (a directory in a roles path), or all",
        "scenario": "a Molecule scenario the role ships (roles/<role>/molecule/<scenario>/); "
        "default: kiln's own molecule/<role>/ if any, else the role's 'default'",
    },
)
def test_role(c: Context, role: str, scenario: str = "") -> None:
    """Run a role's Molecule scenario (kiln's own or the role's), offline; or of all roles."""
    from kiln.commands import molecule_image
    from kiln.roletest import RoleTestReport, test_all_roles
    from kiln.roletest import test_role as run_scenario

    def show(report: RoleTestReport) -> None:
        outcome = "passed" if report.passed else f"FAILED at {report.failed_step or '?'}"
        print(f"{report.label}: molecule test {outcome} in {report.duration_s:.0f}s")
        for note in report.adaptation:
            print(f"  adapted: {note}")

    with cli():
        proj = project()
        image = molecule_image(proj)
        paths = proj.roles_paths
        if role == "all":  # Invoke positionals are mandatory, so `all` stands for every role
            if scenario:
                raise Exit("--scenario names one role's scenario; it cannot be used with all", 2)
            reports = test_all_roles(
                project_root=proj.root,
                image=image,
                roles_paths=paths,
                discover_in=proj.own_roles_paths,  # not the installed requirements
                on_report=show,
            )
            print(f"{len(reports)} scenario(s) passed")
            return
        report = run_scenario(
            role, project_root=proj.root, image=image, scenario=scenario or None, roles_paths=paths
        )
        show(report)


@task(help={"name": "the new Ansible role (lowercase letters, digits, underscores)"})
def new_role(c: Context, name: str) -> None:
    """Scaffold an Ansible role in roles/ and its passing Molecule scenario in molecule/."""
    from kiln.roletest import new_role as scaffold

    with cli():
        for path in scaffold(name, project_root=project().root):
            print(f"created {path.relative_to(project().root)}")


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


def collection(proj: Project) -> Collection:
    """The Invoke collection for proj; tasks.py sets ``ns = collection(project)``."""
    _state["project"] = proj
    ns = Collection()
    for item in (audit, bake, boot, deps, render, report, run, test, test_role, new_role):
        ns.add_task(item)
    ns.add_task(list_roles, name="list")
    for item in (deploy, servers, drift):
        ns.add_task(item)
    for item in LIFECYCLE_TASKS:
        ns.add_task(item)
    for name in ns.task_names:
        _answer_help_in_positionals(ns, name)
    return ns


_HELP_WORDS = frozenset({"--help", "-h"})


def _answer_help_in_positionals(ns: Collection, name: str) -> None:
    """`invoke show --help`: invoke hands `--help` to a task's missing positional as its value,
    so the task itself answers with invoke's own help for it instead of reading it as a role."""
    item = ns[name]
    body = getattr(item.body, "__wrapped__", item.body)

    @functools.wraps(body)
    def answer_help_first(c: Context, *args: Any, **kwargs: Any) -> Any:
        given = [*args, *(kwargs.get(arg) for arg in item.positional)]
        if any(isinstance(value, str) and value in _HELP_WORDS for value in given):
            Program(namespace=ns, binary="invoke").run(["invoke", "--help", name], exit=False)
            return None
        return body(c, *args, **kwargs)

    if item.positional:
        item.body = answer_help_first
