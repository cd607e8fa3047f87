"""The fast parse-back check gives python-hcl2's answer, and file digests notice every change."""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from pathlib import Path

import hcl2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kiln import fingerprint
from kiln.render import clear_parse_cache, decode_hcl, hcl_shape, hcl_value, parse_hcl

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def full(text: str) -> object:
    return decode_hcl(hcl2.loads(text))


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.pkr.hcl")), ids=lambda p: p.name)
def test_golden_files_parse_as_python_hcl2_parses_them(path: Path) -> None:
    clear_parse_cache()
    text = path.read_text()
    assert hcl_shape(text) is not None  # the fast path is taken
    assert parse_hcl(text, source=path.name) == full(text)
    other = text.replace('"web"', '"other-role"').replace('"base"', '"b\\u0024{ase"')
    assert parse_hcl(other, source=path.name) == full(other)  # from the cached shape


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=20), min_size=1, max_size=4))
def test_any_values_parse_back_as_python_hcl2_parses_them(values: list[str]) -> None:
    body = "".join(f"a{i} = {hcl_value(v)}\n" for i, v in enumerate(values))
    text = f'# role {values[0]!r}\nblock "{len(values)}" {{\n{body}  l = {hcl_value(values)}\n}}\n'
    try:
        expected = full(text)
    except Exception:
        with pytest.raises(Exception):  # noqa: B017 - whichever error, never a parse
            parse_hcl(text, source="t")
        return
    assert parse_hcl(text, source="t") == expected


@pytest.mark.parametrize(
    "text",
    [
        'a = "x"\nb = <<EOT\n"_kiln0"\nEOT\n',  # heredoc: the whole file goes to python-hcl2
        'a = "x" /* "y" */\n',  # block comment
        'a = "${x}_kiln0"\n',  # a placeholder-like text outside the plain literals
        'a = "bad\\q"\n',  # not an HCL escape
    ],
)
def test_unusual_files_take_the_full_parse(text: str) -> None:
    assert hcl_shape(text) is None


def test_an_injected_line_is_still_caught() -> None:
    text = 'source "docker" "web" {\n  image = "a"\n  b = "x"\ninjected = true\n}\n'
    parsed = parse_hcl(text, source="t")
    assert parsed == full(text) and parsed["source"][0]["docker"]["web"]["injected"] is True


def test_file_digests_follow_changes(tmp_path: Path) -> None:
    path = tmp_path / "tasks.yml"
    path.write_text("one")
    old = time.time() - 60
    os.utime(path, (old, old))
    first = fingerprint.file_digest(path)
    assert fingerprint.file_digest(path) == first
    path.write_text("two")  # same size, within the racy window: hashed again
    assert fingerprint.file_digest(path) != first
    os.utime(path, (old, old))  # even with the old time stamps back, ctime has moved
    assert fingerprint.file_digest(path) == hashlib.sha256(b"two").hexdigest()


def test_parses_in_threads_do_not_leak_into_each_other() -> None:
    # Parallel bakes render in threads; python-hcl2 keeps serialization state in one shared
    # object, so an unguarded parse of `pull = false` beside one of "${...}" strings could read
    # back as the string "false" (seen in CI as a failed bake).
    clear_parse_cache()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # threads take turns often, as on a loaded machine
    templated = 'x = "${var.a} and ${var.b}"\ny = ["${f(1, true, false)}", "${g}"]\n' * 10
    wrong: list[object] = []

    def parse_templated() -> None:
        for n in range(150):  # a new number each time: a new shape, so a real parse
            parse_hcl(f"n = {n}\n{templated}", source="templated")

    def parse_flags() -> None:
        for n in range(150):
            tree = parse_hcl(f'n = {n}\nsource "docker" "x" {{\n  pull = false\n}}\n', source="f")
            pull = tree["source"][0]["docker"]["x"]["pull"]
            if pull is not False:
                wrong.append(pull)

    threads = [threading.Thread(target=parse_templated), threading.Thread(target=parse_flags)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert wrong == []
