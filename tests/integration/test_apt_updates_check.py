"""The upstream check against a real signed repository on 127.0.0.1, with the host's real apt:
pending updates found and marked, and every failure to fetch or verify a source raised."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apt_repo import AptRepo
from kiln.errors import UpstreamError
from kiln.image_facts import AptState
from kiln.lifecycle import apt_updates as upstream
from kiln.lifecycle.apt_updates import ImageToCheck, PendingUpdate, check_upstream
from kiln.registry import Package

IMAGE_URI = "file:/srv/kiln-demo"
KEYRING = "/usr/share/keyrings/kiln-demo.gpg"
SECURITY = "kiln-demo-security"


@pytest.fixture
def repo() -> Iterator[AptRepo]:
    for tool in ("gpg", "apt-get", "apt-ftparchive", "dpkg-deb"):
        if shutil.which(tool) is None:
            pytest.skip(f"missing tool: {tool}")
    with AptRepo() as served:
        served.publish("stable", "kiln-demo", "1.0")
        served.publish(SECURITY, "kiln-demo", "1.0", security=True)
        yield served


def apt_state(repo: AptRepo, suites: tuple[str, ...] = ("stable", SECURITY)) -> AptState:
    """The apt state a builder would record: a file: source and the keyring it names."""
    lines = "".join(f"deb [signed-by={KEYRING}] {IMAGE_URI} {suite} main\n" for suite in suites)
    return AptState(
        architecture="amd64",
        files={"/etc/apt/sources.list.d/kiln-demo.list": lines.encode(), KEYRING: repo.keyring},
    )


def image(repo: AptRepo, version: str = "1.0", key: str = "web v3", **kw: Any) -> ImageToCheck:
    return ImageToCheck(key, apt_state(repo, **kw), (Package("kiln-demo", version, "all"),))


def check(repo: AptRepo, tmp_path: Path, *images: ImageToCheck) -> dict[str, list[PendingUpdate]]:
    return check_upstream(
        images or (image(repo),), cache_dir=tmp_path / "cache", mirrors={IMAGE_URI: repo.url}
    )


def test_nothing_pending_when_the_installed_version_is_the_newest(
    repo: AptRepo, tmp_path: Path
) -> None:
    assert check(repo, tmp_path) == {"web v3": []}


def test_an_update_in_the_security_suite_is_pending_and_marked_security(
    repo: AptRepo, tmp_path: Path
) -> None:
    assert check(repo, tmp_path) == {"web v3": []}
    repo.publish(SECURITY, "kiln-demo", "1.1")
    assert check(repo, tmp_path) == {
        "web v3": [PendingUpdate("kiln-demo", "all", "1.0", "1.1", (SECURITY,), security=True)]
    }


def test_an_update_in_an_ordinary_suite_is_not_security(repo: AptRepo, tmp_path: Path) -> None:
    repo.publish("stable", "kiln-demo", "1.0.1")
    assert check(repo, tmp_path) == {
        "web v3": [PendingUpdate("kiln-demo", "all", "1.0", "1.0.1", ("stable",), False)]
    }


def test_a_security_label_marks_a_suite_not_named_security(repo: AptRepo, tmp_path: Path) -> None:
    """Label Kiln-Demo-Security, as Debian-Security, on a suite named "updates"; the source is
    deb822 this time, with Signed-By."""
    repo.publish("updates", "kiln-demo", "2.0", security=True)
    sources = (
        f"Types: deb\nURIs: {IMAGE_URI}\nSuites: stable updates\nComponents: main\n"
        f"Signed-By: {KEYRING}\n"
    )
    apt = AptState(
        "amd64",
        files={"/etc/apt/sources.list.d/demo.sources": sources.encode(), KEYRING: repo.keyring},
    )
    found = check(repo, tmp_path, ImageToCheck("db v1", apt, (Package("kiln-demo", "1.0", "all"),)))
    assert found == {"db v1": [PendingUpdate("kiln-demo", "all", "1.0", "2.0", ("updates",), True)]}


def test_an_update_apt_could_not_install_is_pending_all_the_same(
    repo: AptRepo, tmp_path: Path
) -> None:
    """1.1 depends on a package no source has: dist-upgrade would keep it back, but the image
    is still behind its security suite."""
    repo.publish(SECURITY, "kiln-demo", "1.1", depends="kiln-nowhere (>= 3)")
    assert [u.candidate for u in check(repo, tmp_path)["web v3"]] == ["1.1"]


def test_the_images_pins_choose_the_candidate(repo: AptRepo, tmp_path: Path) -> None:
    """The image's preferences take part: a pinned-away security suite offers nothing, and a
    pin above 1000 that would downgrade a locally built 9.0 is no pending update."""
    repo.publish(SECURITY, "kiln-demo", "1.1")
    never = b"Package: kiln-demo\nPin: release a=kiln-demo-security\nPin-Priority: -1\n"
    down = b"Package: *\nPin: release l=Kiln-Demo\nPin-Priority: 1001\n"
    images = []
    for key, prefs, installed in (("pinned", never, "1.0"), ("local", down, "9.0")):
        apt = apt_state(repo)
        files = {**apt.files, f"/etc/apt/preferences.d/{key}.pref": prefs}
        packages = (Package("kiln-demo", installed, "all"),)
        images.append(ImageToCheck(key, AptState("amd64", files=files), packages))
    assert check(repo, tmp_path, *images) == {"pinned": [], "local": []}


def test_versions_sharing_sources_are_each_answered_from_one_update(
    repo: AptRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.publish("stable", "kiln-demo", "1.1")
    calls = spy_on_apt(monkeypatch)
    found = check(repo, tmp_path, *(image(repo, f"1.{n}", f"web v{n}") for n in range(3)))
    assert [[u.candidate for u in found[f"web v{n}"]] for n in range(3)] == [["1.1"], [], []]
    assert [argv[0] for argv, _ in calls].count("apt-get") == 1


def test_the_hosts_apt_configuration_sources_and_status_take_no_part(
    repo: AptRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bash is in the host's dpkg status (and its lists, if it has any), at a version far newer
    than 0.1; the image's sources do not have it, so nothing is pending for it."""
    calls = spy_on_apt(monkeypatch)
    with_bash = ImageToCheck("web v3", apt_state(repo), (Package("bash", "0.1", "amd64"),))
    assert check(repo, tmp_path, with_bash) == {"web v3": []}
    argv, env = calls[0]
    options = [arg for arg in argv if arg.startswith("-o")]
    dump = subprocess.run(
        ["apt-config", *options, "dump"], env=env, capture_output=True, text=True, check=True
    ).stdout
    cache = str(tmp_path / "cache")
    for setting in (
        "Dir::Etc::sourcelist", "Dir::Etc::sourceparts", "Dir::Etc::trusted",
        "Dir::Etc::trustedparts", "Dir::Etc::preferences", "Dir::Etc::preferencesparts",
        "Dir::State::lists", "Dir::State::status",
    ):  # fmt: skip
        line = next(line for line in dump.splitlines() if line.startswith(f"{setting} "))
        assert cache in line, line
    # Dir::Etc is the tree's, and every Dir::Etc::* is in the tree or relative to Dir::Etc.
    assert f'Dir::Etc "{cache}' in dump
    for line in dump.splitlines():
        value = line.split('"')[1] if line.startswith("Dir::Etc") else ""
        assert cache in value or not value.startswith("/"), line
    # The host's apt.conf.d (hooks such as APT::Update::Post-Invoke) was not read.
    assert "Post-Invoke" not in dump
    assert "/etc/apt" not in env["APT_CONFIG"]


