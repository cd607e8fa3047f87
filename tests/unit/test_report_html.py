"""The HTML report's package diff between consecutive versions (the page itself: integration)."""

from __future__ import annotations

from pathlib import Path

from kiln import report
from kiln.model import Project
from kiln.registry import Package, Version


def version(number: int) -> Version:
    return Version(
        role="web",
        version=number,
        kind="role",
        target="docker",
        fingerprint=f"{number}" * 64,
        parent_role=None,
        parent_version=None,
        status="tested",
        git_commit="0" * 40,
        git_dirty=False,
        tools={},
        inputs={},
        timings={},
        bake_seconds=1.0,
        created_at="2026-01-01T00:00:00.000000Z",
    )


def test_the_package_diff_ignores_dpkgs_multiarch_qualifier_and_lists_each_change(
    tmp_path: Path,
) -> None:
    role = report.RoleData(name="web", kind="role", parent=None, defined=True)
    role.versions = [version(1), version(2)]
    role.packages = {
        1: [
            Package("libc6:amd64", "2.36-9", "amd64"),
            Package("nginx", "1.22.1-9", "amd64"),
            Package("curl", "7.88", "amd64"),
        ],
        2: [
            Package("libc6", "2.36-9", "amd64"),  # the same package, named without :amd64
            Package("nginx", "1.22.1-9+deb12u1", "amd64"),
            Package("jq", "1.6", "amd64"),
        ],
    }

    page = report.render_html(Project(tmp_path), [role], generated="now")

    assert "Packages: v1 → v2 (3 changes)" in page
    assert '<li class="added">+ jq 1.6</li>' in page
    assert '<li class="removed">− curl 7.88</li>' in page
    assert '<li class="changed">~ nginx 1.22.1-9 → 1.22.1-9+deb12u1</li>' in page
    assert "libc6" not in page.split("Packages: v1 → v2", 1)[1]
