"""CycloneDX SBOMs of recorded image versions: the image, its distribution and every installed
package with its source package and licenses, built with cyclonedx-python-lib and validated by it.

The document is a function of the record alone (no clock, no random serial number), so that the
same version gives the same bytes whenever, and wherever, it is exported.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

from cyclonedx.contrib.license.factories import LicenseFactory
from cyclonedx.model import Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.dependency import Dependency
from cyclonedx.model.license import DisjunctiveLicense, License
from cyclonedx.output import make_outputter
from cyclonedx.schema import OutputFormat, SchemaVersion
from cyclonedx.spdx import fixup_id
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

from kiln.errors import SbomError
from kiln.image_facts import ImageFacts, PackageFacts, facts_from_document
from kiln.registry import Registry, Version

#: The CycloneDX version kiln writes: 1.6, which scanners read (the library also writes 1.7,
#: which is newer than most of them).
SCHEMA_VERSION = SchemaVersion.V1_6
#: The namespace of the serial numbers: uuid5 of role, version and fingerprint within it.
SERIAL_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://kiln.invalid/sbom")
#: Trivy reads a binary package's source package from these properties (grype's `upstream`
#: purl qualifier is outside the purl spec, and would make the purls differ from the spec's).
TRIVY_SOURCE = ("aquasecurity:trivy:SrcName", "aquasecurity:trivy:SrcVersion")

_LICENSES = LicenseFactory()
#: A DEP-5 short name of the GNU licenses: GPL-2+ is GPL-2.0-or-later, GPL-2 is GPL-2.0-only.
_DEP5_GNU = re.compile(r"(A|L)?GPL-(\d)(\.\d)?(\+)?")
#: DEP-5 names whose SPDX identifier is another name.
_DEP5_NAMES = {"expat": "MIT"}


def sbom_json(version: Version, facts: ImageFacts) -> str:
    """The version's SBOM, CycloneDX 1.6 JSON, deterministic: the same bytes every time for the
    same record."""
    outputter = make_outputter(_bom(version, facts), OutputFormat.JSON, SCHEMA_VERSION)
    return outputter.output_as_string(indent=2)


def version_sbom(registry: Registry, version: Version) -> str:
    """The SBOM of a recorded version, from its packages and its image-facts document."""
    facts = facts_from_document(
        registry.document(version.role, version.version, "image-facts"),
        registry.packages(version.role, version.version),
    )
    return sbom_json(version, facts)


def validate_sbom(text: str) -> None:
    """Raise SbomError if the document does not validate against the CycloneDX JSON schema of
    the version it claims (1.5 or newer), through the library's strict validator."""
    try:
        claimed = json.loads(text).get("specVersion")
    except (ValueError, AttributeError) as exc:
        raise SbomError(f"the SBOM is not a JSON object: {exc}") from exc
    try:
        schema = SchemaVersion.from_version(str(claimed))
    except ValueError as exc:
        raise SbomError(f"the SBOM claims CycloneDX {claimed!r}, which kiln cannot check") from exc
    if schema < SchemaVersion.V1_5:
        raise SbomError(f"the SBOM is CycloneDX {claimed}: kiln needs 1.5 or newer")
    error = JsonStrictValidator(schema).validate_str(text)
    if error is not None:
        # jsonschema's own text quotes the whole schema: its message and where is enough.
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.data.path)
        raise SbomError(
            f"the SBOM is not valid CycloneDX {claimed} at {where.lstrip('.') or 'its top'}: "
            f"{error.data.message}"
        )


def image_ref(version: Version) -> str:
    """The bom-ref of the image itself."""
    return f"kiln:image:{version.role}:{version.version}"


def package_purl(package: PackageFacts, facts: ImageFacts) -> str:
    """pkg:deb/<os_id>/<name>@<version>?arch=<arch>&distro=<os_id>-<os_version>; without distro
    when the record does not know the distribution's version (versions recorded before facts)."""
    return str(_purl(package, facts).to_string())


def _purl(package: PackageFacts, facts: ImageFacts) -> PackageURL:
    qualifiers = {"arch": package.arch}
    if facts.os_version:
        qualifiers["distro"] = f"{facts.os_id}-{facts.os_version}"
    # The purl spec lowercases a deb's vendor and name; Debian's names are lowercase already.
    return PackageURL(
        type="deb",
        namespace=facts.os_id.lower(),
        name=package.name.lower(),
        version=package.version,
        qualifiers=qualifiers,
    )


