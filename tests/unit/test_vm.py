"""Fast tests of kiln.targets.qemu: the template, loopback-only forwards, per-bake access, teardown.

The KVM probe and booted_vm run against fake qemu binaries here; the real qemu runs in
tests/integration/test_qemu_process.py (a qemu that cannot start, one killed while kiln waits)
and tests/integration/test_vm_bake.py (the probe on a real kernel, a real boot). The seal check
reads real ext4 disks built here from small trees.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REGISTRY_ID
from kiln.errors import BuildError
from kiln.targets.qemu import access, base_image, kvm, machine
from kiln.targets.qemu import inspect as guest_inspect
from kiln.targets.qemu.access import bake_access


def _plan(tmp_path: Path) -> Any:
    """A qemu bake plan for the repository's web role on a synthetic VM base version."""
    from conftest import parent_version, repo_project
    from kiln.fingerprint import Fingerprint
    from kiln.registry import Artifact
    from kiln.targets import get_target
    from kiln.targets.base import BakePlan

    project = repo_project()
    base = parent_version("debian-bookworm", 4)
    base = type(base)(**{**base.__dict__, "target": "qemu", "artifacts": (
        Artifact("qemu", str(tmp_path / "base.qcow2"), "0" * 64, "0" * 64, 1),
    )})  # fmt: skip
    web = project.role_named("web")
    qemu = get_target("qemu", accel="tcg")
    return BakePlan(
        project, web, Fingerprint("e" * 64, {}), base, qemu, project.image_names(REGISTRY_ID)
    )


def _source(parsed: dict[str, Any]) -> dict[str, Any]:
    source: dict[str, Any] = parsed["source"][0]["qemu"]["web"]
    return source


