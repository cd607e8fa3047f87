"""Per-bake SSH access to a VM builder: a throwaway key and the cloud-init seed that allows it."""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kiln import tools
from kiln.errors import BuildError

__all__ = ["PACKER_USER", "BakeAccess", "bake_access"]

#: The build user the seed creates and the seal removes (SEAL_COMMAND, sealing_problems).
PACKER_USER = "packer"


@dataclass(frozen=True)
class BakeAccess:
    """A throwaway SSH key and the NoCloud seed that authorises it for the build user."""

    private_key: Path
    public_key: str
    seed_dir: Path
    instance_id: str
    user: str = PACKER_USER
    seed_files: tuple[Path, ...] = field(default=())


def _user_data(public_key: str) -> str:
    """cloud-init user-data: the passwordless-sudo build user, reachable with this key only."""
    q = json.dumps  # a JSON string is a YAML string
    return (
        "#cloud-config\n"
        "users:\n"
        f"  - name: {PACKER_USER}\n"
        "    shell: /bin/bash\n"
        "    lock_passwd: true\n"
        f"    sudo: {q('ALL=(ALL) NOPASSWD:ALL')}\n"
        "    ssh_authorized_keys:\n"
        f"      - {q(public_key)}\n"
        "manage_etc_hosts: true\n"
        "ssh_pwauth: false\n"
        "disable_root: true\n"
    )


@contextlib.contextmanager
def bake_access(work_dir: Path) -> Iterator[BakeAccess]:
    """Make a per-bake ed25519 key and NoCloud seed under ``work_dir``; delete both afterwards."""
    keygen = tools.which("ssh-keygen")
    work_dir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="bake-access-", dir=work_dir))
    try:
        instance_id = f"kiln-{secrets.token_hex(8)}"
        key = root / "id_ed25519"
        made = subprocess.run(
            [keygen, "-q", "-t", "ed25519", "-N", "", "-C", instance_id, "-f", str(key)],
            capture_output=True,
            text=True,
            check=False,
        )
        if made.returncode != 0:
            raise BuildError(f"ssh-keygen failed: {made.stderr.strip()}")
        public_key = key.with_suffix(".pub").read_text().strip()
        seed = root / "seed"
        seed.mkdir()
        user_data = seed / "user-data"
        meta_data = seed / "meta-data"
        user_data.write_text(_user_data(public_key))
        meta_data.write_text(f"instance-id: {instance_id}\nlocal-hostname: kiln-builder\n")
        yield BakeAccess(
            private_key=key,
            public_key=public_key,
            seed_dir=seed,
            instance_id=instance_id,
            seed_files=(user_data, meta_data),
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
