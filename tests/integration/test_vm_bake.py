"""One real VM bake under the accelerator kiln picks (TCG here): bake, seal, boot, fetch the page.

This is the only VM bake of the suite (it takes minutes under TCG); unit tests cover the rest.
"""

from __future__ import annotations

import hashlib
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import Sandbox
from kiln.targets.qemu import inspect as guest_inspect
from kiln.targets.qemu import kvm

pytestmark = pytest.mark.vm


# What Packer's builders and provisioners leave in the temp directory they are given: the ansible
# provisioner's copy of the builder's private key, its inventory, the seed ISO's staging.
# kiln gives each packer run a private kiln-packer-* directory and removes it (tests/unit/
# test_scope.py), so none of these may appear in /tmp itself. The kiln-packer-* directories are
# not counted here, nor packer's own packer-log* files: the other lanes' packer runs (bakes,
# `packer validate`) hold theirs while they run.
PACKER_TEMP_FILES = (
    "ansible-key*",
    "packer-provisioner-ansible*",
    "packer_to_cdrom*",
)


def _packer_temp_files() -> set[Path]:
    temp = Path(tempfile.gettempdir())
    return {path for pattern in PACKER_TEMP_FILES for path in temp.glob(pattern)}


def test_bake_web_as_a_sealed_qcow2_and_boot_it(sandbox: Sandbox) -> None:
    temp_before = _packer_temp_files()
    proc = sandbox.invoke("bake", "web", "--target", "qemu", timeout=3600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "recorded untested" in proc.stdout
    # Packer's temporary files stayed in the bake's private temp directory, removed with it.
    assert _packer_temp_files() - temp_before == set()

    with sandbox.registry() as registry:
        web = registry.latest("web", target="qemu")
        assert web is not None
        assert web.parent_role == "debian-bookworm", "a VM image bakes its chain on the VM base"
        base = registry.get("debian-bookworm", web.parent_version or 0)
        packages = {p.name for p in registry.packages("web", web.version)}
    assert base is not None and base.target == "qemu"
    assert {"nginx", "openssh-server", "cloud-init", "ca-certificates"} <= packages
    artifact = web.artifact("qemu")
    assert artifact is not None
    image = Path(artifact.ref)
    assert image == sandbox.root / "artifacts" / "web" / str(web.version) / "web.qcow2"
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    assert artifact.sha256 == digest
    assert (image.parent / "web.qcow2.sha256").read_text().split()[0] == digest

    # Sealed: no build user, no authorized_keys, no SSH host keys, no machine id.
    assert guest_inspect.sealing_problems(image) == []

    # The base keeps its apt lists and fetches no translations, so a bake's `apt-get update`
    # revalidates lists instead of downloading them again under TCG.
    base_artifact = base.artifact("qemu")
    assert base_artifact is not None
    base_image = Path(base_artifact.ref)
    lists = guest_inspect.guest_listdir(base_image, "/var/lib/apt/lists") or []
    assert any(name.endswith("_main_binary-amd64_Packages") for name in lists), lists
    assert not any("Translation" in name for name in lists), lists
    apt_conf = guest_inspect.guest_file(base_image, "/etc/apt/apt.conf.d/99mmdebstrap")
    assert apt_conf is not None and b'Acquire::Languages "none";' in apt_conf

    assert web.inputs["target"] == "qemu", "the fingerprint covers the target"

    booted = subprocess.Popen(
        [sys.executable, "-m", "invoke", "boot", "web"], cwd=sandbox.root, env=sandbox.env(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = overlay = ""
    lines: list[str] = []
    try:
        assert booted.stdout is not None
        deadline = time.monotonic() + 1200
        for line in booted.stdout:
            lines.append(line)
            if "overlay:" in line:
                overlay = line.split("overlay:", 1)[1].strip()
            match = re.search(r"serves (http://127\.0\.0\.1:\d+/)", line)
            if match:
                url = match.group(1)
                break
            assert time.monotonic() < deadline, "".join(lines)
        assert url, "".join(lines)
        page = urllib.request.urlopen(url, timeout=30).read().decode()
        assert "<h1>Hello from kiln</h1>" in page
    finally:
        booted.send_signal(signal.SIGINT)
        booted.wait(timeout=120)
    assert overlay and not Path(overlay).exists(), f"overlay {overlay!r} was not removed"
    assert guest_inspect.sealing_problems(image) == [], (
        "booting an overlay must not change the image"
    )

    _the_kvm_probe_on_the_bases_real_kernel(sandbox, base.version)


def _the_kvm_probe_on_the_bases_real_kernel(sandbox: Sandbox, base_version: int) -> None:
    """The probe boots the VM base's real kernel. Whether KVM works differs between machines
    (here /dev/kvm exists and hangs a guest), so its answer is not asserted; that it watches
    for the real banner is shown under TCG, and under KVM that it ends in time, killing qemu."""
    (kernel,) = (sandbox.root / "artifacts" / "debian-bookworm" / str(base_version)).glob(
        "*.vmlinuz"
    )
    assert kvm.boots_kernel(kernel, accel="tcg", timeout_s=300), "no banner from a real kernel"
    assert not kvm.boots_kernel(kernel.with_name("missing"), accel="tcg", timeout_s=30)

    started = time.monotonic()
    answer = kvm.probe_kvm(kernel_image=kernel, timeout_s=8)
    assert isinstance(answer, bool)
    assert time.monotonic() - started < 30, "the KVM probe outlived its timeout"
    left = subprocess.run(
        ["pgrep", "-f", "--", f"-kernel {kernel}"], capture_output=True, text=True, check=False
    )
    assert left.stdout == "", "the probe left qemu running"
