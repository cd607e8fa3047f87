"""The shared apt cache: a second bake takes its .debs from the cache, and no image holds any of it.

Each test uses a volume of its own (KILN_APT_CACHE), so the developer's cache and other tests'
bakes never change what is counted here.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from conftest import Sandbox

CACHE_LINE = re.compile(
    r"kiln apt cache: (\d+) \.deb\(s\) from the cache \(([\d.]+) MB\), (\d+) downloaded "
    r"\(([\d.]+) MB\), (\d+) added to the cache"
)
LISTS_LINE = re.compile(r"kiln apt cache: (\d+) list file\(s\) from the cache")


@pytest.fixture
def cache_volume(monkeypatch: pytest.MonkeyPatch, baked_clone: Sandbox) -> Iterator[str]:
    name = f"kilntest-apt-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("KILN_APT_CACHE", name)
    try:
        yield name
    finally:
        baked_clone.cleanup()  # containers first: a volume in use cannot be removed
        baked_clone.docker("volume", "rm", "-f", name, check=False)


def cache_report(sandbox: Sandbox, role: str, version: int) -> tuple[int, int, int]:
    """(from the cache, downloaded, added) as the builder's apt hooks counted them."""
    log = (sandbox.root / ".kiln" / "logs" / role / str(version) / "packer.log").read_text()
    found = CACHE_LINE.search(log)
    assert found, f"no apt cache report in {role} v{version}'s packer.log"
    return int(found.group(1)), int(found.group(3)), int(found.group(5))


def lists_report(sandbox: Sandbox, role: str, version: int) -> int:
    """How many package list files the builder's apt hooks restored from the cache."""
    log = (sandbox.root / ".kiln" / "logs" / role / str(version) / "packer.log").read_text()
    found = LISTS_LINE.search(log)
    assert found, f"no apt lists report in {role} v{version}'s packer.log"
    return int(found.group(1))


def pool(sandbox: Sandbox, volume: str, image: str) -> dict[str, tuple[int, str]]:
    """The cache volume's files: name -> (size, mtime), read through a throwaway container."""
    out = sandbox.docker(
        "run", "--rm", "-v", f"{volume}:/cache:ro", "--entrypoint", "find", image,
        "/cache", "-type", "f", "-printf", "%P %s %T@\\n",
    )  # fmt: skip
    files = {}
    for line in out.splitlines():
        name, size, mtime = line.split()
        files[name] = (int(size), mtime)
    return files


def debs_of(files: dict[str, tuple[int, str]]) -> dict[str, tuple[int, str]]:
    return {name: stat for name, stat in files.items() if name.startswith("sha256/")}


def image_traces(sandbox: Sandbox, image: str) -> str:
    """Everything an image holds that could come from the cache or its hooks (empty if clean)."""
    script = (
        "find / -xdev -name '*.deb' -print; "
        "find /var/cache/apt/archives -mindepth 1 ! -name lock ! -name partial -print; "
        "find /var/cache/apt/archives/partial -mindepth 1 -print; "
        "find /var/lib/apt/lists -mindepth 1 -print; "
        "ls /run/kiln-facts.json /run/kiln-facts.py 2>/dev/null; "
        "ls /etc/apt/apt.conf.d | grep -i kiln; "
        "find /run/kiln-apt-cache /run/kiln-apt /run/kiln-apt.py /var/tmp/kiln-apt.py "
        "-mindepth 1 -print 2>/dev/null; "
        "true"
    )
    return sandbox.docker("run", "--rm", "--entrypoint", "sh", image, "-c", script)


def installed_files(sandbox: Sandbox, image: str, packages: list[str]) -> list[str]:
    """`digest path` of every regular file those packages installed in the image, sorted."""
    script = (
        'dpkg-query -L "$@" | sort -u | while read -r f; do '
        '[ -f "$f" ] && [ ! -L "$f" ] && printf "%s\\0" "$f"; done | xargs -0 sha256sum'
    )
    out = sandbox.docker("run", "--rm", "--entrypoint", "sh", image, "-c", script, "-", *packages)
    return sorted(out.splitlines())


def corrupt_every_deb(sandbox: Sandbox, volume: str, image: str) -> int:
    """Flip one byte in the middle of each cached .deb: the same size, other content."""
    script = (
        "import pathlib\n"
        "debs = sorted(pathlib.Path('/cache/sha256').glob('*.deb'))\n"
        "for deb in debs:\n"
        "    data = bytearray(deb.read_bytes()); data[len(data) // 2] ^= 0xFF\n"
        "    deb.write_bytes(bytes(data))\n"
        "print(len(debs))\n"
    )
    return int(
        sandbox.docker(
            "run", "--rm", "-v", f"{volume}:/cache", "--entrypoint", "python3", image, "-c", script
        )
    )


