"""kiln's base battery: what every image must pass, base or role, before it is marked tested.

Run by kiln with testinfra against a throwaway instance of the new image (``--hosts=docker://``).
Each assertion says what is wrong and where, because its message is what the bake prints.
"""

from __future__ import annotations

import os
import shlex
from typing import Any

import pytest

# Targets whose images boot their own kernel; a container shares the host's.
VM_TARGETS = ("qemu", "amazon-ebs", "googlecompute")


def _lines(host: Any, command: str) -> list[str]:
    result = host.run(command)
    assert result.rc == 0, f"`{command}` failed (exit {result.rc}): {result.stderr.strip()}"
    return [line for line in result.stdout.splitlines() if line.strip()]


# -- the system works --------------------------------------------------------------------------
def test_dpkg_database_is_consistent(host: Any) -> None:
    audit = host.run("dpkg --audit")
    assert audit.rc == 0, f"dpkg --audit failed: {audit.stderr.strip()}"
    assert audit.stdout.strip() == "", f"dpkg reports broken packages:\n{audit.stdout.strip()}"
    assert _lines(host, "dpkg-query -W -f='${Package}\\n' dpkg"), "dpkg-query cannot list dpkg"


def test_python3_runs(host: Any) -> None:
    out = host.run("python3 -c 'import json, sys; print(sys.version_info[0])'")
    assert out.rc == 0, f"python3 does not run (exit {out.rc}): {out.stderr.strip()}"
    assert out.stdout.strip() == "3"


def test_systemd_is_init(host: Any) -> None:
    init = host.check_output("cat /proc/1/comm").strip()
    assert init == "systemd", f"PID 1 is {init!r}, not systemd"
    state = host.run("systemctl is-system-running").stdout.strip()
    assert state in ("running", "degraded"), f"systemd is {state!r}"


def test_kernel_is_installed(host: Any) -> None:
    target = os.environ.get("KILN_TARGET", "docker")
    if target not in VM_TARGETS:
        pytest.skip(f"a {target} image runs on the host's kernel")
    kernels = _lines(host, "dpkg-query -W -f='${Package} ${Status}\\n' 'linux-image-*' || true")
    installed = [k.split()[0] for k in kernels if k.endswith("install ok installed")]
    assert installed, "no linux-image package is installed"


# -- sshd, when there is one -------------------------------------------------------------------
def _sshd_settings(host: Any) -> dict[str, str]:
    # sshd -T needs host keys; sealed images create theirs on first boot, so lend it a throwaway.
    key_args = ""
    if not host.run("ls /etc/ssh/ssh_host_*_key").stdout.strip():
        host.run("rm -f /tmp/kiln-battery-hostkey*")
        host.run("ssh-keygen -q -t ed25519 -N '' -f /tmp/kiln-battery-hostkey </dev/null")
        key_args = " -h /tmp/kiln-battery-hostkey"
    test = host.run(f"mkdir -p /run/sshd && /usr/sbin/sshd -t{key_args}")
    assert test.rc == 0, f"sshd -t rejects the configuration: {test.stderr.strip()}"
    settings = {}
    for line in _lines(host, f"/usr/sbin/sshd -T{key_args}"):
        key, _, value = line.partition(" ")
        settings[key.lower()] = value.strip().lower()
    return settings


def test_sshd_config_is_sane(host: Any) -> None:
    if not host.package("openssh-server").is_installed:
        pytest.skip("openssh-server is not installed")
    settings = _sshd_settings(host)
    assert settings.get("permitrootlogin") != "yes", "sshd allows root to log in with a password"
    assert settings.get("passwordauthentication") == "no", (
        "sshd accepts passwords (PasswordAuthentication "
        f"{settings.get('passwordauthentication')}); set PasswordAuthentication no"
    )


# -- nothing of the build is left --------------------------------------------------------------
def test_no_build_user(host: Any) -> None:
    assert not host.user("packer").exists, "the build user `packer` is still in the image"
    assert not host.file("/home/packer").exists, "/home/packer is still in the image"


def test_no_authorized_keys_for_root(host: Any) -> None:
    keys = host.file("/root/.ssh/authorized_keys")
    assert not keys.exists, "/root/.ssh/authorized_keys is still in the image (a build key?)"


def test_apt_archives_are_clean(host: Any) -> None:
    debs = _lines(host, "find /var/cache/apt/archives -name '*.deb'")
    assert not debs, f"{len(debs)} .deb file(s) left in /var/cache/apt/archives: {debs[:3]}"


def test_apt_lists_are_empty(host: Any) -> None:
    left = [
        name for name in _lines(host, "ls -A /var/lib/apt/lists") if name not in ("lock", "partial")
    ]
    shown = ", ".join(shlex.quote(n) for n in left[:3])
    assert not left, f"{len(left)} file(s) left in /var/lib/apt/lists: {shown}"
