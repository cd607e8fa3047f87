"""The VM base image: a bootable Debian qcow2 built with no loop devices, and what shapes it.

The base is built as the environment notes describe: mmdebstrap into a directory, a dos label by
sfdisk, ``mkfs.ext4 -d`` at the partition's offset inside a plain file, GRUB written by hand into
the MBR gap, then ``qemu-img convert``. Nothing is mounted, so it runs where loop devices do not.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kiln import tools
from kiln.errors import BuildError, ToolError
from kiln.fingerprint import file_digest
from kiln.tools import stop_process

__all__ = [
    "BASE_PACKAGES",
    "SUITE",
    "VmBase",
    "build_vm_base",
    "vm_base_digest",
    "vm_base_inputs",
]

LineSink = Callable[[str], None]

# --- what shapes the base: every constant below is part of vm_base_inputs() -------------------

SUITE = "bookworm"
VARIANT = "minbase"
# Security and point-release updates too, so a fresh base is a patched base.
MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
BASE_PACKAGES = (
    "linux-image-amd64",
    "systemd-sysv",
    "udev",
    "openssh-server",
    "python3",
    # Ansible's apt modules need it; they install it on the fly, but not under Mitogen.
    "python3-apt",
    "sudo",
    "ifupdown",
    "isc-dhcp-client",
    "iproute2",
    "netbase",
    "cloud-init",
    "grub-pc-bin",
    "procps",
)
DISK_SIZE_MIB = 3072
PARTITION_START_SECTOR = 2048
SECTOR = 512
KERNEL_CMDLINE = "root=LABEL=root ro console=ttyS0 net.ifnames=0"
GRUB_PREFIX = "(hd0,msdos1)/boot/grub"
GRUB_MODULES = ("biosdisk", "part_msdos", "ext2", "linux", "normal")
# Embedded in core.img: there is no grub.cfg and no module directory in the image.
GRUB_EARLY_CFG = (
    f"set root=(hd0,msdos1)\nlinux /vmlinuz {KERNEL_CMDLINE}\ninitrd /initrd.img\nboot\n"
)
# Written into the image verbatim by customize hooks (path -> content).
BASE_FILES: dict[str, str] = {
    "/etc/network/interfaces": (
        "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n"
    ),
    "/etc/fstab": "LABEL=root / ext4 defaults,errors=remount-ro 0 1\n",
    "/etc/hostname": "debian\n",
    "/etc/hosts": (
        "127.0.0.1 localhost\n127.0.1.1 debian\n::1 localhost ip6-localhost ip6-loopback\n"
    ),
    # No DSA host key: bookworm's sshd refuses DSA, and generating it costs seconds under TCG.
    "/etc/cloud/cloud.cfg.d/90-kiln.cfg": (
        "datasource_list: [NoCloud, None]\n"
        "locale: C.UTF-8\n"
        "ssh_genkeytypes: [rsa, ecdsa, ed25519]\n"
    ),
    # Host keys are per instance: regenerate whatever is missing before sshd's own config test.
    "/etc/systemd/system/ssh.service.d/kiln-host-keys.conf": (
        "[Service]\nExecStartPre=\n"
        "ExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n"
    ),
    "/boot/grub/kiln-early.cfg": GRUB_EARLY_CFG,
}
BASE_COMMANDS = (
    'rm -f "$1"/etc/ssh/ssh_host_*',
    # dhclient writes the guest's own; the host's must not leak into the image.
    'rm -f "$1"/etc/resolv.conf',
    'chroot "$1" grub-mkimage -O i386-pc -c /boot/grub/kiln-early.cfg -o /boot/grub/kiln-core.img'
    f' -p "{GRUB_PREFIX}" ' + " ".join(GRUB_MODULES),
)
# Every VM bake starts with `apt-get update` under TCG, where downloading and decompressing the
# 16 MB of lists (6 of them translations, which a server never shows) took a minute. Kept in
# the base, a bake on a recent base only revalidates each InRelease file; without translations,
# every later update and cache rebuild does less work too. Both stay in the image on purpose.
APT_OPTIONS = ('Acquire::Languages "none"',)
KEPT_BY_MMDEBSTRAP = ("cleanup/apt/lists",)
# Bump when the assembly below changes in a way the constants above do not show.
BASE_RECIPE_VERSION = 1


# --- running tools ------------------------------------------------------------------------------


def _stream(
    argv: Sequence[str],
    *,
    what: str,
    on_line: LineSink | None,
    input_text: str | None = None,
    cwd: Path | None = None,
) -> None:
    """Run a tool, feeding each output line to on_line; failing becomes BuildError with the tail."""
    tail: deque[str] = deque(maxlen=30)
    argv = [tools.which(argv[0]), *argv[1:]]
    if on_line is not None:
        on_line(f"==> {what}")
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        cwd=cwd,
    )
    try:
        if input_text is not None and proc.stdin is not None:
            proc.stdin.write(input_text)
            proc.stdin.close()
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            tail.append(line)
            if on_line is not None:
                on_line(line)
        rc = proc.wait()
    finally:
        # Give mmdebstrap the chance to unmount what it mounted inside the tree.
        stop_process(proc)
    if rc != 0:
        text = "\n".join(tail)
        raise BuildError(f"{what} failed (exit code {rc}): {shlex.join(argv[:3])} ...\n{text}")


# --- the base image ----------------------------------------------------------------------------


@dataclass(frozen=True)
class VmBase:
    """A built base disk. ``kernel`` is a copy of its kernel, for probing KVM without booting it."""

    path: Path
    sha256: str
    size_bytes: int
    duration_s: float
    kernel: Path
    inputs_digest: str


def _customize_hooks() -> list[str]:
    """The mmdebstrap customize hooks: write BASE_FILES, then run BASE_COMMANDS."""
    hooks = []
    for target, content in BASE_FILES.items():
        parent = os.path.dirname(target)
        hooks.append(
            f'mkdir -p "$1"{shlex.quote(parent)} && '
            f'printf %s {shlex.quote(content)} > "$1"{shlex.quote(target)}'
        )
    hooks.extend(BASE_COMMANDS)
    return hooks


def vm_base_inputs() -> dict[str, object]:
    """Everything that shapes the base image, JSON-serialisable, for the caller's fingerprint.

    The mirror's package versions are not in it: a rebuild on another day may differ in patches.
    """
    return {
        "recipe_version": BASE_RECIPE_VERSION,
        "suite": SUITE,
        "variant": VARIANT,
        "mirrors": list(MIRRORS),
        "packages": list(BASE_PACKAGES),
        "apt_options": list(APT_OPTIONS),
        "kept": list(KEPT_BY_MMDEBSTRAP),
        "files": dict(BASE_FILES),
        "commands": list(BASE_COMMANDS),
        "customize_hooks": _customize_hooks(),
        "disk_size_mib": DISK_SIZE_MIB,
        "partition_start_sector": PARTITION_START_SECTOR,
        "filesystem": {"type": "ext4", "label": "root"},
        "grub": {"prefix": GRUB_PREFIX, "modules": list(GRUB_MODULES), "early_cfg": GRUB_EARLY_CFG},
        "format": "qcow2",
    }


def vm_base_digest() -> str:
    """sha256 of vm_base_inputs(), canonical JSON."""
    text = json.dumps(vm_base_inputs(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def build_vm_base(dest: Path, *, work_dir: Path, on_line: LineSink | None = None) -> VmBase:
    """Build a bootable Debian qcow2 at ``dest`` (and its kernel at ``dest`` + ``.vmlinuz``).

    Needs root (mmdebstrap in root mode, chroot for grub-mkimage) and Debian's mirror; mounts
    nothing. The rootfs and raw disk live in a scratch directory under ``work_dir``, removed after.
    """
    if os.geteuid() != 0:
        raise ToolError("building the VM base needs root (mmdebstrap --mode=root and chroot)")
    for tool in ("mmdebstrap", "sfdisk", "mkfs.ext4", "qemu-img"):
        tools.which(tool)
    started = time.monotonic()
    work_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="vm-base-", dir=work_dir))
    try:
        rootfs = scratch / "rootfs"
        _bootstrap_rootfs(rootfs, on_line)
        # The boot blobs come from the image's own grub-pc-bin, so they match its modules.
        core = (rootfs / "boot/grub/kiln-core.img").read_bytes()
        (rootfs / "boot/grub/kiln-core.img").unlink()
        boot = (rootfs / "usr/lib/grub/i386-pc/boot.img").read_bytes()
        if not (rootfs / "vmlinuz").is_symlink() and not (rootfs / "vmlinuz").exists():
            raise BuildError("the base root filesystem has no /vmlinuz; linux-image-amd64 failed?")
        kernel_real = _resolve_in(rootfs, "/vmlinuz")

        raw = scratch / "disk.raw"
        _make_raw_disk(raw, rootfs, on_line)
        _write_grub(raw, boot=boot, core=core)
        if on_line is not None:
            on_line(f"==> GRUB written: boot.img 440 bytes, core.img {len(core)} bytes at sector 1")

        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".partial")
        _stream(
            ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(partial)],
            what="convert to qcow2",
            on_line=on_line,
        )
        kernel_dest = dest.with_name(dest.name + ".vmlinuz")
        shutil.copyfile(kernel_real, kernel_dest)
        os.replace(partial, dest)
    finally:
        _remove_tree(scratch)
    return VmBase(
        path=dest,
        sha256=file_digest(dest),
        size_bytes=dest.stat().st_size,
        duration_s=round(time.monotonic() - started, 1),
        kernel=kernel_dest,
        inputs_digest=vm_base_digest(),
    )


def mmdebstrap_argv(rootfs: Path) -> list[str]:
    """The mmdebstrap command that bootstraps the base's root filesystem into ``rootfs``."""
    argv = [
        "mmdebstrap",
        "--mode=root",
        f"--variant={VARIANT}",
        "--include=" + ",".join(BASE_PACKAGES),
    ]
    argv += [f"--aptopt={option}" for option in APT_OPTIONS]
    argv += [f"--skip={step}" for step in KEPT_BY_MMDEBSTRAP]
    argv += [f"--customize-hook={hook}" for hook in _customize_hooks()]
    return [*argv, SUITE, str(rootfs), *MIRRORS]


