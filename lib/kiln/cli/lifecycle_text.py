"""Text and JSON output of the lifecycle tasks: history, show, diff and channel changes."""

from __future__ import annotations

import json
from dataclasses import fields, is_dataclass
from typing import Any

from kiln.fingerprint import canonical_json
from kiln.lifecycle import MASK, ChannelChange, History, VersionDetails, VersionDiff
from kiln.lifecycle._reasons import describe_reason
from kiln.registry import ChannelLogEntry, Deployment, TestRun, VersionSummary


def as_json(value: Any) -> Any:
    """A lifecycle result as JSON-ready data (with the labels the text output shows)."""
    if isinstance(value, VersionSummary):
        labels = {"short_fingerprint": value.short_fingerprint, "status_label": value.status_label}
        return {**{k: as_json(v) for k, v in value._asdict().items()}, **labels}
    if isinstance(value, ChannelLogEntry | Deployment | TestRun):
        return value.as_dict()  # as the registry's dicts were printed, 0/1 and all
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: as_json(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, list | tuple):
        return [as_json(v) for v in value]
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    return value


def format_history(result: History) -> list[str]:
    lines = [
        f"{'VERSION':>7}  {'FINGERPRINT':<12}  {'PARENT':<22}  {'STATUS':<36}  "
        f"{'CHANNELS':<14}  {'COMMIT':<14}  {'BAKE':>7}  CREATED"
    ]
    for e in result.versions:
        commit = e.git_commit[:12] + ("+" if e.git_dirty else "")
        lines.append(
            f"{e.version:>7}  {e.short_fingerprint:<12}  {e.parent_label:<22}  "
            f"{e.status_label:<36}  {','.join(e.channels) or '-':<14}  {commit:<14}  "
            f"{e.bake_seconds:>6.1f}s  {e.created_at}"
        )
    for number, why in sorted(result.reasons.items(), reverse=True):
        lines.append(f"v{number}: {why}")
    lines.append("(+ after a commit: the tree was dirty)")
    lines.append("")
    lines.append("channel log:" if result.channel_log else "channel log: (empty)")
    for c in result.channel_log:
        lines.append(
            f"  {c.at}  {c.channel:<10} {_v(c.from_version)} -> {_v(c.to_version)}"
            f"  {c.action}{' (forced)' if c.forced else ''} by {c.actor}"
            f"{': ' + c.reason if c.reason else ''}"
        )
    lines.append("deployments:" if result.deployments else "deployments: (none)")
    for d in result.deployments:
        lines.append(
            f"  {d.started_at}  {d.deployment} {_v(d.version)} "
            f"channel={d.channel or '-'} {d.strategy} x{d.replicas}: {d.result}"
        )
    return lines


def _v(version: int | None) -> str:
    return "-" if version is None else f"v{version}"