def _provisioners(parsed: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [item for block in parsed["build"][0]["provisioner"] for item in block.items()]


@pytest.fixture
def rendered(tmp_path: Path) -> str:
    from kiln.targets import get_target

    files = get_target("qemu", accel="tcg").render(_plan(tmp_path))
    return files[0].text


def _parsed(text: str) -> dict[str, Any]:
    from kiln.render import parse_hcl

    return parse_hcl(text, source="web.qemu.pkr.hcl")


def test_template_renders_and_parses(rendered: str) -> None:
    parsed = _parsed(rendered)
    assert "required_plugins" not in rendered  # Packer 1.6.6 has no packer {} block
    source = _source(parsed)
    assert source["disk_image"] is True
    assert source["headless"] is True
    assert source["accelerator"] == "${var.accelerator}"
    assert source["cpus"] == "${var.cpus}"
    assert source["format"] == "qcow2"
    assert source["cd_label"] == "cidata"
    assert source["cd_files"] == ["${var.seed_dir}/user-data", "${var.seed_dir}/meta-data"]
    assert source["ssh_username"] == "packer"
    assert source["ssh_private_key_file"] == "${var.ssh_key_file}"
    assert source["vnc_bind_address"] == "127.0.0.1"
    assert parsed["build"][0]["sources"] == ["source.qemu.web"]


def test_a_vm_image_applies_the_whole_chain_in_one_bake(tmp_path: Path) -> None:
    from kiln.targets.base import render_playbook

    plan = _plan(tmp_path)
    assert plan.ansible_roles == ["common", "web"]
    assert '- role: "common"' in render_playbook(plan)
    assert plan.variables["web_title"] == "Hello from kiln"


def test_template_provisioners(rendered: str) -> None:
    provisioners = _provisioners(_parsed(rendered))
    # cloud-init settles before Ansible; the package manifest is captured after it
    assert [kind for kind, _ in provisioners] == ["shell", "ansible", "shell", "file"]
    assert "cloud-init status --wait" in provisioners[0][1]["inline"][0]
    # kiln's facts script (packages, apt sources, licenses), run by the guest's python3
    assert provisioners[2][1]["script"] == "lib/kiln/targets/capture_facts.py"
    assert provisioners[2][1]["environment_vars"] == ["KILN_FACTS_OUT=/tmp/kiln-facts.json"]
    assert provisioners[3][1]["source"] == "/tmp/kiln-facts.json"
    ansible = provisioners[1][1]
    assert ansible["use_proxy"] is False
    assert ansible["user"] == "packer"
    assert "--become" in ansible["extra_arguments"]
    env = ansible["ansible_env_vars"]
    assert "ANSIBLE_PIPELINING=True" in env
    assert "ANSIBLE_SSH_RETRIES=5" in env
    assert "ANSIBLE_TIMEOUT=120" in env  # Mitogen connects to a VM under TCG within it
    assert "ANSIBLE_ROLES_PATH=roles:.kiln/galaxy/roles" in env


def test_template_seals_in_shutdown_command(rendered: str) -> None:
    command = _source(_parsed(rendered))["shutdown_command"]
    for step in (
        "cloud-init clean --logs",
        "rm -f /etc/ssh/ssh_host_*",
        "truncate -s 0 /etc/machine-id",
        "userdel --force --remove packer",
        "apt-get clean",
        "fstrim",
    ):
        assert step in command
    assert command.rstrip("'\"").endswith("poweroff")


def test_vm_cpus_come_from_the_environment_and_bad_values_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KILN_VM_CPUS", raising=False)
    assert machine.vm_cpus() == machine.DEFAULT_CPUS == 2
    monkeypatch.setenv("KILN_VM_CPUS", " 1 ")
    assert machine.vm_cpus() == 1
    for bad in ("0", "65", "two", "-1", "1.5"):
        monkeypatch.setenv("KILN_VM_CPUS", bad)
        with pytest.raises(BuildError, match=f"KILN_VM_CPUS must be .* not '{re.escape(bad)}'"):
            machine.vm_cpus()


def test_every_hostfwd_is_on_loopback(rendered: str) -> None:
    binds = re.findall(r"hostfwd=(?:tcp|udp):([^:]*):", rendered)
    assert binds == ["127.0.0.1"]
    assert "{{ .SSHHostPort }}" in rendered  # packer fills the port in, not Jinja2
    rules = machine.hostfwd_rules({80: 8080, 22: 2222})
    assert re.findall(r"hostfwd=tcp:([^:]*):", rules) == ["127.0.0.1", "127.0.0.1"]
    assert rules == "hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=tcp:127.0.0.1:8080-:80"


def test_rendered_template_is_byte_identical_and_free_of_per_bake_paths(
    tmp_path: Path, rendered: str
) -> None:
    from kiln.targets import get_target

    again = get_target("qemu", accel="kvm").render(_plan(tmp_path))[0].text
    assert again == rendered, "the accelerator and per-bake paths are -var values"
    assert "bake-access" not in rendered and "id_ed25519" not in rendered


@pytest.mark.skipif(shutil.which("packer") is None, reason="needs packer")
def test_rendered_template_is_packer_fmt_clean(tmp_path: Path, rendered: str) -> None:
    path = tmp_path / "web.pkr.hcl"
    path.write_text(rendered)
    fmt = subprocess.run(["packer", "fmt", "-check", "-diff", str(path)], capture_output=True)
    assert fmt.returncode == 0, fmt.stdout.decode()
    check = subprocess.run(["packer", "validate", "-syntax-only", str(path)], capture_output=True)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()


def test_base_inputs_are_json_and_complete() -> None:
    inputs = base_image.vm_base_inputs()
    text = json.dumps(inputs, sort_keys=True)
    assert json.loads(text) == inputs
    assert inputs["suite"] == "bookworm"
    packages = inputs["packages"]
    assert isinstance(packages, list)
    for name in ("linux-image-amd64", "openssh-server", "cloud-init", "grub-pc-bin", "python3"):
        assert name in packages
    files = inputs["files"]
    assert isinstance(files, dict)
    assert "datasource_list: [NoCloud, None]" in files["/etc/cloud/cloud.cfg.d/90-kiln.cfg"]
    assert "LABEL=root" in files["/etc/fstab"]
    assert "ssh-keygen -A" in files["/etc/systemd/system/ssh.service.d/kiln-host-keys.conf"]
    assert inputs["apt_options"] == ['Acquire::Languages "none"']
    assert inputs["kept"] == ["cleanup/apt/lists"]
    assert len(base_image.vm_base_digest()) == 64
    assert base_image.vm_base_digest() == base_image.vm_base_digest()


def test_mmdebstrap_keeps_the_lists_and_drops_translations(tmp_path: Path) -> None:
    argv = base_image.mmdebstrap_argv(tmp_path / "rootfs")
    assert '--aptopt=Acquire::Languages "none"' in argv
    assert "--skip=cleanup/apt/lists" in argv
    assert argv[-5:] == ["bookworm", str(tmp_path / "rootfs"), *base_image.MIRRORS]
    # What shapes the base is in its fingerprint: every option passed is one the inputs list.
    inputs = base_image.vm_base_inputs()
    listed = [f"--aptopt={o}" for o in inputs["apt_options"]]  # type: ignore[attr-defined]
    listed += [f"--skip={s}" for s in inputs["kept"]]  # type: ignore[attr-defined]
    assert sorted(a for a in argv if a.startswith(("--aptopt=", "--skip="))) == sorted(listed)


def test_customize_hooks_write_the_files_verbatim(tmp_path: Path) -> None:
    # Run the hooks the way mmdebstrap does (sh -c HOOK exec ROOT) against an empty tree.
    for hook in base_image.vm_base_inputs()["customize_hooks"]:  # type: ignore[attr-defined]
        if "chroot" in hook:
            continue
        subprocess.run(["sh", "-c", hook, "exec", str(tmp_path)], check=True)
    for path, content in base_image.BASE_FILES.items():
        assert (tmp_path / path.lstrip("/")).read_text() == content


def test_bake_access_makes_and_deletes_key_and_seed(tmp_path: Path) -> None:
    with bake_access(tmp_path) as access, bake_access(tmp_path) as other:
        assert access.private_key.is_file()
        assert stat.S_IMODE(access.private_key.stat().st_mode) == 0o600
        assert access.public_key.startswith("ssh-ed25519 ")
        user_data = (access.seed_dir / "user-data").read_text()
        assert user_data.startswith("#cloud-config\n")
        assert "name: packer" in user_data
        assert "NOPASSWD:ALL" in user_data
        assert access.public_key in user_data
        assert "manage_etc_hosts: true" in user_data
        meta = (access.seed_dir / "meta-data").read_text()
        assert f"instance-id: {access.instance_id}" in meta
        assert access.instance_id != other.instance_id
        key = access.private_key
    assert not key.exists()
    assert list(tmp_path.iterdir()) == []


def test_bake_access_deletes_key_on_interrupt(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), bake_access(tmp_path) as access:
        key = access.private_key
        raise KeyboardInterrupt
    assert not key.exists()


# --- fake qemu binaries -----------------------------------------------------------------------


def _fake_bin(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


@pytest.fixture
def fake_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    device = tmp_path / "kvm"
    device.touch()
    monkeypatch.setattr(kvm, "KVM_DEVICE", str(device))
    return bin_dir


def _gone(pid: int) -> bool:
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # a zombie of ours would still answer; the code under test reaps its children
        time.sleep(0.05)
    return False


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        # A kernel that hangs under a broken KVM still prints its real-mode setup line.
        ('echo "Probing EDD (edd=off to disable)... ok"\n', False),
        ('echo "Probing EDD (edd=off to disable)... ok"\necho "[0.0] Linux version 6.1.0"\n', True),
    ],
)
def test_probe_kvm_needs_the_kernel_banner(
    fake_path: Path, tmp_path: Path, output: str, expected: bool
) -> None:
    pidfile = tmp_path / "qemu.pid"
    _fake_bin(fake_path, machine.QEMU_BINARY, f"echo $$ > {pidfile}\n{output}exec sleep 60\n")
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"kernel")
    started = time.monotonic()
    assert kvm.probe_kvm(kernel_image=kernel, timeout_s=1.5) is expected
    assert time.monotonic() - started < 5
    assert _gone(int(pidfile.read_text()))  # qemu is always killed


