"""The builder's apt cache hooks, run against a fake filesystem: linking, verifying, publishing."""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from kiln.targets import apt_cache


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
