"""Rendering: HCL escaping, parse-back checks, golden files and reproducibility."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import plan_for
from kiln import Project, RenderError
from kiln.render import (
    Interpolated,
    RenderedFile,
    check_values,
    decode_hcl,
    decode_hcl_string,
    hcl_body,
    hcl_shape,
    hcl_string,
    hcl_value,
    lookup,
    parse_hcl,
    render_template,
    write_if_changed,
)
from kiln.resources import TEMPLATES_DIR
from kiln.targets import get_target

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden"


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("plain", '"plain"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("${var.x}", '"\\u0024{var.x}"'),
        ("%{ if true }", '"\\u0025{ if true }"'),
        ("a${", '"a\\u0024{"'),  # no "}" after it: python-hcl2 cannot lex "$${" here
        ("two\nlines\r\t", '"two\\nlines\\r\\t"'),
        ("bell\x07", '"bell\\u0007"'),
        ("sep\u2028", '"sep\\u2028"'),
        ("<<EOF", '"<<EOF"'),
        ("é ✓", '"é ✓"'),
    ],
)
def test_hcl_string_escapes(value: str, literal: str) -> None:
    assert hcl_string(value) == literal
    assert decode_hcl_string(literal) == value


def test_values_round_trip_through_python_hcl2() -> None:
    value = {
        "quote": 'a"b',
        "interp": '${file("/etc/passwd")}',
        "directive": "%{ for x in y }",
        "nested": {"list": ["-e", "x=${y}", "}\n]"], "n": 3, "f": 1.5, "b": True, "none": None},
    }
    parsed = parse_hcl(f"v = {hcl_value(value)}\n", source="test")
    assert parsed["v"] == value


def test_parse_errors_become_render_errors() -> None:
    with pytest.raises(RenderError, match="rendered HCL does not parse"):
        parse_hcl('source "docker" {\n', source="broken.pkr.hcl")


def test_check_values_names_the_mismatch() -> None:
    parsed = {"source": [{"docker": {"web": {"image": "kiln/base:7"}}}]}
    check_values(parsed, {"source.docker.web.image": "kiln/base:7"}, source="x")
    with pytest.raises(RenderError, match=r"source\.docker\.web\.image is 'kiln/base:7'"):
        check_values(parsed, {"source.docker.web.image": "kiln/base:8"}, source="x")


def test_strict_undefined_in_templates(tmp_path: Path) -> None:
    (tmp_path / "t.j2").write_text("x = {{ missing | hcl }}\n")
    with pytest.raises(RenderError, match="'missing' is undefined"):
        render_template(tmp_path, "t.j2", {})


def rendered(project: Project, role: str) -> dict[str, str]:
    plan = plan_for(project, project.role_named(role))
    return {f.path.name: f.text for f in get_target("docker").render(plan)}


@pytest.mark.parametrize("role", ["base", "web"])
def test_docker_rendering_matches_golden_files(project: Project, role: str) -> None:
    """Regenerate with KILN_UPDATE_GOLDEN=1 after a deliberate template change."""
    for name, text in rendered(project, role).items():
        golden = GOLDEN / name
        if os.environ.get("KILN_UPDATE_GOLDEN"):
            golden.write_text(text)
        assert text == golden.read_text(), f"{name} differs from {golden}"


def test_rendering_is_byte_identical_for_the_same_inputs(project: Project) -> None:
    assert rendered(project, "web") == rendered(project, "web")


def test_variables_reach_ansible_as_one_json_argument(project: Project) -> None:
    text = rendered(project, "web")["web.pkr.hcl"]
    parsed = parse_hcl(text, source="web")
    ansible = next(p["ansible"] for p in parsed["build"][0]["provisioner"] if "ansible" in p)
    args = ansible["extra_arguments"]
    assert '{"web_message": "Baked once, never patched.", "web_title": "Hello from kiln"}' in args
    assert "ansible_host=${build.ID}" in args


@pytest.mark.parametrize("golden", ["web.pkr.hcl", "base.pkr.hcl"])
def test_golden_files_pass_packer_fmt_and_validate(tmp_path: Path, golden: str) -> None:
    packer = shutil.which("packer")
    assert packer, "packer is required (scripts/setup.sh installs it)"
    # validate resolves the playbook path relative to the working directory
    shutil.copy(GOLDEN / golden, tmp_path / golden)
    (tmp_path / "packer").mkdir()
    for playbook in GOLDEN.glob("*.playbook.yml"):
        shutil.copy(playbook, tmp_path / "packer" / playbook.name)
    fmt = subprocess.run([packer, "fmt", "-check", golden], cwd=tmp_path, capture_output=True,
                         text=True, check=False)  # fmt: skip
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    validate = subprocess.run([packer, "validate", "-syntax-only", golden], cwd=tmp_path,
                              capture_output=True, text=True, check=False)  # fmt: skip
    assert validate.returncode == 0, validate.stdout + validate.stderr


@pytest.mark.parametrize("literal", ["", '"', "plain", '"open', 'close"', "'single'"])
def test_decode_hcl_string_refuses_what_is_not_a_quoted_string(literal: str) -> None:
    with pytest.raises(RenderError, match="expected a quoted HCL string"):
        decode_hcl_string(literal)


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ('""', ""),
        ('"$${var.x}"', "${var.x}"),  # HCL's own escapes, as a hand-written file has them
        ('"%%{ if x }"', "%{ if x }"),
        ('"a{b}"', "a{b}"),
        ('"\\U0001F600 \\u00e9"', "😀 é"),
        ('"\\"q\\" \\\\ \\n\\r\\t"', '"q" \\ \n\r\t'),
    ],
)
def test_decode_hcl_string_undoes_every_hcl_escape(literal: str, value: str) -> None:
    assert decode_hcl_string(literal) == value


def test_hcl_value_renders_scalars_and_refuses_other_types() -> None:
    assert [hcl_value(v) for v in (True, False, None, 3, 1.5)] == [
        "true",
        "false",
        "null",
        "3",
        "1.5",
    ]
    assert hcl_value([]) == "[]" and hcl_value(["one"]) == '["one"]' and hcl_value({}) == "{\n}"
    with pytest.raises(RenderError, match="cannot render a set into HCL"):
        hcl_value({"a"})


def test_multi_line_values_are_laid_out_as_packer_fmt_does() -> None:
    value = {"k": ["a", "b"], "longer": {"x": 1}}
    assert hcl_value(value, 1) == (
        "{\n"
        '    "k"      = [\n'
        '      "a",\n'
        '      "b",\n'
        "    ]\n"
        '    "longer" = {\n'
        '      "x" = 1\n'
        "    }\n"
        "  }"
    )
    assert parse_hcl(f"v = {hcl_value(value)}\n", source="t")["v"] == value


def test_hcl_body_aligns_runs_and_sets_blocks_and_multi_line_values_apart() -> None:
    body = hcl_body(
        {"a": 1, "long_name": "x", "list": ["p", "q"], "b": True, "inner": {"k": "v"}},
        blocks=("inner",),
    )
    assert body == (
        "  a         = 1\n"
        '  long_name = "x"\n'
        "  list = [\n"
        '    "p",\n'
        '    "q",\n'
        "  ]\n"
        "  b = true\n"
        "  inner {\n"
        '    k = "v"\n'
        "  }"
    )
    parsed = parse_hcl(f'block "x" {{\n{body}\n}}\n', source="t")
    assert parsed == {
        "block": [
            {"x": {"a": 1, "long_name": "x", "list": ["p", "q"], "b": True, "inner": [{"k": "v"}]}}
        ]
    }


def test_interpolated_strings_keep_their_interpolations() -> None:
    assert hcl_value(Interpolated('${build.ID} "q" \\')) == '"${build.ID} \\"q\\" \\\\"'
    assert hcl_value("${build.ID}") == '"\\u0024{build.ID}"'


def test_decode_hcl_drops_python_hcl2_bookkeeping_keys() -> None:
    tree = {'"k"': '"v"', "__is_block__": True, "__comments__": ["# c"], "n": [1, '"s"']}
    assert decode_hcl(tree) == {"k": "v", "n": [1, "s"]}


def test_lookup_follows_blocks_and_misses_quietly() -> None:
    tree = {"build": [{"other": 1}, {"provisioner": [{"shell": {"inline": ["x"]}}]}], "n": 3}
    assert lookup(tree, "build.provisioner.shell.inline") == ["x"]
    assert lookup(tree, "build.missing") is None
    assert lookup(tree, "n.deeper") is None
    assert lookup(tree, "nothing.here") is None


def test_parse_error_of_a_file_off_the_fast_path_names_its_source() -> None:
    with pytest.raises(RenderError, match=r"^bad\.pkr\.hcl: rendered HCL does not parse"):
        parse_hcl("x = <<EOF\nunterminated\n", source="bad.pkr.hcl")


def test_template_errors_name_the_template(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match=r"template 'absent\.j2' not found in .*$") as missing:
        render_template(tmp_path, "absent.j2", {})
    assert "reinstall" not in str(missing.value)  # the hint is for kiln's own templates only
    with pytest.raises(RenderError, match="lacks its templates: reinstall it from a full wheel"):
        render_template(TEMPLATES_DIR, "absent.j2", {})
    (tmp_path / "bad.j2").write_text("line one\n{% if %}\n")
    with pytest.raises(RenderError, match=r"^template \S*bad\.j2:2: Expected an expression"):
        render_template(tmp_path, "bad.j2", {})


def test_write_if_changed_writes_new_and_changed_files_only(tmp_path: Path) -> None:
    # A fresh checkout has no packer/ directory, nor anything under it.
    first = RenderedFile(tmp_path / "sub" / "deeper" / "a.pkr.hcl", "a = 1\n")
    second = RenderedFile(tmp_path / "b.pkr.hcl", "b = 1\n")
    assert write_if_changed([first, second]) == [first.path, second.path]
    assert first.path.read_text() == "a = 1\n"
    before = first.path.stat().st_mtime_ns
    changed = RenderedFile(second.path, "b = 2\n")
    assert write_if_changed([first, changed]) == [second.path]
    assert first.path.stat().st_mtime_ns == before
    assert second.path.read_text() == "b = 2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.pkr.hcl", "sub"]  # no temp files


def test_hcl_body_sets_blocks_apart_at_every_depth() -> None:
    # A provisioner block inside a build block: the names of blocks hold below the top level.
    body = hcl_body(
        {"build": {"provisioner": {"inline": 1}, "name": 2}}, 1, ("build", "provisioner")
    )
    assert body == "  build {\n    provisioner {\n      inline = 1\n    }\n    name = 2\n  }"


def test_the_shape_cache_puts_literals_back_inside_expressions_too() -> None:
    """parse_hcl's shape path (one parse per file shape): a literal inside an expression comes
    back as its source text, whole literals as their values, each in its own place."""
    text = 'a = upper("x y", "z")\nb = ["p", "q"]\nc = "plain"\nd = { lines2 = "v" }\n'
    shape = hcl_shape(text)
    assert shape is not None and shape[1] == ['"x y"', '"z"', '"p"', '"q"', '"plain"', '"v"']
    assert parse_hcl(text, source="t") == {
        "a": '${upper("x y", "z")}',
        "b": ["p", "q"],
        "c": "plain",
        "d": {"lines2": "v"},  # a key that ends in digits is not a placeholder
    }


def test_a_one_item_list_keeps_its_items_indent() -> None:
    # One item stays on the list's line; a map inside it still closes at the attribute's level.
    assert hcl_value([{"a": 1, "bb": 2}], 1) == '[{\n    "a"  = 1\n    "bb" = 2\n  }]'