def format_show(d: VersionDetails) -> list[str]:
    s = d.summary
    lines = [
        f"{s.role} v{s.version}  ({d.kind} on {d.target})",
        f"  status       {s.status_label}{': ' + s.status_reason if s.status_reason else ''}",
        f"  fingerprint  {s.fingerprint}",
        f"  channels     {', '.join(s.channels) or '-'}",
        f"  commit       {s.git_commit}{' (dirty tree)' if s.git_dirty else ''}",
        f"  baked        {s.created_at} in {s.bake_seconds:.1f}s",
    ]
    why = describe_reason(json.dumps(d.reason) if d.reason else None)
    if why:
        lines.append(f"  reason       {why}")
        for u in (d.reason or {}).get("updates", []):
            mark = "  security" if u.get("security") else ""
            lines.append(f"    {u['name']}:{u['arch']} {u['installed']} -> {u['candidate']}{mark}")
    lines.append("ancestry:")
    for a in d.ancestry:
        flag = " (built on revoked parent)" if a.parent_revoked else ""
        lines.append(f"  {a.role} v{a.version}  {a.kind}  {a.status}{flag}  {a.fingerprint[:12]}")
    lines.append("definition:")
    for key, value in sorted(d.definition.items()):
        lines.append(f"  {key} = {canonical_json(value)}")
    lines.append("variables:" if d.variables else "variables: (none)")
    for key, value in d.variables.items():
        lines.append(f"  {key} = {value if value == MASK else canonical_json(value)}")
    lines.append("ansible roles:" if d.ansible_roles else "ansible roles: (none)")
    for r in d.ansible_roles:
        lines.append(f"  {r.name:<24} {r.digest[:16]}  ({r.files} files)")
    for key, digest in d.requirements.items():
        lines.append(f"  {key:<24} {digest[:16]}  (requirements.lock)")
    if d.tools:
        lines.append("tools: " + ", ".join(f"{k} {v}" for k, v in sorted(d.tools.items())))
    if d.lint:
        rules = ", ".join(f"{rule} {n}" for rule, n in d.lint.get("by_rule", {}).items())
        lines.append(
            f"lint: profile {d.lint.get('profile')}, {d.lint.get('warnings', 0)} warning(s)"
            + (f" ({rules})" if rules else "")
        )
    lines.append("artifacts:" if d.artifacts else "artifacts: (none)")
    for art in d.artifacts:
        size = f"{art.size_bytes / 1e6:.1f} MB" if art.size_bytes else "-"
        gone = f"  DELETED {art.deleted_at}" if art.deleted_at else ""
        lines.append(f"  {art.target}: {art.ref}  {art.image_id[:19]}  {size}{gone}")
    for push in d.pushes:
        lines.append(f"  pushed {push.pushed_at}: {push.reference}")
    lines.append(f"packages: {len(d.packages)}")
    for p in d.packages:
        lines.append(f"  {p.name} {p.version} {p.arch}")
    lines.append("test runs:" if d.test_runs else "test runs: (none)")
    for t in d.test_runs:
        lines.append(
            f"  {t.started_at}  {t.suite}  {'passed' if t.passed else 'FAILED'}"
            f"  {t.duration_s:.1f}s  {t.summary}"
        )
    return lines


def format_diff(d: VersionDiff) -> list[str]:
    lines = [f"{d.role} v{d.a} -> v{d.b}"]
    if d.reason:
        lines.append(f"v{d.b} was {d.reason}")
    lines.append(f"packages: {len(d.packages)} change(s)")
    mark = {"added": "+", "removed": "-", "changed": "~"}
    for p in d.packages:
        versions = (
            p.new
            if p.change == "added"
            else p.old
            if p.change == "removed"
            else (f"{p.old} -> {p.new}")
        )
        lines.append(f"  {mark[p.change]} {p.name}:{p.arch} {versions}")
    lines.append(f"inputs: {len(d.inputs)} change(s)")
    for i in d.inputs:
        if i.kind == "role_file":
            lines.append(f"  {mark[i.change]} {i.kind} {i.name}")
        else:
            lines.append(
                f"  {mark[i.change]} {i.kind} {i.name}: {_short(i.old)} -> {_short(i.new)}"
            )
    if d.files is None:
        lines.append(f"files: {d.files_note}")
    else:
        lines.append(f"files: {len(d.files)} change(s)")
        for f in d.files:
            lines.append(f"  {mark[f.change]} {f.path}")
    return lines


def _short(value: Any) -> str:
    if value is None:
        return "-"
    text = value if isinstance(value, str) else canonical_json(value)
    return text if len(text) <= 60 else text[:57] + "..."


def format_change(c: ChannelChange) -> str:
    if not c.changed:
        return f"{c.role}: channel {c.channel} already points at v{c.to_version}; nothing changed"
    forced = " (forced)" if c.forced else ""
    return (
        f"{c.role}: channel {c.channel} {_v(c.from_version)} -> {_v(c.to_version)} "
        f"({c.action}{forced} by {c.actor}{': ' + c.reason if c.reason else ''})"
    )
