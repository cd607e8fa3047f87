"""HCL injection: any string kiln puts into rendered HCL must come back out exactly as it went in.

Hypothesis generates hostile strings (quotes, backslashes, ``${``, ``%{``, heredoc markers,
newlines, control characters, U+2028...) for role variables (values and nested keys) and the other
free text that reaches the docker target's HCL (LABEL values of `changes`, the parent image).
Each case is rendered through the real DockerTarget and parsed back with python-hcl2.
A fixed-seed sample also goes through `packer validate -syntax-only`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from unittest import mock

import hcl2
import pytest
from conftest import REGISTRY_ID
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from kiln.fingerprint import Fingerprint
from kiln.model import ROLE_NAME_RE, Project
from kiln.registry import Artifact, Version
from kiln.render import decode_hcl, parse_hcl
from kiln.targets import base as targets_base
from kiln.targets.base import BakePlan
from kiln.targets.docker import DockerTarget

REPO = Path(__file__).resolve().parents[2]
# 500 by default; KILN_HCL_EXAMPLES=50 for a quick run.
EXAMPLES = int(os.environ.get("KILN_HCL_EXAMPLES", "500"))
PACKER_SAMPLES = 10

# Fragments that mean something to HCL, its template language, JSON, shells or Dockerfiles.
NASTY = (
    '"', "\\", "\\\\", '\\"', "${", "$${", "$$${", "%{", "%%{", "}", "{", "~}", "${~", "%{~",
    "${var.version}", "%{ if true }x%{ endif }", "<<EOF", "<<-EOF", "\nEOF\n", "EOF",
    "\n", "\r", "\r\n", "\t", "\x00", "\x07", "\x1b[31m", "\x7f", "\x85", "\u2028", "\u2029",
    "\ufeff", "\u200b", "#", "//", "/*", "*/", "\\u0041", "\\n", "\\${", "=", ",", "[", "]",
    "'", "`", "$(id)", "{{ .Image }}", "{{ lookup('pipe', 'id') }}", "é", "✓", "😀", "\U0010fffd",
)  # fmt: skip

characters = st.characters(codec="utf-8", exclude_categories=["Cs"])  # any encodable code point
nasty_text = st.lists(
    st.one_of(st.sampled_from(NASTY), st.text(characters, max_size=8)), max_size=8
).map("".join)
# Role variables may not hold "{{" (kiln refuses it: Packer's Go templates would evaluate it).
variable_text = nasty_text.map(lambda text: re.sub(r"\{(?=\{)", "{ ", text))
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | variable_text,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(variable_text, children, max_size=4)
    ),
    max_leaves=12,
)
variable_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True).filter(
    lambda name: not name.startswith("ansible_")
)
role_names = st.from_regex(ROLE_NAME_RE, fullmatch=True).filter(
    lambda name: ROLE_NAME_RE.fullmatch(name) is not None
)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project root with the repository's templates and an Ansible role for any name."""
    path = tmp_path_factory.mktemp("injection")
    shutil.copytree(REPO / "templates", path / "templates")
    (path / "roles").mkdir()
    return path


def make_plan(
    root: Path,
    role_name: str,
    variables: dict[str, Any],
    *,
    digest: str = "e" * 64,
    parent_role: str = "base",
    parent_ref: str = "kiln/base:7",
) -> BakePlan:
    """A BakePlan for a role defined through the real model (so its validation applies)."""
    ansible_role = role_name.replace("-", "_")
    (root / "roles" / ansible_role / "tasks").mkdir(parents=True, exist_ok=True)
    project = Project(root)
    base = project.base("bookworm-base")
    role = project.role(role_name, parent=base, variables=variables)
    parent = Version(
        role=parent_role, version=7, kind="role", target="docker", fingerprint="f" * 64,
        parent_role=None, parent_version=None, status="tested", git_commit="0" * 40,
        git_dirty=False, tools={}, inputs={}, timings={}, bake_seconds=1.0,
        created_at="2026-01-01T00:00:00.000000Z",
        artifacts=(Artifact("docker", parent_ref, "sha256:" + "a" * 64),),
    )  # fmt: skip
    return BakePlan(
        project,
        role,
        Fingerprint(digest=digest, inputs={}),
        parent,
        DockerTarget(),
        project.image_names(REGISTRY_ID),
    )


