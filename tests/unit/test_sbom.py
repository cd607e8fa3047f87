"""The SBOM of a recorded version: valid CycloneDX 1.6 (by the library's strict validator), the
same bytes every time, and the image, its packages, purls and licenses as the record has them."""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import replace
from typing import Any

import pytest
from kiln.errors import KilnError, SbomError
from kiln.image_facts import ImageFacts, PackageFacts, facts_from_document
from kiln.lifecycle.sbom import SERIAL_NAMESPACE, package_licenses, sbom_json, validate_sbom
from kiln.registry import Package, Version
from kiln.registry.status import VersionStatus


def version(parent: bool = True, target: str = "docker") -> Version:
    return Version(
        role="web", version=3, kind="role", target=target, fingerprint="ab" * 32,
        parent_role="base" if parent else None, parent_version=2 if parent else None,
        status=VersionStatus.TESTED, git_commit="c" * 40, git_dirty=False, tools={}, inputs={},
        timings={}, bake_seconds=1.0, created_at="2026-03-04T05:06:07.123456Z",
    )  # fmt: skip


PACKAGES = (
    # Given out of order: the document sorts them.
    PackageFacts("zlib1g", "1:1.2.13.dfsg-1", "amd64", "zlib", "1:1.2.13.dfsg-1", ("Zlib",)),
    PackageFacts("libssl3", "3.0.15-1~deb12u1", "amd64", "openssl", "3.0.15-1~deb12u1",
                 ("Apache-2.0",)),
    PackageFacts("jq", "1.6-2.1", "amd64", "jq", "1.6-2.1", ("MIT",)),
    PackageFacts("base-files", "12.4+deb12u8", "amd64", "base-files", "12.4+deb12u8",
                 ("GPL-2+",)),
    PackageFacts("tzdata", "2024b-0+deb12u1", "all", "tzdata", "2024b-0+deb12u1",
                 ("public-domain",)),
    PackageFacts("curl", "7.88.1-10+deb12u8", "amd64", "curl", "7.88.1-10+deb12u8",
                 ("curl", "BSD-3-clause", "ISC", "public-domain")),
    PackageFacts("libc6", "2.36-9+deb12u9", "amd64", "glibc", "2.36-9+deb12u9", ()),
)  # fmt: skip
FACTS = ImageFacts(packages=PACKAGES, apt=None, os_id="debian", os_version="12")


def document(v: Version | None = None, facts: ImageFacts = FACTS) -> dict[str, Any]:
    text = sbom_json(v or version(), facts)
    validate_sbom(text)
    data: dict[str, Any] = json.loads(text)
    return data


def components(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in doc["components"] if c["type"] == "library"}


def properties(item: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in item.get("properties", ())}


def test_the_document_is_valid_cyclonedx_1_6_and_deterministic() -> None:
    text = sbom_json(version(), FACTS)
    validate_sbom(text)
    assert sbom_json(version(), FACTS) == text
    doc = json.loads(text)
    assert doc["bomFormat"] == "CycloneDX"
    assert tuple(map(int, doc["specVersion"].split("."))) >= (1, 5)
    serial = uuid.uuid5(SERIAL_NAMESPACE, f"web\x003\x00{'ab' * 32}")
    assert doc["serialNumber"] == f"urn:uuid:{serial}"
    # Another fingerprint is another document.
    other = replace(version(), fingerprint="cd" * 32)
    assert json.loads(sbom_json(other, FACTS))["serialNumber"] != doc["serialNumber"]


def test_metadata_names_the_image_its_parent_and_kiln() -> None:
    meta = document()["metadata"]
    assert meta["timestamp"] == "2026-03-04T05:06:07.123456+00:00"
    assert [t["name"] for t in meta["tools"]["components"]] == ["kiln"]
    image = meta["component"]
    assert (image["type"], image["name"], image["version"]) == ("container", "web", "3")
    assert properties(image) == {
        "kiln:role": "web",
        "kiln:version": "3",
        "kiln:kind": "role",
        "kiln:fingerprint": "ab" * 32,
        "kiln:parent": "base v2",
        "kiln:target": "docker",
        "kiln:git_commit": "c" * 40,
    }
    base = document(version(parent=False, target="qemu"))["metadata"]["component"]
    assert base["type"] == "operating-system"
    assert "kiln:parent" not in properties(base)
    # A time without its offset is the registry's UTC.
    naive = replace(version(), created_at="2026-03-04T05:06:07")
    assert document(naive)["metadata"]["timestamp"] == "2026-03-04T05:06:07+00:00"


def test_purls_are_the_spec_deb_purls_and_the_bom_refs() -> None:
    found = {name: c["purl"] for name, c in components(document()).items()}
    assert found == {
        "base-files": "pkg:deb/debian/base-files@12.4%2Bdeb12u8?arch=amd64&distro=debian-12",
        "curl": "pkg:deb/debian/curl@7.88.1-10%2Bdeb12u8?arch=amd64&distro=debian-12",
        "jq": "pkg:deb/debian/jq@1.6-2.1?arch=amd64&distro=debian-12",
        "libc6": "pkg:deb/debian/libc6@2.36-9%2Bdeb12u9?arch=amd64&distro=debian-12",
        "libssl3": "pkg:deb/debian/libssl3@3.0.15-1~deb12u1?arch=amd64&distro=debian-12",
        "tzdata": "pkg:deb/debian/tzdata@2024b-0%2Bdeb12u1?arch=all&distro=debian-12",
        "zlib1g": "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&distro=debian-12",
    }
    for component in components(document()).values():
        assert component["bom-ref"] == component["purl"]
    names = [c["name"] for c in document()["components"] if c["type"] == "library"]
    assert names == sorted(names)


