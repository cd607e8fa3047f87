"""The builder's apt cache hooks, run against a fake filesystem: linking, verifying, publishing."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from kiln.targets.docker import apt_cache


def deb(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def stanza(package: str, version: str, arch: str, sha: str) -> str:
    return (
        f"Package: {package}\nVersion: {version}\nArchitecture: {arch}\n"
        f"Filename: pool/main/{package}.deb\nSize: 3\nSHA256: {sha}\n"
    )


@pytest.fixture
def hooks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """apt_cache with every path it touches under tmp_path."""
    for name, sub in (
        ("KILN_APT_POOL", "pool"),
        ("KILN_APT_STATE", "run/kiln-apt"),
        ("KILN_APT_ARCHIVES", "archives"),
        ("KILN_APT_LISTS", "lists"),
        ("KILN_APT_CONF_D", "apt.conf.d"),
    ):
        (tmp_path / sub).mkdir(parents=True)
        monkeypatch.setenv(name, str(tmp_path / sub))
    monkeypatch.setenv("KILN_APT_SCRIPT", str(tmp_path / "run" / "kiln-apt.py"))
    yield importlib.reload(apt_cache)
    monkeypatch.undo()
    importlib.reload(apt_cache)


def test_archive_names_are_quoted_like_apt() -> None:
    assert apt_cache.archive_name("nginx", "1.22.1-9", "amd64") == "nginx_1.22.1-9_amd64.deb"
    # apt escapes ':' (epochs), '_' and '%'; '.' only in the architecture.
    assert (
        apt_cache.archive_name("libcap2-bin", "1:2.66-4+deb12u3+b1", "amd64")
        == "libcap2-bin_1%3a2.66-4+deb12u3+b1_amd64.deb"
    )
    assert apt_cache.archive_name("a_b", "1%2", "x.y") == "a%5fb_1%252_x%2ey.deb"


def test_only_unambiguous_cached_files_named_by_the_lists_are_linked() -> None:
    good, other, stale = deb(b"good"), deb(b"other"), deb(b"stale")
    lists = [
        stanza("nginx", "1.0", "amd64", good).encode()
        + b"\n"
        + stanza("curl", "2.0", "amd64", deb(b"not cached")).encode(),
        # Another repository offers the same name, version and arch with other content.
        (stanza("tool", "3.0", "all", other) + "\n" + stanza("tool", "3.0", "all", stale)).encode(),
    ]
    links = apt_cache.wanted_links({good, other, stale}, lists)
    assert links == {"nginx_1.0_amd64.deb": good}


def test_a_bake_links_verifies_publishes_and_leaves_nothing(
    hooks: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf_d, archives = tmp_path / "apt.conf.d", tmp_path / "archives"
    (conf_d / "docker-clean").write_text('DPkg::Post-Invoke { "rm -f /var/cache/apt/*.deb"; };\n')
    uploaded = tmp_path / "var-tmp-kiln-apt.py"
    uploaded.write_text(Path(apt_cache.__file__).read_text())
    hooks.__file__ = str(uploaded)

    # A first bake put nginx in the cache.
    nginx = b"nginx package"
    pool = tmp_path / "pool" / "sha256"
    pool.mkdir()
    (pool / f"{deb(nginx)}.deb").write_bytes(nginx)

    assert hooks.main(["kiln-apt", "setup"]) == 0
    assert not uploaded.exists()  # moved itself to the tmpfs
    assert (tmp_path / "run" / "kiln-apt.py").exists()
    assert not (conf_d / "docker-clean").exists()  # set aside for the bake
    conf = (conf_d / "00kiln-apt-cache").read_text()
    assert "APT::Update::Post-Invoke-Success" in conf and "DPkg::Pre-Install-Pkgs" in conf

    # apt-get update: the lists name nginx (cached) and curl (not cached).
    (tmp_path / "lists" / "deb.debian.org_dists_bookworm_main_binary-amd64_Packages").write_text(
        stanza("nginx", "1.0", "amd64", deb(nginx)) + "\n" + stanza("curl", "2", "amd64", "0" * 64)
    )
    assert hooks.main(["kiln-apt", "link"]) == 0
    linked = archives / "nginx_1.0_amd64.deb"
    assert linked.is_symlink() and linked.read_bytes() == nginx

    # apt downloads curl, then hands both to dpkg: the hook checks the cached one's content.
    (archives / "curl_2_amd64.deb").write_bytes(b"curl package")
    hooks.verify([str(linked), str(archives / "curl_2_amd64.deb")])
    assert hooks.main(["kiln-apt", "publish"]) == 0
    assert (pool / f"{deb(b'curl package')}.deb").read_bytes() == b"curl package"

    assert hooks.main(["kiln-apt", "finish"]) == 0
    out = capsys.readouterr().out
    assert "1 .deb(s) from the cache" in out and "1 downloaded" in out
    stats = json.loads(out.split("kiln apt cache stats: ")[1])
    assert stats["cached"] == {"nginx_1.0_amd64.deb": len(nginx)}
    assert not linked.exists() and not linked.is_symlink()
    assert not (conf_d / "00kiln-apt-cache").exists()
    assert (conf_d / "docker-clean").exists()  # back as it was


def test_a_corrupt_cached_file_stops_apt(hooks: ModuleType, tmp_path: Path) -> None:
    pool = tmp_path / "pool" / "sha256"
    pool.mkdir()
    expected = deb(b"the real package")
    (pool / f"{expected}.deb").write_bytes(b"the REAL package")  # same size, other bytes
    (tmp_path / "run" / "kiln-apt").mkdir(parents=True, exist_ok=True)
    (tmp_path / "run" / "kiln-apt" / "enabled").write_text("")
    link = tmp_path / "archives" / "pkg_1_all.deb"
    link.symlink_to(pool / f"{expected}.deb")
    assert hooks.verify([str(link)]) == 1


def test_without_the_volume_the_hooks_do_nothing(
    hooks: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pool").rmdir()
    uploaded = tmp_path / "kiln-apt.py"
    uploaded.write_text("")
    hooks.__file__ = str(uploaded)
    assert hooks.main(["kiln-apt", "setup"]) == 0
    assert hooks.main(["kiln-apt", "link"]) == 0
    assert hooks.main(["kiln-apt", "finish"]) == 0
    assert list((tmp_path / "apt.conf.d").iterdir()) == []
    assert "kiln apt cache: off" in capsys.readouterr().out


# -- the package lists ------------------------------------------------------------------------
PREFIX = "deb.debian.org_debian_dists_bookworm_"
PACKAGES_PATH = "main/binary-amd64/Packages"


def test_list_file_names_are_quoted_like_apt() -> None:
    assert apt_cache.list_file_name(PREFIX, PACKAGES_PATH) == PREFIX + "main_binary-amd64_Packages"
    # apt's URItoFileName quotes "_" (and others) before every "/" becomes "_".
    assert apt_cache.list_file_name("h_", "a_b/c~d") == "h_a%5fb_c%7ed"


def test_release_hashes_come_from_the_sha256_field_only() -> None:
    release = (
        b"Origin: Debian\nMD5Sum:\n 0123 10 main/binary-amd64/Packages\n"
        b"SHA256:\n " + b"a" * 64 + b" 10 main/binary-amd64/Packages\n"
        b" " + b"b" * 64 + b" 4 main/binary-amd64/Packages.xz\nAcquire-By-Hash: yes\n"
    )
    assert apt_cache.release_hashes(release) == {
        "main/binary-amd64/Packages": "a" * 64,
        "main/binary-amd64/Packages.xz": "b" * 64,
    }


class Signer:
    """A throwaway OpenPGP key (real gpg) that clearsigns Release texts like an archive does."""

    def __init__(self, home: Path) -> None:
        self.home = home
        home.mkdir(mode=0o700)
        self.gpg("--quick-gen-key", "kiln test archive <archive@kiln.invalid>", "ed25519", "sign")
        self.keyring = home / "archive.gpg"
        self.keyring.write_bytes(self.gpg("--export").stdout)

    def gpg(self, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["gpg", "--homedir", str(self.home), "--batch", "--pinentry-mode", "loopback",
             "--passphrase", "", *args],
            input=stdin, capture_output=True, check=True,
        )  # fmt: skip

    def clearsign(self, text: bytes) -> bytes:
        return self.gpg("--clearsign", stdin=text).stdout

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "gpg-agent"], check=False)


@pytest.fixture
def signer(tmp_path: Path) -> Iterator[Signer]:
    key = Signer(tmp_path / "gnupg")
    try:
        yield key
    finally:
        key.close()


@pytest.fixture
def list_hooks(
    hooks: ModuleType, signer: Signer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ModuleType:
    """The hooks with the test key as the builder's only trusted key, the cache enabled."""
    monkeypatch.setenv("KILN_APT_KEYRING", str(signer.keyring))
    monkeypatch.setenv("KILN_APT_TRUSTED_D", str(tmp_path / "trusted.gpg.d"))
    module = importlib.reload(hooks)
    (tmp_path / "run" / "kiln-apt").mkdir(parents=True, exist_ok=True)
    (tmp_path / "run" / "kiln-apt" / "enabled").write_text("")
    return module