def _bootstrap_rootfs(rootfs: Path, on_line: LineSink | None) -> None:
    """mmdebstrap the base's root filesystem into ``rootfs``, customize hooks included."""
    _stream(mmdebstrap_argv(rootfs), what="mmdebstrap the root filesystem", on_line=on_line)


def _make_raw_disk(raw: Path, rootfs: Path, on_line: LineSink | None) -> None:
    """A plain file with a dos label and an ext4 made from ``rootfs`` at the partition offset."""
    with raw.open("wb") as fh:
        fh.truncate(DISK_SIZE_MIB * 1024 * 1024)
    _stream(
        ["sfdisk", "--no-reread", "--no-tell-kernel", str(raw)],
        what="partition the disk (sfdisk)",
        on_line=on_line,
        input_text=(
            f"label: dos\nlabel-id: 0x6b696c6e\nstart={PARTITION_START_SECTOR}, type=83, bootable\n"
        ),
    )
    offset = PARTITION_START_SECTOR * SECTOR
    fs_kib = (DISK_SIZE_MIB * 1024 * 1024 - offset) // 1024
    _stream(
        [
            "mkfs.ext4",
            "-F",
            "-L",
            "root",
            "-E",
            f"offset={offset}",
            "-d",
            str(rootfs),
            str(raw),
            f"{fs_kib}k",
        ],
        what="make the root filesystem from the tree (mkfs.ext4 -d)",
        on_line=on_line,
    )


