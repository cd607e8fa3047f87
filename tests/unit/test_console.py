"""Progress output: plain lines, JSON lines, and the live per-role display on a terminal."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import pytest
from kiln.console import LiveReporter, Reporter, make_reporter

EVENTS: list[dict[str, Any]] = [
    {"event": "play_start", "play": "Bake web", "tasks_estimate": 3},
    {"event": "task_start", "task": "Gathering Facts", "path": "web.playbook.yml:4"},
    {"event": "task_result", "status": "ok", "changed": False},
    {"event": "task_start", "task": "web : Install nginx", "path": "roles/web/tasks/main.yml:5"},
    {"event": "task_result", "status": "ok", "changed": True},
    {"event": "task_start", "task": "web : Render the page", "path": "roles/web/tasks/main.yml:9"},
    {"event": "task_result", "status": "failed", "changed": False},
    {"event": "task_start", "task": "web : Restart nginx", "handler": True},
    {"event": "stats", "ok": 3},
    {"event": "phase", "phase": "commit"},
]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def feed(reporter: Reporter) -> None:
    reporter.phase("web", "render", "version 4 on base v3")
    for event in EVENTS:
        reporter.ansible_event("web", event)
    reporter.finished("web", "failed", "bake of web v4 failed")


def test_plain_lines_count_tasks_from_the_callback_estimate() -> None:
    out = io.StringIO()
    feed(Reporter(out))
    text = out.getvalue()
    assert "web: provision - Bake web" in text
    assert "provision: task 2 of 3: web : Install nginx [ok=1 changed=0 failed=0]" in text
    # The handler runs past the play's estimate: the count goes on without "of".
    assert "provision: task 4: web : Restart nginx (handler) [ok=1 changed=1 failed=1]" in text
    assert "web: capture" in text and "web: commit" in text
    assert "web: failed - bake of web v4 failed" in text


def test_json_mode_is_one_object_per_line() -> None:
    out = io.StringIO()
    feed(Reporter(out, json_mode=True))
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    tasks = [r for r in records if r["kind"] == "task"]
    assert [(t["n"], t["total"]) for t in tasks] == [(1, 3), (2, 3), (3, 3), (4, 3)]
    assert tasks[-1]["changed"] == 1 and tasks[-1]["failed"] == 1
    assert records[-1]["kind"] == "finished" and records[-1]["outcome"] == "failed"


def test_live_display_redraws_one_line_per_role(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("COLUMNS", "120")
    term = Terminal()
    live = make_reporter(term)
    assert isinstance(live, LiveReporter)
    live.waiting("worker")
    live.phase("web", "render")
    for event in EVENTS[:5]:
        live.ansible_event("web", event)
    live.warning("worker", "slow mirror")
    live.close()
    screen = render_screen(term.getvalue())
    assert screen[0].startswith("[") and "worker: WARNING: slow mirror" in screen[0]
    assert re.match(r"worker\s+waiting for its parent", screen[1])
    assert re.match(
        r"web\s+provision  task 2 of 3  \[ok 1 changed 1 failed 0\]  web : Install", screen[2]
    )
    assert len(screen) == 3  # the block was redrawn in place, never appended


def test_no_terminal_or_json_means_no_live_display(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")
    assert type(make_reporter(io.StringIO())) is Reporter
    assert type(make_reporter(Terminal(), json_mode=True)) is Reporter
    assert type(make_reporter(Terminal(), verbose=True)) is Reporter


@pytest.mark.parametrize("width", [30, 200])
def test_live_lines_fit_the_terminal(width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    term = Terminal()
    live = LiveReporter(term)
    live.phase("web", "provision", "a very long detail " * 10)
    live.close()
    for line in render_screen(term.getvalue()):
        assert len(line) <= width


def render_screen(raw: str) -> list[str]:
    """Replay the ANSI output the way a terminal shows it: cursor-up-and-clear, colours dropped."""
    lines: list[str] = []
    for chunk in re.split(r"(\x1b\[\d+F\x1b\[J)", raw):
        up = re.fullmatch(r"\x1b\[(\d+)F\x1b\[J", chunk)
        if up:
            del lines[len(lines) - int(up.group(1)) :]
            continue
        text = re.sub(r"\x1b\[[0-9;]*m", "", chunk)
        lines += text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")
    return [line.rstrip() for line in lines if line.strip()]


# -- secrets: every line printed passes through the bake's redactor --------------------------
SECRET = "Tk\"e\\y%$ é,ß'Ж-7"  # quotes, a backslash, %, $ and non-ASCII letters
CARELESS: list[dict[str, Any]] = [
    {"event": "play_start", "play": "Bake careless", "tasks_estimate": 2},
    # as kiln's callback writes them: the task name as Ansible templated it
    {"event": "task_start", "task": f"careless : Register with token {SECRET}", "path": "x:3"},
    {"event": "task_result", "status": "ok", "changed": False},
    {"event": "task_start", "task": "careless : Call the API", "path": "x:7"},
    {
        "event": "task_result",
        "status": "failed",
        "task": f"careless : Call the API with {SECRET}",
        "msg": f"non-zero return code: {json.dumps(SECRET)}",
        "stdout": f"token={SECRET}",
    },
]


def bake_careless(reporter: Reporter) -> None:
    reporter.phase("careless", "provision", f"detail {SECRET}")
    for event in CARELESS:
        reporter.ansible_event("careless", event)
    reporter.packer_line("careless", f"    careless: TASK [Register with token {SECRET}]")
    reporter.message("careless", f"careless: {SECRET!r}")
    reporter.warning("careless", f"url {SECRET}")
    reporter.text(f"bake of careless v1 failed: Ansible task {SECRET!r} failed")
    reporter.finished("careless", "failed", f"task {SECRET}")
    reporter.close()


def leaked(text: str) -> list[str]:
    forms = {"raw": SECRET, "json": json.dumps(SECRET)[1:-1], "repr": repr(SECRET)[1:-1]}
    return [name for name, form in forms.items() if form in text]


@pytest.mark.parametrize("kind", ["plain", "json", "live"])
def test_a_masked_secret_is_printed_only_as_the_mask(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # wide enough that no line is cut
    out = Terminal()

    def reporter() -> Reporter:
        if kind == "live":
            return LiveReporter(out)
        return Reporter(out, json_mode=kind == "json", verbose=True)

    bake_careless(reporter())  # the positive control: unmasked, the secret is printed
    assert leaked(out.getvalue()) != []
    out.seek(0)
    out.truncate()
    masked = reporter()
    masked.mask([SECRET, ""])
    bake_careless(masked)
    printed = out.getvalue()
    assert leaked(printed) == []
    assert "Register with token ********" in printed or kind == "live"
    assert "********" in printed


def test_the_live_line_masks_a_secret_before_it_cuts_the_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "76")
    term = Terminal()
    live = LiveReporter(term)
    live.mask([SECRET])
    live.phase("careless", "provision")
    live.ansible_event("careless", {"event": "task_start", "task": f"Use {SECRET} here"})
    live.close()
    screen = "\n".join(render_screen(term.getvalue()))
    assert "Use **" in screen and screen.count("...") == 1  # the line was cut in the mask
    assert SECRET[:4] not in screen  # a cut after the mask leaves no head of the secret
