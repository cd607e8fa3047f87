"""The Packer plugins a rendered file uses, pinned in a `required_plugins` block for Packer 1.7+.

Packer 1.6 bundles every builder and provisioner and rejects the block, so files rendered for it
stay as they were; from 1.7 on, the block pins each plugin and `packer init` installs it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kiln.render import hcl_body, lookup, parse_hcl


@dataclass(frozen=True)
class Plugin:
    source: str
    version: str  # a Packer version constraint


#: The one place plugin versions are pinned. These are the versions checked: each constraint
#: matches releases HashiCorp published for that source (amazon 1.3.0 on, ansible, docker,
#: googlecompute and qemu 1.1.0 on), and `~>` keeps a bake on the checked major version.
PLUGINS: dict[str, Plugin] = {
    "amazon": Plugin("github.com/hashicorp/amazon", "~> 1.3"),
    "ansible": Plugin("github.com/hashicorp/ansible", "~> 1.1"),
    "docker": Plugin("github.com/hashicorp/docker", "~> 1.1"),
    "googlecompute": Plugin("github.com/hashicorp/googlecompute", "~> 1.1"),
    "qemu": Plugin("github.com/hashicorp/qemu", "~> 1.1"),
}

#: The plugin behind each source, provisioner and post-processor type kiln's templates use.
#: Types not named here (shell, shell-local, file) are built into Packer itself.
COMPONENTS: dict[str, str] = {
    "amazon-ebs": "amazon",
    "ansible": "ansible",
    "docker": "docker",
    "docker-tag": "docker",
    "googlecompute": "googlecompute",
    "qemu": "qemu",
}

_COMMENT = (
    "# The plugins this file uses, pinned by kiln for Packer 1.7+. kiln runs `packer init` before\n"
    "# each build; by hand, run `packer init` on this file once before `packer build`.\n"
)


def pins_text() -> str:
    """Every pin on one line, as the fingerprint and the registry record it (Packer 1.7+ only)."""
    return ", ".join(f"{name} {plugin.version}" for name, plugin in sorted(PLUGINS.items()))


def plugins_used(parsed: Mapping[str, Any]) -> list[str]:
    """The plugins a parsed HCL file's sources, provisioners and post-processors need, sorted."""
    types = {kind for block in parsed.get("source", []) for kind in block}
    for build in parsed.get("build", []):
        for key in ("provisioner", "post-processor"):
            types.update(kind for block in build.get(key, []) for kind in block)
        for chain in build.get("post-processors", []):
            types.update(kind for block in chain.get("post-processor", []) for kind in block)
    return sorted({COMPONENTS[kind] for kind in types if kind in COMPONENTS})


def _pin(name: str) -> dict[str, str]:
    """One plugin's entry in required_plugins, as HCL holds it."""
    return {"source": PLUGINS[name].source, "version": PLUGINS[name].version}


def required_plugins_block(names: Sequence[str]) -> str:
    """The packer {} block pinning names, `packer fmt`-clean; every value escaped by hcl_value."""
    pins = {name: _pin(name) for name in names}
    body = hcl_body({"required_plugins": pins}, 1, ["required_plugins"])
    return f"{_COMMENT}packer {{\n{body}\n}}\n"


def with_required_plugins(text: str, names: Sequence[str]) -> str:
    """text with the block pinning names after its leading comment lines (the file's header)."""
    lines = text.splitlines(keepends=True)
    header = 0
    while header < len(lines) and lines[header].startswith("#"):
        header += 1
    head, rest = "".join(lines[:header]), "".join(lines[header:])
    gap = "" if rest.startswith("\n") else "\n"
    return head + ("\n" if head else "") + required_plugins_block(names) + gap + rest


def expectations(names: Sequence[str]) -> dict[str, Any]:
    """What the parsed block must hold, by dotted path (see render.check_values)."""
    return {f"packer.required_plugins.{name}": _pin(name) for name in names}


def declared_plugins(text: str, *, source: str) -> dict[str, str]:
    """The plugins an HCL file pins in its required_plugins block, with their version constraints.

    Empty for a file without the block (one rendered for Packer 1.6).
    """
    declared = lookup(parse_hcl(text, source=source), "packer.required_plugins")
    if not isinstance(declared, list):
        return {}
    pins = {name: pin for block in declared for name, pin in block.items()}
    return {name: str(pins[name].get("version", "")) for name in sorted(pins)}
