"""kiln bakes immutable server images from Python role definitions with Packer and Ansible.

The public API is exactly ``__all__``; everything else is internal.
"""

from __future__ import annotations

from kiln.bake import BakeOutcome, Baker, open_registry
from kiln.errors import (
    BuildError,
    DefinitionError,
    DeployError,
    GuardError,
    KilnError,
    ProvisionError,
    RegistryError,
    RenderError,
    TestFailure,
    ToolError,
)
from kiln.guard import TaskException
from kiln.model import Base, CloudSettings, HealthCheck, Project, Role, Secret
from kiln.registry import Registry, Version

__all__ = [
    "BakeOutcome",
    "Baker",
    "Base",
    "BuildError",
    "CloudSettings",
    "DefinitionError",
    "DeployError",
    "GuardError",
    "HealthCheck",
    "KilnError",
    "Project",
    "ProvisionError",
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
