"""Packer 1.7+: rendered HCL pins its plugins (required_plugins) and `packer init` runs first.

Only Packer 1.6.6 can be installed here, and it rejects the block: files for it must stay byte
for byte as they were (tests/golden/), and the newer form is checked by its own golden files
(tests/golden/packer-1.7/), python-hcl2 and `packer fmt` (syntax only, so 1.6.6 can run it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import hcl2
import pytest
from conftest import REGISTRY_ID, parent_version, plan_for
from kiln import Project
from kiln.bake.failures import init_failure
from kiln.bake.inputs import tool_inputs
from kiln.bake.invocation import PackerInvocation
from kiln.bake.plugins import INIT_LOG, install_plugins
from kiln.console import NullReporter
from kiln.errors import Interrupted, PluginInitError
from kiln.fingerprint import Fingerprint
from kiln.packer import PackerRun
from kiln.packer_plugins import COMPONENTS, PLUGINS, declared_plugins, with_required_plugins
from kiln.redact import Redactor
from kiln.registry import Artifact
from kiln.render import decode_hcl
from kiln.targets import get_target
from kiln.targets.base import BakePlan
from kiln.tools import packer_supports_required_plugins

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden"
GOLDEN_17 = GOLDEN / "packer-1.7"
#: What each target's file uses: its builder's plugin, and Ansible's (shell and file are built in).
USES = {
    "docker": ["ansible", "docker"],
    "amazon-ebs": ["amazon", "ansible"],
    "googlecompute": ["ansible", "googlecompute"],
    "qemu": ["ansible", "qemu"],
}


def web_plan(project: Project, target: str, packer_version: str | None) -> BakePlan:
    """The plans of the existing golden files (test_render, test_cloud_targets), for a Packer."""
    web = project.role_named("web")
    images = project.image_names(REGISTRY_ID)
    if target == "docker":
        plan = plan_for(project, web)
    elif target == "qemu":
        base = replace(
            parent_version("debian-bookworm", 4),
            target="qemu",
            artifacts=(
                Artifact("qemu", "artifacts/debian-bookworm/4/vm.qcow2", "0" * 64, "0" * 64),
            ),
        )
        qemu = get_target("qemu", accel="tcg")
        plan = BakePlan(project, web, Fingerprint("e" * 64, {}), base, qemu, images)
    else:
        parent = {"parent": {"name": "base", "fingerprint": "b" * 64}}
        plan = BakePlan(
            project, web, Fingerprint("c" * 64, parent), None, get_target(target), images
        )
    return replace(plan, packer_version=packer_version)


def hcl_of(plan: BakePlan) -> str:
    return next(f.text for f in plan.target.render(plan) if f.path == plan.hcl_path)


@pytest.mark.parametrize(
    ("version", "pins"), [("1.6.6", False), ("1.7.0", True), ("1.10.2", True), ("2.0.0", True)]
)
def test_required_plugins_start_at_packer_1_7(project: Project, version: str, pins: bool) -> None:
    assert packer_supports_required_plugins(version) is pins
    plan = web_plan(project, "docker", version)
    assert plan.pins_plugins is pins
    assert ("required_plugins" in hcl_of(plan)) is pins


@pytest.mark.parametrize("packer_version", [None, "1.6.6"])
@pytest.mark.parametrize("target", ["docker", "amazon-ebs", "googlecompute"])
def test_files_for_packer_1_6_are_the_golden_files(
    project: Project, target: str, packer_version: str | None
) -> None:
    plan = web_plan(project, target, packer_version)
    assert hcl_of(plan) == (GOLDEN / plan.hcl_path.name).read_text()


@pytest.mark.parametrize("target", sorted(USES))
def test_files_for_packer_1_7_match_their_golden_files(project: Project, target: str) -> None:
    """Regenerate with KILN_UPDATE_GOLDEN=1 after a deliberate change."""
    plan = web_plan(project, target, "1.7.0")
    text = hcl_of(plan)
    golden = GOLDEN_17 / plan.hcl_path.name
    if os.environ.get("KILN_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()
    assert hcl_of(web_plan(project, target, "1.10.2")) == text  # one form from 1.7 on


@pytest.mark.parametrize("target", sorted(USES))
def test_packer_1_7_golden_files_pin_what_they_use(target: str) -> None:
    """python-hcl2 reads the golden file itself: its block pins exactly the plugins it uses."""
    name = get_target(target).hcl_name("web")
    tree = decode_hcl(hcl2.loads((GOLDEN_17 / name).read_text()))
    (block,) = tree["packer"][0]["required_plugins"]
    assert sorted(block) == USES[target]
    for plugin, pin in block.items():
        assert pin == {"source": PLUGINS[plugin].source, "version": PLUGINS[plugin].version}


@pytest.mark.parametrize("target", ["docker", "amazon-ebs", "googlecompute"])
def test_packer_1_7_files_differ_from_1_6_ones_by_the_block_only(target: str) -> None:
    name = get_target(target).hcl_name("web")
    old = (GOLDEN / name).read_text()
    assert with_required_plugins(old, USES[target]) == (GOLDEN_17 / name).read_text()


@pytest.mark.parametrize("target", sorted(USES))
def test_packer_1_7_golden_files_are_packer_fmt_clean(tmp_path: Path, target: str) -> None:
    # `packer validate` of 1.6.6 refuses the block ("Unsupported block type"); fmt reads syntax.
    name = get_target(target).hcl_name("web")
    shutil.copy(GOLDEN_17 / name, tmp_path / name)
    proc = subprocess.run(
        ["packer", "fmt", "-check", name], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_pins_live_in_one_mapping_of_hashicorp_plugins() -> None:
    for name, plugin in PLUGINS.items():
        assert plugin.source == f"github.com/hashicorp/{name}"
        assert re.fullmatch(r"~> \d+\.\d+", plugin.version)
    assert set(COMPONENTS.values()) <= set(PLUGINS)


def test_a_hostile_pin_stays_one_string(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    hostile = '1.1"\n    evil = { source = "x", version = "${file("/etc/passwd")}" }\n#'
    monkeypatch.setitem(PLUGINS, "docker", replace(PLUGINS["docker"], version=hostile))
    text = hcl_of(web_plan(project, "docker", "1.7.0"))
    assert declared_plugins(text, source="t") == {"ansible": "~> 1.1", "docker": hostile}


def test_fingerprints_hold_the_pins_from_packer_1_7_only() -> None:
    old = {"packer": "1.6.6", "ansible-core": "2.16.0", "ansible-collections": "9.0.0"}
    assert tool_inputs(old) == old  # unchanged, and so are the fingerprints made with 1.6.6
    new = tool_inputs({**old, "packer": "1.10.2"})
    assert new["packer-plugins"] == (
        "amazon ~> 1.3, ansible ~> 1.1, docker ~> 1.1, googlecompute ~> 1.1, qemu ~> 1.1"
    )


# -- packer init ---------------------------------------------------------------------------------
def fake_packer(tmp_path: Path, *, exit_code: int = 0, output: str = "") -> tuple[Path, Path]:
    """A stand-in for Packer 1.7+, which cannot be installed here (Debian ships 1.6.6, which has
    no `init`): it records its arguments and prints output. kiln starts it through run_packer
    exactly as it would start the real one, so only Packer's own work is faked."""
    calls = tmp_path / "calls"
    script = tmp_path / "packer"
    script.write_text(
        f'#!/bin/sh\necho "$@" >> {calls}\nprintf "%s\\n" "{output}"\nexit {exit_code}\n'
    )
    script.chmod(0o755)
    return script, calls


