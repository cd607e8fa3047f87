"""What a bake's fingerprints are made of: the chain's definitions, templates, tools and secrets."""

from __future__ import annotations

from collections.abc import Mapping

from kiln import packer_plugins, requirements, tools
from kiln.fingerprint import (
    Fingerprint,
    FingerprintMemo,
    fingerprint_chain,
    read_secret,
)
from kiln.hmac_key import secret_key
from kiln.model import Project, Role
from kiln.targets.base import PLAYBOOK_TEMPLATE, Renderer

#: Secret values read for each role of a chain, by role and secret name.
Secrets = dict[str, dict[str, str]]


def chain_fingerprints(
    project: Project,
    role: Role,
    target: Renderer,
    memo: FingerprintMemo | None = None,
) -> tuple[dict[str, Fingerprint], Secrets]:
    """Fingerprints of role and its ancestors on target, and the secret values read for them.

    memo (see fingerprint_chain) spares a run over many roles the work they share. Refuses
    to go on when what `invoke deps` installed differs from requirements.lock.
    """
    requirements.check_installed(project)
    secrets = {
        node.name: {n: read_secret(node.name, n, s, project.root) for n, s in node.secrets.items()}
        for node in role.ancestry()
        if isinstance(node, Role)
    }
    templates = {
        "hcl": project.templates_path / target.template,
        "playbook": project.templates_path / PLAYBOOK_TEMPLATE,
    }
    fingerprints = fingerprint_chain(
        role,
        content=project.content,
        templates_for=templates,
        recipe=target.recipe(),
        target=target.name,
        tools=tool_inputs(tools.tool_versions(project.state_path)),
        secret_values=secrets,
        key=secret_key(project.root),
        requirements=requirements.locked_content(project),
        memo=memo,
    )
    return fingerprints, secrets


def tool_inputs(versions: Mapping[str, str]) -> dict[str, str]:
    """The tool versions a fingerprint holds (and a version records): with Packer 1.7+, also the
    plugin pins its HCL carries. All of them: a fingerprint is made before any file is rendered.
    """
    inputs = dict(versions)
    if tools.packer_supports_required_plugins(inputs["packer"]):
        inputs["packer-plugins"] = packer_plugins.pins_text()
    return inputs