def _mounts_under(path: Path) -> list[str]:
    """Mount points strictly below ``path``, from /proc/self/mounts."""
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mounts") as fh:
        points = [line.split()[1].encode().decode("unicode_escape") for line in fh]
    return [p for p in points if p.startswith(prefix)]


def _remove_tree(path: Path) -> None:
    """rmtree that never descends into a mount left behind (an interrupted chroot's /dev...)."""
    for point in sorted(_mounts_under(path), reverse=True):
        subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)
    left = _mounts_under(path)
    if left:
        raise BuildError(f"{path} still has mounts ({', '.join(left)}); unmount, then delete it")
    shutil.rmtree(path, ignore_errors=True)


def _resolve_in(root: Path, guest_path: str) -> Path:
    """Follow symlinks of an absolute guest path inside ``root`` (not on the host)."""
    current = root
    parts = [p for p in guest_path.split("/") if p]
    for _ in range(40):
        if not parts:
            return current
        part = parts.pop(0)
        candidate = current / part
        if candidate.is_symlink():
            target = os.readlink(candidate)
            if target.startswith("/"):
                current = root
            parts = [p for p in target.split("/") if p] + parts
            continue
        current = candidate
    raise BuildError(f"too many symlinks resolving {guest_path} in the base root filesystem")


def _write_grub(raw: Path, *, boot: bytes, core: bytes) -> None:
    """The dd of boot.img (440 bytes, keeping the partition table) and core.img from sector 1."""
    gap = (PARTITION_START_SECTOR - 1) * SECTOR
    if len(boot) < 440 or len(core) > gap:
        raise BuildError(f"GRUB images do not fit: boot.img {len(boot)} B, core.img {len(core)} B")
    with raw.open("r+b") as fh:
        fh.seek(0)
        fh.write(boot[:440])
        fh.seek(SECTOR)
        fh.write(core)
