"""Text and JSON output of bakes: the summary of one bake, and the table of a parallel run."""

from __future__ import annotations

from collections.abc import Sequence

from kiln.bake import BakeOutcome
from kiln.console import Reporter
from kiln.model import Role
from kiln.parallel import BatchResult, chain_outcomes, summary_rows


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
    linted = version.inputs.get("lint")
    if isinstance(linted, dict):
        rules = ", ".join(f"{rule} {n}" for rule, n in linted.get("by_rule", {}).items())
        lines.append(
            ("lint", f"{linted.get('warnings', 0)} warning(s)" + (f": {rules}" if rules else ""))
        )
    for outcome in outcomes:
        if outcome.baked:
            phases = ", ".join(f"{k} {v:.1f}s" for k, v in outcome.timings.items())
            lines.append((f"{outcome.version.role} time", phases))
    rows = [
        {
            "role": o.version.role,
            "version": o.version.version,
            "baked": o.baked,
            "fingerprint": o.version.fingerprint,
            "timings": dict(o.timings),
        }
        for o in outcomes
    ]
    reporter.summary(version.role, lines, outcomes=rows)


def summary_table(result: BatchResult) -> str:
    """The closing lines of a multi-role bake: one row per role, then each failure in full."""
    rows = summary_rows(result)
    head = ("role", "result", "version", "fingerprint", "parent", "artifact", "size", "time")
    table: list[tuple[str, ...]] = [head]
    for row in rows:
        size = row["size_bytes"]
        table.append(
            (
                str(row["role"]),
                str(row["state"]),
                f"v{row['version']}" if row["version"] else "-",
                str(row["fingerprint"] or "-")[:12],
                str(row["parent"] or "-"),
                str(row["artifact"] or "-"),
                f"{size / 1e6:.1f} MB" if isinstance(size, int) else "-",
                f"{row['seconds']:.1f}s" if row["seconds"] else "-",
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]
    for row in rows:
        timings = row["timings"]
        if row["state"] == "baked" and isinstance(timings, dict) and timings:
            phases = ", ".join(f"{k} {v:.1f}s" for k, v in timings.items())
            lines.append(f"{row['role']} time: {phases}")
    for job in result.failed:
        lines += ["", f"{job.name} failed:", str(job.error)]
    return "\n".join(lines)


def report(reporter: Reporter, result: BatchResult, requested: Sequence[Role]) -> None:
    """The closing summary: the detailed one for a single role, a table for several."""
    if len(requested) == 1 and not result.failed and not result.skipped:
        outcomes = chain_outcomes(result, requested[0].name)
        if outcomes:
            print_bake_summary(reporter, outcomes)
        return
    if len(requested) == 1 and len(result.failed) == 1 and not result.skipped:
        return  # the command exits with that one failure and its whole message
    if reporter.json_mode:
        reporter.summary("kiln", [], roles=summary_rows(result))
    else:
        reporter.text(summary_table(result))
