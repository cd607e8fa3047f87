"""Mitogen's switch, how it reaches the HCL, the strategy's fallback and how kiln reports it.

The real bakes, with and without Mitogen and with a Mitogen that cannot load, are in
tests/integration/test_mitogen_bakes.py.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import parent_version, plan_for
from kiln import DefinitionError, Project
from kiln.ansible_events import StrategyEvent, parse_event, strategy_of
from kiln.bake.record import role_record
from kiln.console import Reporter
from kiln.fingerprint import Fingerprint
from kiln.registry import Artifact
from kiln.resources import STRATEGY_DIR
from kiln.targets.base import MITOGEN_STRATEGY, ansible_env_vars


def _project(tmp_path: Path, **settings: bool) -> Project:
    (tmp_path / "roles" / "common" / "tasks").mkdir(parents=True)
    (tmp_path / "roles" / "common" / "tasks" / "main.yml").write_text("[]\n")
    return Project(tmp_path, **settings)


def test_mitogen_is_on_unless_the_project_or_the_role_turns_it_off(tmp_path: Path) -> None:
    project = _project(tmp_path)
    bookworm = project.base("debian-bookworm")
    assert project.role("a", parent=bookworm, ansible_roles=["common"]).mitogen is True
    assert project.role("b", parent="a", ansible_roles=["common"], mitogen=False).mitogen is False

    off = _project(tmp_path / "off", mitogen=False)
    base = off.base("debian-bookworm")
    assert off.role("a", parent=base, ansible_roles=["common"]).mitogen is False
    assert off.role("b", parent="a", ansible_roles=["common"], mitogen=True).mitogen is True


def test_the_switch_takes_only_a_boolean(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match=r"^the project: mitogen must be True or False"):
        _project(tmp_path, mitogen="yes")  # type: ignore[arg-type]
    project = _project(tmp_path / "p")
    base = project.base("debian-bookworm")
    with pytest.raises(DefinitionError, match=r"^a: mitogen must be True or False, not 0"):
        project.role("a", parent=base, ansible_roles=["common"], mitogen=0)  # type: ignore[arg-type]


def test_the_switch_is_not_part_of_the_definition_s_fingerprinted_inputs(tmp_path: Path) -> None:
    project = _project(tmp_path)
    base = project.base("debian-bookworm")
    on = project.role("a", parent=base, ansible_roles=["common"])
    off = project.role("b", parent=base, ansible_roles=["common"], mitogen=False)
    assert {**on.inputs(), "name": ""} == {**off.inputs(), "name": ""}


def test_the_strategy_reaches_ansible_only_when_the_role_wants_mitogen(tmp_path: Path) -> None:
    project = _project(tmp_path)
    base = project.base("debian-bookworm")
    on = ansible_env_vars(
        plan_for(project, project.role("a", parent=base, ansible_roles=["common"]))
    )
    assert f"ANSIBLE_STRATEGY={MITOGEN_STRATEGY}" in on
    plan = plan_for(project, project.role("c", parent=base, ansible_roles=["common"]))
    assert f"ANSIBLE_STRATEGY_PLUGINS={plan.relative(STRATEGY_DIR)}" in on
    off_role = project.role("b", parent=base, ansible_roles=["common"], mitogen=False)
    off = ansible_env_vars(plan_for(project, off_role))
    assert not [v for v in off if str(v).startswith("ANSIBLE_STRATEGY")]


def _load_strategy(tmp_path: Path, shadow: dict[str, str] | None) -> dict[str, object]:
    """Load kiln_linear in a fresh interpreter, through Ansible's own strategy loader."""
    env = dict(os.environ, ANSIBLE_STRATEGY_PLUGINS=str(STRATEGY_DIR), ANSIBLE_NOCOLOR="1")
    if shadow is not None:
        package = tmp_path / "shadow" / "ansible_mitogen"
        package.mkdir(parents=True)
        for name, text in shadow.items():
            (package / name).write_text(text)
        env["PYTHONPATH"] = str(package.parent)
    script = textwrap.dedent(
        """
        import json
        from ansible.plugins.loader import strategy_loader
        from ansible.plugins.strategy.linear import StrategyModule as Linear
        cls = strategy_loader.get("kiln_linear", class_only=True)
        print(json.dumps({
            "mitogen": cls.KILN_MITOGEN,
            "fallback": cls.KILN_MITOGEN_FALLBACK,
            "linear": issubclass(cls, Linear),
            "mro": [c.__module__ for c in cls.__mro__],
        }))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
    result["stderr"] = proc.stderr
    return result


def test_kiln_linear_is_mitogen_s_linear_strategy_when_mitogen_loads(tmp_path: Path) -> None:
    loaded = _load_strategy(tmp_path, None)
    assert loaded["mitogen"] is True and loaded["fallback"] == ""
    assert loaded["linear"] is True
    assert "ansible_mitogen.strategy" in loaded["mro"]  # type: ignore[operator]


def test_kiln_linear_falls_back_to_linear_with_a_warning_when_mitogen_fails(
    tmp_path: Path,
) -> None:
    broken = {"__init__.py": "", "loaders.py": "raise ImportError('needs ansible-core 2.21')\n"}
    loaded = _load_strategy(tmp_path, broken)
    assert loaded["mitogen"] is False
    assert loaded["fallback"] == "ImportError: needs ansible-core 2.21"
    assert loaded["linear"] is True
    assert "ansible_mitogen.strategy" not in loaded["mro"]  # type: ignore[operator]
    assert "Mitogen cannot load (ImportError: needs ansible-core 2.21)" in str(loaded["stderr"])


def test_the_strategy_event_is_parsed_and_the_first_play_s_is_the_bake_s() -> None:
    first = parse_event({"event": "strategy", "name": "kiln_linear", "mitogen": True})
    assert first == StrategyEvent(kind="strategy", name="kiln_linear", mitogen=True, fallback="")
    second = parse_event({"event": "strategy", "name": "linear", "mitogen": False})
    task = parse_event({"event": "task_start", "task": "t"})
    assert strategy_of([task, first, second]) is first
    assert strategy_of([task]) is None


@pytest.mark.parametrize(
    ("event", "recorded"),
    [
        (StrategyEvent(name=MITOGEN_STRATEGY, mitogen=True), {"ansible strategy": "mitogen"}),
        (StrategyEvent(name=MITOGEN_STRATEGY, fallback="x"), {"ansible strategy": "linear"}),
        (StrategyEvent(name="linear"), {"ansible strategy": "linear"}),
        (StrategyEvent(name="free"), {"ansible strategy": "free"}),
        (None, {}),
    ],
)
def test_the_version_records_how_ansible_ran(
    tmp_path: Path, event: StrategyEvent | None, recorded: dict[str, str]
) -> None:
    project = _project(tmp_path)
    role = project.role("a", parent=project.base("debian-bookworm"), ansible_roles=["common"])
    fingerprint = Fingerprint(
        digest="e" * 64, inputs={"definition": {}, "tools": {"packer": "1.11"}}
    )
    version = role_record(
        role, 2, fingerprint, parent_version("debian-bookworm"), target="docker",
        status="tested", git=("0" * 40, False), timings={}, took=1.0,
        artifact=Artifact("docker", "kiln/a:2", "sha256:" + "a" * 64), lint=None, strategy=event,
    )  # fmt: skip
    assert version.tools == {"packer": "1.11", **recorded}


def test_a_warning_is_written_once_however_many_roles_meet_its_cause() -> None:
    out = io.StringIO()
    reporter = Reporter(out)
    for _ in range(3):
        reporter.warning("kiln", "Mitogen did not load")
    reporter.warning("web", "Mitogen did not load")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("kiln: WARNING: Mitogen did not load")
    assert lines[1].endswith("web: WARNING: Mitogen did not load")
