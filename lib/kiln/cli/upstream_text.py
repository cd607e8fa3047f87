"""Text and JSON of `outdated --upstream`, and the exit status a schedule reads from it."""

from __future__ import annotations

from typing import Any

from kiln.errors import KilnError, UpdatesPending
from kiln.lifecycle import UpstreamReport

#: --fail-on values: which findings make the command exit non-zero (after printing them).
FAIL_ON = ("", "security", "any")


def as_json(report: UpstreamReport) -> dict[str, Any]:
    return {
        "checked_at": report.checked_at,
        "seconds": round(report.seconds, 3),
        "images": [
            {
                "role": image.role,
                "version": image.version,
                "kind": image.kind,
                "newest": image.newest,
                "channels": list(image.channels),
                "checked": image.unchecked is None,
                "unchecked_reason": image.unchecked,
                "updates": [u.as_dict() for u in image.updates],
                "security_updates": len(image.security),
            }
            for image in report.images
        ],
    }


def format_report(report: UpstreamReport) -> list[str]:
    lines: list[str] = []
    for image in report.images:
        where = "newest" if image.newest else "older"
        pinned = f", channels {','.join(image.channels)}" if image.channels else ""
        head = f"{image.label} ({image.kind}, {where}{pinned})"
        if image.unchecked is not None:
            lines.append(f"{head}: NOT CHECKED: {image.unchecked}")
        elif not image.updates:
            lines.append(f"{head}: no pending updates")
        else:
            lines.append(
                f"{head}: {len(image.updates)} pending update(s), {len(image.security)} security"
            )
            for u in image.updates:
                mark = "  SECURITY" if u.security else ""
                lines.append(
                    f"  {u.name}:{u.arch} {u.installed} -> {u.candidate}"
                    f" ({', '.join(u.suites) or '?'}){mark}"
                )
    pending = report.pending
    if pending:
        lines.append(
            f"{len(pending)} image(s) have pending updates: `invoke bake all --outdated "
            "--upstream` rebakes the newest ones and what is built on them"
        )
        if any(not i.newest for i in pending):
            lines.append(
                "older versions that channels point at are not rebaked: promote the new ones"
            )
    elif not report.unchecked:
        lines.append(f"every image is up to date with its sources ({report.seconds:.1f}s)")
    return lines


def raise_for(report: UpstreamReport, fail_on: str) -> None:
    """UpdatesPending when fail_on ("security" or "any") matches what the report found; an
    image that could not be checked counts as pending: it is never taken as up to date."""
    if fail_on not in FAIL_ON:
        raise KilnError(f"--fail-on takes security or any, not {fail_on!r}")
    if not fail_on:
        return
    security = [i.label for i in report.images if i.security]
    unchecked = [i.label for i in report.unchecked]
    pending = [i.label for i in report.pending]
    if fail_on == "security" and (security or unchecked):
        raise UpdatesPending(
            "security updates pending for "
            + (", ".join(security) or "no image")
            + (f"; not checked: {', '.join(unchecked)}" if unchecked else "")
        )
    if fail_on == "any" and (pending or unchecked):
        raise UpdatesPending(
            "updates pending for "
            + (", ".join(pending) or "no image")
            + (f"; not checked: {', '.join(unchecked)}" if unchecked else "")
        )
