"""`invoke report` renders in a real browser: headless Chromium shows the lineage and a version.

Needs Debian's `chromium` package: skipped without it, except under CI=true (`.ci/run`), where
scripts/setup.sh installs it and tests/conftest.py turns that skip into a failure.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import Sandbox
from kiln.registry import utc_now

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium that stays off the network and out of the user's profile."""
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", f"--user-data-dir={profile}", *args,
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package")
def test_report_shows_lineage_and_version_details(baked_clone: Sandbox, tmp_path: Path) -> None:
    sandbox = baked_clone  # web v1 is baked and tested
    sandbox.set_web_variables(web_title="Hello again from kiln")
    sandbox.invoke("bake", "web", "--skip-tests", check=True)
    with sandbox.registry() as registry:
        web = registry.get("web", 2)
        assert web is not None and registry.get("web", 1) is not None
        # A recorded test run, as `invoke test web` would leave it.
        registry.record_test_run(
            "web", 2, suite="acceptance", passed=True, summary="3 passed",
            output="test_page_is_served PASSED", started_at=utc_now(), duration_s=4.2,
        )  # fmt: skip

    proc = sandbox.invoke("report", check=True)
    page = sandbox.root / ".kiln" / "report" / "index.html"
    assert f"wrote {page}" in proc.stdout
    text = page.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), "the page loads nothing"

    # The fragment makes the page's script open web v2's details: proof that its JS ran.
    url = f"{page.as_uri()}#role-web-v2"
    dom = chromium(tmp_path / "profile", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    lineage = html[html.index('<svg class="lineage"') : html.index("</svg>", html.index("lineage"))]
    for role in ("debian-bookworm", "base", "web"):
        assert f'data-role="{role}"' in lineage
    assert "v2 · untested" in lineage  # the newest web version is what the tree shows
    row = re.search(r'<tr id="role-web-v2" class="version">(.*?)</tr>', html, re.S)
    assert row is not None
    assert web.fingerprint[:12] in row.group(1)
    assert sandbox.image("web", 2) in row.group(1)
    assert "base v1" in row.group(1) and "1/1 passed" in row.group(1)
    details = re.search(r'<details class="version-details" id="role-web-v2-details" open="">', html)
    assert details is not None, "the version's details were not opened by the page's script"
    assert "Packages: v1 → v2 (0 changes)" in html
    assert "3 passed" in html and "test_page_is_served PASSED" in html

    shot = sandbox.root / ".kiln" / "report" / "screenshot.png"
    done = chromium(
        tmp_path / "profile", "--window-size=1280,1600", f"--screenshot={shot}", page.as_uri()
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
