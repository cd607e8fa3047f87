"""What a wheel of kiln must carry: run-time files in the package, tools in its dependencies.

tests/integration/test_any_repository.py builds and installs the real wheel; these checks are the
fast half: the package's view of its files, and pyproject.toml.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from kiln import Project, resources

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_the_package_holds_every_run_time_file() -> None:
    assert resources.missing() == []


def test_templates_and_shared_playbooks_are_the_repositorys_top_level_directories() -> None:
    # Symlinks, so templates/ and molecule/_shared/ stay where the repository keeps them.
    assert resources.TEMPLATES_DIR.resolve() == REPO / "templates"
    assert resources.MOLECULE_SHARED_DIR.resolve() == REPO / "molecule" / "_shared"
    assert resources.SCAFFOLD_DIR.resolve() == REPO / "templates" / "scaffold"


def test_package_data_names_every_run_time_directory() -> None:
    globs = PYPROJECT["tool"]["setuptools"]["package-data"]["kiln"]
    for directory in (
        resources.TEMPLATES_DIR,
        resources.MOLECULE_SHARED_DIR,
        resources.ANSIBLE_PLUGINS_DIR,
        resources.BATTERIES_DIR,
    ):
        name = directory.relative_to(resources.PACKAGE_DIR).as_posix()
        assert any(g.startswith(f"{name}/") for g in globs), (name, globs)


def test_tools_a_bake_runs_are_main_dependencies_not_dev_extras() -> None:
    main = _names(PYPROJECT["project"]["dependencies"])
    dev = _names(PYPROJECT["project"]["optional-dependencies"]["dev"])
    run_time = {"ansible-core", "ansible", "ansible-runner", "ansible-lint", "pytest"}
    run_time |= {"pytest-testinfra", "molecule", "invoke", "jinja2", "python-hcl2", "pyyaml"}
    assert run_time <= main, run_time - main
    assert not run_time & dev, run_time & dev


def test_a_project_renders_with_kilns_templates_never_its_own(tmp_path: Path) -> None:
    (tmp_path / "roles").mkdir()
    (tmp_path / "templates").mkdir()  # a project's templates/ is just a directory of its own
    assert Project(tmp_path).templates_path == resources.TEMPLATES_DIR
