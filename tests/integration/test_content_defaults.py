"""Default settings for existing Ansible content, in real bakes: style findings are warnings that
are counted and recorded, a stricter lint profile is opt-in, a YAML syntax error still stops the
bake before any builder starts, and an unknown role names every place kiln looked.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from conftest import Sandbox

pytestmark = pytest.mark.integration

# Written the way many community roles are: short module names, free-form arguments, an
# unquoted octal mode and an unnamed task. ansible-lint's production profile flags all of it.
STYLISH_TASKS = """\
---
- command: touch /etc/kiln-stylish
  args:
    creates: /etc/kiln-stylish
- name: write a marker
  copy: content="baked with default settings" dest=/etc/kiln-marker mode=0644
"""
BROKEN_TASKS = """\
---
- name: A task with a broken mapping
  ansible.builtin.debug:
    msg: [unclosed
"""


def write_role(root: Path, name: str, tasks: str) -> None:
    (root / "roles" / name / "tasks").mkdir(parents=True)
    (root / "roles" / name / "tasks" / "main.yml").write_text(tasks)


def builders(box: Sandbox) -> list[str]:
    """Builder containers of the sandbox's namespace, running or not."""
    out = box.docker("ps", "-a", "--filter", f"label=kiln.namespace={box.namespace}", "-q")
    return out.split()


def test_style_findings_are_warnings_counted_in_the_summary_and_recorded(
    baked_clone: Sandbox,
) -> None:
    write_role(baked_clone.root, "stylish", STYLISH_TASKS)
    baked_clone.write_tasks('project.role("stylish", parent="base")')

    baked = baked_clone.invoke("bake", "stylish")

    assert baked.returncode == 0, baked.stdout + baked.stderr
    summary = [line for line in baked.stdout.splitlines() if line.strip().startswith("lint ")]
    assert summary and "warning(s)" in summary[0], baked.stdout
    assert "fqcn[action-core]" in baked.stdout + baked.stderr
    shown = json.loads(baked_clone.invoke("show", "stylish", "--json", check=True).stdout)
    lint = shown["lint"]
    assert lint["profile"] == "min"
    assert lint["warnings"] >= 3
    assert {"fqcn[action-core]", "name[missing]", "no-free-form"} <= set(lint["by_rule"])
    marker = baked_clone.docker(
        "run", "--rm", "--entrypoint", "cat", baked_clone.image("stylish", 1),
        "/etc/kiln-marker",
    )  # fmt: skip
    assert marker == "baked with default settings"


def test_an_opted_in_profile_blocks_the_same_role_before_any_builder(sandbox: Sandbox) -> None:
    write_role(sandbox.root, "stylish", STYLISH_TASKS)
    sandbox.write_tasks('project.role("stylish", parent="base", lint_profile="production")')

    refused = sandbox.invoke("bake", "stylish")

    assert refused.returncode != 0
    assert "blocking finding(s) (profile production)" in refused.stderr
    assert "roles/stylish/tasks/main.yml:2: [fqcn[action-core]]" in refused.stderr
    assert builders(sandbox) == []
    assert sandbox.registry().history("stylish") == []


def test_a_yaml_syntax_error_stops_the_bake_with_file_and_line(sandbox: Sandbox) -> None:
    write_role(sandbox.root, "broken", BROKEN_TASKS)
    sandbox.write_tasks('project.role("broken", parent="base")')

    refused = sandbox.invoke("bake", "broken")

    assert refused.returncode != 0
    # The guard reads every task file first and names the place YAML gives up.
    assert re.search(r"roles/broken/tasks/main\.yml:\d+ \[yaml-error\]", refused.stderr), (
        refused.stderr
    )
    assert "is not valid YAML" in refused.stderr
    assert builders(sandbox) == []
    assert sandbox.registry().history("broken") == []


def test_an_unknown_role_says_where_kiln_looked_and_suggests_deps(sandbox: Sandbox) -> None:
    # With a requirements.yml the name may come from `invoke deps`: tasks.py loads, the bake
    # refuses with every place kiln looked.
    (sandbox.root / "requirements.yml").write_text("---\nroles: []\ncollections: []\n")
    sandbox.write_tasks('project.role("ghost", parent="base", ansible_roles=["acme.no-such"])')
    assert sandbox.invoke("deps").returncode == 0

    refused = sandbox.invoke("bake", "ghost")

    assert refused.returncode != 0
    message = refused.stderr
    assert "Ansible role 'acme.no-such' was not found. kiln looked in:" in message
    assert f"{sandbox.root}/roles/acme.no-such" in message
    assert f"{sandbox.root}/.kiln/galaxy/roles/acme.no-such" in message
    assert "invoke deps" in message
    assert builders(sandbox) == []


def test_a_bake_refuses_installed_content_that_differs_from_the_lock(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    source = tmp_path / "acme.motd"
    (source / "tasks").mkdir(parents=True)
    (source / "tasks" / "main.yml").write_text(
        "---\n- name: Write the motd\n  ansible.builtin.copy:\n"
        "    content: locked\n    dest: /etc/motd\n    mode: '0644'\n"
    )
    (source / "meta").mkdir()
    (source / "meta" / "main.yml").write_text(
        "galaxy_info:\n  author: acme\n  description: motd\n  license: MIT\n"
        "  min_ansible_version: '2.14'\n  namespace: acme\n  role_name: motd\ndependencies: []\n"
    )
    tarball = tmp_path / "acme.motd-1.0.0.tar.gz"
    subprocess.run(["tar", "-czf", str(tarball), "-C", str(tmp_path), "acme.motd"], check=True)
    (sandbox.root / "requirements.yml").write_text(
        f"---\nroles:\n  - src: {tarball}\n    name: acme.motd\n    version: 1.0.0\n"
    )
    sandbox.write_tasks('project.role("motd", parent="base", ansible_roles=["acme.motd"])')
    installed = sandbox.invoke("deps")
    assert installed.returncode == 0, installed.stderr
    tasks = sandbox.root / ".kiln/galaxy/roles/acme.motd/tasks/main.yml"
    assert tasks.is_file()
    # Someone edits the installed copy by hand: the lock no longer vouches for it.
    tasks.write_text(tasks.read_text().replace("locked", "edited by hand"))

    refused = sandbox.invoke("bake", "motd")

    assert refused.returncode != 0
    assert "role acme.motd" in refused.stderr and "differs from the lock" in refused.stderr
    assert "run `invoke deps`" in refused.stderr
    assert builders(sandbox) == []
    assert sandbox.registry().history("motd") == []
