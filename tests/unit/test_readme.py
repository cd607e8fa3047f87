"""The README's examples stay true: its role definition loads, and every `invoke` line parses
against the real task collection (the integration tests run the commands themselves)."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path
from typing import Any

import pytest
from invoke import Collection
from invoke.parser import Parser
from kiln import HealthCheck, Project, Secret
from kiln.tasks import collection

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
FENCE = re.compile(r"^ *```(?P<lang>\w*)\n(?P<body>.*?)^ *```", re.MULTILINE | re.DOTALL)


def blocks(lang: str) -> list[str]:
    return [m["body"] for m in FENCE.finditer(README) if m["lang"] == lang]


def invoke_lines() -> list[str]:
    """Every `invoke ...` command of the README's shell blocks, comments stripped."""
    lines = []
    for body in blocks("sh"):
        for line in body.splitlines():
            command = line.split("#", 1)[0].strip()
            if re.match(r"^(\S*/)?invoke ", command):
                lines.append(command)
    return lines


@pytest.fixture(scope="module")
def tasks() -> Collection:
    return collection(Project(ROOT))


def test_the_readme_shows_the_commands_it_promises() -> None:
    found = {shlex.split(line)[1] for line in invoke_lines()}
    assert {"bake", "history", "promote", "deploy", "drift", "deps", "boot"} <= found


@pytest.mark.parametrize("line", invoke_lines())
def test_every_invoke_line_names_a_task_and_flags_it_has(tasks: Collection, line: str) -> None:
    argv = shlex.split(line)[1:]
    if argv[0].startswith("-"):  # invoke's own options: --list, --help TASK
        assert argv[0] in ("--list", "--help"), line
        return
    parsed = Parser(contexts=tasks.to_contexts()).parse_argv(argv)
    (context,) = parsed
    assert context.name == argv[0].replace("_", "-")
    missing = [arg.name for arg in context.positional_args if arg.value is None]
    assert not missing, f"{line}: positional {missing} missing"


def test_the_role_definition_example_defines_what_tasks_py_does_plus_a_secret(
    tmp_path: Path,
) -> None:
    (example,) = [body for body in blocks("python") if 'project.role(\n    "web"' in body]
    for part in ("roles", "tests/images"):
        shutil.copytree(ROOT / part, tmp_path / part)
    namespace: dict[str, Any] = {
        "__file__": str(tmp_path / "tasks.py"),
        "Path": Path,
        "Project": Project,
        "Secret": Secret,
        "HealthCheck": HealthCheck,
        "collection": collection,
    }

    exec(compile(example, "README.md", "exec"), namespace)

    project: Project = namespace["project"]
    web = project.role_named("web")
    assert (web.parent.name, web.ansible_roles) == ("base", ("web",))
    assert project.role_named("base").ansible_roles == ("common",)
    assert set(web.secrets) == {"api_token"} and web.tests == ("tests/images/web",)
    assert isinstance(namespace["ns"], Collection)
