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
    check_values,
    decode_hcl_string,
    hcl_string,
    hcl_value,
    parse_hcl,
    render_template,
)
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
