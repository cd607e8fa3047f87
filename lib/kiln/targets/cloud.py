"""Cloud targets (amazon-ebs, googlecompute): rendered and validated here, baked where a team has
an account. The same role definitions bake on cloud builders, reached by Ansible over SSH.

A role on a Base starts from the base's cloud image (CloudSettings.source_image); a role on
another role starts from the newest image tagged with its parent's fingerprint, so no local
registry entry is needed to render it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from kiln.errors import DefinitionError
from kiln.model import Base, CloudSettings
from kiln.render import Interpolated
from kiln.targets.base import (
    FACTS_OVER_SSH,
    FACTS_SCRIPT,
    BakePlan,
    Renderer,
    ansible_arguments,
    ansible_env_vars,
)

CLOUD_SEAL_COMMANDS = (
    f"sudo rm -f {FACTS_OVER_SSH}",
    "sudo apt-get clean",
    "sudo rm -rf /var/lib/apt/lists/*",
    "sudo cloud-init clean --logs",
    "sudo rm -f /etc/ssh/ssh_host_*",
    "sudo truncate -s 0 /etc/machine-id",
    "rm -f ~/.ssh/authorized_keys",
)


class CloudTarget(Renderer):
    """What amazon-ebs and googlecompute share: SSH, sealing, the manifest, tags.

    A Renderer only: kiln renders and validates these, and has no Builder for them here.
    """

    template: ClassVar[str] = "cloud.pkr.hcl.j2"
    source_type: ClassVar[str]

    def flattens_chain(self) -> bool:
        """Cloud images layer like docker's: each role is baked on its parent's image."""
        return False

    def starts_from_recorded_parent(self) -> bool:
        """No local record of a cloud parent: the HCL finds its image by fingerprint tag."""
        return False

    def settings(self, plan: BakePlan) -> CloudSettings:
        settings = plan.role.cloud_settings(self.name)
        if settings is None:
            raise DefinitionError(
                f"role {plan.role.name!r} has no settings for target {self.name}: add "
                f"cloud={{{self.name!r}: CloudSettings(source_image=..., region=..., "
                "instance_type=...)}} to it or to its base"
            )
        return settings

    def tags(self, plan: BakePlan) -> dict[str, Any]:
        return {
            "kiln.role": plan.role.name,
            "kiln.version": Interpolated("${var.version}"),
            "kiln.fingerprint": plan.fingerprint.digest,
            "kiln.parent": plan.parent_label,
            "kiln.source-commit": Interpolated("${var.source_commit}"),
        }

    def recipe(self) -> dict[str, Any]:
        return {**super().recipe(), "seal": list(CLOUD_SEAL_COMMANDS)}

    def _ansible_arguments(self, plan: BakePlan) -> list[Any]:
        return ansible_arguments(
            plan, ["ansible_python_interpreter=/usr/bin/python3", "ansible_become=true"]
        )

    def source(self, plan: BakePlan) -> dict[str, Any]:
        """The source block's attributes, in order."""
        raise NotImplementedError

    def context(self, plan: BakePlan) -> dict[str, Any]:
        return {
            "role_name": plan.role.name,
            "hcl_path": plan.relative(plan.hcl_path),
            "target": self.name,
            "source_type": self.source_type,
            "source": self.source(plan),
            "playbook_path": plan.relative(plan.playbook_path),
            "manifest_default": plan.manifest_default,
            "has_secrets": bool(plan.role.secrets),
            "ssh_username": self.settings(plan).ssh_username,
            "ansible_arguments": self._ansible_arguments(plan),
            "ansible_env_vars": ansible_env_vars(plan),
            "facts_script": plan.relative(FACTS_SCRIPT),
            "facts_file": FACTS_OVER_SSH,
            "seal_commands": list(CLOUD_SEAL_COMMANDS),
        }

    def expectations(self, plan: BakePlan) -> dict[str, Any]:
        source = f"source.{self.source_type}.{plan.role.name}"
        expected = {
            f"{source}.{key}": _plain(value)
            for key, value in self.source(plan).items()
            if not isinstance(value, dict)
        }
        expected["build.provisioner.ansible.playbook_file"] = plan.relative(plan.playbook_path)
        expected["build.provisioner.ansible.extra_arguments"] = [
            str(v) for v in self._ansible_arguments(plan)
        ]
        return expected


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, Interpolated) else value


class AmazonEbsTarget(CloudTarget):
    name: ClassVar[str] = "amazon-ebs"
    source_type: ClassVar[str] = "amazon-ebs"

    def source(self, plan: BakePlan) -> dict[str, Any]:
        settings = self.settings(plan)
        attributes: dict[str, Any] = {
            "region": settings.region,
            "instance_type": settings.instance_type,
            "ssh_username": settings.ssh_username,
            "ami_name": Interpolated(f"kiln-{plan.role.name}-${{var.version}}"),
        }
        if isinstance(plan.role.parent, Base):
            attributes["source_ami"] = settings.source_image
        else:
            attributes["source_ami_filter"] = {
                "filters": {"tag:kiln.fingerprint": plan.parent_fingerprint},
                "owners": ["self"],
                "most_recent": True,
            }
        attributes["tags"] = self.tags(plan)
        attributes["run_tags"] = {"kiln.bake": Interpolated("${var.bake_id}")}
        return attributes


class GoogleComputeTarget(CloudTarget):
    name: ClassVar[str] = "googlecompute"
    source_type: ClassVar[str] = "googlecompute"

    def source(self, plan: BakePlan) -> dict[str, Any]:
        settings = self.settings(plan)
        if not settings.project_id:
            raise DefinitionError(
                f"role {plan.role.name!r}: googlecompute needs CloudSettings(project_id=...)"
            )
        attributes: dict[str, Any] = {
            "project_id": settings.project_id,
            "zone": settings.region,
            "machine_type": settings.instance_type,
            "ssh_username": settings.ssh_username,
            "image_name": Interpolated(f"kiln-{plan.role.name}-${{var.version}}"),
            "image_family": f"kiln-{plan.role.name}",
            "image_description": f"kiln {plan.role.name} fingerprint {plan.fingerprint.digest}",
        }
        if isinstance(plan.role.parent, Base):
            attributes["source_image"] = settings.source_image
        else:
            # GCE labels allow 63 lowercase characters: the parent's image family is the link.
            attributes["source_image_family"] = f"kiln-{plan.role.parent.name}"
        attributes["image_labels"] = {
            "kiln-role": plan.role.name,
            "kiln-version": Interpolated("${var.version}"),
            "kiln-fingerprint": plan.fingerprint.digest[:32],
            "kiln-parent": plan.parent_label.replace(":", "-")[:63],
        }
        return attributes
