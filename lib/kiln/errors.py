"""The one error hierarchy of kiln. Every failure a user can act on is a KilnError.

    KilnError
    ├── DefinitionError     a role definition is malformed (bad name, unknown parent...)
    ├── RenderError         a template failed, or the rendered HCL does not match the model
    ├── ToolError           a tool is missing or too old, or dockerd is not running
    ├── BuildError          packer failed outside Ansible, or a bake was interrupted
    │   └── ProvisionError  an Ansible task failed in the builder
    ├── RegistryError       the registry is unreadable, or a lifecycle rule refused an operation
    ├── GuardError          a role would make Ansible touch something other than the builder
    ├── TestFailure         acceptance or role tests failed
    └── DeployError         a deploy failed or was refused

Third-party failures (subprocess, sqlite3, lark, ansible-runner) are translated at the boundary
with ``raise ... from exc`` so that a user never sees a raw traceback.
"""

from __future__ import annotations


class KilnError(Exception):
    """Base of every error kiln raises on purpose. ``str(err)`` is the message a user sees."""

    exit_code = 1


class DefinitionError(KilnError):
    """A role definition is invalid. Raised at definition time, naming the role."""


class RenderError(KilnError):
    """Rendering a role's Packer template failed or produced HCL that does not match the model."""


class ToolError(KilnError):
    """A required tool (packer, dockerd, qemu...) is missing, too old or not running."""


class BuildError(KilnError):
    """A bake failed outside Ansible (packer error, interrupted, artifact could not be saved)."""


class ProvisionError(BuildError):
    """An Ansible task failed while provisioning the builder."""


class RegistryError(KilnError):
    """The registry cannot be read or written, or a lifecycle rule refused an operation."""


class GuardError(KilnError):
    """Configuration tooling would reach something other than the throwaway builder."""


class TestFailure(KilnError):
    """Acceptance tests or role tests failed."""

    __test__ = False  # not a pytest test class


class DeployError(KilnError):
    """A deploy failed or was refused."""
