"""Bakes run Ansible through Mitogen by default; a role can turn it off; when Mitogen cannot load,
the bake falls back to Ansible's linear strategy with one warning (issue 15).

Real bakes: packer, the Docker engine and ansible-playbook with kiln's kiln_linear strategy.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import kiln
from conftest import Sandbox

PLAIN_ROLE = """
project.role("plain", parent="base", ansible_roles=["common"], mitogen=False)
"""

#: What a Mitogen release that does not support the installed ansible-core does on import.
UNSUPPORTED_MITOGEN = {
    "__init__.py": "",
    "loaders.py": textwrap.dedent(
        """
        import ansible.errors
        raise ansible.errors.AnsibleError(
            "Your version of Ansible (2.19) is not supported by this Mitogen (test double)"
        )
        """
    ),
    "strategy.py": "",
}


def _strategy(sandbox: Sandbox, role: str) -> str:
    with sandbox.registry() as registry:
        version = registry.latest(role)
    assert version is not None, f"{role} has no version"
    return str(version.tools.get("ansible strategy"))


def test_bakes_run_through_mitogen_unless_the_role_turns_it_off(baked_clone: Sandbox) -> None:
    assert _strategy(baked_clone, "base") == "mitogen"
    assert _strategy(baked_clone, "web") == "mitogen"

    baked_clone.write_tasks(PLAIN_ROLE)
    bake = baked_clone.invoke("bake", "plain", check=True)
    assert "WARNING" not in bake.stdout + bake.stderr
    assert _strategy(baked_clone, "plain") == "linear"
    hcl = (baked_clone.root / "packer" / "plain.pkr.hcl").read_text()
    assert "ANSIBLE_STRATEGY" not in hcl
    assert (
        "ANSIBLE_STRATEGY=kiln_linear" in (baked_clone.root / "packer" / "web.pkr.hcl").read_text()
    )


def test_a_mitogen_that_cannot_load_falls_back_with_one_warning(
    baked_clone: Sandbox, tmp_path: Path
) -> None:
    # The double is installed beside kiln, as a Mitogen in kiln's site-packages would be: Ansible
    # runs in kiln's sandbox, whose Python path is the directory kiln was imported from.
    site = tmp_path / "site"
    shadow = site / "ansible_mitogen"
    shadow.mkdir(parents=True)
    (site / "kiln").symlink_to(Path(kiln.__file__).resolve().parent)
    for name, text in UNSUPPORTED_MITOGEN.items():
        (shadow / name).write_text(text)
    bake = baked_clone.invoke(
        "bake", "base,web", "--force", check=True, env={"PYTHONPATH": str(site)}
    )

    output = bake.stdout + bake.stderr
    warnings = [line for line in output.splitlines() if "Mitogen did not load" in line]
    assert len(warnings) == 1, output  # two roles baked, one warning
    assert "is not supported by this Mitogen (test double)" in warnings[0]
    assert "mitogen=False" in warnings[0]
    assert _strategy(baked_clone, "base") == "linear"
    assert _strategy(baked_clone, "web") == "linear"
    with baked_clone.registry() as registry:
        web = registry.latest("web")
    assert web is not None and web.version == 2 and web.status == "tested"