def rendered_values(plan: BakePlan) -> tuple[str, dict[str, Any]]:
    """Render through the docker target, which parses the HCL back and checks it against the
    model; its parse is kept for the assertions here (parsing dominates the run time)."""
    parsed: list[dict[str, Any]] = []

    def keep(text: str, *, source: str) -> dict[str, Any]:
        parsed.append(parse_hcl(text, source=source))
        return parsed[-1]

    with mock.patch.object(targets_base, "parse_hcl", keep):
        files = DockerTarget().render(plan)
    assert len(parsed) == 1
    text = files[0].text
    # parse_hcl may answer from its cache of file shapes (each literal decoded by kiln): the
    # whole file through python-hcl2 itself must give the very same tree.
    full = decode_hcl(hcl2.loads(text))
    assert full == parsed[0]
    return text, full


def assert_round_trip(plan: BakePlan) -> str:
    hcl, parsed = rendered_values(plan)
    (source,) = parsed["source"]
    docker = source["docker"][plan.role.name]
    assert docker["image"] == plan.parent.artifacts[0].ref
    changes = docker["changes"]
    assert f"LABEL kiln.fingerprint={plan.fingerprint.digest}" in changes
    assert f"LABEL kiln.parent={plan.parent_label}" in changes
    (build,) = parsed["build"]
    ansible = next(p["ansible"] for p in build["provisioner"] if "ansible" in p)
    arguments = ansible["extra_arguments"]
    if plan.role.variables:
        assert arguments[-2] == "-e"
        assert json.loads(arguments[-1]) == dict(plan.role.variables)
    else:
        assert not any(a.startswith("{") for a in arguments)
    return hcl


settings.register_profile(
    "injection",
    max_examples=EXAMPLES,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],  # no slow "explain"
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@settings(settings.get_profile("injection"))
@given(
    role_name=role_names,
    variables=st.dictionaries(variable_names, json_values, max_size=5),
)
def test_variables_round_trip_through_rendered_hcl(
    root: Path, role_name: str, variables: dict[str, Any]
) -> None:
    assert_round_trip(make_plan(root, role_name, variables))


@settings(settings.get_profile("injection"))
@given(digest=nasty_text, parent_role=nasty_text, parent_ref=nasty_text)
def test_label_and_image_text_round_trips(
    root: Path, digest: str, parent_role: str, parent_ref: str
) -> None:
    # Not free text today (hex digests, validated names), but escaping must not depend on that.
    plan = make_plan(root, "web", {}, digest=digest, parent_role=parent_role, parent_ref=parent_ref)
    assert_round_trip(plan)


def test_a_hand_picked_nasty_case_round_trips(root: Path) -> None:
    nasty = "".join(NASTY)
    text = re.sub(r"\{(?=\{)", "{ ", nasty)
    plan = make_plan(
        root,
        "web",
        {"everything": text, "nested": {text: [text, {text: None}]}, "x": -0.0},
        digest=nasty,
        parent_role=nasty,
        parent_ref=nasty,
    )
    hcl = assert_round_trip(plan)
    # Every interpolation and directive opener of a value is escaped, never live.
    assert "${" not in hcl.replace("$${", "").replace("${var.", "").replace("${build.ID}", "")


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("packer") is None, reason="packer is not installed")
@seed(20260601)
@settings(
    max_examples=PACKER_SAMPLES,
    deadline=None,
    database=None,
    phases=[Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(variables=st.dictionaries(variable_names, json_values, min_size=1, max_size=4))
def test_packer_accepts_the_rendered_hcl(root: Path, variables: dict[str, Any]) -> None:
    plan = make_plan(root, "web", variables, digest="".join(NASTY), parent_ref="x${y}\n%{z}")
    path = root / "packer" / "sample.pkr.hcl"
    path.parent.mkdir(exist_ok=True)
    path.write_text(assert_round_trip(plan))
    proc = subprocess.run(
        ["packer", "validate", "-syntax-only", str(path)],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "CHECKPOINT_DISABLE": "1"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