def cache_release(tmp_path: Path, signer: Signer, packages: bytes, *, listed: bytes) -> Path:
    """Put an InRelease (signed, naming `listed`'s hash) and a Packages file in the cache."""
    cached = tmp_path / "pool" / "lists"
    cached.mkdir(parents=True, exist_ok=True)
    release = f"Suite: bookworm\nSHA256:\n {deb(listed)} {len(listed)} {PACKAGES_PATH}\n"
    (cached / f"{PREFIX}InRelease").write_bytes(signer.clearsign(release.encode()))
    (cached / f"{PREFIX}main_binary-amd64_Packages").write_bytes(packages)
    return cached


def test_verified_lists_are_restored_before_an_update(
    list_hooks: ModuleType, signer: Signer, tmp_path: Path
) -> None:
    packages = stanza("nginx", "1.0", "amd64", "0" * 64).encode()
    cached = cache_release(tmp_path, signer, packages, listed=packages)
    old = 1_700_000_000
    os.utime(cached / f"{PREFIX}InRelease", (old, old))
    assert list_hooks.main(["kiln-apt", "restore-lists"]) == 0
    lists = tmp_path / "lists"
    assert (lists / f"{PREFIX}main_binary-amd64_Packages").read_bytes() == packages
    restored = lists / f"{PREFIX}InRelease"
    assert restored.read_bytes() == (cached / f"{PREFIX}InRelease").read_bytes()
    # The mirror's date stays, so that apt asks "modified since?" and downloads nothing.
    assert restored.stat().st_mtime == old
    assert sorted(p.name for p in lists.iterdir()) == [
        f"{PREFIX}InRelease",
        f"{PREFIX}main_binary-amd64_Packages",
    ]  # no scratch files left behind


