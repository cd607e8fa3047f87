"""Every task explains itself in `invoke --list` and `invoke --help TASK`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from invoke.collection import Collection

REPO = Path(__file__).resolve().parents[2]


def collection() -> Collection:
    import runpy

    ns = runpy.run_path(str(REPO / "tasks.py"))["ns"]
    assert isinstance(ns, Collection)
    return ns


def test_invoke_list_shows_a_summary_for_every_task() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "invoke", "--list"], cwd=REPO, capture_output=True, text=True,
        check=True,
    ).stdout  # fmt: skip
    names = sorted(collection().task_names)
    assert names, "no tasks"
    for name in names:
        line = next((ln for ln in out.splitlines() if ln.strip().startswith(name + " ")), "")
        assert len(line.split(None, 1)) == 2, f"task {name} has no summary in --list"


@pytest.mark.parametrize("name", sorted(collection().task_names))
def test_every_argument_has_help(name: str) -> None:
    task = collection()[name]
    args = [a for a in task.get_arguments() if a.name not in ("help",)]
    missing = [a.name for a in args if not a.help]
    assert not missing, f"task {name}: arguments without help: {missing}"
    assert (task.__doc__ or "").strip().splitlines()[0].endswith(".")


@pytest.mark.parametrize("name", sorted(collection().task_names))
def test_the_json_flag_is_dash_j_on_every_task(name: str) -> None:
    flags = {a.name: set(a.names) for a in collection()[name].get_arguments()}
    if "json" in flags:
        assert flags["json"] == {"json", "j"}, f"task {name}: JSON is {sorted(flags['json'])}"


def _invoke(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


# show and history have one positional, promote and deploy two, diff three; bake has none.
@pytest.mark.parametrize("name", ["show", "bake", "history", "promote", "deploy", "diff"])
@pytest.mark.parametrize("word", ["--help", "-h"])
def test_help_after_a_task_is_its_help_not_a_positional(name: str, word: str) -> None:
    proc = _invoke(name, word)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"Usage: inv[oke] [--core-opts] {name} [--options]")
    assert "Options:" in proc.stdout and proc.stderr == ""
    assert proc.stdout == _invoke("--help", name).stdout


def test_without_help_a_task_still_wants_its_positionals() -> None:
    # Only a command line that asks for help turns the positionals into flags.
    proc = _invoke("show")
    assert proc.returncode != 0
    assert "'show' did not receive required positional arguments: 'role'" in proc.stderr


def test_the_one_line_error_hook_covers_only_the_loading_of_the_definitions(
    tmp_path: Path,
) -> None:
    # In a fresh interpreter: the hook is process-wide, so a test must not change its own.
    script = """
import sys
from pathlib import Path
before = sys.excepthook
import kiln.tasks
from kiln import Project
assert sys.excepthook is not before, "no hook while tasks.py defines its roles"
kiln.tasks.collection(Project(Path(sys.argv[1])))
assert sys.excepthook is before, "the hook outlived the definitions"
print("ok")
"""
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "ok\n", "")
