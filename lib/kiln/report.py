"""`invoke report`: one self-contained HTML page about every role, version, test and package.

Everything is inline (CSS, a few lines of JS, SVG charts), so the page opens from disk, offline,
and can be attached to a ticket as one file. It is written to .kiln/report/index.html.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from kiln.lifecycle import PackageChange, diff_packages
from kiln.lifecycle._reasons import describe_reason
from kiln.model import Base, Project, Role
from kiln.registry import Package, Registry, TestRun, Version, VersionStatus

PHASE_COLOURS = {
    "base": "#8c6d31",
    "render": "#9e9ac8",
    "builder start": "#6baed6",
    "provision": "#3182bd",
    "capture and commit": "#fd8d3c",
    "tests": "#31a354",
    "record": "#969696",
}
OTHER_COLOUR = "#bdbdbd"
#: The badge colour of each status (a StrEnum key: lookups by the stored string work).
STATUS_CLASS: dict[str, str] = {
    VersionStatus.TESTED: "ok",
    VersionStatus.BAKED: "ok",
    VersionStatus.UNTESTED: "warn",
    VersionStatus.FAILED: "bad",
    VersionStatus.REVOKED: "bad",
}


@dataclass
class RoleData:
    """One role (or base) with everything the page shows about it."""

    name: str
    kind: str
    parent: str | None
    defined: bool
    ansible_roles: list[str] = field(default_factory=list)
    versions: list[Version] = field(default_factory=list)  # oldest first
    channels: dict[str, int | None] = field(default_factory=dict)
    tests: dict[int, list[TestRun]] = field(default_factory=dict)
    packages: dict[int, list[Package]] = field(default_factory=dict)
    #: version -> why it was baked with unchanged inputs (kiln.lifecycle._reasons)
    reasons: dict[int, str] = field(default_factory=dict)

    @property
    def latest(self) -> Version | None:
        return self.versions[-1] if self.versions else None


def collect(project: Project, registry: Registry) -> list[RoleData]:
    """Roles as defined (parents first), then roles only the registry still knows about."""
    roles: dict[str, RoleData] = {}
    for node in project:
        roles[node.name] = RoleData(
            name=node.name,
            kind="base" if isinstance(node, Base) else "role",
            parent=node.parent.name if node.parent is not None else None,
            defined=True,
            ansible_roles=list(node.ansible_roles) if isinstance(node, Role) else [],
        )
    for name in registry.roles():
        if name not in roles:
            history = registry.history(name, limit=1)
            roles[name] = RoleData(
                name=name,
                kind=history[0].kind if history else "role",
                parent=history[0].parent_role if history else None,
                defined=False,
            )
    for data in roles.values():
        data.versions = list(reversed(registry.history(data.name)))
        data.channels = registry.channels(data.name)
        for run in registry.test_runs(data.name):
            data.tests.setdefault(run.version, []).append(run)
        for version in data.versions:
            data.packages[version.version] = registry.packages(data.name, version.version)
        data.reasons = {
            number: describe_reason(document) or ""
            for number, document in registry.documents(data.name, "bake-reason").items()
        }
    return list(roles.values())


# -- HTML -------------------------------------------------------------------------------------
def e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _size(size: int | None) -> str:
    return f"{size / 1e6:.1f} MB" if size else "-"


def _when(stamp: str) -> str:
    return stamp.replace("T", " ")[:19] + " UTC" if stamp else "-"


def _seconds(value: float) -> str:
    return f"{value:.1f}s" if value < 10 else f"{value:.0f}s"


def _anchor(role: str, version: int | None = None) -> str:
    return f"role-{role}" + (f"-v{version}" if version is not None else "")


def lineage_svg(roles: Sequence[RoleData]) -> str:
    """The tree of roles from each base to its leaves, as boxes joined by elbow lines."""
    by_name = {r.name: r for r in roles}
    children: dict[str | None, list[RoleData]] = {}
    for role in roles:
        parent = role.parent if role.parent in by_name else None
        children.setdefault(parent, []).append(role)
    rows: list[tuple[int, RoleData]] = []

    def walk(parent: str | None, depth: int, seen: frozenset[str]) -> None:
        for child in children.get(parent, []):
            if child.name in seen:
                continue
            rows.append((depth, child))
            walk(child.name, depth + 1, seen | {child.name})

    walk(None, 0, frozenset())
    box_w, box_h, col_w, row_h, pad = 190, 40, 230, 54, 10
    depth_max = max((d for d, _ in rows), default=0)
    width = pad * 2 + depth_max * col_w + box_w
    height = pad * 2 + max(1, len(rows)) * row_h
    position: dict[str, tuple[int, int]] = {}
    parts: list[str] = []
    for index, (depth, role) in enumerate(rows):
        position[role.name] = (pad + depth * col_w, pad + index * row_h)
    for role in roles:
        if role.name in position and role.parent in position:
            px, py = position[role.parent]
            cx, cy = position[role.name]
            x0, y0 = px + 18, py + box_h
            parts.append(
                f'<path class="edge" d="M{x0},{y0} V{cy + box_h // 2} H{cx}" fill="none"/>'
            )
    for _depth, role in rows:
        x, y = position[role.name]
        latest = role.latest
        status = latest.status if latest else "never baked"
        label = f"v{latest.version} · {status}" if latest else status
        css = STATUS_CLASS.get(status, "none")
        parts.append(
            f'<a href="#{_anchor(role.name)}"><g class="node {css}" data-role="{e(role.name)}">'
            f'<rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="6"/>'
            f'<text x="{x + 10}" y="{y + 17}" class="name">{e(role.name)}'
            f"{' (base)' if role.kind == 'base' else ''}</text>"
            f'<text x="{x + 10}" y="{y + 33}" class="meta">{e(label)}</text></g></a>'
        )
    return (
        f'<svg class="lineage" role="img" aria-label="lineage of roles" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">{"".join(parts)}</svg>'
    )


def bake_time_svg(role: RoleData) -> str:
    """Bake time of each version as a bar stacked by phase."""
    versions = [v for v in role.versions if v.bake_seconds]
    if not versions:
        return '<p class="muted">No bake times recorded.</p>'
    top = max(v.bake_seconds for v in versions)
    bar, gap, chart_h, left, bottom = 26, 10, 140, 44, 22
    width = left + len(versions) * (bar + gap) + gap
    height = chart_h + bottom + 8
    parts = [
        f'<line x1="{left}" y1="{chart_h + 4}" x2="{width}" y2="{chart_h + 4}" class="axis"/>',
        f'<text x="{left - 6}" y="12" class="tick" text-anchor="end">{_seconds(top)}</text>',
        f'<text x="{left - 6}" y="{chart_h + 4}" class="tick" text-anchor="end">0</text>',
    ]
    for index, version in enumerate(versions):
        x = left + gap + index * (bar + gap)
        y = chart_h + 4.0
        phases = dict(version.timings) or {"bake": version.bake_seconds}
        known = sum(phases.values())
        if version.bake_seconds > known:
            phases["other"] = version.bake_seconds - known
        for phase, seconds in phases.items():
            h = chart_h * seconds / top
            y -= h
            colour = PHASE_COLOURS.get(phase, OTHER_COLOUR)
            parts.append(
                f'<rect x="{x}" y="{y:.1f}" width="{bar}" height="{h:.1f}" fill="{colour}">'
                f"<title>{e(role.name)} v{version.version} {e(phase)}: {seconds:.1f}s</title>"
                "</rect>"
            )
        parts.append(
            f'<text x="{x + bar / 2}" y="{chart_h + 18}" class="tick" text-anchor="middle">'
            f"v{version.version}</text>"
        )
    return (
        f'<svg class="chart" role="img" aria-label="bake times of {e(role.name)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">{"".join(parts)}</svg>'
    )


def _legend() -> str:
    items = [*PHASE_COLOURS.items(), ("other", OTHER_COLOUR)]
    return (
        '<p class="legend">'
        + "".join(f'<span><i style="background:{c}"></i>{e(p)}</span>' for p, c in items)
        + "</p>"
    )


def _version_row(role: RoleData, version: Version) -> str:
    artifact = version.artifact()
    parent = (
        f'<a href="#{_anchor(version.parent_role, version.parent_version)}">'
        f"{e(version.parent_role)} v{version.parent_version}</a>"
        if version.parent_role
        else "-"
    )
    channels = [c for c, v in role.channels.items() if v == version.version]
    status = e(version.status) + (
        f' <span class="muted">({e(version.status_reason)})</span>' if version.status_reason else ""
    )
    css = STATUS_CLASS.get(version.status, "none")
    tests = role.tests.get(version.version, [])
    passed = sum(1 for t in tests if t.passed)
    return (
        f'<tr id="{_anchor(role.name, version.version)}" class="version">'
        f"<td>v{version.version}</td>"
        f'<td><span class="status {css}">{status}</span></td>'
        f'<td class="mono" title="{e(version.fingerprint)}">{e(version.fingerprint[:12])}</td>'
        f"<td>{parent}</td>"
        f'<td class="mono">{e(artifact.ref) if artifact else "-"}'
        f"{' (deleted)' if artifact and artifact.deleted_at else ''}</td>"
        f"<td>{_size(artifact.size_bytes if artifact else None)}</td>"
        f"<td>{e(_when(version.created_at))}</td>"
        f"<td>{version.bake_seconds:.1f}s</td>"
        f"<td>{', '.join(e(c) for c in channels) or '-'}</td>"
        f"<td>{f'{passed}/{len(tests)} passed' if tests else '-'}</td>"
        "</tr>"
    )


def _details(role: RoleData, index: int, version: Version) -> str:
    """Per version: timings, inputs, tests and the package diff against the version before."""
    parts = [
        f'<details class="version-details" id="{_anchor(role.name, version.version)}-details">'
        f"<summary>{e(role.name)} v{version.version}: details</summary>",
        "<dl>",
        f"<dt>fingerprint</dt><dd class='mono'>{e(version.fingerprint)}</dd>",
        f"<dt>git</dt><dd class='mono'>{e(version.git_commit)}"
        f"{' (dirty)' if version.git_dirty else ''}</dd>",
        "<dt>phases</dt><dd>"
        + (", ".join(f"{e(k)} {v:.1f}s" for k, v in version.timings.items()) or "-")
        + "</dd>",
        "<dt>tools</dt><dd>"
        + e(", ".join(f"{k} {v}" for k, v in version.tools.items()) or "-")
        + "</dd>",
        *(
            [f"<dt>reason</dt><dd>{e(role.reasons[version.version])}</dd>"]
            if version.version in role.reasons
            else []
        ),
        f'<dt>SBOM</dt><dd><a class="sbom" href="{e(sbom_href(role.name, version.version))}">'
        "CycloneDX JSON</a></dd>",
        "</dl>",
    ]
    tests = role.tests.get(version.version, [])
    if tests:
        parts.append(
            "<h4>Tests</h4><table><tr><th>suite</th><th>result</th><th>summary</th>"
            "<th>started</th><th>time</th></tr>"
        )
        for run in tests:
            result = (
                '<span class="status ok">passed</span>'
                if run.passed
                else ('<span class="status bad">failed</span>')
            )
            parts.append(
                f"<tr><td>{e(run.suite)}</td><td>{result}</td><td>{e(run.summary)}</td>"
                f"<td>{e(_when(run.started_at))}</td>"
                f"<td>{run.duration_s:.1f}s</td></tr>"
            )
            if run.output:
                parts.append(
                    f'<tr><td colspan="5"><details><summary>output</summary>'
                    f"<pre>{e(run.output[-4000:])}</pre></details></td></tr>"
                )
        parts.append("</table>")
    packages = role.packages.get(version.version, [])
    previous = role.versions[index - 1] if index > 0 else None
    if previous is not None:
        changes = diff_packages(role.packages.get(previous.version, []), packages)
        total = len(changes)
        parts.append(
            f"<h4>Packages: v{previous.version} → v{version.version}"
            f" ({total} change{'s' if total != 1 else ''})</h4>"
        )
        if total:
            parts.append('<ul class="pkgdiff">')
            for kind in ("added", "removed", "changed"):
                parts += [_package_item(c) for c in changes if c.change == kind]
            parts.append("</ul>")
    elif packages:
        parts.append(f"<h4>Packages</h4><p>{len(packages)} packages in the first version.</p>")
    parts.append("</details>")
    return "".join(parts)


def _package_item(change: PackageChange) -> str:
    """One line of a package diff: + added, − removed, ~ changed (old → new)."""
    if change.change == "added":
        text = f"+ {change.name} {change.new}"
    elif change.change == "removed":
        text = f"− {change.name} {change.old}"
    else:
        text = f"~ {change.name} {change.old} → {change.new}"
    return f'<li class="{change.change}">{e(text)}</li>'


def _role_section(role: RoleData) -> str:
    head = (
        f'<section class="role" id="{_anchor(role.name)}" data-role="{e(role.name)}">'
        f"<h2>{e(role.name)} <small>{e(role.kind)}"
        f"{'' if role.defined else ', no longer defined'}</small></h2>"
    )
    facts = [f"parent: {e(role.parent) if role.parent else '-'}"]
    if role.ansible_roles:
        facts.append("Ansible roles: " + ", ".join(e(a) for a in role.ansible_roles))
    if role.channels:
        facts.append(
            "channels: "
            + ", ".join(
                f"{e(c)} → {'v' + str(v) if v is not None else 'none'}"
                for c, v in sorted(role.channels.items())
            )
        )
    body = [head, f"<p>{' · '.join(facts)}</p>"]
    if not role.versions:
        body.append('<p class="muted">Never baked.</p></section>')
        return "".join(body)
    body.append(
        "<table class='versions'><tr><th>version</th><th>status</th><th>fingerprint</th>"
        "<th>parent</th><th>artifact</th><th>size</th><th>created</th><th>bake time</th>"
        "<th>channels</th><th>tests</th></tr>"
    )
    body += [_version_row(role, v) for v in reversed(role.versions)]
    body.append("</table>")
    body.append(f"<h3>Bake times</h3>{bake_time_svg(role)}")
    body += [_details(role, i, v) for i, v in reversed(list(enumerate(role.versions)))]
    body.append("</section>")
    return "".join(body)


STYLE = """
:root { --ok: #2e7d32; --warn: #b26a00; --bad: #c62828; --muted: #6b7280; --line: #d1d5db; }
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; color: #111827; background: #f9fafb; }
header { background: #1f2937; color: #fff; padding: 14px 24px; }
header h1 { margin: 0; font-size: 20px; }
header p { margin: 4px 0 0; color: #d1d5db; }
main { padding: 16px 24px; max-width: 1400px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px;
          padding: 12px 16px; margin: 14px 0; }
h2 small { font-weight: normal; color: var(--muted); font-size: 13px; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { text-align: left; padding: 4px 10px; border-bottom: 1px solid #eef0f3;
         vertical-align: top; }
th { font-weight: 600; background: #f3f4f6; }
.mono { font-family: ui-monospace, monospace; font-size: 12.5px; }
.muted { color: var(--muted); }
.status { padding: 1px 6px; border-radius: 4px; color: #fff; background: var(--muted); }
.status.ok { background: var(--ok); } .status.warn { background: var(--warn); }
.status.bad { background: var(--bad); }
svg text { font: 12px system-ui, sans-serif; }
.lineage .node rect { fill: #eef2ff; stroke: #6366f1; }
.lineage .node.ok rect { fill: #ecfdf5; stroke: var(--ok); }
.lineage .node.warn rect { fill: #fffbeb; stroke: var(--warn); }
.lineage .node.bad rect { fill: #fef2f2; stroke: var(--bad); }
.lineage .node.none rect { fill: #f3f4f6; stroke: var(--muted); }
.lineage .name { font-weight: 600; } .lineage .meta { fill: var(--muted); font-size: 11px; }
.lineage .edge { stroke: #9ca3af; stroke-width: 1.5; }
.chart .axis { stroke: #9ca3af; } .chart .tick { fill: var(--muted); font-size: 11px; }
.legend span { margin-right: 12px; white-space: nowrap; }
.legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
details.version-details { margin: 6px 0; }
details summary { cursor: pointer; color: #374151; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; }
dt { color: var(--muted); } dd { margin: 0; }
ul.pkgdiff { list-style: none; padding-left: 8px; font-family: ui-monospace, monospace; }
.pkgdiff .added { color: var(--ok); } .pkgdiff .removed { color: var(--bad); }
.pkgdiff .changed { color: var(--warn); }
pre { white-space: pre-wrap; background: #f3f4f6; padding: 8px; max-height: 300px; overflow: auto; }
#filter { padding: 4px 8px; width: 260px; }
"""

SCRIPT = """
document.getElementById('filter').addEventListener('input', function (event) {
  var text = event.target.value.toLowerCase();
  document.querySelectorAll('section.role').forEach(function (section) {
    section.hidden = text !== '' && section.dataset.role.indexOf(text) < 0;
  });
});
if (location.hash) {
  var target = document.getElementById(location.hash.slice(1) + '-details');
  if (target) { target.open = true; }
}
"""


def render_html(project: Project, roles: Sequence[RoleData], *, generated: str) -> str:
    versions = sum(len(r.versions) for r in roles)
    tests = sum(len(runs) for r in roles for runs in r.tests.values())
    summary = {
        "roles": len(roles),
        "versions": versions,
        "test_runs": tests,
        "generated": generated,
    }
    return "".join(
        [
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
            "<meta name='viewport' content='width=device-width, initial-scale=1'>",
            f"<title>kiln report: {e(project.root.name)}</title><style>{STYLE}</style></head>",
            "<body><header><h1>kiln report</h1>",
            f"<p>{e(project.root.name)} · images {e(project.image_namespace)}/"
            f"{e(project.name)}-*/* · "
            f"{len(roles)} roles · {versions} versions · {tests} test runs · "
            f"generated {e(generated)}</p></header><main>",
            "<section id='lineage'><h2>Lineage</h2>",
            "<p class='muted'>From each base to its leaves; the newest version of each role. "
            "Click a role for its versions.</p>",
            lineage_svg(roles),
            "</section>",
            "<section><h2>Roles</h2>",
            "<p><input id='filter' type='search' placeholder='filter roles by name'></p>",
            "<p class='muted'>Bake time charts are stacked by phase:</p>",
            _legend(),
            "</section>",
            *(_role_section(r) for r in roles),
            f"<script type='application/json' id='kiln-summary'>{e(json.dumps(summary))}</script>",
            f"<script>{SCRIPT}</script></main></body></html>",
        ]
    )


def report_path(project: Project) -> Path:
    return project.state_path / "report" / "index.html"


def write_report(project: Project, registry: Registry, path: Path | None = None) -> Path:
    """Write the report (atomically) and return its path."""
    target = path or report_path(project)
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = render_html(project, collect(project, registry), generated=generated)
    target.parent.mkdir(parents=True, exist_ok=True)
    _write_sboms(registry, target.parent)
    _write_atomically(target, text)
    return target


def sbom_href(role: str, version: int) -> str:
    """Where the report links a version's SBOM, relative to the report's own file."""
    return f"sbom/{role}-v{version}.cdx.json"


def _write_sboms(registry: Registry, directory: Path) -> None:
    """The SBOM of every version beside the report. A version is immutable and its SBOM
    deterministic (kiln.lifecycle.sbom), so a file already written is kept as it is."""
    from kiln.lifecycle.sbom import version_sbom

    for role in registry.roles():
        for version in registry.history(role):
            path = directory / sbom_href(role, version.version)
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                _write_atomically(path, version_sbom(registry, version))


def _write_atomically(target: Path, text: str) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
