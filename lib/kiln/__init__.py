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

if TYPE_CHECKING:
    from kiln.bake import BakeOptions, BakeOutcome, Baker, open_registry
    from kiln.guard import TaskException
    from kiln.model import Base, CloudSettings, HealthCheck, Project, Role, Secret
    from kiln.package_sources import PackageSources
    from kiln.registry import Registry, Version

# `import kiln.deploy` (or any other submodule, kiln-ansible's kiln.controller among them) runs
# this file: the names of the model, the registry, the audit and baking are resolved on first
# use, so that a submodule loads only what it imports itself (kiln-ansible starts on every bake).
_LAZY = {
    "BakeOptions": "kiln.bake",
    "BakeOutcome": "kiln.bake",
    "Baker": "kiln.bake",
    "open_registry": "kiln.bake",
    "TaskException": "kiln.guard",
    "Base": "kiln.model",
    "CloudSettings": "kiln.model",
    "HealthCheck": "kiln.model",
    "Project": "kiln.model",
    "Role": "kiln.model",
    "Secret": "kiln.model",
    "PackageSources": "kiln.package_sources",
    "Registry": "kiln.registry",
    "Version": "kiln.registry",
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
    "PackageSources",
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
