"""The upstream check's pure parts: sources rewritten for the private tree, apt's policy and
update output read. tests/integration/test_apt_updates_check.py runs the real apt."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from kiln.errors import UpstreamError
from kiln.image_facts import AptState
from kiln.lifecycle import apt_updates as upstream
from kiln.lifecycle.apt_updates import PendingUpdate

KEYS = {"/a.gpg": b"a", "/x/a.gpg": b"xa"}


def test_the_public_api() -> None:
    assert upstream.__all__ == ["ImageToCheck", "PendingUpdate", "check_upstream"]


def test_signed_by_paths_and_mirrored_uris_are_rewritten_once_each() -> None:
    text = (
        "deb [arch=amd64 signed-by=/a.gpg,/x/a.gpg] file:/srv/a stable main\n"
        "deb [signed-by=/x/a.gpg] file:/srv/ab stable main\n"
        "Types: deb\nURIs: file:/srv/a/\nSigned-By: /a.gpg\n"
    )
    rewritten = upstream._rewrite_sources(
        text, "/etc/apt/sources.list", AptState("amd64", files=KEYS), Path("/R"),
        {"file:/srv/a": "http://h:1"},
    )  # fmt: skip
    assert rewritten == (
        "deb [arch=amd64 signed-by=/R/a.gpg,/R/x/a.gpg] http://h:1 stable main\n"
        "deb [signed-by=/R/x/a.gpg] file:/srv/ab stable main\n"
        "Types: deb\nURIs: http://h:1/\nSigned-By: /R/a.gpg\n"
    )


def test_a_keyring_outside_the_captured_files_is_refused() -> None:
    with pytest.raises(UpstreamError, match=re.escape("/usr/share/keyrings/gone.gpg")):
        upstream._rewrite_sources(
            "deb [signed-by=/usr/share/keyrings/gone.gpg] http://x stable main\n",
            "/etc/apt/sources.list", AptState("amd64"), Path("/R"), {},
        )  # fmt: skip


@pytest.mark.parametrize("path", ["etc/apt/sources.list", "/etc/apt/../../../root/.ssh/x"])
def test_an_image_file_never_lands_outside_the_tree(path: str) -> None:
    with pytest.raises(UpstreamError, match="not a plain path"):
        upstream._inside(Path("/R"), path)


RELEASES = {
    "http://d/debian bookworm/main amd64 Packages": {"a": "stable", "n": "bookworm"},
    "http://d/security bookworm-security/main amd64 Packages": {
        "a": "stable-security", "n": "bookworm-security", "l": "Debian-Security",
    },
}  # fmt: skip
POLICY = """\
libc6:
  Installed: 2.36-9+deb12u1
  Candidate: 2.36-9+deb12u4
  Version table:
     2.36-9+deb12u4 500
        500 http://d/security bookworm-security/main amd64 Packages
        500 http://d/debian bookworm/main amd64 Packages
     2.36-9+deb12u3 500
        500 http://d/debian bookworm/main amd64 Packages
 *** 2.36-9+deb12u1 100
        100 /tmp/x.status
libc6:i386:
  Installed: 2.36-9
  Candidate: 2.36-9
  Version table:
 *** 2.36-9 100
        100 /tmp/x.status
local:
  Installed: 9.0
  Candidate: 1.0
  Version table:
 *** 9.0 100
        100 /tmp/x.status
     1.0 1001
        1001 http://d/debian bookworm/main amd64 Packages
"""


def test_policy_gives_the_packages_whose_candidate_is_listed_above_the_installed_one() -> None:
    found = list(upstream._parse_policy(POLICY, RELEASES, "amd64"))
    assert found == [
        PendingUpdate(
            "libc6", "amd64", "2.36-9+deb12u1", "2.36-9+deb12u4",
            ("bookworm-security", "bookworm"), security=True,
        )
    ]  # fmt: skip


def test_update_failures_are_one_line_per_source_without_apts_repetitions() -> None:
    stdout = (
        "Hit:1 http://d/debian bookworm InRelease\n"
        "Err:2 http://d/security bookworm-security InRelease\n"
        "  The following signatures were invalid: BADSIG 0123\n"
        "Reading package lists...\n"
    )
    stderr = (
        "W: An error occurred during the signature verification. The repository is not "
        "updated and the previous index files will be used. GPG error: ...\n"
        "W: http://d/x InRelease: Key is stored in legacy trusted.gpg keyring\n"
        "E: Failed to fetch http://d/security/dists/bookworm-security/InRelease  BADSIG\n"
        "E: Some index files failed to download.\n"
        "E: The repository 'http://d/other stable Release' is not signed.\n"
    )
    assert upstream._update_failures(stdout, stderr) == [
        "http://d/security bookworm-security InRelease: The following signatures were invalid: "
        "BADSIG 0123",
        "E: The repository 'http://d/other stable Release' is not signed.",
    ]
