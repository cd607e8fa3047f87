"""The seams of a target: a Renderer writes its HCL, a Builder bakes it here; BakeTarget is both.

Adding a target means one module here plus its template in templates/.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from kiln import packer_plugins, tools
from kiln.errors import BuildError
from kiln.fingerprint import Fingerprint, file_digest
from kiln.image_facts import ImageFacts
from kiln.image_names import ImageNames
from kiln.model import Base, Project, Role
from kiln.paths import relative_to
from kiln.registry import Artifact, Version
from kiln.render import (
    Interpolated,
    RenderedFile,
    check_values,
    parse_hcl,
    render_template,
)
from kiln.resources import CALLBACK_DIR as CALLBACK_DIR  # re-exported: acceptance and tests use it
from kiln.resources import STRATEGY_DIR

PLAYBOOK_TEMPLATE = "playbook.yml.j2"
#: The script that writes the image's facts (kiln.image_facts) in every builder: Packer's shell
#: provisioner runs it over SSH (qemu, cloud) with KILN_FACTS_OUT=FACTS_OVER_SSH, and its file
#: provisioner fetches the result; the docker target runs it inside its own seal step.
FACTS_SCRIPT = Path(__file__).resolve().parent / "capture_facts.py"
FACTS_OVER_SSH = "/tmp/kiln-facts.json"

LineSink = Callable[[str], None]


@dataclass(frozen=True)
class BakePlan:
    """Everything needed to render and run one bake of one role on one target."""

    project: Project
    role: Role
    fingerprint: Fingerprint
    #: The recorded parent version; None for render-only targets, which find it by fingerprint.
    parent: Version | None
    #: The target that renders this plan; it names the HCL file and decides on flattening.
    target: Renderer
    #: How the project's images are named in the registry this bake records in.
    images: ImageNames
    #: Render a second Ansible pass (KILN_PASS=2) that must change nothing. The image is the
    #: same either way, so this is not part of the fingerprint.
    check_idempotence: bool = False
    #: The Packer version that will run the HCL (tools.packer_version). From 1.7 the HCL pins its
    #: plugins in a required_plugins block; None renders for Packer 1.6, which has no such block.
    packer_version: str | None = None

    @property
    def pins_plugins(self) -> bool:
        """Whether the HCL pins the plugins it uses (Packer 1.7+) for packer init to install."""
        return self.packer_version is not None and tools.packer_supports_required_plugins(
            self.packer_version
        )

    @property
    def layers(self) -> list[Role]:
        """The roles whose Ansible roles and variables this bake applies, in order."""
        if not self.target.flattens_chain():
            return [self.role]
        return [node for node in self.role.ancestry() if isinstance(node, Role)]

    @property
    def ansible_roles(self) -> list[str]:
        return list(dict.fromkeys(name for layer in self.layers for name in layer.ansible_roles))

    @property
    def variables(self) -> dict[str, Any]:
        """Variables of every layer; a child's value wins over its parent's."""
        merged: dict[str, Any] = {}
        for layer in self.layers:
            merged.update(layer.variables)
        return merged

    @property
    def secrets(self) -> list[str]:
        return sorted({name for layer in self.layers for name in layer.secrets})

    @property
    def repository(self) -> str:
        """The repository the role's new image is tagged in."""
        return self.images.repository(self.role.name)

    @property
    def hcl_path(self) -> Path:
        return self.project.packer_path / self.target.hcl_name(self.role.name)

    @property
    def playbook_path(self) -> Path:
        return self.project.packer_path / f"{self.role.name}.playbook.yml"

    def relative(self, path: Path) -> str:
        """Paths in rendered files are relative to the project root, so they stay reproducible."""
        return relative_to(path, self.project.root)

    @property
    def manifest_default(self) -> str:
        return f".kiln/work/{self.role.name}/manual/facts.json"

    @property
    def parent_label(self) -> str:
        if self.parent is None:
            return f"{self.role.parent.name}:{self.parent_fingerprint[:12]}"
        return f"{self.parent.role}:{self.parent.version}"

    @property
    def parent_fingerprint(self) -> str:
        return str(self.fingerprint.inputs.get("parent", {}).get("fingerprint", ""))


