"""Tasks over recorded versions (kiln.lifecycle): history, show, diff, channels and the moves
between them (promote, rollback, revoke), gc, test, report, sbom."""

from __future__ import annotations

import sys
from pathlib import Path

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from kiln.cli.output import emit_json, print_lines, warn
from kiln.tasks import cli, open_registry, project


def _version_number(text: str | int, what: str = "VERSION") -> int:
    """A version as typed (3 or v3); bad input is a usage error (exit 2), not a KilnError."""
    try:
        number = int(str(text).removeprefix("v"))
    except ValueError:
        raise Exit(f"kiln: {what} must be a version number such as 3, not {text!r}", 2) from None
    if number < 1:
        raise Exit(f"kiln: {what} must be 1 or more, not {number}", 2)
    return number


@task(help={"role": "the role whose versions to list", "json": "print JSON"})
def history(c: Context, role: str, json: bool = False) -> None:
    """List every version of a role, newest first, with its channel log and deployments."""
    from kiln import lifecycle
    from kiln.cli import lifecycle_text

    with cli(), open_registry() as registry:
        result = lifecycle.history(registry, role)
        if json:
            emit_json(lifecycle_text.as_json(result))
        else:
            print_lines(lifecycle_text.format_history(result))


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
    from kiln.cli import lifecycle_text

    with cli(), open_registry() as registry:
        details = lifecycle.show(registry, role, _version_number(version) if version else None)
        if json:
            emit_json(lifecycle_text.as_json(details))
        else:
            print_lines(lifecycle_text.format_show(details))


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
    from kiln.cli import lifecycle_text

    with cli(), open_registry() as registry:
        result = lifecycle.diff(
            registry, role, _version_number(a, "A"), _version_number(b, "B"), files=files
        )
        if json:
            emit_json(lifecycle_text.as_json(result))
        else:
            print_lines(lifecycle_text.format_diff(result))


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
    from kiln.cli import lifecycle_text

    if not channel:
        raise Exit("kiln: promote needs --channel NAME (for example --channel prod)", 2)
    with cli(), open_registry() as registry:
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
    from kiln.cli import lifecycle_text

    if not channel:
        raise Exit("kiln: rollback needs --channel NAME (for example --channel prod)", 2)
    with cli(), open_registry() as registry:
        change = lifecycle.rollback(registry, role, channel=channel, reason=reason or None)
        if json:
            emit_json(lifecycle_text.as_json(change))
        else:
            print(lifecycle_text.format_change(change))


@task(help={"role": "the role whose channels to list", "json": "print JSON"})
def channels(c: Context, role: str, json: bool = False) -> None:
    """List a role's channels and the version each points at."""
    from kiln import lifecycle
    from kiln.cli import lifecycle_text

    with cli(), open_registry() as registry:
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
        "role": "the role of the channel",
        "name": "the channel (dev, staging, prod...)",
        "json": "print JSON: role, version, fingerprint, digest-pinned image, artifacts",
    }
)
def channel(c: Context, role: str, name: str, json: bool = False) -> None:
    """Show the version a channel points at, with its digest-pinned image, for other tools."""
    from kiln import lifecycle
    from kiln.cli import lifecycle_text

    with cli(), open_registry() as registry:
        found = lifecycle.resolve_channel(registry, role, name)
    if json:
        emit_json(lifecycle_text.as_json(found))
        return
    print(f"{role} {name}: v{found.version} ({found.status}) since {found.updated_at}")
    print(f"  fingerprint  {found.fingerprint}")
    print(f"  image        {found.image or '-'}{'' if found.digest else '  (not pushed)'}")


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
    from kiln.cli import lifecycle_text

    with cli(), open_registry() as registry:
        result = lifecycle.revoke(registry, role, _version_number(version), reason=reason)
        if json:
            emit_json(lifecycle_text.as_json(result))
        else:
            print(f"{role} v{result.version} revoked: {result.reason}")
            for change in result.moved:
                print("  " + lifecycle_text.format_change(change))
            for child_role, child_version in result.descendants:
                print(f"  {child_role} v{child_version} is now built on a revoked parent")
        warn(result.warnings)


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
    from kiln.cli import lifecycle_text

    with cli(), open_registry() as registry:
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
    from kiln.console import Reporter

    with cli(), open_registry() as registry:
        # with --json, progress goes to stderr so that stdout is one JSON document
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
    from kiln.report import write_report

    with cli(), open_registry() as registry:
        path = write_report(project(), registry, Path(output) if output else None)
        print(f"wrote {path}")


@task(
    help={
        "role": "the role (or base) whose version to describe",
        "version": "the version (default: the newest)",
        "output": "where to write it (default: standard output)",
    },
)
def sbom(c: Context, role: str, version: int = 0, output: str = "") -> None:
    """Write a version's SBOM: CycloneDX 1.6 JSON from its recorded packages and facts."""
    from kiln.lifecycle._lookup import require
    from kiln.lifecycle.sbom import version_sbom

    with cli(), open_registry() as registry:
        found = require(registry, role, _version_number(version) if version else None)
        text = version_sbom(registry, found)
        if output:
            Path(output).write_text(text, encoding="utf-8")
            print(f"wrote {output} ({found.label})", file=sys.stderr)
        else:
            sys.stdout.write(text + "\n")


TASKS = (
    history,
    show,
    diff,
    promote,
    rollback,
    channels,
    channel,
    revoke,
    gc,
    test,
    report,
    sbom,
)
