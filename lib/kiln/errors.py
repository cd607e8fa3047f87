"""The one error hierarchy of kiln. Every failure a user can act on is a KilnError.

    KilnError
    ├── DefinitionError     a role definition is malformed (bad name, unknown parent...)
    │   └── LintError       a role fails the syntax check or the blocking ansible-lint rules
    ├── RenderError         a template failed, or the rendered HCL does not match the model
    ├── ToolError           a tool is missing or too old, or dockerd is not running
    ├── BuildError          packer failed outside Ansible
    │   ├── ProvisionError  an Ansible task failed in the builder
    │   ├── PluginInitError `packer init` could not install the plugins the HCL pins (1.7+)
    │   └── Interrupted     Ctrl-C or SIGTERM stopped a bake; exit code 130
    ├── RegistryError       the registry cannot be read or written
    │   └── Refused         a lifecycle or bake rule refused an operation; nothing was changed
    ├── GuardError          a role would make Ansible touch something other than the builder
    ├── ImageRegistryError  an image could not be pushed to, or pulled from, the OCI registry
    ├── TestFailure         acceptance or role tests failed
    │   └── RoleTestFailure Molecule scenarios failed; carries every scenario's report
    ├── ImageMoved          a recorded image's tag now names another image
    ├── SbomError           an SBOM is not valid CycloneDX, or a record cannot make one
    ├── UpstreamError       an image's apt sources could not be fetched or verified upstream
    ├── UpdatesPending      `outdated --upstream --fail-on` found what it fails on; exit code 3
    └── DeployError         a deploy failed or was refused

Third-party failures (subprocess, sqlite3, lark, ansible-runner) are translated at the boundary
with ``raise ... from exc`` so that a user never sees a raw traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kiln.roletest import RoleTestReport


class KilnError(Exception):
    """Base of every error kiln raises on purpose. ``str(err)`` is the message a user sees.

    ``role``, ``version`` and ``log_dir`` say what failed where a caller knows it, so that code
    (a CI wrapper, bake_many's summary) need not parse the message.
    """

    exit_code = 1

    def __init__(
        self,
        message: str = "",
        *,
        role: str | None = None,
        version: int | None = None,
        log_dir: Path | None = None,
    ) -> None:
        super().__init__(message)
        self.role = role
        self.version = version
        self.log_dir = log_dir


class DefinitionError(KilnError):
    """A role definition is invalid. Raised at definition time, naming the role."""


class LintError(DefinitionError):
    """A role applied by a bake fails the syntax check or ansible-lint (and may not bake)."""


class RenderError(KilnError):
    """Rendering a role's Packer template failed or produced HCL that does not match the model."""


class ToolError(KilnError):
    """A required tool (packer, dockerd, qemu...) is missing, too old or not running."""


class BuildError(KilnError):
    """A bake failed outside Ansible (packer error, interrupted, artifact could not be saved)."""


class ProvisionError(BuildError):
    """An Ansible task failed while provisioning the builder."""


class PluginInitError(BuildError):
    """`packer init` failed to install the plugins a role's HCL pins (Packer 1.7 and newer).

    ``plugins`` holds the pins it was asked for, as ``name constraint``.
    """

    def __init__(
        self,
        message: str,
        *,
        plugins: Sequence[str],
        role: str | None = None,
        version: int | None = None,
        log_dir: Path | None = None,
    ) -> None:
        super().__init__(message, role=role, version=version, log_dir=log_dir)
        self.plugins = tuple(plugins)


class Interrupted(BuildError):
    """Ctrl-C or SIGTERM stopped a bake; its builders were removed and nothing was recorded."""

    exit_code = 130  # 128 + SIGINT, as a shell reports a process that Ctrl-C stopped


class RegistryError(KilnError):
    """The registry cannot be read or written."""


class Refused(RegistryError):
    """A lifecycle or bake rule refused an operation (promote an untested version, bake on a
    revoked parent...); the registry was not changed. A RegistryError, as it always was."""


class GuardError(KilnError):
    """Configuration tooling would reach something other than the throwaway builder."""


class ImageRegistryError(KilnError):
    """An image could not be pushed to, or pulled from, the OCI registry (KILN_IMAGE_REGISTRY).

    A version whose push failed stays recorded, as not pushed: the next bake or `invoke push`
    pushes it again.
    """


class TestFailure(KilnError):
    """Acceptance tests or role tests failed."""

    __test__ = False  # not a pytest test class


class RoleTestFailure(TestFailure):
    """One or more role scenarios failed; ``reports`` holds the report of every scenario run."""

    def __init__(self, message: str, reports: Sequence[RoleTestReport]) -> None:
        super().__init__(message)
        self.reports = tuple(reports)


class ImageMoved(KilnError):
    """A recorded image's tag names another image now: kiln neither uses it nor bakes over it.

    ``ref`` is the tag, ``recorded_id`` the image the registry recorded under it and
    ``current_id`` the one it names now; ``recorded_kept`` says whether the engine still holds
    the recorded image (under another tag, or none), so that the tag can be put back.
    """

    def __init__(
        self,
        *,
        ref: str,
        recorded_id: str,
        current_id: str,
        recorded_kept: bool,
        role: str | None = None,
        version: int | None = None,
        remedy: str | None = None,
    ) -> None:
        self.ref, self.recorded_id, self.current_id = ref, recorded_id, current_id
        self.recorded_kept = recorded_kept
        whose = f"{role} v{version}'s image" if role is not None else "the recorded image"
        back = (
            f"The recorded image is still in the engine: `docker tag {recorded_id} {ref}` puts "
            "the tag back on it, if nothing else relies on the tag now. Or "
            if recorded_kept
            else "The recorded image is gone from the engine: "
        )
        super().__init__(
            f"{whose} {ref} was recorded as {recorded_id[:19]}, but the tag now names another "
            f"image, {current_id[:19]}: another checkout on this Docker engine, or a `docker "
            f"tag`, moved it. kiln will not use that image, nor silently bake it again. {back}"
            f"{remedy or rebake_remedy(role or 'ROLE')}",
            role=role,
            version=version,
        )

    def of(self, role: str, version: int, remedy: str | None = None) -> ImageMoved:
        """The same finding, naming the version whose image it is and how to rebake it."""
        return ImageMoved(
            ref=self.ref,
            recorded_id=self.recorded_id,
            current_id=self.current_id,
            recorded_kept=self.recorded_kept,
            role=role,
            version=version,
            remedy=remedy,
        )


def rebake_remedy(role: str, then: str = "") -> str:
    """How to get past a moved image: bake anew, under names no other checkout uses."""
    return (
        f"`invoke bake {role} --force` bakes a new version under this project's own image "
        f"names{then}."
    )


class SbomError(KilnError):
    """An SBOM does not validate against the CycloneDX schema of the version it claims, or a
    version's record cannot be written as one (kiln.lifecycle.sbom)."""


class UpstreamError(KilnError):
    """apt could not fetch or verify an image's sources (bad or unknown signature, unreachable
    mirror...), so kiln cannot say which updates are pending; it never answers "none" then.

    ``sources`` holds apt's words for each source that failed, naming its URI and suite.
    """

    def __init__(self, message: str, *, sources: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.sources = tuple(sources)


class UpdatesPending(KilnError):
    """`outdated --upstream --fail-on security|any` found pending updates (or an image it could
    not check): exit code 3, so that a schedule tells it from kiln failing to check at all."""

    exit_code = 3


class DeployError(KilnError):
    """A deploy failed or was refused."""