@dataclass(frozen=True)
class TargetOptions:
    """What a caller may choose about a target; every target is built from one of these."""

    #: kvm or tcg: overrides the qemu target's KVM probe; other targets ignore it.
    accel: str | None = None


class Renderer(ABC):
    """What a target writes: its HCL and playbook, checked against the model, and its recipe."""

    name: ClassVar[str]
    template: ClassVar[str]

    def __init__(self, options: TargetOptions | None = None) -> None:
        """One constructor for every target, so that get_target needs no case per target."""
        self.options = options or TargetOptions()

    # -- rendering --------------------------------------------------------------------------
    @abstractmethod
    def context(self, plan: BakePlan) -> dict[str, Any]:
        """Template variables for this target's HCL."""

    @abstractmethod
    def expectations(self, plan: BakePlan) -> dict[str, Any]:
        """Values the parsed HCL must hold, by dotted path, derived from the model."""

    def hcl_name(self, role: str) -> str:
        """The HCL's file name: a target's name in it keeps the files of two targets apart."""
        return f"{role}.{self.name}.pkr.hcl"

    def render(self, plan: BakePlan) -> list[RenderedFile]:
        """Render the HCL and playbook, parse the HCL back and check it against the model."""
        templates, source = plan.project.templates_path, plan.relative(plan.hcl_path)
        context = {**self.context(plan), "check_idempotence": plan.check_idempotence}
        hcl = render_template(templates, self.template, context)
        parsed = parse_hcl(hcl, source=source)
        expected = self.expectations(plan)
        # Added outside the template: a template's digest is part of every fingerprint, and files
        # rendered for Packer 1.6 (and so their fingerprints) must stay exactly as they were.
        plugins = packer_plugins.plugins_used(parsed) if plan.pins_plugins else []
        if plugins:
            hcl = packer_plugins.with_required_plugins(hcl, plugins)
            parsed = parse_hcl(hcl, source=source)
            expected.update(packer_plugins.expectations(plugins))
        check_values(parsed, expected, source=source)
        return [
            RenderedFile(plan.hcl_path, hcl),
            RenderedFile(plan.playbook_path, self.playbook(plan)),
        ]

    def playbook(self, plan: BakePlan) -> str:
        """The play Ansible runs in the builder: the role's, unless a target adds a first task."""
        return render_playbook(plan)

    def recipe(self) -> dict[str, Any]:
        """What this target's code adds to every image (flags, seal steps): part of fingerprints."""
        return {
            "ansible_env": [str(v) for v in ANSIBLE_ENV_STATIC],
            "facts_script": file_digest(FACTS_SCRIPT),
        }

    # -- what the target's HCL needs ----------------------------------------------------------
    @abstractmethod
    def flattens_chain(self) -> bool:
        """Whether a role is baked in one pass on its base (targets that cannot layer cheaply)."""

    @abstractmethod
    def starts_from_recorded_parent(self) -> bool:
        """Whether the HCL names the parent's recorded artifact (else it finds it another way)."""

    def builder(self) -> BakeTarget:
        """This target as a builder; a target that only renders cannot bake here, so it refuses."""
        raise BuildError(f"target {self.name} renders only; it cannot bake on this machine")


class Builder(ABC):
    """How a target bakes on this machine: its tools, its builders and the artifacts they leave."""

    name: ClassVar[str]

    @abstractmethod
    def preflight(self) -> None:
        """Fail early, with a fix, when what this target bakes with is not available."""

    @abstractmethod
    def bake_session(self, plan: BakePlan, work: Path) -> AbstractContextManager[dict[str, str]]:
        """Per-bake resources (keys, seeds) that live only while packer runs; yields -var values."""

    @abstractmethod
    def bootstrap_base(
        self,
        project: Project,
        images: ImageNames,
        base: Base,
        version: int,
        fingerprint: str,
        log: LineSink,
        *,
        reuse: bool = True,
    ) -> Artifact:
        """Build the base image every role of base starts from, as version ``version``.

        reuse=False (a rebake for upstream updates) never stands in an image already built with
        the same fingerprint: the point is what the mirror holds now.
        """

    @abstractmethod
    def base_facts(self, artifact: Artifact) -> ImageFacts | None:
        """The facts of a bootstrapped base image (kiln.image_facts), where the target can read
        them without booting it; None leaves the base without facts (no upstream check)."""

    @abstractmethod
    def artifact_exists(self, artifact: Artifact) -> bool:
        """Whether a recorded artifact is still there to reuse instead of baking again.

        ImageMoved when its name now holds another artifact: neither reuse nor a silent rebake.
        """

    @abstractmethod
    def collect_artifact(self, plan: BakePlan, version: int) -> Artifact:
        """The artifact packer produced for version; BuildError when it produced none."""

    @abstractmethod
    def delete_artifact(self, artifact: Artifact) -> None:
        """Remove the artifact's bytes; the registry keeps its record."""

    @abstractmethod
    def reap_builders(
        self, *, role: str, bake_id: str | None = None, owner: str | None = None
    ) -> list[str]:
        """Remove builders a bake left behind (owner's only: an ImageNames.prefix); returns them."""

    @abstractmethod
    def runs_acceptance_tests(self) -> bool:
        """Whether kiln.acceptance can start instances of this target's artifacts."""


