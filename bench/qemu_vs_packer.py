"""Benchmark: the web role baked as a qcow2 by kiln against a hand-written Packer qemu template.

(a) `invoke bake web --target qemu --force --skip-tests`: kiln's VM bake, which applies the whole
    chain (common, then web) on the cached VM base, seals the disk and writes a compressed qcow2;
(b) `packer build` of a qemu template written the way Packer's documentation shows it: the same
    base qcow2 as a disk image, a NoCloud seed with a throwaway key, `apt-get update`, then the
    ansible provisioner (Ansible's ssh connection, defaults) with the same roles and variables,
    and `shutdown -P now`. No seal and no compression: the hand-written side does less work.
Both boot under the same accelerator (TCG unless --accel kvm) with the same vCPUs and memory.
The base qcow2 is built once in preparation and cached; runs alternate a, b, a, b... Prints every
run, the medians and the ratio.

Run from the repository root: .venv/bin/python bench/qemu_vs_packer.py [--runs 1]
Each run boots two VMs under TCG (minutes each): run it alone, on an idle machine if you can.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

from _common import INVOKE, Sandbox, bench_env, load, make_sandbox, print_ratio, run, timed
from kiln.targets.qemu.inspect import guest_file

TARGET_RATIO = 1.0
TEMPLATE = """
variable "base" {
  type = string
}

variable "base_sha256" {
  type = string
}

variable "accelerator" {
  type = string
}

variable "cpus" {
  type = number
}

source "qemu" "nginx" {
  disk_image       = true
  iso_url          = var.base
  iso_checksum     = "sha256:${var.base_sha256}"
  skip_resize_disk = true
  format           = "qcow2"
  accelerator      = var.accelerator
  memory           = 1024
  cpus             = var.cpus
  headless         = true
  vnc_bind_address = "127.0.0.1"
  output_directory = "output"
  vm_name          = "nginx.qcow2"
  # Packer's default netdev listens on every address; forward SSH on loopback only.
  qemuargs = [["-netdev", "user,id=user.0,hostfwd=tcp:127.0.0.1:{{ .SSHHostPort }}-:22"]]

  cd_files = ["seed/user-data", "seed/meta-data"]
  cd_label = "cidata"

  ssh_username         = "packer"
  ssh_private_key_file = "id_ed25519"
  ssh_timeout          = "15m"
  shutdown_command     = "sudo shutdown -P now"
}

build {
  sources = ["source.qemu.nginx"]

  provisioner "shell" {
    inline = ["cloud-init status --wait", "sudo apt-get -q update"]
  }

  provisioner "ansible" {
    playbook_file = "playbook.yml"
    user          = "packer"
    use_proxy     = false
    extra_arguments = ["--become", "--extra-vars", "@vars.json",
      "--extra-vars", "ansible_python_interpreter=/usr/bin/python3"]
    ansible_env_vars = ["ANSIBLE_HOST_KEY_CHECKING=False"]
  }
}
"""
PLAYBOOK = """---
- name: Install and configure nginx on the base
  hosts: all
  roles:
    - common
    - web
"""
USER_DATA = """#cloud-config
users:
  - name: packer
    shell: /bin/bash
    lock_passwd: true
    sudo: "ALL=(ALL) NOPASSWD:ALL"
    ssh_authorized_keys:
      - {key}
manage_etc_hosts: true
"""


def vm_base(box: Sandbox) -> Path:
    """The cached VM base both sides boot: the qcow2 of the chain's root role."""
    with box.registry() as registry:
        web = registry.latest("web", target="qemu")
        assert web is not None and web.parent_role is not None
        base = registry.get(web.parent_role, web.parent_version or 0)
        artifact = base.artifact("qemu") if base else None
        assert artifact is not None
        return Path(artifact.ref)


def hand_written_packer(
    box: Sandbox, base: Path, accel: str, cpus: int
) -> tuple[list[str], Path, dict[str, str]]:
    """Write the hand-written template, its seed and key; its command, directory and env."""
    hand = box.root / "hand"
    (hand / "seed").mkdir(parents=True)
    key = hand / "id_ed25519"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], cwd=hand)
    public_key = key.with_suffix(".pub").read_text().strip()
    (hand / "seed" / "user-data").write_text(USER_DATA.format(key=json.dumps(public_key)))
    (hand / "seed" / "meta-data").write_text("instance-id: hand-nginx\nlocal-hostname: hand\n")
    (hand / "nginx.pkr.hcl").write_text(TEMPLATE)
    (hand / "playbook.yml").write_text(PLAYBOOK)
    (hand / "roles").symlink_to(box.root / "roles")  # Ansible looks next to the playbook
    (hand / "vars.json").write_text(json.dumps(box.web_variables))
    digest = hashlib.sha256(base.read_bytes()).hexdigest()
    argv = [
        "packer", "build", "-force", "-var", f"base={base}", "-var", f"base_sha256={digest}",
        "-var", f"accelerator={accel}", "-var", f"cpus={cpus}", "nginx.pkr.hcl",
    ]  # fmt: skip
    return argv, hand, {**bench_env(box), "CHECKPOINT_DISABLE": "1", "PACKER_NO_COLOR": "1"}


def check_hand_made_page(box: Sandbox, hand: Path) -> None:
    """The hand-written template really baked the role: its disk holds the role's page."""
    page = guest_file(hand / "output" / "nginx.qcow2", "/var/www/kiln/index.html") or b""
    assert box.web_variables["web_title"] in page.decode(), "the hand-made image has no page"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="runs of each (default 1)")
    parser.add_argument("--accel", default="tcg", help="tcg (default) or kvm, for both sides")
    parser.add_argument("--cpus", type=int, default=2, help="vCPUs of both builders (default 2)")
    args = parser.parse_args()
    kiln_s: list[float] = []
    packer_s: list[float] = []
    with tempfile.TemporaryDirectory(prefix="kiln-bench-qemu-") as tmp:
        box = make_sandbox(Path(tmp))
        try:
            env = {**bench_env(box), "KILN_VM_CPUS": str(args.cpus)}
            bake = [*INVOKE, "bake", "web", "--target", "qemu", "--skip-tests",
                    "--accel", args.accel]  # fmt: skip
            print(f"preparing: the VM base and web baked once ({load()})", flush=True)
            run(bake, cwd=box.root, env=env)
            base = vm_base(box)
            packer, hand, packer_env = hand_written_packer(box, base, args.accel, args.cpus)
            print(f"both bake web on {base.name} under {args.accel}, {args.cpus} vCPUs", flush=True)
            for index in range(args.runs):
                kiln_s.append(timed([*bake, "--force"], cwd=box.root, env=env))
                print(f"run {index + 1}: kiln {kiln_s[-1]:.1f} s ({load()})", flush=True)
                packer_s.append(timed(packer, cwd=hand, env=packer_env))
                print(f"run {index + 1}: packer {packer_s[-1]:.1f} s ({load()})", flush=True)
            check_hand_made_page(box, hand)
        finally:
            box.cleanup()
    print_ratio(kiln_s, packer_s, TARGET_RATIO)
    return 0


if __name__ == "__main__":
    sys.exit(main())