def test_probe_kvm_false_when_qemu_refuses(fake_path: Path, tmp_path: Path) -> None:
    _fake_bin(fake_path, machine.QEMU_BINARY, "echo 'failed to initialize kvm' >&2\nexit 1\n")
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"kernel")
    assert kvm.probe_kvm(kernel_image=kernel, timeout_s=5) is False


def test_probe_kvm_false_without_a_kernel_or_device(
    fake_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_bin(fake_path, machine.QEMU_BINARY, 'echo "Linux version 6.1"\nexec sleep 60\n')
    monkeypatch.setattr(kvm, "_host_kernel", lambda: None)
    assert kvm.probe_kvm(timeout_s=1) is False
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"kernel")
    monkeypatch.setattr(kvm, "KVM_DEVICE", str(tmp_path / "no-such-kvm"))
    assert kvm.probe_kvm(kernel_image=kernel, timeout_s=1) is False


_FAKE_QEMU_IMG = 'for last; do :; done\necho overlay > "$last"\n'
# Writes its pid where -pidfile says, records its argv, then runs until killed.
_FAKE_QEMU = """\
printf '%s\\n' "$@" > "$(dirname "$0")/argv"
while [ $# -gt 0 ]; do
  [ "$1" = "-pidfile" ] && echo $$ > "$2"
  shift
done
exec sleep 300
"""


