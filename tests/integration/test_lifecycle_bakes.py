"""The version lifecycle on real bakes: kill -9, concurrent bakes, diff, channels, revoke and gc.

One sandbox serves the whole module, and its tests run in order (each bake costs a minute):
web v1 is baked plain; a bake with curl is killed during provisioning; two concurrent bakes then
produce the curl version; the rest reads, moves channels and collects garbage on those.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import Sandbox, clone_sandbox
from kiln.bake.scope import remove_orphaned_packer_temp_dirs

pytestmark = pytest.mark.integration

# What apt installs for curl on the web image (bookworm, no recommends), checked by hand with
# `invoke diff`: curl, libcurl and the libraries only libcurl needs.
CURL_PACKAGES = {
    "curl",
    "libbrotli1",
    "libcurl4",
    "libldap-2.5-0",
    "libnghttp2-14",
    "libpsl5",
    "librtmp1",
    "libsasl2-2",
    "libsasl2-modules-db",
    "libssh2-1",
}

KILN_SIDE = {"recipe", "template", "tool", "parent"}


@pytest.fixture(scope="module")
def box(baked_sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox with web v1 baked; the tests below add versions to it in order."""
    sandbox = clone_sandbox(baked_sandbox, tmp_path_factory.mktemp("lifecycle"))
    try:
        yield sandbox
    finally:
        sandbox.cleanup()


def web_versions(box: Sandbox) -> list[int]:
    with box.registry() as registry:
        return sorted(v.version for v in registry.history("web"))


def leftover_builders(box: Sandbox) -> list[str]:
    """Containers of this sandbox that still carry a non-empty kiln.bake label."""
    out = box.docker(
        "ps", "-a", "--filter", "label=kiln.bake",
        "--format", '{{.ID}} {{.Image}} {{.Label "kiln.bake"}}',
    )  # fmt: skip
    return [
        line
        for line in out.splitlines()
        if len(line.split()) == 3 and line.split()[1].startswith(f"{box.namespace}/")
    ]


def last_allocated(box: Sandbox, role: str) -> int:
    """The last version number handed out for role (read, not allocated)."""
    with sqlite3.connect(box.root / ".kiln" / "registry.db") as conn:
        row = conn.execute("SELECT last_version FROM counters WHERE role = ?", (role,)).fetchone()
    return int(row[0])


def image_exists(ref: str) -> bool:
    """Whether the engine has the image: `docker image inspect` exits 1 (and prints []) if not."""
    done = subprocess.run(["docker", "image", "inspect", ref], capture_output=True, check=False)
    return done.returncode == 0


def invoke_json(box: Sandbox, *args: str) -> Any:
    proc = box.invoke(*args, "--json", check=True)
    return json.loads(proc.stdout)


@pytest.fixture
def private_tmp() -> Iterator[Path]:
    """A temp directory of the test's own: the other worker's bakes reap orphaned packer temp
    directories in theirs, and would otherwise race the test for a killed bake's. Short, under
    /tmp: packer's plugin sockets live in it, and a unix socket path has at most 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="kiln-k9-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def watchdogs_of(pid: int) -> list[int]:
    """The watchdogs kiln (pid) started: its children in sessions of their own (kiln.watchdog)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            if any(arg.endswith(b"/watchdog.py") for arg in cmdline):
                found.append(int(child))
    assert found, f"kiln {pid} runs no watchdog"
    return found


def test_kill_9_during_provisioning_leaves_no_version_and_a_sound_registry(
    box: Sandbox, private_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [plain] = web_versions(box)
    box.set_web_variables(web_extra_packages=["curl"])
    # Its own process group, like a terminal's job: kill -9 reaches packer and Ansible too.
    proc = subprocess.Popen(
        [sys.executable, "-m", "invoke", "bake", "web", "--json"],
        cwd=box.root, env={**box.env(), "TMPDIR": str(private_tmp)}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    watchdog = threading.Timer(600, os.killpg, (proc.pid, signal.SIGKILL))
    watchdog.start()
    seen: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            record = json.loads(line) if line.startswith("{") else {}
            # A web task: base may be rebaked first if kiln's own recipe changed meanwhile.
            if record.get("kind") == "task" and record.get("role") == "web":
                break
        else:
            pytest.fail("the bake ended before provisioning:\n" + "".join(seen[-30:]))
        time.sleep(2)  # let the Ansible task get going inside the builder
        # Its watchdog first (test_kill_9_watchdog shows what it does): here the leftover builder
        # is what the next bake must reap, as after a reboot or an OOM kill of both.
        for guard in watchdogs_of(proc.pid):
            os.kill(guard, signal.SIGKILL)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):  # nothing of the bake survived
        os.killpg(proc.pid, 0)

    with box.registry() as registry:
        assert registry.integrity_check() == "ok"
        interrupted = last_allocated(box, "web")  # the number the killed bake took
        assert interrupted > plain
        assert registry.get("web", interrupted) is None
    assert web_versions(box) == [plain]
    assert leftover_builders(box), "the killed bake left no builder: nothing for the reaper"
    # Its packer temp dir (the builder's key in it) too; the next packer run removes it.
    [left] = private_tmp.glob(f"kiln-packer-{proc.pid}-*")
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))  # where the reaper looks
    assert left in remove_orphaned_packer_temp_dirs()
    assert not left.exists()


