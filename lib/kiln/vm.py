"""QEMU/qcow2 building blocks: a bootable Debian base built with no loop devices, a KVM probe that
really boots a kernel, throwaway VM boots on loopback-only forwards, and per-bake SSH access.

The base is built as the environment notes describe: mmdebstrap into a directory, a dos label by
sfdisk, ``mkfs.ext4 -d`` at the partition's offset inside a plain file, GRUB written by hand into
the MBR gap, then ``qemu-img convert``. Nothing is mounted, so it runs where loop devices do not.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import select
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kiln.errors import BuildError, ToolError
from kiln.fingerprint import file_digest
from kiln.tools import stop_process

__all__ = [
    "BASE_PACKAGES",
    "BakeAccess",
    "RunningVm",
    "VmBase",
    "bake_access",
    "booted_vm",
    "boots_kernel",
    "build_vm_base",
    "guest_file",
    "guest_listdir",
    "hostfwd_rules",
    "probe_kvm",
    "sealing_problems",
    "vm_base_digest",
    "vm_base_inputs",
    "wait_for_http",
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
# Bump when the assembly below changes in a way the constants above do not show.
BASE_RECIPE_VERSION = 1

PACKER_USER = "packer"
QEMU_BINARY = "qemu-system-x86_64"
ACCELERATORS = ("kvm", "tcg")
#: vCPUs of a builder or booted VM unless KILN_VM_CPUS says otherwise.
DEFAULT_CPUS = 2


def vm_cpus() -> int:
    """vCPUs for a VM kiln starts: KILN_VM_CPUS, else DEFAULT_CPUS.

    On a busy host without KVM one vCPU is often faster: a second one under TCG mostly spins on
    guest locks while the host has no core to give it.
    """
    raw = os.environ.get("KILN_VM_CPUS", "").strip()
    if not raw:
        return DEFAULT_CPUS
    if not raw.isdigit() or not 1 <= int(raw) <= 64:
        raise BuildError(f"KILN_VM_CPUS must be a whole number from 1 to 64, not {raw!r}")
    return int(raw)


# --- running tools ------------------------------------------------------------------------------


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise ToolError(
            f"{tool} is not installed or not on PATH; install it with apt-get "
            "(mmdebstrap, fdisk, e2fsprogs, qemu-utils, qemu-system-x86, openssh-client)"
        )
    return path


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
    argv = [_need(argv[0]), *argv[1:]]
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
        _need(tool)
    started = time.monotonic()
    work_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="vm-base-", dir=work_dir))
    try:
        rootfs = scratch / "rootfs"
        argv = [
            "mmdebstrap",
            "--mode=root",
            f"--variant={VARIANT}",
            "--include=" + ",".join(BASE_PACKAGES),
        ]
        argv += [f"--customize-hook={hook}" for hook in _customize_hooks()]
        argv += [SUITE, str(rootfs), *MIRRORS]
        _stream(argv, what="mmdebstrap the root filesystem", on_line=on_line)

        # The boot blobs come from the image's own grub-pc-bin, so they match its modules.
        core = (rootfs / "boot/grub/kiln-core.img").read_bytes()
        (rootfs / "boot/grub/kiln-core.img").unlink()
        boot = (rootfs / "usr/lib/grub/i386-pc/boot.img").read_bytes()
        if not (rootfs / "vmlinuz").is_symlink() and not (rootfs / "vmlinuz").exists():
            raise BuildError("the base root filesystem has no /vmlinuz; linux-image-amd64 failed?")
        kernel_real = _resolve_in(rootfs, "/vmlinuz")

        raw = scratch / "disk.raw"
        with raw.open("wb") as fh:
            fh.truncate(DISK_SIZE_MIB * 1024 * 1024)
        _stream(
            ["sfdisk", "--no-reread", "--no-tell-kernel", str(raw)],
            what="partition the disk (sfdisk)",
            on_line=on_line,
            input_text=(
                "label: dos\nlabel-id: 0x6b696c6e\n"
                f"start={PARTITION_START_SECTOR}, type=83, bootable\n"
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


def _mounts_under(path: Path) -> list[str]:
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


# --- KVM probe ----------------------------------------------------------------------------------

# Printed by the decompressed kernel itself. The real-mode setup code prints earlier lines
# ("Probing EDD ...") even where the kernel then hangs, so those prove nothing.
_KERNEL_ALIVE = re.compile(rb"Linux version \d")
_HOST_KERNELS = ("/boot/vmlinuz", "/vmlinuz")
KVM_DEVICE = "/dev/kvm"


def _host_kernel() -> Path | None:
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
        _need(QEMU_BINARY),
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


# --- throwaway boots ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunningVm:
    """A VM booted by booted_vm(): ``ports`` maps guest port -> host port on 127.0.0.1."""

    pid: int
    ports: Mapping[int, int]
    serial_log: Path
    overlay: Path
    host: str = "127.0.0.1"
    #: The qemu child itself, when this process started it: a killed child stays a zombie until
    #: it is reaped, and a zombie still answers kill(pid, 0).
    process: subprocess.Popen[bytes] | None = field(default=None, compare=False, repr=False)
    #: Where qemu's own output goes: its words when it stops.
    qemu_log: Path | None = None

    def host_port(self, guest_port: int) -> int:
        return self.ports[guest_port]

    def url(self, guest_port: int = 80, path: str = "/") -> str:
        return f"http://{self.host}:{self.host_port(guest_port)}{path}"

    def serial_text(self) -> str:
        try:
            return self.serial_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stopped_reason(self) -> str:
        """How qemu ended, in its own words where it left any (for a VM that is not alive)."""
        code = self.process.poll() if self.process is not None else None
        how = "qemu exited" if code is None else _exit_description(code)
        words = self.qemu_log.read_text(errors="replace").strip() if self.qemu_log else ""
        return f"{how}: {words[-2000:]}" if words else how

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True


def _exit_description(code: int) -> str:
    if code < 0:
        return f"qemu was killed by {signal.Signals(-code).name}"
    return f"qemu exited with code {code}"


def _free_loopback_ports(count: int) -> list[int]:
    # Hold every socket until all are chosen so the ports are distinct.
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def hostfwd_rules(ports: Mapping[int, int]) -> str:
    """The ``-netdev user`` forwards for guest->host ports, bound to 127.0.0.1 only."""
    return ",".join(
        f"hostfwd=tcp:127.0.0.1:{host}-:{guest}" for guest, host in sorted(ports.items())
    )


def _kill_pidfile(pidfile: Path, proc: subprocess.Popen[bytes]) -> None:
    pid = proc.pid
    with contextlib.suppress(OSError, ValueError):
        pid = int(pidfile.read_text().strip())
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if pid != proc.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def booted_vm(
    image: Path,
    *,
    accel: str,
    forwards: Mapping[int, int] | None = None,
    memory_mb: int = 1024,
    cpus: int | None = None,
    restrict: bool = True,
) -> Iterator[RunningVm]:
    """Boot a throwaway copy-on-write overlay of ``image`` headless; always kill it and delete it.

    ``forwards`` maps guest port -> host port (0 picks a free one); every forward listens on
    127.0.0.1 only. ``restrict`` cuts the guest off from every network but those forwards.
    Returns as soon as qemu runs: wait for the guest with wait_for_http() or the serial log.
    ``cpus`` defaults to vm_cpus().
    """
    if accel not in ACCELERATORS:
        raise BuildError(f"unknown accelerator {accel!r}: use one of {', '.join(ACCELERATORS)}")
    qemu = _need(QEMU_BINARY)
    qemu_img = _need("qemu-img")
    wanted = dict(forwards or {})
    free = iter(_free_loopback_ports(sum(1 for h in wanted.values() if not h)))
    ports = {guest: host or next(free) for guest, host in wanted.items()}
    with tempfile.TemporaryDirectory(prefix="kiln-vm-") as tmp:
        scratch = Path(tmp)
        overlay = scratch / "overlay.qcow2"
        created = subprocess.run(
            [
                qemu_img,
                "create",
                "-q",
                "-f",
                "qcow2",
                "-b",
                str(image.resolve()),
                "-F",
                "qcow2",
                str(overlay),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if created.returncode != 0:
            raise BuildError(f"cannot create an overlay of {image}: {created.stderr.strip()}")
        serial = scratch / "serial.log"
        pidfile = scratch / "qemu.pid"
        netdev = "user,id=net0"
        if restrict:
            netdev += ",restrict=on"
        if ports:
            netdev += "," + hostfwd_rules(ports)
        argv = [
            qemu,
            "-accel",
            accel,
            "-m",
            str(memory_mb),
            "-smp",
            str(cpus or vm_cpus()),
            "-nodefaults",
            "-display",
            "none",
            "-no-user-config",
            "-serial",
            f"file:{serial}",
            "-pidfile",
            str(pidfile),
            "-drive",
            f"file={overlay},if=virtio,format=qcow2,discard=unmap",
            "-netdev",
            netdev,
            "-device",
            "virtio-net-pci,netdev=net0",
        ]
        stderr_path = scratch / "qemu.stderr"
        with stderr_path.open("wb") as err:
            # Its own session: a Ctrl-C reaches kiln, which then kills qemu by its pidfile.
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True
            )
        try:
            deadline = time.monotonic() + 10
            while not pidfile.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if proc.poll() is not None:
                raise BuildError(
                    f"qemu exited at once (code {proc.returncode}) booting {image}: "
                    + stderr_path.read_text(errors="replace").strip()[-2000:]
                )
            yield RunningVm(
                pid=proc.pid,
                ports=ports,
                serial_log=serial,
                overlay=overlay,
                process=proc,
                qemu_log=stderr_path,
            )
        finally:
            _kill_pidfile(pidfile, proc)


def wait_for_http(url: str, timeout_s: float, running: RunningVm | None = None) -> str:
    """Poll ``url`` (which must be on 127.0.0.1) until it answers 200; return the body.

    With ``running``, a VM whose qemu has stopped ends the wait at once, with qemu's own words,
    instead of at the timeout.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or parts.hostname != "127.0.0.1":
        raise BuildError(f"wait_for_http only polls http://127.0.0.1, not {url!r}")
    # Never through a proxy from the environment: the guest is on loopback.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout_s
    last = "no attempt"
    while True:
        if running is not None and not running.alive():
            raise BuildError(f"the VM stopped before {url} answered: {running.stopped_reason()}")
        try:
            with opener.open(url, timeout=5) as resp:
                body = resp.read().decode("utf-8", errors="replace")
                if resp.status == 200:
                    return str(body)
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (OSError, urllib.error.URLError) as exc:
            last = str(exc)
        if time.monotonic() >= deadline:
            raise BuildError(f"{url} did not answer within {timeout_s:.0f} s (last: {last})")
        time.sleep(1.0)


