"""The KVM probe: whether KVM really runs a guest, proven by booting a kernel under it.

``/dev/kvm`` existing proves nothing (a paravirtual KVM can hang a stock kernel), so the probe
boots a real kernel and waits for its banner; callers fall back to TCG when it says no.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import time
from pathlib import Path

from kiln import tools
from kiln.targets.qemu.machine import QEMU_BINARY

__all__ = ["boots_kernel", "probe_kvm"]

# Printed by the decompressed kernel itself. The real-mode setup code prints earlier lines
# ("Probing EDD ...") even where the kernel then hangs, so those prove nothing.
_KERNEL_ALIVE = re.compile(rb"Linux version \d")
_HOST_KERNELS = ("/boot/vmlinuz", "/vmlinuz")
KVM_DEVICE = "/dev/kvm"


def _host_kernel() -> Path | None:
    """The host's own kernel image, for a probe when no VM base kernel is given."""
    for candidate in _HOST_KERNELS:
        if os.path.isfile(candidate):
            return Path(candidate)
    boot = Path("/boot")
    kernels = sorted(boot.glob("vmlinuz-*")) if boot.is_dir() else []
    return kernels[-1] if kernels else None


def probe_kvm(*, kernel_image: Path | None = None, timeout_s: float = 8.0) -> bool:
    """Whether KVM really runs a guest: boot a kernel with ``-accel kvm`` and wait for its banner.

    ``/dev/kvm`` existing proves nothing (a paravirtual KVM can hang a stock kernel), so this
    boots ``kernel_image`` (VmBase.kernel; by default the host's) and answers True only if the
    kernel prints ``Linux version`` on the serial port within ``timeout_s``. With no kernel to
    boot it answers False, so callers fall back to TCG. qemu is always killed.
    """
    kernel = kernel_image if kernel_image is not None else _host_kernel()
    if kernel is None or not kernel.is_file():
        return False
    if not os.access(KVM_DEVICE, os.R_OK | os.W_OK):
        return False
    return boots_kernel(kernel, accel="kvm", timeout_s=timeout_s)


def boots_kernel(kernel: Path, *, accel: str, timeout_s: float) -> bool:
    """Whether qemu under ``accel`` runs ``kernel`` far enough to print its banner in time."""
    argv = [
        tools.which(QEMU_BINARY),
        "-accel",
        accel,
        "-m",
        "256",
        "-nodefaults",
        "-display",
        "none",
        "-no-reboot",
        "-serial",
        "stdio",
        "-kernel",
        str(kernel),
        "-append",
        "console=ttyS0 earlyprintk=ttyS0 panic=-1",
    ]
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + timeout_s
    try:
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([proc.stdout], [], [], min(left, 0.5))
            if not ready:
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:  # qemu exited: the accelerator refused the guest
                return False
            seen = (seen + chunk)[-4096:]
            if _KERNEL_ALIVE.search(seen):
                return True
        return False
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