def _bom(version: Version, facts: ImageFacts) -> Bom:
    image = _image_component(version)
    system = _os_component(facts)
    packages = [_package_component(p, facts) for p in sorted(facts.packages, key=_package_key)]
    bom = Bom(
        serial_number=uuid.uuid5(
            SERIAL_NAMESPACE, f"{version.role}\0{version.version}\0{version.fingerprint}"
        ),
        metadata=BomMetaData(component=image, timestamp=_timestamp(version.created_at)),
        components=[system, *packages],
    )
    # Not kiln's version: the document must not change when kiln does.
    bom.metadata.tools.components.add(Component(type=ComponentType.APPLICATION, name="kiln"))
    # The image holds the distribution and every package; Trivy finds the OS packages through
    # the distribution's own dependencies. Built whole: Bom.register_dependency looks each
    # target up in a scan of the graph, which took half the time for 250 packages.
    bom.dependencies = [
        _depends(image, [system, *packages]),
        _depends(system, packages),
        *(_depends(package) for package in packages),
    ]
    return bom


def _depends(target: Component, on: Iterable[Component] = ()) -> Dependency:
    return Dependency(ref=target.bom_ref, dependencies=[Dependency(ref=c.bom_ref) for c in on])


def _image_component(version: Version) -> Component:
    # A Docker image is a container; a VM disk or a cloud image is the whole operating system.
    kind = ComponentType.CONTAINER if version.target == "docker" else ComponentType.OPERATING_SYSTEM
    facts = {
        "kiln:role": version.role,
        "kiln:version": str(version.version),
        "kiln:kind": version.kind,
        "kiln:fingerprint": version.fingerprint,
        "kiln:target": version.target,
        "kiln:git_commit": version.git_commit,
    }
    if version.parent_role is not None:
        facts["kiln:parent"] = f"{version.parent_role} v{version.parent_version}"
    return Component(
        type=kind,
        name=version.role,
        # As the image's tag names it (kiln/base:3), not as kiln's messages do (base v3).
        version=str(version.version),
        bom_ref=image_ref(version),
        properties=_properties(facts.items()),
    )


def _os_component(facts: ImageFacts) -> Component:
    """The distribution, as scanners look for it to pick their advisories (debian 12)."""
    return Component(
        type=ComponentType.OPERATING_SYSTEM,
        name=facts.os_id,
        version=facts.os_version or None,
        bom_ref=f"kiln:os:{facts.os_id}:{facts.os_version}",
    )


def _package_component(package: PackageFacts, facts: ImageFacts) -> Component:
    purl = _purl(package, facts)
    source: dict[str, str] = {}
    if (package.source, package.source_version) != (package.name, package.version):
        source = {
            "kiln:source": package.source,
            "kiln:source_version": package.source_version,
            TRIVY_SOURCE[0]: package.source,
            TRIVY_SOURCE[1]: package.source_version,
        }
    return Component(
        # dpkg does not say which packages are programs and which libraries; scanners (syft,
        # Trivy) call every distribution package a library, and so does kiln.
        type=ComponentType.LIBRARY,
        name=package.name,
        version=package.version,
        purl=purl,
        bom_ref=str(purl.to_string()),
        licenses=package_licenses(package.licenses),
        properties=_properties(source.items()),
    )


def package_licenses(names: tuple[str, ...]) -> list[License]:
    """Each license name of a package's copyright file, as an SPDX id where it is one (or where
    its DEP-5 short name says which one it is), else by name.

    A single name may be an SPDX expression; among several, an expression stays a name, because
    CycloneDX allows one expression or a list of licenses, never both (the library would drop
    the others without a word).
    """
    if len(names) == 1:
        name = names[0]
        spdx = _spdx_id(name)
        return [_LICENSES.make_with_id(spdx) if spdx else _LICENSES.make_from_string(name)]
    licenses: list[License] = []
    for name in names:
        spdx = _spdx_id(name)
        licenses.append(_LICENSES.make_with_id(spdx) if spdx else DisjunctiveLicense(name=name))
    return licenses


def _spdx_id(name: str) -> str | None:
    """The SPDX id a license name stands for, if the library knows it as one."""
    if name.lower() in _DEP5_NAMES:
        return _DEP5_NAMES[name.lower()]
    # Not the library's expression parser: it reads GPL-2+ as no SPDX license at all.
    gnu = _DEP5_GNU.fullmatch(name)
    if gnu:
        prefix, major, minor, later = gnu.groups()
        name = f"{prefix or ''}GPL-{major}{minor or '.0'}-{'or-later' if later else 'only'}"
    return fixup_id(name)


def _properties(pairs: Iterable[tuple[str, str]]) -> list[Property]:
    return [Property(name=name, value=value) for name, value in pairs]


def _package_key(package: PackageFacts) -> tuple[str, str]:
    return (package.name, package.arch)


def _timestamp(created_at: str) -> datetime:
    """The record's creation time (ISO 8601, as the registry writes it)."""
    try:
        stamp = datetime.fromisoformat(created_at)
    except ValueError as exc:
        raise SbomError(f"the version's creation time {created_at!r} is not ISO 8601") from exc
    # The registry writes UTC; CycloneDX wants the offset said.
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