# --- per-bake access ----------------------------------------------------------------------------


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
    keygen = _need("ssh-keygen")
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


# --- looking inside an image without booting or mounting it -------------------------------------


@contextlib.contextmanager
def _raw_root(image: Path) -> Iterator[str]:
    """A debugfs device spec for the root partition of a qcow2 (a raw copy with ?offset=)."""
    qemu_img = _need("qemu-img")
    with tempfile.TemporaryDirectory(prefix="kiln-inspect-") as tmp:
        raw = Path(tmp) / "disk.raw"
        done = subprocess.run(
            [qemu_img, "convert", "-O", "raw", str(image), str(raw)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise BuildError(f"cannot read {image}: {done.stderr.strip()}")
        yield f"{raw}?offset={PARTITION_START_SECTOR * SECTOR}"


def _debugfs(spec: str, request: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([_need("debugfs"), "-R", request, spec], capture_output=True, check=False)


def _guest_file(spec: str, path: str) -> bytes | None:
    done = _debugfs(spec, f"cat {path}")
    if b"File not found" in done.stderr:
        return None
    if done.returncode != 0:
        raise BuildError(f"debugfs cannot read {path}: {done.stderr.decode(errors='replace')}")
    return done.stdout


def _guest_listdir(spec: str, path: str) -> list[str] | None:
    done = _debugfs(spec, f"ls -p {path}")
    if b"File not found" in done.stderr:
        return None
    names = []
    for line in done.stdout.decode(errors="replace").splitlines():
        # ls -p: /inode/mode/uid/gid/name/size/
        fields = line.split("/")
        if len(fields) >= 7 and fields[5] not in (".", ".."):
            names.append(fields[5])
    return sorted(names)


def guest_file(image: Path, path: str) -> bytes | None:
    """The content of ``path`` in the image's root filesystem, or None if it does not exist."""
    with _raw_root(image) as spec:
        return _guest_file(spec, path)


def guest_listdir(image: Path, path: str) -> list[str] | None:
    """The names in directory ``path`` of the image's root filesystem, or None if it is absent."""
    with _raw_root(image) as spec:
        return _guest_listdir(spec, path)


def sealing_problems(image: Path, *, user: str = PACKER_USER) -> list[str]:
    """What a bake left behind that a sealed image must not hold; empty when it is sealed."""
    problems = []
    with _raw_root(image) as spec:
        passwd = (_guest_file(spec, "/etc/passwd") or b"").decode(errors="replace")
        if any(line.startswith(f"{user}:") for line in passwd.splitlines()):
            problems.append(f"user {user} is still in /etc/passwd")
        if _guest_listdir(spec, f"/home/{user}") is not None:
            problems.append(f"/home/{user} still exists")
        if _guest_file(spec, f"/home/{user}/.ssh/authorized_keys") is not None:
            problems.append(f"/home/{user}/.ssh/authorized_keys still exists")
        sudoers = _guest_listdir(spec, "/etc/sudoers.d") or []
        for name in sudoers:
            text = (_guest_file(spec, f"/etc/sudoers.d/{name}") or b"").decode(errors="replace")
            if user in text:
                problems.append(f"/etc/sudoers.d/{name} still names {user}")
        host_keys = [n for n in _guest_listdir(spec, "/etc/ssh") or [] if n.startswith("ssh_host_")]
        if host_keys:
            problems.append(f"SSH host keys remain: {', '.join(host_keys)}")
        machine_id = _guest_file(spec, "/etc/machine-id")
        if machine_id:
            problems.append("/etc/machine-id is not empty")
        if _guest_listdir(spec, "/var/lib/cloud/instances"):
            problems.append("cloud-init instance data remains (cloud-init clean did not run)")
    return problems
