"""Booting throwaway VMs: a copy-on-write overlay on loopback-only forwards, always torn down."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kiln import tools
from kiln.errors import BuildError
from kiln.watchdog import Lease, watchdog

__all__ = [
    "ACCELERATORS",
    "QEMU_BINARY",
    "RunningVm",
    "booted_vm",
    "hostfwd_rules",
    "vm_cpus",
    "wait_for_http",
]

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
        """The 127.0.0.1 port that forwards to ``guest_port``."""
        return self.ports[guest_port]

    def url(self, guest_port: int = 80, path: str = "/") -> str:
        """The host-side http URL of ``path`` on the guest's ``guest_port``."""
        return f"http://{self.host}:{self.host_port(guest_port)}{path}"

    def serial_text(self) -> str:
        """What the guest wrote to its serial console so far."""
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
        """Whether qemu still runs (a reaped child, or by pid for one started elsewhere)."""
        if self.process is not None:
            return self.process.poll() is None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True


def _exit_description(code: int) -> str:
    """How a qemu child ended, from its exit code."""
    if code < 0:
        return f"qemu was killed by {signal.Signals(-code).name}"
    return f"qemu exited with code {code}"


def _free_loopback_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1."""
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
    """Stop qemu (by its pidfile, and the child we started): SIGTERM, then SIGKILL; reap it."""
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
    qemu = tools.which(QEMU_BINARY)
    qemu_img = tools.which("qemu-img")
    wanted = dict(forwards or {})
    free = iter(_free_loopback_ports(sum(1 for h in wanted.values() if not h)))
    ports = {guest: host or next(free) for guest, host in wanted.items()}
    with tempfile.TemporaryDirectory(prefix="kiln-vm-") as tmp:
        scratch = Path(tmp)
        overlay = scratch / "overlay.qcow2"
        _create_overlay(qemu_img, image, overlay)
        serial = scratch / "serial.log"
        pidfile = scratch / "qemu.pid"
        argv = _qemu_argv(
            qemu,
            accel=accel,
            memory_mb=memory_mb,
            cpus=cpus or vm_cpus(),
            files={"serial": serial, "pidfile": pidfile, "overlay": overlay},
            netdev=_netdev(ports, restrict=restrict),
        )
        stderr_path = scratch / "qemu.stderr"
        # A watchdog ends qemu if kiln is killed (it finds it by the lease in its environment).
        with watchdog(Lease()) as lease:
            with stderr_path.open("wb") as err:
                # Its own session: a Ctrl-C reaches kiln, which then kills qemu by its pidfile.
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=err,
                    stderr=err,
                    start_new_session=True,
                    env={**os.environ, **lease.env},
                )
            try:
                _wait_for_pidfile(proc, pidfile, stderr_path, image)
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


def _qemu_argv(
    qemu: str, *, accel: str, memory_mb: int, cpus: int, files: Mapping[str, Path], netdev: str
) -> list[str]:
    """qemu's command line: headless, no default devices, one virtio disk and one virtio NIC."""
    options = {
        "-accel": accel,
        "-m": str(memory_mb),
        "-smp": str(cpus),
        "-display": "none",
        "-serial": f"file:{files['serial']}",
        "-pidfile": str(files["pidfile"]),
        "-drive": f"file={files['overlay']},if=virtio,format=qcow2,discard=unmap",
        "-netdev": netdev,
        "-device": "virtio-net-pci,netdev=net0",
    }
    return [qemu, "-nodefaults", "-no-user-config", *(x for o in options.items() for x in o)]


def _netdev(ports: Mapping[int, int], *, restrict: bool) -> str:
    """The ``-netdev user`` value: cut off from other networks if asked, with its forwards."""
    netdev = "user,id=net0"
    if restrict:
        netdev += ",restrict=on"
    if ports:
        netdev += "," + hostfwd_rules(ports)
    return netdev


def _create_overlay(qemu_img: str, image: Path, overlay: Path) -> None:
    """A qcow2 overlay backed by ``image``: the boot writes there, never into the image."""
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


def _wait_for_pidfile(
    proc: subprocess.Popen[bytes], pidfile: Path, stderr_path: Path, image: Path
) -> None:
    """Wait up to 10 s for qemu's pidfile; a qemu that exits first fails with its own words."""
    deadline = time.monotonic() + 10
    while not pidfile.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if proc.poll() is not None:
        raise BuildError(
            f"qemu exited at once (code {proc.returncode}) booting {image}: "
            + stderr_path.read_text(errors="replace").strip()[-2000:]
        )


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