@pytest.mark.parametrize("interrupt", [False, True])
def test_booted_vm_kills_qemu_and_deletes_overlay(
    fake_path: Path, tmp_path: Path, interrupt: bool
) -> None:
    _fake_bin(fake_path, "qemu-img", _FAKE_QEMU_IMG)
    _fake_bin(fake_path, machine.QEMU_BINARY, _FAKE_QEMU)
    image = tmp_path / "image.qcow2"
    image.write_bytes(b"qcow2")
    with (
        pytest.raises(KeyboardInterrupt) if interrupt else _nothing(),
        machine.booted_vm(image, accel="tcg", forwards={80: 0, 22: 0}) as running,
    ):
        assert running.alive()
        assert running.overlay.exists()
        assert set(running.ports) == {80, 22}
        assert len(set(running.ports.values())) == 2
        assert running.url(80) == f"http://127.0.0.1:{running.ports[80]}/"
        pid, overlay = running.pid, running.overlay
        if interrupt:
            raise KeyboardInterrupt
    assert _gone(pid)
    assert not overlay.exists()
    argv = (fake_path / "argv").read_text().splitlines()
    netdev = argv[argv.index("-netdev") + 1]
    assert "restrict=on" in netdev
    assert re.findall(r"hostfwd=tcp:([^:]*):", netdev) == ["127.0.0.1", "127.0.0.1"]


def test_booted_vm_reports_a_qemu_that_dies(fake_path: Path, tmp_path: Path) -> None:
    _fake_bin(fake_path, "qemu-img", _FAKE_QEMU_IMG)
    _fake_bin(
        fake_path, machine.QEMU_BINARY, "echo 'could not set up host forwarding' >&2\nexit 1\n"
    )
    image = tmp_path / "image.qcow2"
    image.write_bytes(b"qcow2")
    with (
        pytest.raises(BuildError, match="host forwarding"),
        machine.booted_vm(image, accel="tcg", forwards={80: 0}),
    ):
        pass


def test_booted_vm_refuses_unknown_accelerator(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="accelerator"), machine.booted_vm(tmp_path, accel="xen"):
        pass


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# --- wait_for_http ----------------------------------------------------------------------------


