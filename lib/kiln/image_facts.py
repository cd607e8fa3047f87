"""What a bake learns about its image from inside the builder: packages with their source
packages and licenses, and the apt configuration that says where updates would come from.

The builder runs `kiln/targets/capture_facts.py` (stdlib only) at the end of provisioning; it
writes one JSON document, which `read_facts` turns into an ImageFacts. The registry keeps the
packages in its packages table and the rest as the version's "image-facts" document, which the
upstream check (apt sources and keys) and the SBOM (source packages, licenses) read.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kiln.errors import BuildError
from kiln.registry import Package

#: The version of the document the capture script writes.
FACTS_FORMAT = 1
#: Its name in a bake's work directory.
FACTS_FILE = "facts.json"


@dataclass(frozen=True)
class PackageFacts:
    """One installed package as dpkg and its copyright file describe it."""

    name: str
    version: str
    arch: str
    #: The source package it was built from, and that source's version (often the same).
    source: str
    source_version: str
    #: License names from a machine-readable (DEP-5) copyright file's `License:` fields, in
    #: the order first seen; empty when the file is missing or not machine-readable.
    licenses: tuple[str, ...] = ()

    @property
    def package(self) -> Package:
        return Package(self.name, self.version, self.arch)


@dataclass(frozen=True)
class AptState:
    """The image's apt configuration: enough to ask a mirror what apt would upgrade."""

    #: dpkg's native architecture, and any foreign ones (multiarch).
    architecture: str
    foreign_architectures: tuple[str, ...] = ()
    #: Path in the image -> file content, for /etc/apt/sources.list, sources.list.d/*,
    #: trusted.gpg, trusted.gpg.d/*, preferences, preferences.d/* and every keyring a source's
    #: Signed-By names. Never apt.conf(.d): hooks there must not run on the host.
    files: Mapping[str, bytes] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "architecture": self.architecture,
            "foreign_architectures": list(self.foreign_architectures),
            "files": {
                path: base64.b64encode(content).decode("ascii")
                for path, content in sorted(self.files.items())
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AptState:
        return cls(
            architecture=str(data["architecture"]),
            foreign_architectures=tuple(data.get("foreign_architectures", ())),
            files={
                str(path): base64.b64decode(content)
                for path, content in dict(data.get("files", {})).items()
            },
        )


@dataclass(frozen=True)
class ImageFacts:
    packages: tuple[PackageFacts, ...]
    apt: AptState | None
    #: /etc/os-release's ID and VERSION_ID (purls name the distribution with them).
    os_id: str = "debian"
    os_version: str = ""

    def redacted(self, redact: Callable[[str], str]) -> ImageFacts:
        """These facts with the bake's secrets masked in the apt files (a token in a source's
        URI, say): the registry never holds a secret, in any encoding. A masked source then
        fails the upstream check with apt's own error, naming it."""
        if self.apt is None:
            return self
        files = {}
        for path, content in self.apt.files.items():
            text = content.decode("utf-8", "surrogateescape")
            masked = redact(text)
            files[path] = content if masked == text else masked.encode("utf-8", "surrogateescape")
        return replace(self, apt=replace(self.apt, files=files))

    def document(self) -> str:
        """The registry's "image-facts" document: everything but the plain package list."""
        return json.dumps(
            {
                "format": FACTS_FORMAT,
                "os": {"id": self.os_id, "version_id": self.os_version},
                "apt": self.apt.to_json() if self.apt is not None else None,
                "packages": {
                    f"{p.name}:{p.arch}": [p.source, p.source_version, list(p.licenses)]
                    for p in self.packages
                },
            },
            sort_keys=True,
        )


def facts_from_document(document: str | None, packages: list[Package]) -> ImageFacts:
    """The facts of a recorded version: its packages, detailed where the document has them.

    A version recorded before kiln captured facts has no document: its packages are their own
    source, without licenses, and it has no apt state (the upstream check says so).
    """
    data: dict[str, Any] = json.loads(document) if document else {}
    details: dict[str, list[Any]] = data.get("packages", {})
    detailed = []
    for package in packages:
        source, source_version, licenses = details.get(
            f"{package.name}:{package.arch}", [package.name, package.version, []]
        )
        detailed.append(
            PackageFacts(
                package.name,
                package.version,
                package.arch,
                source,
                source_version,
                tuple(licenses),
            )
        )
    apt = data.get("apt")
    os_data = data.get("os", {})
    return ImageFacts(
        packages=tuple(detailed),
        apt=AptState.from_json(apt) if apt else None,
        os_id=os_data.get("id", "debian"),
        os_version=os_data.get("version_id", ""),
    )


def read_facts(path: Path) -> ImageFacts:
    """The capture script's document, as the builder wrote it."""
    if not path.exists():
        raise BuildError(f"the image's facts {path} were not captured from the builder")
    return facts_from_capture(path.read_text(), str(path))


def facts_from_capture(text: str, where: str) -> ImageFacts:
    """The capture script's output (kiln/targets/capture_facts.py) as ImageFacts."""
    try:
        data = json.loads(text)
        packages = tuple(
            PackageFacts(
                p["name"],
                p["version"],
                p["arch"],
                p.get("source") or p["name"],
                p.get("source_version") or p["version"],
                tuple(p.get("licenses", ())),
            )
            for p in data["packages"]
        )
        apt = data.get("apt")
        os_data = data.get("os", {})
        return ImageFacts(
            packages=packages,
            apt=AptState.from_json(apt) if apt else None,
            os_id=str(os_data.get("id") or "debian"),
            os_version=str(os_data.get("version_id") or ""),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise BuildError(
            f"{where} is not the facts document kiln's capture script writes: {exc}"
        ) from exc