def test_a_list_its_signed_inrelease_does_not_name_is_not_restored(
    list_hooks: ModuleType, signer: Signer, tmp_path: Path
) -> None:
    genuine = stanza("nginx", "1.0", "amd64", "0" * 64).encode()
    forged = stanza("nginx", "1.0", "amd64", "f" * 64).encode()  # what a poisoned cache holds
    cache_release(tmp_path, signer, forged, listed=genuine)
    assert list_hooks.main(["kiln-apt", "restore-lists"]) == 0
    assert not (tmp_path / "lists" / f"{PREFIX}main_binary-amd64_Packages").exists()
    assert "does not match its InRelease" in (tmp_path / "run" / "kiln-apt" / "log").read_text()


def test_an_inrelease_not_signed_by_a_trusted_key_restores_nothing(
    list_hooks: ModuleType, signer: Signer, tmp_path: Path
) -> None:
    packages = stanza("nginx", "1.0", "amd64", "0" * 64).encode()
    cached = cache_release(tmp_path, signer, packages, listed=packages)
    inrelease = cached / f"{PREFIX}InRelease"
    # Tamper with the signed text: the signature no longer matches.
    inrelease.write_bytes(inrelease.read_bytes().replace(b"Suite: bookworm", b"Suite: trixie!"))
    assert list_hooks.main(["kiln-apt", "restore-lists"]) == 0
    assert list((tmp_path / "lists").iterdir()) == []

    # A good signature by a key the builder does not trust is refused the same way.
    stranger = Signer(tmp_path / "stranger")
    try:
        release = f"SHA256:\n {deb(packages)} {len(packages)} {PACKAGES_PATH}\n".encode()
        inrelease.write_bytes(stranger.clearsign(release))
    finally:
        stranger.close()
    assert list_hooks.main(["kiln-apt", "restore-lists"]) == 0
    assert list((tmp_path / "lists").iterdir()) == []
    assert "not signed by a trusted key" in (tmp_path / "run" / "kiln-apt" / "log").read_text()


