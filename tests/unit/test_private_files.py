"""Logs, event files and work directories only their owner may read: 0600 files in 0700
directories from their creation, whatever the umask, and older wide ones tightened.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from kiln.acceptance import AcceptanceResult, write_log
from kiln.bake.invocation import keep_events
from kiln.bake.scope import workspace
from kiln.console import Reporter
from kiln.model import Project
from kiln.private_files import log_dir, private_dir, private_open, write_private
from kiln.redact import Redactor


@pytest.fixture(autouse=True)
def open_umask() -> Iterator[None]:
    """umask 0: every mode below is kiln's doing, not the umask's grace."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_dir_makes_and_tightens_every_directory_below_its_base(tmp_path: Path) -> None:
    (tmp_path / "state" / "logs").mkdir(parents=True, mode=0o755)  # an older kiln's
    path = private_dir(tmp_path / "state" / "logs" / "web" / "3", below=tmp_path / "state")
    assert path.is_dir()
    for made in ("logs", "logs/web", "logs/web/3"):
        assert mode(tmp_path / "state" / made) == 0o700, made
    assert mode(tmp_path / "state") == 0o777  # the base is the user's or the project's


def test_private_files_are_0600_from_creation_and_rewrites_are_tightened(tmp_path: Path) -> None:
    with private_open(tmp_path / "packer.log") as log:
        assert mode(tmp_path / "packer.log") == 0o600  # before the first byte
        log.write("line é\n")
    with private_open(tmp_path / "packer.log", "a") as log:
        log.write("more\n")
    assert (tmp_path / "packer.log").read_text(encoding="utf-8") == "line é\nmore\n"
    wide = tmp_path / "acceptance.log"
    wide.write_text("from an older kiln")
    wide.chmod(0o644)
    assert write_private(wide, "new") == wide
    assert wide.read_text() == "new" and mode(wide) == 0o600


def test_a_versions_log_directory_is_private_down_from_the_state_directory(
    tmp_path: Path,
) -> None:
    path = log_dir(tmp_path / ".kiln", "web", 4)
    assert path == tmp_path / ".kiln" / "logs" / "web" / "4"
    assert [mode(p) for p in (path, path.parent, path.parent.parent)] == [0o700] * 3


def test_the_work_directory_is_private(tmp_path: Path) -> None:
    with workspace(tmp_path / "work" / "web" / "3") as work:
        assert mode(work) == 0o700


def test_kept_ansible_events_are_0600(tmp_path: Path) -> None:
    work, logs = tmp_path / "work", log_dir(tmp_path / ".kiln", "web", 1)
    work.mkdir()
    (work / "events.jsonl").write_text('{"event": "task", "name": "s3cret"}\n')
    with open(os.devnull, "w") as quiet:
        keep_events(work, logs, Redactor(["s3cret"]), Reporter(quiet))
    kept = logs / "ansible-events.jsonl"
    assert mode(kept) == 0o600 and "s3cret" not in kept.read_text()


def test_the_acceptance_log_is_0600_in_a_private_directory(tmp_path: Path) -> None:
    project = Project(tmp_path)
    result = AcceptanceResult(
        role="web", version=2, cases=(), output="ok", started_at="", duration_s=0.1, boot_s=0.1
    )
    path = write_log(project, result)
    assert path == tmp_path / ".kiln" / "logs" / "web" / "2" / "acceptance.log"
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    assert mode(tmp_path / ".kiln" / "logs") == 0o700
