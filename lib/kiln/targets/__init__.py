"""Targets: where a bake runs and what it produces. One module per target."""

from __future__ import annotations

from kiln.errors import DefinitionError
from kiln.targets.base import BakePlan, BakeTarget, Builder, Renderer, TargetOptions
from kiln.targets.cloud import AmazonEbsTarget, GoogleComputeTarget
from kiln.targets.docker import DockerTarget
from kiln.targets.qemu import QemuTarget

_TARGETS: dict[str, type[Renderer]] = {
    "docker": DockerTarget,
    "amazon-ebs": AmazonEbsTarget,
    "googlecompute": GoogleComputeTarget,
    "qemu": QemuTarget,
}


def get_target(name: str, *, accel: str | None = None) -> Renderer:
    """The target called name; accel (kvm or tcg) overrides the qemu target's KVM probe.

    Ask it for .builder() to bake: a target that only renders refuses there.
    """
    try:
        cls = _TARGETS[name]
    except KeyError:
        known = ", ".join(sorted(_TARGETS))
        raise DefinitionError(f"unknown target {name!r} (known: {known})") from None
    return cls(TargetOptions(accel=accel))


def target_names() -> list[str]:
    return sorted(_TARGETS)


__all__ = [
    "BakePlan",
    "BakeTarget",
    "Builder",
    "Renderer",
    "TargetOptions",
    "get_target",
    "target_names",
]
