"""The ansible.cfg that kiln writes for every run, and what a project's own would have changed."""

from __future__ import annotations

import configparser
from pathlib import Path

#: Settings of kiln's own ansible.cfg. The rest comes from the rendered HCL's environment.
KILN_ANSIBLE_CFG = """\
# Written by kiln for one sandboxed Ansible run; a project's own ansible.cfg is not read.
[defaults]
retry_files_enabled = False
interpreter_python = auto_silent
"""


def write_ansible_cfg(run: Path, text: str = KILN_ANSIBLE_CFG) -> Path:
    path = run / "ansible.cfg"
    path.write_text(text, encoding="utf-8")
    return path


def ignored_settings(project_cfg: Path) -> list[str]:
    """The `section.key` settings of a project's ansible.cfg, which kiln's runs ignore."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read(project_cfg, encoding="utf-8")
    except configparser.Error as exc:
        return [f"(unreadable: {exc.message})"]
    return [f"{section}.{key}" for section in parser.sections() for key in parser[section]]


def project_config_warning(root: Path) -> str | None:
    """The one warning for a project that has its own ansible.cfg, naming what kiln ignores."""
    path = root / "ansible.cfg"
    if not path.is_file():
        return None
    settings = ignored_settings(path)
    shown = ", ".join(settings[:12]) + (
        f" and {len(settings) - 12} more" if len(settings) > 12 else ""
    )
    return (
        f"{path.name} in the project is not read at bake time: Ansible runs with kiln's own "
        f"configuration, so {shown or 'its settings'} have no effect. Put roles in roles/ and "
        "collections in requirements.yml; set variables on the role definition."
    )
