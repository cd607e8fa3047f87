"""Cloud targets render valid HCL for the same role definitions (render and validate only)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REGISTRY_ID
from kiln import BuildError, DefinitionError, Project
from kiln.fingerprint import Fingerprint
from kiln.render import parse_hcl
from kiln.targets import get_target
from kiln.targets.base import BakePlan

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden"
CLOUD = ("amazon-ebs", "googlecompute")


def plan(project: Project, role: str, target: str) -> BakePlan:
    fingerprint = Fingerprint(
        digest="c" * 64, inputs={"parent": {"name": "base", "fingerprint": "b" * 64}}
    )
    return BakePlan(
        project,
        project.role_named(role),
        fingerprint,
        None,
        get_target(target),
        project.image_names(REGISTRY_ID),
    )


def rendered(project: Project, role: str, target: str) -> dict[str, str]:
    files = get_target(target).render(plan(project, role, target))
    return {f.path.name: f.text for f in files}


@pytest.mark.parametrize("target", CLOUD)
@pytest.mark.parametrize("role", ["base", "web"])
def test_cloud_rendering_matches_golden_files(project: Project, role: str, target: str) -> None:
    """Regenerate with KILN_UPDATE_GOLDEN=1 after a deliberate template change."""
    name = f"{role}.{target}.pkr.hcl"
    text = rendered(project, role, target)[name]
    if os.environ.get("KILN_UPDATE_GOLDEN"):
        (GOLDEN / name).write_text(text)
    assert text == (GOLDEN / name).read_text()


def test_amazon_base_image_comes_from_the_definition(project: Project) -> None:
    hcl = parse_hcl(rendered(project, "base", "amazon-ebs")["base.amazon-ebs.pkr.hcl"], source="t")
    source = hcl["source"][0]["amazon-ebs"]["base"]
    settings = project.get("debian-bookworm").cloud["amazon-ebs"]  # type: ignore[attr-defined]
    assert source["source_ami"] == settings.source_image
    assert source["region"] == "eu-west-1" and source["instance_type"] == "t3.small"
    assert source["tags"]["kiln.version"] == "${var.version}"
    assert source["tags"]["kiln.fingerprint"] == "c" * 64


def test_amazon_child_finds_its_parent_by_fingerprint(project: Project) -> None:
    hcl = parse_hcl(rendered(project, "web", "amazon-ebs")["web.amazon-ebs.pkr.hcl"], source="t")
    source = hcl["source"][0]["amazon-ebs"]["web"]
    assert "source_ami" not in source
    ami_filter = source["source_ami_filter"][0]
    assert ami_filter["filters"] == {"tag:kiln.fingerprint": "b" * 64}
    assert ami_filter["owners"] == ["self"]
    assert source["tags"]["kiln.parent"] == "base:" + "b" * 12


def test_google_labels_fit_gce_rules(project: Project) -> None:
    text = rendered(project, "web", "googlecompute")["web.googlecompute.pkr.hcl"]
    source = parse_hcl(text, source="t")["source"][0]["googlecompute"]["web"]
    assert source["source_image_family"] == "kiln-base"
    for key, value in source["image_labels"].items():
        assert key.islower() and len(value) <= 63 and ":" not in value


def test_a_role_without_cloud_settings_is_refused(tmp_path: Path) -> None:
    shutil.copytree(REPO / "roles", tmp_path / "roles")
    shutil.copytree(REPO / "templates", tmp_path / "templates")
    bare = Project(tmp_path)
    bare.base("debian-bookworm")
    bare.role("base", parent="debian-bookworm", ansible_roles=["common"])
    with pytest.raises(DefinitionError, match="has no settings for target amazon-ebs"):
        rendered(bare, "base", "amazon-ebs")


def test_cloud_targets_do_not_bake_here() -> None:
    with pytest.raises(BuildError, match="renders only"):
        get_target("amazon-ebs").builder()


@pytest.mark.parametrize("target", CLOUD)
@pytest.mark.parametrize("role", ["base", "web"])
def test_cloud_golden_files_pass_packer_validate(tmp_path: Path, role: str, target: str) -> None:
    name = f"{role}.{target}.pkr.hcl"
    shutil.copy(GOLDEN / name, tmp_path / name)
    (tmp_path / "packer").mkdir()
    shutil.copy(GOLDEN / f"{role}.playbook.yml", tmp_path / "packer" / f"{role}.playbook.yml")
    for argv in (["fmt", "-check", name], ["validate", "-syntax-only", name]):
        proc = subprocess.run(["packer", *argv], cwd=tmp_path, capture_output=True, text=True,
                              check=False)  # fmt: skip
        assert proc.returncode == 0, f"packer {argv[0]}: {proc.stdout}{proc.stderr}"