@pytest.fixture
def page_server() -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<h1>Hello from kiln</h1>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_wait_for_http_returns_the_page(page_server: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # must be ignored
    body = machine.wait_for_http(f"http://127.0.0.1:{page_server}/", 5)
    assert "Hello from kiln" in body


def test_wait_for_http_times_out() -> None:
    port = machine._free_loopback_ports(1)[0]
    with pytest.raises(BuildError, match="did not answer"):
        machine.wait_for_http(f"http://127.0.0.1:{port}/", 1)


@pytest.mark.parametrize(
    "url", ["http://localhost:80/", "http://10.0.2.15/", "https://127.0.0.1/", "http://[::1]/"]
)
def test_wait_for_http_polls_loopback_only(url: str) -> None:
    with pytest.raises(BuildError, match="only polls"):
        machine.wait_for_http(url, 1)


def test_remove_tree_deletes_an_unmounted_tree(tmp_path: Path) -> None:
    tree = tmp_path / "scratch"
    (tree / "rootfs/dev").mkdir(parents=True)
    (tree / "rootfs/dev/null").write_text("not a device")
    assert base_image._mounts_under(tree) == []
    base_image._remove_tree(tree)
    assert not tree.exists()


def test_remove_tree_refuses_a_tree_with_mounts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = tmp_path / "scratch"
    tree.mkdir()
    monkeypatch.setattr(base_image, "_mounts_under", lambda path: [f"{path}/rootfs/proc"])
    monkeypatch.setattr(base_image.subprocess, "run", lambda *a, **k: None)
    with pytest.raises(BuildError, match="still has mounts"):
        base_image._remove_tree(tree)
    assert tree.exists()


# A sealed guest root, and each leftover of a bake the seal check must report, alone.
SEALED_TREE = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/bash\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\n",
    "etc/machine-id": "",
    "etc/ssh/sshd_config": "PasswordAuthentication no\n",
    "etc/sudoers.d/README": "Files in this directory are read by sudo.\n",
    "var/lib/cloud/instances/": None,
}
LEFTOVERS = {
    "user": (
        {"etc/passwd": SEALED_TREE["etc/passwd"] + "packer:x:1000:1000::/home/packer:/bin/sh\n"},
        "user packer is still in /etc/passwd",
    ),
    "home": ({"home/packer/.profile": "\n"}, "/home/packer still exists"),
    "sudoers": (
        {"etc/sudoers.d/90-cloud-init-users": "packer ALL=(ALL) NOPASSWD:ALL\n"},
        "/etc/sudoers.d/90-cloud-init-users still names packer",
    ),
    "host keys": (
        {"etc/ssh/ssh_host_ed25519_key": "key\n", "etc/ssh/ssh_host_ed25519_key.pub": "pub\n"},
        "SSH host keys remain: ssh_host_ed25519_key, ssh_host_ed25519_key.pub",
    ),
    "machine-id": (
        {"etc/machine-id": "0123456789abcdef0123456789abcdef\n"},
        "/etc/machine-id is not empty",
    ),
    "cloud-init": (
        {"var/lib/cloud/instances/i-0123/boot-finished": "1\n"},
        "cloud-init instance data remains (cloud-init clean did not run)",
    ),
}


needs_e2fs_and_qemu_img = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("mkfs.ext4", "debugfs", "qemu-img")),
    reason="needs mkfs.ext4, debugfs and qemu-img",
)


def _disk(tmp_path: Path, files: dict[str, str | None]) -> Path:
    """A qcow2 laid out like kiln's VM disks: an ext4 root from a tree, at the partition offset."""
    tree = tmp_path / "tree"
    for rel, text in files.items():
        path = tree / rel
        if text is None:
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    raw, disk = tmp_path / "disk.raw", tmp_path / "disk.qcow2"
    offset = base_image.PARTITION_START_SECTOR * base_image.SECTOR
    with raw.open("wb") as fh:
        fh.truncate(offset + 8 * 1024 * 1024)
    for argv in (
        ["mkfs.ext4", "-q", "-F", "-E", f"offset={offset}", "-d", str(tree), str(raw), "8M"],
        ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(disk)],
    ):
        subprocess.run(argv, check=True, capture_output=True)
    return disk


