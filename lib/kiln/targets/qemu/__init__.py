"""The qemu target: bootable qcow2 images baked on a locally built Debian VM base.

One module per concept: target (the BakeTarget subclass), base_image (building the VM base),
machine (booting throwaway VMs), kvm (the KVM probe), access (per-bake SSH key and cloud-init
seed) and inspect (reading files in a qcow2 without booting it, the seal check).
"""

from __future__ import annotations

from kiln.targets.qemu.target import QemuTarget, artifact_path, choose_accelerator

__all__ = ["QemuTarget", "artifact_path", "choose_accelerator"]
