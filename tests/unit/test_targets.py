"""The target seam: a Renderer writes HCL, a Builder bakes; cloud targets only render."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from conftest import parent_version, plan_for
from kiln import BuildError, Project, commands, targets
from kiln.registry import Artifact, Version
from kiln.targets import BakeTarget, Builder, Renderer, get_target, target_names
from kiln.targets.base import TargetOptions

LOCAL = ("docker", "qemu")
CLOUD = ("amazon-ebs", "googlecompute")


def test_the_seam_is_pinned() -> None:
    assert sorted(targets.__all__) == [
        "BakePlan",
        "BakeTarget",
        "Builder",
        "Renderer",
        "TargetOptions",
        "get_target",
        "target_names",
    ]


def test_every_builder_method_is_abstract() -> None:
    """No builder default that silently does nothing: each target says what it does."""
    concrete = {
        name
        for name, value in vars(Builder).items()
        if callable(value) and not name.startswith("__")
    }
    assert concrete == Builder.__abstractmethods__


def test_targets_are_built_from_one_options_object() -> None:
    for name in target_names():
        target = get_target(name, accel="tcg")
        assert isinstance(target, Renderer) and target.name == name
        assert target.options == TargetOptions(accel="tcg")


@pytest.mark.parametrize("name", LOCAL)
def test_local_targets_are_their_own_builders(name: str) -> None:
    target = get_target(name)
    assert isinstance(target, BakeTarget) and target.builder() is target


@pytest.mark.parametrize("name", CLOUD)
def test_cloud_targets_have_no_builder(name: str) -> None:
    target = get_target(name)
    assert not isinstance(target, Builder)
    with pytest.raises(BuildError, match=f"target {name} renders only; it cannot bake"):
        target.builder()


def test_capabilities_belong_to_the_targets() -> None:
    flattens = {n: get_target(n).flattens_chain() for n in target_names()}
    assert flattens == {"docker": False, "qemu": True, "amazon-ebs": False, "googlecompute": False}
    recorded = {n for n in target_names() if get_target(n).starts_from_recorded_parent()}
    assert recorded == set(LOCAL)
    tested = {n for n in LOCAL if get_target(n).builder().runs_acceptance_tests()}
    assert tested == {"docker"}


@pytest.mark.parametrize(
    ("name", "file"),
    [
        ("docker", "web.pkr.hcl"),
        ("qemu", "web.qemu.pkr.hcl"),
        ("amazon-ebs", "web.amazon-ebs.pkr.hcl"),
        ("googlecompute", "web.googlecompute.pkr.hcl"),
    ],
)
def test_the_target_names_its_hcl_file(project: Project, name: str, file: str) -> None:
    plan = plan_for(project, project.role_named("web"), name)
    assert plan.hcl_path == project.packer_path / file


def test_render_of_a_flattening_target_starts_from_the_base(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`invoke render --target qemu` writes what the bake runs: the whole chain on the base."""
    base = parent_version("debian-bookworm", 4)
    image = Artifact("qemu", str(tmp_path / "base.qcow2"), "0" * 64, "0" * 64, 1)
    base = replace(base, target="qemu", artifacts=(image,))
    asked: list[str] = []

    class OneBase:
        def __enter__(self) -> OneBase:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def latest(self, role: str, *, target: str | None = None) -> Version | None:
            asked.append(role)
            return base if role == "debian-bookworm" else None

        def identity(self) -> str:
            return "0" * 32

    monkeypatch.setattr(commands, "open_registry", lambda _: OneBase())
    project.packer_path = tmp_path
    [hcl] = commands.render_roles(project, ["web"], target="qemu", validate=False)
    assert hcl == tmp_path / "web.qemu.pkr.hcl" and asked == ["debian-bookworm"]
    assert str(tmp_path / "base.qcow2") in hcl.read_text()
    playbook = (tmp_path / "web.playbook.yml").read_text()
    assert '- role: "common"' in playbook and '- role: "web"' in playbook
