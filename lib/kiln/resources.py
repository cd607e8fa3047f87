"""Where kiln's own run-time files live: in the installed package, never in the user's project.

Templates and Molecule's shared playbooks stay at the repository's top level (templates/,
molecule/_shared/); lib/kiln/templates and lib/kiln/molecule_shared are symlinks to them, which
setuptools follows, so a wheel holds real copies and an editable install sees the originals.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "ANSIBLE_PLUGINS_DIR",
    "BATTERIES_DIR",
    "CALLBACK_DIR",
    "MOLECULE_SHARED_DIR",
    "PACKAGE_DIR",
    "SCAFFOLD_DIR",
    "STRATEGY_DIR",
    "TEMPLATES_DIR",
    "missing",
]

#: The paths below are not resolved further: through the symlinks they keep package-relative
#: names, so paths rendered into HCL stay lib/kiln/... in this repository, as before.
PACKAGE_DIR = Path(__file__).resolve().parent
#: Jinja2 templates of Packer HCL and the bake playbook (templates/ in the repository).
TEMPLATES_DIR = PACKAGE_DIR / "templates"
#: What `invoke new-role` copies: a role and its Molecule scenario (templates/scaffold/).
SCAFFOLD_DIR = TEMPLATES_DIR / "scaffold"
#: create.yml and destroy.yml that every Molecule scenario imports (molecule/_shared/).
MOLECULE_SHARED_DIR = PACKAGE_DIR / "molecule_shared"
ANSIBLE_PLUGINS_DIR = PACKAGE_DIR / "ansible_plugins"
#: kiln's callback plugin (kiln_events), handed to Ansible through ANSIBLE_CALLBACK_PLUGINS.
CALLBACK_DIR = ANSIBLE_PLUGINS_DIR / "callback"
#: kiln's strategy plugin (kiln_linear: Mitogen when it loads), through ANSIBLE_STRATEGY_PLUGINS.
STRATEGY_DIR = ANSIBLE_PLUGINS_DIR / "strategy"
#: The acceptance tests every image passes (kiln.batteries.base) and their pytest plugin.
BATTERIES_DIR = PACKAGE_DIR / "batteries"

#: One file of each kind that a working installation must hold (see `missing`).
_REQUIRED = (
    TEMPLATES_DIR / "docker.pkr.hcl.j2",
    TEMPLATES_DIR / "qemu.pkr.hcl.j2",
    TEMPLATES_DIR / "cloud.pkr.hcl.j2",
    TEMPLATES_DIR / "playbook.yml.j2",
    SCAFFOLD_DIR / "role" / "tasks" / "main.yml",
    SCAFFOLD_DIR / "molecule" / "molecule.yml",
    MOLECULE_SHARED_DIR / "create.yml",
    MOLECULE_SHARED_DIR / "destroy.yml",
    CALLBACK_DIR / "kiln_events.py",
    STRATEGY_DIR / "kiln_linear.py",
    BATTERIES_DIR / "base" / "test_base.py",
)


def missing() -> list[Path]:
    """Run-time files this installation lacks (a wheel built without them); [] when complete."""
    return [path for path in _REQUIRED if not path.is_file()]
