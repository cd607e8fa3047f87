"""The real QEMU path end to end: base image, KVM probe, packer bake of `web`, boot, page, seal.

Slow (about 10 minutes under TCG on 2 cores). The base is cached under .kiln/cache/vm/ by the
digest of vm_base_inputs(), so a second run only bakes and boots.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kiln import vm

pytestmark = [pytest.mark.integration, pytest.mark.vm]

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".kiln" / "cache" / "vm"
TOOLS = ("mmdebstrap", "sfdisk", "mkfs.ext4", "debugfs", "qemu-img", vm.QEMU_BINARY, "packer")
TITLE = "Hello from a kiln VM"
PLAYBOOK = """\
---
- name: Bake the web role
  hosts: all
  become: true
  roles:
    - common
    - web
"""


def _cached_base(log: list[str]) -> vm.VmBase:
    """The base for the current inputs: reused from the cache when intact, else built there."""
    digest = vm.vm_base_digest()
    slot = CACHE / digest
    meta = slot / "base.json"
    if meta.exists():
        recorded = json.loads(meta.read_text())
        image = Path(recorded["path"])
        if image.exists() and vm._sha256(image) == recorded["sha256"]:
            log.append(f"base: reused {image}")
            return vm.VmBase(
                path=image,
                sha256=recorded["sha256"],
                size_bytes=image.stat().st_size,
                duration_s=0.0,
                kernel=Path(recorded["kernel"]),
                inputs_digest=digest,
            )
    shutil.rmtree(slot, ignore_errors=True)
    slot.mkdir(parents=True)
    base = vm.build_vm_base(slot / "base.qcow2", work_dir=slot / "work")
    shutil.rmtree(slot / "work", ignore_errors=True)
    meta.write_text(
        json.dumps(
            {
                "path": str(base.path),
                "kernel": str(base.kernel),
                "sha256": base.sha256,
                "inputs": vm.vm_base_inputs(),
            },
            indent=1,
        )
    )
    log.append(f"base: built in {base.duration_s:.0f} s, {base.size_bytes / 2**20:.0f} MiB")
    return base


def _tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"({path} missing)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def test_bake_boot_and_seal_web_vm(tmp_path: Path) -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)} (apt-get install them)")
    if os.geteuid() != 0:
        pytest.skip("building the VM base needs root")
    log: list[str] = []
    base = _cached_base(log)

    started = time.monotonic()
    kvm = vm.probe_kvm(kernel_image=base.kernel)
    log.append(f"kvm probe: {kvm} in {time.monotonic() - started:.1f} s")
    assert time.monotonic() - started < 30
    accel = "kvm" if kvm else "tcg"

    bake_dir = tmp_path / "bake"
    output_dir = bake_dir / "out"
    playbook = tmp_path / "site.yml"
    playbook.write_text(PLAYBOOK)
    serial_log = bake_dir / "serial.log"
    packer_log = bake_dir / "packer.log"
    with vm.bake_access(bake_dir) as access:
        key = access.private_key
        hcl = bake_dir / "web.pkr.hcl"
        hcl.write_text(
            vm.render_qemu_template(
                {
                    "role_name": "web",
                    "vm_name": "web.qcow2",
                    "base_image_path": str(base.path),
                    "base_image_sha256": base.sha256,
                    "output_dir": str(output_dir),
                    "accel": accel,
                    "ssh_private_key_file": str(access.private_key),
                    "seed_dir": str(access.seed_dir),
                    "serial_log": str(serial_log),
                    "playbook_path": str(playbook),
                    "roles_path": str(REPO / "roles"),
                    "extra_vars_json": json.dumps({"web_title": TITLE}),
                }
            )
        )
        # ansible-playbook comes from the same environment as the tests.
        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
        started = time.monotonic()
        with packer_log.open("w") as out:
            done = subprocess.run(
                ["packer", "build", "-color=false", str(hcl)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                timeout=45 * 60,
                check=False,
            )
        log.append(f"packer build ({accel}): {time.monotonic() - started:.0f} s")
        assert done.returncode == 0, (
            f"packer build failed:\n{_tail(packer_log)}\n--- serial ---\n{_tail(serial_log)}"
        )
    assert not key.exists(), "the throwaway bake key outlived the bake"

    image = output_dir / "web.qcow2"
    log.append(f"web.qcow2: {image.stat().st_size / 2**20:.0f} MiB")
    assert vm.sealing_problems(image) == []
    page = vm.guest_file(image, "/var/www/kiln/index.html") or b""
    site = vm.guest_listdir(image, "/etc/nginx/sites-enabled")
    assert site == ["kiln"], site
    log.append(f"page in image: {len(page)} bytes")

    started = time.monotonic()
    with vm.booted_vm(image, accel=accel, forwards={80: 0}) as running:
        pid = running.pid
        try:
            body = vm.wait_for_http(running.url(80), timeout_s=600)
        except Exception:
            print(running.serial_text()[-4000:])
            raise
        log.append(f"boot to page ({accel}): {time.monotonic() - started:.0f} s")
        assert TITLE in body
        serial = running.serial_text()
        assert "Linux version" in serial
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    print("\n".join(log))
