"""Scaffolding of a new Ansible role and its passing Molecule scenario (`invoke new-role`).

Everything is rendered from kiln's packaged scaffold (templates/scaffold/) before anything is
written.
"""

from __future__ import annotations

import re
from pathlib import Path

import jinja2

from kiln import resources
from kiln.errors import DefinitionError, RenderError, ToolError
from kiln.resources import MOLECULE_SHARED_DIR, PACKAGE_DIR, SCAFFOLD_DIR

__all__ = ["ROLE_NAME", "SCAFFOLD_PARTS", "new_role"]

#: A role name that Ansible, Galaxy (role_name) and a variable prefix all accept.
ROLE_NAME = re.compile(r"[a-z][a-z0-9_]*")
#: Scaffold parts and where each one lands; "{name}" is the new role's name.
SCAFFOLD_PARTS = {"role": "roles/{name}", "molecule": "molecule/{name}"}


def new_role(name: str, *, project_root: Path) -> list[Path]:
    """Create roles/NAME/ and molecule/NAME/ from templates/scaffold/; return the files written.

    The new role passes ``molecule test -s NAME`` as generated. Raises DefinitionError for a bad
    or taken name, or when the project lacks the scaffold or the shared Molecule playbooks.
    """
    if not ROLE_NAME.fullmatch(name):
        raise DefinitionError(
            f"invalid role name {name!r}: use lowercase letters, digits and underscores, "
            "starting with a letter (for example 'redis' or 'app_server')"
        )
    for taken in (project_root / "roles" / name, project_root / "molecule" / name):
        if taken.exists():
            raise DefinitionError(
                f"role {name!r} already exists ({taken.relative_to(project_root)}); "
                f"existing roles: {', '.join(_existing_roles(project_root)) or 'none'}"
            )
    scaffold = SCAFFOLD_DIR  # kiln's own, from the installed package
    missing = [path for path in resources.missing() if path.is_relative_to(PACKAGE_DIR)]
    if missing:
        raise ToolError(
            f"cannot scaffold role {name!r}: kiln's installation lacks "
            f"{', '.join(str(p) for p in missing)}; reinstall kiln"
        )

    # Render everything before writing anything, so a broken template leaves no half-made role.
    env = _scaffold_environment(scaffold)
    rendered: list[tuple[Path, str]] = []
    for part, target in SCAFFOLD_PARTS.items():
        for source in sorted((scaffold / part).rglob("*")):
            if not source.is_file():
                continue
            template_name = source.relative_to(scaffold).as_posix()
            try:
                text = env.get_template(template_name).render(name=name)
            except jinja2.TemplateError as exc:
                raise RenderError(
                    f"scaffold template {template_name} failed to render for role {name!r}: {exc}"
                ) from exc
            relative = source.relative_to(scaffold / part).as_posix().replace("__name__", name)
            rendered.append((project_root / target.format(name=name) / relative, text))
    # The scenario imports ../_shared/{create,destroy}.yml: a repository without them gets kiln's.
    shared = project_root / "molecule" / "_shared"
    for playbook in ("create.yml", "destroy.yml"):
        if not (shared / playbook).exists():
            rendered.append((shared / playbook, (MOLECULE_SHARED_DIR / playbook).read_text()))

    for path, text in rendered:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return [path for path, _ in rendered]


def _scaffold_environment(scaffold: Path) -> jinja2.Environment:
    # Square brackets, because the scaffolded files are full of Ansible's own {{ ... }}.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(scaffold),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        variable_start_string="[[",
        variable_end_string="]]",
        block_start_string="[%",
        block_end_string="%]",
        comment_start_string="[#",
        comment_end_string="#]",
    )


def _existing_roles(project_root: Path) -> list[str]:
    roles = project_root / "roles"
    return sorted(p.name for p in roles.iterdir() if p.is_dir()) if roles.is_dir() else []