@needs_e2fs_and_qemu_img
def test_seal_check_passes_a_sealed_disk(tmp_path: Path) -> None:
    assert guest_inspect.sealing_problems(_disk(tmp_path, SEALED_TREE)) == []


@needs_e2fs_and_qemu_img
@pytest.mark.parametrize("leftover", sorted(LEFTOVERS))
def test_seal_check_reports_each_leftover_of_a_bake(tmp_path: Path, leftover: str) -> None:
    """Positive control: the check the VM bake relies on to say "sealed" finds what is there."""
    files, problem = LEFTOVERS[leftover]
    expected = (
        problem
        or {
            "machine-id": "/etc/machine-id is not empty",
            "cloud-init": "cloud-init instance data remains (cloud-init clean did not run)",
        }[leftover]
    )
    assert guest_inspect.sealing_problems(_disk(tmp_path, {**SEALED_TREE, **files})) == [expected]


@needs_e2fs_and_qemu_img
def test_seal_check_reports_every_leftover_of_an_unsealed_disk(tmp_path: Path) -> None:
    unsealed = dict(SEALED_TREE)
    unsealed["home/packer/.ssh/authorized_keys"] = "ssh-ed25519 AAAA packer\n"
    for files, _ in LEFTOVERS.values():
        unsealed.update(files)
    assert guest_inspect.sealing_problems(_disk(tmp_path, unsealed)) == [
        "user packer is still in /etc/passwd",
        "/home/packer still exists",
        "/home/packer/.ssh/authorized_keys still exists",
        "/etc/sudoers.d/90-cloud-init-users still names packer",
        "SSH host keys remain: ssh_host_ed25519_key, ssh_host_ed25519_key.pub",
        "/etc/machine-id is not empty",
        "cloud-init instance data remains (cloud-init clean did not run)",
    ]


def test_public_api_is_pinned() -> None:
    """What kiln.vm exported before the split is each in exactly one module's __all__."""
    modules = (access, base_image, guest_inspect, kvm, machine)
    exported = [name for module in modules for name in module.__all__]
    assert len(exported) == len(set(exported)), "one room per name"
    assert {
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
    } <= set(exported)
    assert all(hasattr(module, name) for module in modules for name in module.__all__)


_KILN_BOOTING = """
import sys
from pathlib import Path
from kiln.targets.qemu import machine

with machine.booted_vm(Path(sys.argv[1]), accel="tcg", forwards={80: 0}) as running:
    print(running.pid, flush=True)
    sys.stdin.read()
"""


def test_booted_vm_outlives_no_kill_9_of_kiln(fake_path: Path, tmp_path: Path) -> None:
    # kiln's process alone is killed: qemu, in a session of its own, is ended by the watchdog.
    _fake_bin(fake_path, "qemu-img", _FAKE_QEMU_IMG)
    _fake_bin(fake_path, machine.QEMU_BINARY, _FAKE_QEMU)
    image = tmp_path / "image.qcow2"
    image.write_bytes(b"qcow2")
    lib = str(Path(machine.__file__).resolve().parents[3])
    kiln = subprocess.Popen(
        [sys.executable, "-c", _KILN_BOOTING, str(image)],
        env={**os.environ, "PYTHONPATH": lib}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip
    assert kiln.stdout is not None
    qemu = int(kiln.stdout.readline())
    try:
        os.kill(kiln.pid, signal.SIGKILL)
        kiln.wait()
        deadline = time.monotonic() + 5
        while _running(qemu) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _running(qemu)
    finally:
        if _running(qemu):
            os.kill(qemu, signal.SIGKILL)


def _running(pid: int) -> bool:
    """Not _gone(): qemu, orphaned, is no child of this process, and a zombie has stopped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"