def test_concurrent_bakes_share_one_version_and_reap_the_leftover(box: Sandbox) -> None:
    before = web_versions(box)
    first, second = box.popen("bake", "web"), box.popen("bake", "web")
    with ThreadPoolExecutor(max_workers=2) as pool:
        outputs = list(pool.map(lambda p: p.communicate(timeout=1200), (first, second)))
    for proc, (out, err) in zip((first, second), outputs, strict=True):
        assert proc.returncode == 0, f"{out}\n{err}"
    new = sorted(set(web_versions(box)) - set(before))
    assert len(new) == 1, f"expected one shared bake, got versions {new}"
    assert new[0] == last_allocated(box, "web")  # the waiting bake did not even take a number
    with box.registry() as registry:
        assert registry.integrity_check() == "ok"
        fingerprints = [v.fingerprint for v in registry.history("web")]
        assert len(fingerprints) == len(set(fingerprints))  # no duplicate of the same inputs
        version = registry.get("web", new[0])
        assert version is not None and version.status == "tested"
    assert leftover_builders(box) == []  # the next bake removed the killed one's builder


def test_diff_reports_curl_its_dependencies_and_the_variable(box: Sandbox) -> None:
    old, new = web_versions(box)[0], web_versions(box)[-1]
    result = invoke_json(box, "diff", "web", str(old), str(new))
    added = {p["name"] for p in result["packages"] if p["change"] == "added"}  # names sans :amd64
    assert added == CURL_PACKAGES
    assert [p for p in result["packages"] if p["change"] != "added"] == []
    # The role's own inputs differ by the variable alone. Kiln's side (its recipe, templates,
    # tools, and so the parent) may differ too when kiln itself changed between the two bakes.
    own = [i for i in result["inputs"] if i["kind"] not in KILN_SIDE]
    assert own == [
        {"kind": "variable", "name": "web_extra_packages", "change": "added", "old": None,
         "new": ["curl"]},
    ]  # fmt: skip
    files = {f["path"]: f for f in result["files"]}
    assert files["/usr/bin/curl"]["change"] == "added"
    assert files["/var/lib/dpkg/status"]["change"] == "changed"
    assert not any(path.startswith(("/proc/", "/sys/", "/dev/")) for path in files)
    assert box.docker("ps", "-a", "-q", "--filter", "label=kiln.purpose=diff") == ""
    quick = invoke_json(box, "diff", "web", str(old), str(new), "--no-files")
    assert quick["files"] is None and quick["packages"] == result["packages"]


def test_promote_rollback_revoke_through_the_cli(box: Sandbox) -> None:
    old, new = web_versions(box)[0], web_versions(box)[-1]
    for version in (old, new, old, new):
        box.invoke("promote", "web", str(version), "--channel", "prod", check=True)
    box.invoke("promote", "web", str(new), "--channel", "staging", check=True)
    rolled = invoke_json(box, "rollback", "web", "--channel", "prod")
    assert (rolled["from_version"], rolled["to_version"]) == (new, old)
    box.invoke("promote", "web", str(new), "--channel", "prod", check=True)

    revoked = box.invoke("revoke", "web", str(new), "--reason", "curl is not allowed", check=True)
    assert "channel staging of web is now EMPTY" in revoked.stderr
    channels = {c["channel"]: c["version"] for c in invoke_json(box, "channels", "web")}
    assert channels == {"prod": old, "staging": None}

    refused = box.invoke("promote", "web", str(new), "--channel", "prod")
    assert refused.returncode != 0
    assert f"web v{new} is revoked (curl is not allowed)" in refused.stderr
    assert "--force --reason" in refused.stderr

    history = invoke_json(box, "history", "web")
    status = {v["version"]: v["status"] for v in history["versions"]}
    assert status[new] == "revoked" and status[old] == "tested"
    assert [e["action"] for e in history["channel_log"]][:2] == ["revoke", "revoke"]
    text = box.invoke("history", "web", check=True).stdout
    assert "curl is not allowed" in text and "revoke" in text

    shown = invoke_json(box, "show", "web", "--version", str(new))
    assert shown["variables"]["web_extra_packages"] == ["curl"]
    assert [a["role"] for a in shown["ancestry"]] == ["web", "base", "debian-bookworm"]
    assert {r["name"] for r in shown["ansible_roles"]} == {"web"}
    assert len(shown["ansible_roles"][0]["digest"]) == 64
    assert "curl" in {p["name"] for p in shown["packages"]}
    assert invoke_json(box, "outdated") == []


def test_gc_deletes_an_unreferenced_image_and_keeps_its_record(box: Sandbox) -> None:
    old, new = web_versions(box)[0], web_versions(box)[-1]
    forced = invoke_json(
        box, "promote", "web", str(new), "--channel", "prod", "--force",
        "--reason", "gc test: prod leaves the oldest version",
    )  # fmt: skip
    assert forced["forced"] is True
    old_image = box.image("web", old)

    dry = invoke_json(box, "gc", "--keep", "1", "--dry-run")
    assert [(d["role"], d["version"]) for d in dry["deleted"]] == [("web", old)]
    assert image_exists(old_image), "a dry run deleted the image"

    result = invoke_json(box, "gc", "--keep", "1")
    assert [(d["role"], d["version"]) for d in result["deleted"]] == [("web", old)]
    kept = {(k["role"], k["version"]): k["why"] for k in result["kept"]}
    assert kept[("web", new)] in ("one of the newest 1", "channel prod")
    with box.registry() as registry:
        parent = registry.get("web", new)
    assert parent is not None and ("base", parent.parent_version) in kept
    assert result["failed"] == []
    assert not image_exists(old_image), "gc recorded a deletion but the image is still there"
    assert image_exists(box.image("web", new))
    with box.registry() as registry:
        record = registry.get("web", old)
        assert record is not None and record.artifacts[0].deleted_at is not None
        assert registry.integrity_check() == "ok"
    shown = box.invoke("show", "web", "--version", str(old), check=True).stdout
    assert "DELETED" in shown
    refused = box.invoke("promote", "web", str(old), "--channel", "prod")
    assert refused.returncode != 0 and "deleted by gc" in refused.stderr