class BakeTarget(Renderer, Builder):
    """A target kiln both renders and bakes here (docker, qemu)."""

    def builder(self) -> BakeTarget:
        """It bakes here: it is its own builder."""
        return self

    def starts_from_recorded_parent(self) -> bool:
        """A local bake starts from the parent's artifact, which the registry records."""
        return True


# -- pieces every target shares -------------------------------------------------------------
def render_playbook(plan: BakePlan, *, lists_wait_command: str = "") -> str:
    return playbook_text(
        plan.project, plan.role, plan.ansible_roles, lists_wait_command=lists_wait_command
    )


def playbook_text(
    project: Project,
    role: Role,
    ansible_roles: list[str] | None = None,
    *,
    lists_wait_command: str = "",
) -> str:
    """The playbook kiln generates for role (`invoke audit` writes it from the definition only).

    lists_wait_command: the first task's command, which waits for the package lists of an
    `apt-get update` the target started in the background (docker); none by default.
    """
    return render_template(
        project.templates_path,
        PLAYBOOK_TEMPLATE,
        {
            "role_name": role.name,
            "ansible_roles": ansible_roles or list(role.ansible_roles),
            "gather_subset": list(role.gather_subset),
            "lists_wait_command": lists_wait_command,
        },
    )


def ansible_arguments(plan: BakePlan, connection: list[str | Interpolated]) -> list[Any]:
    """Extra arguments: how to reach the builder, then the role's variables as one JSON value."""
    args: list[Any] = []
    for item in connection:
        args += ["-e", item]
    if plan.variables:
        args += ["-e", json.dumps(plan.variables, sort_keys=True, ensure_ascii=False)]
    if plan.secrets:
        args += ["-e", Interpolated("@${var.secret_vars_file}")]
    return args


ANSIBLE_ENV_STATIC: tuple[str, ...] = (
    "ANSIBLE_PIPELINING=True",
    # Modules would log their arguments to the builder's journal, which the image would keep.
    "ANSIBLE_NO_TARGET_SYSLOG=True",
    "ANSIBLE_CALLBACKS_ENABLED=kiln_events",
    "ANSIBLE_RETRY_FILES_ENABLED=False",
    "ANSIBLE_NOCOLOR=True",
)


#: kiln's strategy (kiln.ansible_plugins.strategy): Mitogen's linear strategy when it loads.
MITOGEN_STRATEGY = "kiln_linear"


def ansible_env_vars(plan: BakePlan) -> list[Any]:
    strategy = (
        [
            f"ANSIBLE_STRATEGY_PLUGINS={plan.relative(STRATEGY_DIR)}",
            f"ANSIBLE_STRATEGY={MITOGEN_STRATEGY}",
        ]
        if plan.role.mitogen
        else []
    )
    return [
        *ANSIBLE_ENV_STATIC,
        "ANSIBLE_ROLES_PATH="
        + os.pathsep.join(plan.relative(p) for p in plan.project.content.roles_paths),
        "ANSIBLE_COLLECTIONS_PATH="
        + os.pathsep.join(plan.relative(p) for p in plan.project.content.collections_paths),
        f"ANSIBLE_CALLBACK_PLUGINS={plan.relative(CALLBACK_DIR)}",
        Interpolated("KILN_EVENTS_FILE=${var.events_file}"),
        *strategy,
    ]
