"""How a project's images are named: <namespace>/<project>-<registry id>/<role>:<version>.

The project's name and its registry's identity are in every name, so that two projects, or two
checkouts of one project with registries of their own, never tag over each other's images.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from kiln.errors import DefinitionError

#: One component of a docker repository name (stricter than docker's: no "__" or "--").
COMPONENT_RE = re.compile(r"[a-z0-9]+([._-][a-z0-9]+)*")
#: The project name's limit, as a role's: the whole repository name stays far below docker's 255.
MAX_PROJECT_NAME = 63
#: How much of the registry's identity a name carries: 32 random bits tell apart the handful of
#: registries that share one engine, and keep `docker images` readable.
REGISTRY_ID_DIGITS = 8


def docker_component(what: str, value: object) -> str:
    """value, if it can be one component of a docker repository name; else a DefinitionError."""
    if not isinstance(value, str) or not COMPONENT_RE.fullmatch(value):
        raise DefinitionError(
            f"{what} {value!r} is not a docker name: use lowercase letters and digits, "
            "separated by single '.', '_' or '-'"
        )
    return value


def check_project_name(name: object) -> str:
    """A project name given in tasks.py (Project(name=...)): one docker name component."""
    checked = docker_component("project name", name)
    if len(checked) > MAX_PROJECT_NAME:
        raise DefinitionError(
            f"project name {checked!r} is longer than {MAX_PROJECT_NAME} characters"
        )
    return checked


def project_name_from(root: Path) -> str:
    """The default project name: root's directory name, lowercased, other runs of characters
    turned into '-' ("My_Shop" → "my-shop"); a DefinitionError if nothing usable is left."""
    name = re.sub(r"[^a-z0-9]+", "-", root.name.lower())[:MAX_PROJECT_NAME].strip("-")
    if not name:
        raise DefinitionError(
            f"no project name can be derived from the directory name {root.name!r}: "
            "set one in tasks.py with Project(..., name='my-project')"
        )
    return name


@dataclass(frozen=True)
class ImageNames:
    """The names of one project's images in the history of one registry.

    `kiln/shop-3f9a0c1d/web:7` reads as namespace (who publishes), project and registry (whose
    history numbered it), then role and version, as before: `docker images 'kiln/shop-*/*'` lists
    a project's images, and a role stays the last path component. Two checkouts sharing one
    registry (one id, unique version numbers) give a version one name; two registries, two.
    """

    namespace: str
    project: str
    registry_id: str

    @property
    def prefix(self) -> str:
        """What every repository of this project and registry starts with: also whose builders."""
        return f"{self.namespace}/{self.project}-{self.registry_id[:REGISTRY_ID_DIGITS]}"

    def repository(self, role: str) -> str:
        """The docker repository of a role or base."""
        return f"{self.prefix}/{role}"

    def ref(self, role: str, version: int | str) -> str:
        """The image reference of one version (or of a tag such as "latest")."""
        return f"{self.repository(role)}:{version}"