def test_a_bad_signature_is_an_error_naming_the_source(repo: AptRepo, tmp_path: Path) -> None:
    """Checked warm too: apt keeps the previous lists, warns and exits 0 on its own then."""
    assert check(repo, tmp_path) == {"web v3": []}
    repo.publish(SECURITY, "kiln-demo", "1.1")
    repo.break_signature(SECURITY)
    with pytest.raises(UpstreamError) as raised:
        check(repo, tmp_path)
    message = str(raised.value)
    assert f"{repo.url} {SECURITY}" in message
    assert "BADSIG" in message and IMAGE_URI in message
    assert "stable" not in "".join(raised.value.sources)


def test_one_failing_source_set_fails_the_whole_check_naming_its_images(
    repo: AptRepo, tmp_path: Path
) -> None:
    """Source sets are updated side by side: the answer for the sound one is not returned
    alone, and the error names the images whose sources failed."""
    sound = image(repo, key="web v3", suites=("stable",))
    broken = image(repo, key="db v1", suites=(SECURITY,))
    repo.break_signature(SECURITY)
    with pytest.raises(UpstreamError) as raised:
        check(repo, tmp_path, sound, broken)
    assert "sources of db v1 " in str(raised.value) and "web v3" not in str(raised.value)


def test_a_cold_check_of_a_bad_signature_is_an_error_too(repo: AptRepo, tmp_path: Path) -> None:
    repo.break_signature(SECURITY)
    with pytest.raises(UpstreamError, match=f"{repo.url} {SECURITY}.*BADSIG"):
        check(repo, tmp_path)


def test_a_signature_by_an_unknown_key_is_an_error(repo: AptRepo, tmp_path: Path) -> None:
    assert check(repo, tmp_path) == {"web v3": []}
    repo.sign_with_other_key("stable")
    with pytest.raises(UpstreamError, match=f"{repo.url} stable.*NO_PUBKEY"):
        check(repo, tmp_path)


def test_an_unsigned_suite_is_an_error(repo: AptRepo, tmp_path: Path) -> None:
    assert check(repo, tmp_path) == {"web v3": []}
    repo.publish("stable", "kiln-demo", "1.1")
    repo.remove_signatures("stable")
    unsigned = f"{repo.url} stable Release.* is (no longer|not) signed"
    with pytest.raises(UpstreamError, match=unsigned):
        check(repo, tmp_path)


def test_an_unreachable_mirror_is_an_error_naming_it(repo: AptRepo, tmp_path: Path) -> None:
    assert check(repo, tmp_path) == {"web v3": []}
    repo.stop_serving()
    with pytest.raises(UpstreamError) as raised:
        check(repo, tmp_path)
    assert repo.url in str(raised.value) and "Connection refused" in str(raised.value)


def test_a_keyring_the_bake_did_not_capture_is_an_error(repo: AptRepo, tmp_path: Path) -> None:
    files = dict(apt_state(repo).files)
    del files[KEYRING]
    lost = ImageToCheck("web v3", AptState("amd64", files=files), ())
    with pytest.raises(UpstreamError, match=KEYRING):
        check(repo, tmp_path, lost)


def spy_on_apt(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], dict[str, str]]]:
    """Records the argv and environment of each apt command the check runs."""
    calls: list[tuple[list[str], dict[str, str]]] = []
    real = subprocess.run

    def run(argv: list[str], **kwargs: Any) -> Any:
        calls.append((list(argv), dict(kwargs["env"])))
        return real(argv, **kwargs)

    monkeypatch.setattr(upstream.subprocess, "run", run)
    return calls
