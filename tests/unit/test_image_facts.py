"""What a bake records of its image: the capture script's facts, and the registry's documents."""

from __future__ import annotations

import base64
import json
import runpy
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import behind_the_back, parent_version
from kiln import Registry, RegistryError
from kiln.image_facts import AptState, facts_from_capture, facts_from_document
from kiln.registry import Package
from kiln.targets.base import FACTS_SCRIPT


def test_the_capture_script_lists_this_machine_as_dpkg_does() -> None:
    """The script run by a real python3 over the host's real dpkg database (Debian, as CI)."""
    out = subprocess.run(
        [sys.executable, str(FACTS_SCRIPT)], capture_output=True, text=True, check=True
    ).stdout
    facts = facts_from_capture(out, "the host")
    dpkg = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${Architecture} ${Version}\\n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    assert sorted(f"{p.name} {p.arch} {p.version}" for p in facts.packages) == sorted(
        line for line in dpkg if line
    )
    (libc,) = [p for p in facts.packages if p.name == "libc6"]
    assert libc.source == "glibc"  # the source package, from dpkg's source:Package
    assert facts.apt is not None and facts.apt.architecture == "amd64"
    assert not any("apt.conf" in path for path in facts.apt.files)  # hooks never leave the image


def test_signed_by_keyrings_travel_with_their_sources(tmp_path: Path) -> None:
    script = runpy.run_path(str(FACTS_SCRIPT))
    apt = tmp_path / "etc" / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "apt.conf.d").mkdir()
    (apt / "apt.conf.d" / "99hook").write_text('APT::Update::Pre-Invoke {"touch /x";};')
    key, other = tmp_path / "demo.gpg", tmp_path / "other.gpg"
    key.write_bytes(b"KEY")
    other.write_bytes(b"OTHER")
    (apt / "sources.list.d" / "demo.list").write_text(
        f"deb [arch=amd64 signed-by={key}] file:/srv/demo stable main\n"
    )
    (apt / "sources.list.d" / "other.sources").write_text(
        f"Types: deb\nURIs: http://x/\nSuites: s\nComponents: main\nSigned-By: {other}\n"
    )
    apt_files = script["apt_files"]
    apt_files.__globals__["APT_DIR"] = str(apt)
    files = {path: base64.b64decode(text) for path, text in apt_files().items()}
    assert files[str(key)] == b"KEY" and files[str(other)] == b"OTHER"
    assert sorted(files) == sorted(
        [
            str(key),
            str(other),
            f"{apt}/sources.list.d/demo.list",
            f"{apt}/sources.list.d/other.sources",
        ]
    )


def test_a_package_is_found_in_its_dep5_copyright_file_only(tmp_path: Path) -> None:
    script = runpy.run_path(str(FACTS_SCRIPT))
    doc = tmp_path / "usr" / "share" / "doc"
    (doc / "dep5").mkdir(parents=True)
    (doc / "dep5" / "copyright").write_text(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
        "Files: *\nLicense: GPL-2+\n\nFiles: lib/*\nLicense: MIT\n\nLicense: GPL-2+\n text\n"
    )
    (doc / "prose").mkdir()
    (doc / "prose" / "copyright").write_text("This package is under License: MIT\nLicense: X\n")
    licenses = script["licenses"]
    real_open = open

    def rooted(path: str, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        return real_open(str(tmp_path) + path, *args, **kwargs)  # type: ignore[call-overload]

    licenses.__globals__["open"] = rooted
    assert licenses("dep5") == ["GPL-2+", "MIT"]
    assert licenses("prose") == []  # not machine-readable: no guessing
    assert licenses("missing") == []


def test_a_facts_document_round_trips_through_the_registry(registry_url: str) -> None:
    apt = AptState("amd64", ("i386",), {"/etc/apt/sources.list": b"deb http://x/ s main\n"})
    capture = json.dumps(
        {
            "os": {"id": "debian", "version_id": "12"},
            "apt": apt.to_json(),
            "packages": [
                {
                    "name": "libc6",
                    "version": "2.36-9",
                    "arch": "amd64",
                    "source": "glibc",
                    "source_version": "2.36-9",
                    "licenses": ["LGPL-2.1+"],
                },
                {
                    "name": "bash",
                    "version": "5.2-2+b1",
                    "arch": "amd64",
                    "source": "bash",
                    "source_version": "5.2-2",
                    "licenses": [],
                },
            ],
        }
    )
    facts = facts_from_capture(capture, "test")
    with Registry(registry_url) as registry:
        version = replace(parent_version("web", 1), status="baked")
        registry.record_version(
            version,
            packages=[p.package for p in facts.packages],
            documents={"image-facts": facts.document(), "bake-reason": '{"kind": "x"}'},
        )
        back = facts_from_document(
            registry.document("web", 1, "image-facts"), registry.packages("web", 1)
        )
        assert sorted(back.packages, key=lambda p: p.name) == sorted(
            facts.packages, key=lambda p: p.name
        )
        assert back.apt == apt and back.os_version == "12"
        assert registry.documents("web", "bake-reason") == {1: '{"kind": "x"}'}
        assert registry.document("web", 1, "bake-reason") == '{"kind": "x"}'
        with pytest.raises(RegistryError, match="unknown version document kind 'sbom'"):
            registry.document("web", 1, "sbom")
        with pytest.raises(Exception, match="a version document never changes"):
            behind_the_back(registry, "UPDATE version_documents SET body = 'x'")


def test_a_version_recorded_before_facts_reads_as_its_own_source() -> None:
    facts = facts_from_document(None, [Package("curl", "7.88", "amd64")])
    (curl,) = facts.packages
    assert (curl.source, curl.source_version, curl.licenses) == ("curl", "7.88", ())
    assert facts.apt is None  # the upstream check says it cannot check it


def test_a_failed_record_keeps_no_document(tmp_path: Path) -> None:
    with Registry(tmp_path / "r.db") as registry:
        version = parent_version("web", 1)
        bad = replace(version, artifacts=(*version.artifacts, version.artifacts[0]))
        with pytest.raises(RegistryError):
            registry.record_version(bad, documents={"image-facts": "{}"})
        assert registry.documents("web", "image-facts") == {}


def test_a_secret_in_an_apt_source_never_reaches_the_registry() -> None:
    from kiln.image_facts import ImageFacts
    from kiln.redact import Redactor

    token = "s3cr3t-T0ken"
    source = f"deb https://ci:{token}@repo/ s main\n".encode()
    apt = AptState(
        "amd64",
        files={
            "/etc/apt/sources.list.d/private.list": source,
            "/usr/share/keyrings/k.gpg": b"\x99\x01binary key",
        },
    )
    facts = ImageFacts(packages=(), apt=apt).redacted(Redactor([token]))
    document = facts.document()
    assert token not in document
    assert base64.b64encode(source).decode() not in document
    assert facts.apt is not None
    assert facts.apt.files["/usr/share/keyrings/k.gpg"] == b"\x99\x01binary key"  # untouched
    assert b"https://ci:" in facts.apt.files["/etc/apt/sources.list.d/private.list"]