def init(plan: BakePlan, packer: Path, log_dir: Path) -> dict[str, str]:
    invocation = PackerInvocation(
        packer=str(packer),
        plan=plan,
        version=3,
        bake_id="web:3:test",
        source_commit="0" * 40,
        work=log_dir,
    )
    hcl = hcl_of(plan)
    return install_plugins(invocation, hcl, NullReporter(), log_dir=log_dir, redact=Redactor([]))


def test_no_packer_init_for_a_file_without_the_block(project: Project, tmp_path: Path) -> None:
    packer, calls = fake_packer(tmp_path)
    assert init(web_plan(project, "docker", "1.6.6"), packer, tmp_path) == {}
    assert not calls.exists() and not (tmp_path / INIT_LOG).exists()


def test_packer_init_runs_when_the_block_is_rendered(project: Project, tmp_path: Path) -> None:
    packer, calls = fake_packer(tmp_path, output="Installed plugin github.com/hashicorp/docker")
    pins = init(web_plan(project, "docker", "1.10.2"), packer, tmp_path)
    assert pins == {"ansible": "~> 1.1", "docker": "~> 1.1"}
    assert calls.read_text() == "init packer/web.pkr.hcl\n"
    assert "Installed plugin" in (tmp_path / INIT_LOG).read_text()


def test_a_failing_packer_init_says_what_to_do(project: Project, tmp_path: Path) -> None:
    packer, _ = fake_packer(tmp_path, exit_code=1, output="Error: Failed getting the docker plugin")
    with pytest.raises(PluginInitError) as caught:
        init(web_plan(project, "docker", "1.10.2"), packer, tmp_path)
    error: Any = caught.value
    message = str(error)
    assert message.startswith("bake of web v3 failed: packer init exited with 1")
    assert "(ansible ~> 1.1, docker ~> 1.1)" in message
    assert "Error: Failed getting the docker plugin" in message
    assert "packer plugins install" in message and "no version was recorded" in message
    assert message.endswith(f"Full logs: {tmp_path / INIT_LOG}")  # outside the project root
    assert (error.role, error.version, error.log_dir) == ("web", 3, tmp_path)
    assert error.plugins == ("ansible ~> 1.1", "docker ~> 1.1")


def test_an_interrupted_packer_init_is_an_interrupt(project: Project, tmp_path: Path) -> None:
    run = PackerRun(returncode=-2, interrupted=True)
    role = project.role_named("web")
    error = init_failure(
        role, 3, run, plugins=["docker ~> 1.1"], output=[], log=tmp_path / INIT_LOG, root=REPO
    )
    assert isinstance(error, Interrupted)
    assert "interrupted during packer init" in str(error)