def image_size(sandbox: Sandbox, image: str) -> int:
    return int(sandbox.docker("image", "inspect", "--format", "{{.Size}}", image))


def test_second_bake_downloads_nothing_and_images_hold_no_cache(
    baked_clone: Sandbox, cache_volume: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """v2 with a cold cache, v3 warm, v4 without it: the same files; then v5 on a corrupt cache."""
    sandbox = baked_clone  # web v1 is baked (with the default cache): v2 to v5 are ours
    web = sandbox.repository("web")
    sandbox.invoke("bake", "web", "--force", "--skip-tests", check=True)
    cached, downloaded, added = cache_report(sandbox, "web", 2)
    # nginx and its dependencies: nothing was in this test's new volume before this bake.
    assert (cached, downloaded) == (0, added)
    assert downloaded >= 5
    assert lists_report(sandbox, "web", 2) == 0
    before = pool(sandbox, cache_volume, f"{web}:2")
    assert len(debs_of(before)) >= downloaded

    sandbox.invoke("bake", "web", "--force", "--skip-tests", check=True)
    cached, downloaded, added = cache_report(sandbox, "web", 3)
    assert (downloaded, added) == (0, 0), "the second bake downloaded .debs again"
    assert cached >= 5
    # The lists the first bake's update verified: an InRelease and its Packages at least.
    assert lists_report(sandbox, "web", 3) >= 2
    # Not one .deb of the cache was written again: same names, sizes and modification times.
    # (The lists may be: the mirror can publish new ones between two bakes.)
    assert debs_of(pool(sandbox, cache_volume, f"{web}:3")) == debs_of(before)

    monkeypatch.setenv("KILN_APT_CACHE", "off")
    sandbox.invoke("bake", "web", "--force", "--skip-tests", check=True)
    log = (sandbox.root / ".kiln/logs/web/4/packer.log").read_text()
    assert "kiln apt cache: off" in log
    assert "-v kilntest-apt" not in log  # the builder ran without the volume

    ours = (2, 3, 4)
    for version in ours:
        assert image_traces(sandbox, f"{web}:{version}") == "", f"web v{version}"
    # With the cache (v2 cold, v3 warm) or without it (v4): the same image, give or take the
    # timestamps and logs every bake writes. The nginx .debs alone are over 2 MB.
    sizes = [image_size(sandbox, f"{web}:{v}") for v in ours]
    assert max(sizes) - min(sizes) < 256 * 1024, sizes
    with sandbox.registry() as registry:
        manifests = [registry.packages("web", v) for v in ours]
        web_v2 = registry.get("web", 2)
        assert web_v2 is not None and web_v2.parent_version is not None
        from_base = {p.name for p in registry.packages("base", web_v2.parent_version)}
    assert manifests[0] == manifests[1] == manifests[2]
    # The volume cannot change what is installed: every file of every package the bake installed
    # (the ones the cache served to v3) has the same content in the three images.
    baked_in = sorted({p.name for p in manifests[0]} - from_base)
    assert "nginx" in baked_in
    files = [installed_files(sandbox, f"{web}:{v}", baked_in) for v in ours]
    assert any(line.endswith(" /usr/sbin/nginx") for line in files[0]), files[0][:20]
    assert files[0] == files[1], "a bake from the cache installed other files than a download"
    assert files[0] == files[2], "a bake with the cache installed other files than one without"

    # A cached .deb of the right size but other content: apt itself refuses to install it (its
    # Pre-Install-Pkgs hook verifies the hash), the bake fails saying so and records nothing.
    monkeypatch.setenv("KILN_APT_CACHE", cache_volume)
    assert corrupt_every_deb(sandbox, cache_volume, f"{web}:4") >= 5
    refused = sandbox.invoke("bake", "web", "--force", "--skip-tests")
    assert refused.returncode != 0
    log = (sandbox.root / ".kiln/logs/web/5/packer.log").read_text()
    message = refused.stdout + refused.stderr + log
    assert re.search(r"kiln apt cache: \S+\.deb in the cache is corrupt \(sha256", message), (
        refused.stderr[-3000:]
    )
    assert re.search(r"Sub-process .*kiln-apt\.py verify returned an error code", message)
    assert "Install nginx" in refused.stderr
    with sandbox.registry() as registry:
        assert registry.get("web", 5) is None
        assert registry.integrity_check() == "ok"
    assert sandbox.containers() == []


def test_shared_sandbox_image_holds_no_cache(baked_sandbox: Sandbox) -> None:
    assert image_traces(baked_sandbox, baked_sandbox.image("web", 1)) == ""
