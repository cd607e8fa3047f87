"""The qemu target: the same role definitions baked into a bootable qcow2 VM image.

The VM base is bootstrapped locally (base_image.build_vm_base). A role's VM image is baked in one
pass on the VM base, applying the Ansible roles of its whole chain in order: under TCG every
intermediate layer would cost a full VM boot, and the chain's fingerprints still cover every
layer. Ansible reaches the builder over SSH on a port forwarded to 127.0.0.1 only.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from kiln import tools
from kiln.errors import BuildError
from kiln.fingerprint import file_digest
from kiln.image_names import ImageNames
from kiln.model import Base, Project
from kiln.registry import Artifact
from kiln.targets.base import (
    FACTS_OVER_SSH,
    FACTS_SCRIPT,
    BakePlan,
    BakeTarget,
    LineSink,
    ansible_arguments,
    ansible_env_vars,
)
from kiln.targets.qemu.access import PACKER_USER, bake_access
from kiln.targets.qemu.base_image import SUITE, build_vm_base, vm_base_digest
from kiln.targets.qemu.kvm import probe_kvm
from kiln.targets.qemu.machine import ACCELERATORS, vm_cpus

SEAL_COMMAND = (
    "sudo sh -euc 'cloud-init clean --logs; rm -f /etc/ssh/ssh_host_*; "
    "truncate -s 0 /etc/machine-id; rm -f /var/lib/dbus/machine-id; "
    f"userdel --force --remove {PACKER_USER}; rm -f /etc/sudoers.d/90-cloud-init-users; "
    f"rm -rf /root/.ansible {FACTS_OVER_SSH}; apt-get clean; rm -rf /var/lib/apt/lists/*; "
    "fstrim -av || true; sync; poweroff'"
)
#: Seconds Ansible (and Mitogen) may take to connect to the VM builder (Ansible's default: 10).
CONNECT_TIMEOUT_S = 120
QEMU_ARGS = (
    ("-netdev", "user,id=user.0,hostfwd=tcp:127.0.0.1:{{ .SSHHostPort }}-:22"),
    ("-serial", "file:${var.serial_log}"),
)


def artifact_path(project: Project, name: str, version: int) -> Path:
    """Where a VM image version lives: artifacts/<role>/<version>/<role>.qcow2."""
    return project.root / "artifacts" / name / str(version) / f"{name}.qcow2"


def choose_accelerator(override: str | None = None) -> str:
    """kvm if the probe booted a kernel under it (or if asked), else tcg; says which once."""
    if override:
        if override not in ACCELERATORS:
            raise BuildError(f"unknown accelerator {override!r} (known: kvm, tcg)")
        return override
    return "kvm" if probe_kvm() else "tcg"


class QemuTarget(BakeTarget):
    """Bakes a role's whole chain into a sealed qcow2 on the locally built VM base."""

    name: ClassVar[str] = "qemu"
    template: ClassVar[str] = "qemu.pkr.hcl.j2"

    def flattens_chain(self) -> bool:
        """Under TCG every intermediate layer would cost a full VM boot: one pass on the base."""
        return True

    def recipe(self) -> dict[str, Any]:
        """The seal, qemu arguments and VM base inputs: what this target adds to a fingerprint."""
        return {
            **super().recipe(),
            "seal": SEAL_COMMAND,
            "qemuargs": [list(a) for a in QEMU_ARGS],
            "base": vm_base_digest(),
        }

    def _parent_image(self, plan: BakePlan) -> Artifact:
        """The VM base (or parent) image this bake starts from; it must be baked already."""
        artifact = plan.parent.artifact(self.name) if plan.parent else None
        if artifact is None or artifact.sha256 is None:
            raise BuildError(f"{plan.role.name} needs a baked VM base for the qemu target")
        return artifact

    def _ansible_arguments(self, plan: BakePlan) -> list[Any]:
        """Ansible's extra arguments: become root over SSH, with the guest's python3."""
        return [
            "--become",
            *ansible_arguments(plan, ["ansible_python_interpreter=/usr/bin/python3"]),
        ]

    def context(self, plan: BakePlan) -> dict[str, Any]:
        """Template variables for qemu.pkr.hcl.j2."""
        parent = self._parent_image(plan)
        return {
            "role_name": plan.role.name,
            "vm_name": f"{plan.role.name}.qcow2",
            "base_image_path": parent.ref,
            "base_image_sha256": parent.sha256,
            "manifest_default": plan.manifest_default,
            "has_secrets": bool(plan.secrets),
            "qemuargs": [list(a) for a in QEMU_ARGS],
            "build_user": PACKER_USER,
            "shutdown_command": SEAL_COMMAND,
            "playbook_path": plan.relative(plan.playbook_path),
            "ansible_arguments": self._ansible_arguments(plan),
            "ansible_env_vars": [
                *ansible_env_vars(plan),
                "ANSIBLE_SSH_RETRIES=5",
                # Mitogen's whole connection setup (SSH, sudo, python3 in the guest) must fit in
                # this, and it ignores SSH retries: under TCG on a busy host 10 s is too short.
                f"ANSIBLE_TIMEOUT={CONNECT_TIMEOUT_S}",
                "ANSIBLE_HOST_KEY_CHECKING=False",
            ],
            "facts_script": plan.relative(FACTS_SCRIPT),
            "facts_file": FACTS_OVER_SSH,
        }

    def expectations(self, plan: BakePlan) -> dict[str, Any]:
        """What the parsed HCL must hold: the parent's checksum, loopback SSH, the seal."""
        source = f"source.qemu.{plan.role.name}"
        parent = self._parent_image(plan)
        return {
            f"{source}.iso_checksum": f"sha256:{parent.sha256}",
            f"{source}.ssh_host": "127.0.0.1",
            f"{source}.qemuargs": [list(a) for a in QEMU_ARGS],
            f"{source}.shutdown_command": SEAL_COMMAND,
            "build.provisioner.ansible.playbook_file": plan.relative(plan.playbook_path),
            "build.provisioner.ansible.extra_arguments": [
                str(v) for v in self._ansible_arguments(plan)
            ],
        }

    # -- baking -----------------------------------------------------------------------------
    def preflight(self) -> None:
        """Fail early when a host tool of VM bakes is missing."""
        for tool in ("qemu-system-x86_64", "qemu-img", "mmdebstrap", "ssh-keygen"):
            tools.which(tool)

    def runs_acceptance_tests(self) -> bool:
        """kiln.acceptance starts docker instances only; a VM image is booted by `invoke boot`."""
        return False

    @contextmanager
    def bake_session(self, plan: BakePlan, work: Path) -> Iterator[dict[str, str]]:
        """A throwaway SSH key and NoCloud seed for this bake, deleted whatever happens."""
        accel = choose_accelerator(self.options.accel)
        output = work / "output"
        shutil.rmtree(output, ignore_errors=True)
        with bake_access(work) as access:
            yield {
                "accelerator": accel,
                "cpus": str(vm_cpus()),
                "ssh_key_file": str(access.private_key.resolve()),
                "seed_dir": str(access.seed_dir.resolve()),
                "output_dir": str(output.resolve()),
                "serial_log": str((work / "serial.log").resolve()),
            }

    def bootstrap_base(
        self,
        project: Project,
        images: ImageNames,
        base: Base,
        version: int,
        fingerprint: str,
        log: LineSink,
        *,
        reuse: bool = True,
    ) -> Artifact:
        """Build the VM base image (base_image.build_vm_base) as version ``version``.

        Its file lives in this checkout's artifacts/, which no other checkout writes: no image
        name is needed.
        """
        if base.suite != SUITE:
            raise BuildError(f"the qemu target bootstraps {SUITE} only, not {base.suite}")
        dest = artifact_path(project, base.name, version)
        dest.parent.mkdir(parents=True, exist_ok=True)
        work = project.state_path / "work" / base.name / f"qemu-{version}"
        try:
            built = build_vm_base(dest, work_dir=work, on_line=log)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return self._artifact(project, dest, built.sha256)

    def base_facts(self, artifact: Artifact) -> None:
        """None: reading a qcow2's packages means booting or mounting it (no loop devices
        here). Its roles record their facts, and the upstream check names the base unchecked."""
        return None

    def _artifact(self, project: Project, path: Path, sha256: str | None = None) -> Artifact:
        """The registry record of a qcow2 file."""
        digest = sha256 or file_digest(path)
        return Artifact(
            target=self.name,
            ref=str(path.resolve()),
            image_id=digest,
            sha256=digest,
            size_bytes=path.stat().st_size,
        )

    def artifact_exists(self, artifact: Artifact) -> bool:
        """Whether the recorded qcow2 is still on disk."""
        # A cheap check on the no-op path: the file is there with its recorded size.
        path = Path(artifact.ref)
        return (
            artifact.deleted_at is None
            and path.exists()
            and (artifact.size_bytes is None or path.stat().st_size == artifact.size_bytes)
        )

    def collect_artifact(self, plan: BakePlan, version: int) -> Artifact:
        """Move the qcow2 packer wrote into artifacts/ and write its .sha256 next to it."""
        work = plan.project.state_path / "work" / plan.role.name / str(version)
        built = work / "output" / f"{plan.role.name}.qcow2"
        if not built.exists():
            raise BuildError(f"packer finished but {built} was not written")
        dest = artifact_path(plan.project, plan.role.name, version)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(built, dest)
        artifact = self._artifact(plan.project, dest)
        (dest.parent / f"{dest.name}.sha256").write_text(f"{artifact.sha256}  {dest.name}\n")
        return artifact

    def delete_artifact(self, artifact: Artifact) -> None:
        """Delete the qcow2 and its .sha256."""
        path = Path(artifact.ref)
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".sha256").unlink(missing_ok=True)

    def reap_builders(
        self, *, role: str, bake_id: str | None = None, owner: str | None = None
    ) -> list[str]:
        """None to reap: a VM builder dies with packer's process group, which run_packer kills."""
        # Nor is there a record to find one by, as docker's labels find a leftover container.
        return []
