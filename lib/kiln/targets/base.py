"""The interface every target implements: its HCL, how Ansible reaches the builder, its artifacts.

Adding a target means one module here plus its template in templates/.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from kiln.errors import BuildError
from kiln.fingerprint import Fingerprint
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

PLAYBOOK_TEMPLATE = "playbook.yml.j2"

LineSink = Callable[[str], None]


@dataclass(frozen=True)
class BakePlan:
    """Everything needed to render and run one bake of one role on one target."""

    project: Project
    role: Role
    fingerprint: Fingerprint
    #: The recorded parent version; None for render-only targets, which find it by fingerprint.
    parent: Version | None
    target: str
    #: Render a second Ansible pass (KILN_PASS=2) that must change nothing. The image is the
    #: same either way, so this is not part of the fingerprint.
    check_idempotence: bool = False
    #: Apply the Ansible roles of the whole chain in one bake (targets that cannot layer cheaply).
    flatten: bool = False

    @property
    def layers(self) -> list[Role]:
        """The roles whose Ansible roles and variables this bake applies, in order."""
        if not self.flatten:
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
    def hcl_path(self) -> Path:
        # The local default keeps the short name the README promises: packer/<role>.pkr.hcl.
        suffix = "" if self.target == "docker" else f".{self.target}"
        return self.project.packer_path / f"{self.role.name}{suffix}.pkr.hcl"

    @property
    def playbook_path(self) -> Path:
        return self.project.packer_path / f"{self.role.name}.playbook.yml"

    def relative(self, path: Path) -> str:
        """Paths in rendered files are relative to the project root, so they stay reproducible."""
        return relative_to(path, self.project.root)

    @property
    def manifest_default(self) -> str:
        return f".kiln/work/{self.role.name}/manual/packages.tsv"

    @property
    def parent_label(self) -> str:
        if self.parent is None:
            return f"{self.role.parent.name}:{self.parent_fingerprint[:12]}"
        return f"{self.parent.role}:{self.parent.version}"

    @property
    def parent_fingerprint(self) -> str:
        return str(self.fingerprint.inputs.get("parent", {}).get("fingerprint", ""))


class Target(ABC):
    """A place a bake runs and the artifact it produces."""

    name: ClassVar[str]
    template: ClassVar[str]
    #: False for cloud targets: kiln renders and validates them but cannot bake here.
    bakes_locally: ClassVar[bool] = True

    # -- rendering --------------------------------------------------------------------------
    @abstractmethod
    def context(self, plan: BakePlan) -> dict[str, Any]:
        """Template variables for this target's HCL."""

    @abstractmethod
    def expectations(self, plan: BakePlan) -> dict[str, Any]:
        """Values the parsed HCL must hold, by dotted path, derived from the model."""

    def render(self, plan: BakePlan) -> list[RenderedFile]:
        """Render the HCL and playbook, parse the HCL back and check it against the model."""
        templates = plan.project.templates_path
        context = {**self.context(plan), "check_idempotence": plan.check_idempotence}
        hcl = render_template(templates, self.template, context)
        parsed = parse_hcl(hcl, source=plan.relative(plan.hcl_path))
        check_values(parsed, self.expectations(plan), source=plan.relative(plan.hcl_path))
        return [
            RenderedFile(plan.hcl_path, hcl),
            RenderedFile(plan.playbook_path, render_playbook(plan)),
        ]

    def recipe(self) -> dict[str, Any]:
        """What this target's code adds to every image (flags, seal steps): part of fingerprints."""
        return {"ansible_env": [str(v) for v in ANSIBLE_ENV_STATIC]}

    # -- baking -----------------------------------------------------------------------------
    def preflight(self) -> None:
        """Fail early, with a fix, when what this target bakes with is not available."""
        if not self.bakes_locally:
            raise BuildError(f"target {self.name} renders only; it cannot bake on this machine")

    #: Bake a role in one pass on the base, applying its whole chain (see BakePlan.flatten).
    flattens_chain: ClassVar[bool] = False
    #: Whether kiln.acceptance can start instances of this target's artifacts.
    runs_acceptance_tests: ClassVar[bool] = False

    @contextmanager
    def bake_session(self, plan: BakePlan, work: Path) -> Iterator[dict[str, str]]:
        """Per-bake resources (keys, seeds) that live only while packer runs; yields -var values."""
        yield {}

    def bootstrap_base(
        self, project: Project, base: Base, version: int, fingerprint: str, log: LineSink
    ) -> Artifact:
        raise BuildError(f"target {self.name} cannot bootstrap base {base.name!r} here")

    def artifact_exists(self, artifact: Artifact) -> bool:
        return False

    def collect_artifact(self, plan: BakePlan, version: int) -> Artifact:
        raise BuildError(f"target {self.name} renders only; it cannot bake on this machine")

    def delete_artifact(self, artifact: Artifact) -> None:
        """Remove the artifact's bytes; the registry keeps its record."""
        return

    def reap_builders(
        self, *, role: str, bake_id: str | None = None, namespace: str | None = None
    ) -> list[str]:
        """Remove builders a bake left behind (of namespace's images only); returns them."""
        return []


# -- pieces every target shares -------------------------------------------------------------
def render_playbook(plan: BakePlan) -> str:
    return playbook_text(plan.project, plan.role, plan.ansible_roles)


def playbook_text(project: Project, role: Role, ansible_roles: list[str] | None = None) -> str:
    """The playbook kiln generates for role; it depends on the definition only (`invoke audit`)."""
    return render_template(
        project.templates_path,
        PLAYBOOK_TEMPLATE,
        {
            "role_name": role.name,
            "ansible_roles": ansible_roles or list(role.ansible_roles),
            "gather_subset": list(role.gather_subset),
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


def ansible_env_vars(plan: BakePlan) -> list[Any]:
    return [
        *ANSIBLE_ENV_STATIC,
        "ANSIBLE_ROLES_PATH="
        + os.pathsep.join(plan.relative(p) for p in plan.project.content.roles_paths),
        "ANSIBLE_COLLECTIONS_PATH="
        + os.pathsep.join(plan.relative(p) for p in plan.project.content.collections_paths),
        f"ANSIBLE_CALLBACK_PLUGINS={plan.relative(CALLBACK_DIR)}",
        Interpolated("KILN_EVENTS_FILE=${var.events_file}"),
    ]


def secret_vars_file(path: Path, values: Mapping[str, str]) -> Path:
    """Write secrets for Ansible to a 0600 file; the caller deletes it after the bake."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(dict(values), handle)
    return path
