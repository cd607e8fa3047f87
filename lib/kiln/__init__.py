"""kiln bakes immutable server images from Python role definitions with Packer and Ansible.

The public API is exactly ``__all__``; everything else is internal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kiln.errors import (
    BuildError,
    DefinitionError,
    DeployError,
    GuardError,
    ImageMoved,
    KilnError,
    ProvisionError,
    Refused,
    RegistryError,
    RenderError,
    TestFailure,
    ToolError,
)
from kiln.guard import TaskException
from kiln.model import Base, CloudSettings, HealthCheck, Project, Role, Secret
from kiln.registry import Registry, Version

if TYPE_CHECKING:
    from kiln.bake import BakeOptions, BakeOutcome, Baker, open_registry

# Baking pulls in packer and Ansible plumbing; `import kiln.deploy` (or any other submodule)
# runs this file, and deploy must load none of it, so the bake names are resolved on first use.
_LAZY = {
    "BakeOptions": "kiln.bake",
    "BakeOutcome": "kiln.bake",
    "Baker": "kiln.bake",
    "open_registry": "kiln.bake",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kiln' has no attribute {name!r}")


__all__ = [
    "BakeOptions",
    "BakeOutcome",
    "Baker",
    "Base",
    "BuildError",
    "CloudSettings",
    "DefinitionError",
    "DeployError",
    "GuardError",
    "HealthCheck",
    "ImageMoved",
    "KilnError",
    "Project",
    "ProvisionError",
    "Refused",
    "Registry",
    "RegistryError",
    "RenderError",
    "Role",
    "Secret",
    "TaskException",
    "TestFailure",
    "ToolError",
    "Version",
    "open_registry",
]