def test_only_the_signed_text_is_trusted(
    list_hooks: ModuleType, signer: Signer, tmp_path: Path
) -> None:
    genuine = stanza("nginx", "1.0", "amd64", "0" * 64).encode()
    forged = stanza("nginx", "1.0", "amd64", "f" * 64).encode()
    cached = cache_release(tmp_path, signer, forged, listed=genuine)
    inrelease = cached / f"{PREFIX}InRelease"
    # A hash appended after the signature block: gpgv still accepts the file, kiln ignores it.
    trailer = f"\nSHA256:\n {deb(forged)} {len(forged)} {PACKAGES_PATH}\n".encode()
    inrelease.write_bytes(inrelease.read_bytes() + trailer)
    assert list_hooks.main(["kiln-apt", "restore-lists"]) == 0
    assert not (tmp_path / "lists" / f"{PREFIX}main_binary-amd64_Packages").exists()


def test_lists_are_saved_after_an_update_and_not_rewritten_when_unchanged(
    list_hooks: ModuleType, tmp_path: Path
) -> None:
    lists = tmp_path / "lists"
    (lists / f"{PREFIX}InRelease").write_bytes(b"signed release")
    (lists / f"{PREFIX}main_binary-amd64_Packages").write_bytes(b"packages")
    (lists / "lock").write_bytes(b"")
    assert list_hooks.main(["kiln-apt", "save-lists"]) == 0
    cached = tmp_path / "pool" / "lists"
    assert sorted(p.name for p in cached.iterdir()) == [
        f"{PREFIX}InRelease",
        f"{PREFIX}main_binary-amd64_Packages",
    ]
    inodes = {p.name: p.stat().st_ino for p in cached.iterdir()}
    assert list_hooks.main(["kiln-apt", "save-lists"]) == 0
    assert {p.name: p.stat().st_ino for p in cached.iterdir()} == inodes
    (lists / f"{PREFIX}main_binary-amd64_Packages").write_bytes(b"newer packages")
    assert list_hooks.main(["kiln-apt", "save-lists"]) == 0
    assert (cached / f"{PREFIX}main_binary-amd64_Packages").read_bytes() == b"newer packages"


# -- the first apt-get update, in the background ----------------------------------------------
def fake_apt_get(bin_dir: Path, output: str, status: int) -> None:
    """An apt-get on PATH that prints output and exits with status (the real one runs in every
    docker bake, and fails for real in tests/integration/test_bad_inputs.py)."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "apt-get"
    script.write_text(
        f"#!/bin/sh\n[ \"$*\" = '-q update' ] || exit 99\nprintf '{output}'\nexit {status}\n"
    )
    script.chmod(0o755)


def test_the_update_status_and_output_reach_the_waiting_task(
    hooks: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake_apt_get(tmp_path / "bin", "Hit:1 http://deb.debian.org bookworm InRelease\\n", 0)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    assert hooks.main(["kiln-apt", "update"]) == 0
    assert hooks.main(["kiln-apt", "wait-update"]) == 0
    captured = capsys.readouterr()
    assert "Hit:1 http://deb.debian.org bookworm InRelease" in captured.out
    assert captured.err == ""
    assert sorted(p.name for p in (tmp_path / "run" / "kiln-apt").iterdir()) == [
        "update.log",
        "update.status",
    ]


def test_a_failed_update_fails_the_waiting_task_with_its_output(
    hooks: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake_apt_get(
        tmp_path / "bin", "E: The repository bookworm Release does not have a Release file.\\n", 100
    )
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    assert hooks.main(["kiln-apt", "update"]) == 100
    assert hooks.main(["kiln-apt", "wait-update"]) == 100
    captured = capsys.readouterr()
    assert "does not have a Release file" in captured.out
    assert "apt-get update failed in the builder (exit 100)" in captured.err


def test_an_update_that_cannot_start_still_reports(
    hooks: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no apt-get at all
    assert hooks.main(["kiln-apt", "update"]) == 1
    assert hooks.main(["kiln-apt", "wait-update"]) == 1
    captured = capsys.readouterr()
    assert "kiln could not run apt-get update" in captured.out
    assert "FileNotFoundError" in captured.out


def test_the_waiting_task_gives_up_on_an_update_that_never_ends(
    hooks: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(hooks, "UPDATE_WAIT_S", 0.2)
    assert hooks.main(["kiln-apt", "wait-update"]) == 1
    assert "apt-get update did not finish within 0.2 s" in capsys.readouterr().err
