"""Several roles in one real bake: `-j 2` side by side, a failure stops its descendants only, and
`bake --outdated` rebakes a child on its parent's new version.

One sandbox (a clone of the baked one: base v1) serves the module and its tests run in order.
The roles are small (one Ansible task writing a file) so that each bake costs seconds, not a
minute: alpha and beta on base, alpha-child on alpha, broken (its task fails) and broken-child.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from conftest import Sandbox, clone_sandbox

pytestmark = pytest.mark.integration

STAMP_TASKS = """---
- name: Write the stamp
  ansible.builtin.copy:
    dest: /etc/kiln-stamp
    content: "{{ stamp_text }}\\n"
    mode: "0644"
"""
FAILING_TASKS = """---
- name: Fail on purpose
  ansible.builtin.fail:
    msg: kiln-parallel-test-failure
"""
ROLES = """
project.role("alpha", parent="base", ansible_roles=["stamp"], variables={"stamp_text": "alpha"})
project.role("beta", parent="base", ansible_roles=["stamp"], variables={"stamp_text": "beta"})
project.role(
    "alpha-child", parent="alpha", ansible_roles=["stamp"], variables={"stamp_text": "child"}
)
project.role("broken", parent="base", ansible_roles=["always_fails"])
project.role(
    "broken-child", parent="broken", ansible_roles=["stamp"], variables={"stamp_text": "never"}
)
"""


@pytest.fixture(scope="module")
def box(baked_sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    sandbox = clone_sandbox(baked_sandbox, tmp_path_factory.mktemp("parallel"))
    for name, tasks in (("stamp", STAMP_TASKS), ("always_fails", FAILING_TASKS)):
        (sandbox.root / "roles" / name / "tasks").mkdir(parents=True)
        (sandbox.root / "roles" / name / "tasks" / "main.yml").write_text(tasks)
    sandbox.write_tasks(extra=ROLES)
    try:
        yield sandbox
    finally:
        sandbox.cleanup()


def versions(box: Sandbox, role: str) -> list[int]:
    with box.registry() as registry:
        return sorted(v.version for v in registry.history(role))


def summary_rows(proc: Any) -> dict[str, dict[str, Any]]:
    """The closing summary of a `bake --json` of several roles: role -> its row."""
    for line in reversed(proc.stdout.splitlines()):
        record = json.loads(line) if line.startswith("{") else {}
        if "roles" in record:
            return {row["role"]: row for row in record["roles"]}
    raise AssertionError(f"no summary in:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def stamp(box: Sandbox, role: str, version: int) -> str:
    image = box.image(role, version)
    return box.docker("run", "--rm", "--entrypoint", "cat", image, "/etc/kiln-stamp")


def span(box: Sandbox, role: str, version: int) -> tuple[float, float]:
    """When the bake of role vN ran (start, end), from what the registry recorded of it."""
    with box.registry() as registry:
        found = registry.get(role, version)
    assert found is not None, f"{role} v{version} is not recorded"
    end = datetime.fromisoformat(found.created_at.replace("Z", "+00:00")).timestamp()
    return end - found.bake_seconds, end


def test_two_independent_roles_bake_side_by_side(box: Sandbox) -> None:
    proc = box.invoke("bake", "alpha,beta", "-p", "2", "--skip-tests", "--json")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = summary_rows(proc)
    assert {role: rows[role]["state"] for role in ("alpha", "beta")} == {
        "alpha": "baked",
        "beta": "baked",
    }
    assert versions(box, "alpha") == versions(box, "beta") == [1]
    with box.registry() as registry:
        base = registry.latest("base")
        for role in ("alpha", "beta"):
            version = registry.get(role, 1)
            assert version is not None and version.status == "untested"
            assert (version.parent_role, version.parent_version) == ("base", base and base.version)
    assert (stamp(box, "alpha", 1), stamp(box, "beta", 1)) == ("alpha", "beta")
    (a_start, a_end), (b_start, b_end) = span(box, "alpha", 1), span(box, "beta", 1)
    assert a_start < b_end and b_start < a_end, "the two bakes did not overlap: not parallel"


def test_a_failed_role_stops_its_descendants_only(box: Sandbox) -> None:
    proc = box.invoke(
        "bake", "broken,broken-child,alpha-child", "-p", "2", "--skip-tests", "--json"
    )
    assert proc.returncode != 0
    rows = summary_rows(proc)
    assert {role: row["state"] for role, row in rows.items()} == {
        "broken": "failed",
        "broken-child": "skipped",
        "alpha-child": "baked",
        "base": "cached",  # the ancestors, up to date
        "alpha": "cached",
    }
    assert "kiln-parallel-test-failure" in str(rows["broken"]["error"])
    assert "role(s) failed (broken); not baked because an ancestor failed: broken-child" in (
        proc.stderr
    )
    assert versions(box, "broken") == versions(box, "broken-child") == []
    assert versions(box, "alpha-child") == [1]
    assert stamp(box, "alpha-child", 1) == "child"
    # broken-child never started: no version number taken, no log, no builder, no image.
    with sqlite3.connect(box.root / ".kiln" / "registry.db") as conn:
        taken = conn.execute("SELECT role FROM counters WHERE role LIKE 'broken%'").fetchall()
    assert taken == [("broken",)]
    assert not (box.root / ".kiln" / "logs" / "broken-child").exists()
    assert box.docker("images", "-q", box.repository("broken-child")) == ""
    assert box.docker("images", "-q", box.repository("broken")) == ""
    assert box.containers() == []


def test_bake_outdated_rebakes_the_child_on_the_new_parent(box: Sandbox) -> None:
    assert versions(box, "alpha-child") == [1]  # baked on alpha v1 by the test above
    box.invoke("bake", "alpha", "--force", "--skip-tests", check=True)
    assert versions(box, "alpha") == [1, 2]

    listed = json.loads(box.invoke("outdated", "--json", check=True).stdout)
    outdated = {o["role"]: o for o in listed}
    assert "alpha-child" in outdated and "beta" not in outdated and "alpha" not in outdated
    assert "its parent alpha v1 is superseded by v2" in outdated["alpha-child"]["why"]
    # Same inputs, same fingerprint: a plain bake calls the child up to date. --outdated does not.
    plain = box.invoke("bake", "alpha-child", check=True)
    assert "up to date at version 1" in plain.stdout
    box.invoke("bake", "alpha-child", "--outdated", "--skip-tests", check=True)

    assert versions(box, "alpha-child") == [1, 2]
    with box.registry() as registry:
        child = registry.get("alpha-child", 2)
    assert child is not None and (child.parent_role, child.parent_version) == ("alpha", 2)
    assert stamp(box, "alpha-child", 2) == "child"
    again = json.loads(box.invoke("outdated", "--json", check=True).stdout)
    assert "alpha-child" not in {o["role"] for o in again}