def test_the_source_package_is_named_where_it_differs() -> None:
    found = components(document())
    assert properties(found["libssl3"]) == {
        "kiln:source": "openssl",
        "kiln:source_version": "3.0.15-1~deb12u1",
        "aquasecurity:trivy:SrcName": "openssl",
        "aquasecurity:trivy:SrcVersion": "3.0.15-1~deb12u1",
    }
    assert properties(found["zlib1g"])["kiln:source"] == "zlib"
    assert properties(found["jq"]) == {}


def test_licenses_are_spdx_ids_where_they_are_one_and_names_otherwise() -> None:
    found = {name: c.get("licenses", []) for name, c in components(document()).items()}
    assert found["jq"] == [{"license": {"id": "MIT"}}]
    assert found["libssl3"] == [{"license": {"id": "Apache-2.0"}}]
    # DEP-5's GPL-2+ is GPL version 2 or later; the library alone would keep it as a name.
    assert found["base-files"] == [{"license": {"id": "GPL-2.0-or-later"}}]
    assert found["tzdata"] == [{"license": {"name": "public-domain"}}]
    assert found["curl"] == [
        {"license": {"id": "BSD-3-Clause"}},
        {"license": {"id": "ISC"}},
        {"license": {"id": "curl"}},
        {"license": {"name": "public-domain"}},
    ]
    assert found["libc6"] == []


def test_license_names_map_to_spdx_ids_expressions_or_names() -> None:
    def shown(*names: str) -> list[str]:
        return [repr(li) for li in package_licenses(names)]

    assert shown("mit") == ["<License id='MIT', name=None>"]
    assert shown("Expat") == ["<License id='MIT', name=None>"]
    assert shown("LGPL-2.1+") == ["<License id='LGPL-2.1-or-later', name=None>"]
    assert shown("GPL-3") == ["<License id='GPL-3.0-only', name=None>"]
    assert shown("GPL-2+ or Artistic") == ["<License id=None, name='GPL-2+ or Artistic'>"]
    assert shown("MIT AND BSD-3-Clause") == ["<LicenseExpression value='MIT AND BSD-3-Clause'>"]
    # Among several, an expression is a name: CycloneDX takes one expression or licenses.
    assert shown("MIT AND BSD-3-Clause", "Zlib") == [
        "<License id=None, name='MIT AND BSD-3-Clause'>",
        "<License id='Zlib', name=None>",
    ]


def test_the_image_depends_on_the_distribution_and_every_package() -> None:
    doc = document()
    deps = {d["ref"]: set(d.get("dependsOn", ())) for d in doc["dependencies"]}
    purls = {c["purl"] for c in components(doc).values()}
    image = doc["metadata"]["component"]["bom-ref"]
    (system,) = [c for c in doc["components"] if c["type"] == "operating-system"]
    assert (system["name"], system["version"]) == ("debian", "12")
    assert deps[image] == purls | {system["bom-ref"]}
    assert deps[system["bom-ref"]] == purls


def test_a_version_recorded_before_facts_has_its_packages_without_sources_or_licenses() -> None:
    facts = facts_from_document(None, [Package("bash", "5.2.15-2+b7", "amd64")])
    found = components(document(facts=facts))
    assert found["bash"]["purl"] == "pkg:deb/debian/bash@5.2.15-2%2Bb7?arch=amd64"
    assert "licenses" not in found["bash"] and "properties" not in found["bash"]


@pytest.mark.parametrize(
    ("break_it", "where"),
    [
        pytest.param(
            lambda d: d["components"][0].pop("name"), "components[0]", id="component-without-name"
        ),
        pytest.param(
            lambda d: d["components"][1].update(licenses=[{"license": {"id": "Not-SPDX"}}]),
            "components[1].licenses",
            id="unknown-spdx-id",
        ),
        pytest.param(lambda d: d.update(serialNumber="42"), "serialNumber", id="bad-serial"),
    ],
)
def test_a_broken_document_is_refused(break_it: Any, where: str) -> None:
    doc = json.loads(sbom_json(version(), FACTS))
    break_it(doc)
    with pytest.raises(
        SbomError, match=rf"not valid CycloneDX 1\.6 at {re.escape(where)}: "
    ) as caught:
        validate_sbom(json.dumps(doc))
    assert isinstance(caught.value, KilnError)
    assert len(str(caught.value)) < 300


def test_what_is_not_a_cyclonedx_1_5_document_is_refused() -> None:
    with pytest.raises(SbomError, match="not a JSON object"):
        validate_sbom("[1, 2")
    with pytest.raises(SbomError, match=r"1\.5 or newer"):
        validate_sbom(json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.4"}))
    with pytest.raises(SbomError, match="cannot check"):
        validate_sbom(json.dumps({"bomFormat": "CycloneDX", "specVersion": "9.9"}))


def test_250_packages_take_well_under_a_second() -> None:
    many = tuple(
        PackageFacts(f"pkg{i:03}", f"1.{i}-1", "amd64", f"src{i // 3}", f"1.{i}-1", ("GPL-2+",))
        for i in range(250)
    )
    facts = ImageFacts(packages=many, apt=None, os_id="debian", os_version="12")
    started = time.perf_counter()
    text = sbom_json(version(), facts)
    elapsed = time.perf_counter() - started
    validate_sbom(text)
    assert len(components(json.loads(text))) == 250
    assert elapsed < 5, f"{elapsed:.2f}s"
