#!/usr/bin/env python3
"""Run inside a builder by its own python3 at the end of a bake: what kiln records of the image.

Writes one JSON document (to $KILN_FACTS_OUT, or standard output): every installed package with
its source package and the licenses its machine-readable copyright file states, the apt sources
with the keys they trust and the pinning that picks candidates (what the upstream check asks a
mirror about), and /etc/os-release's ID and VERSION_ID. Standard library only, Python 3.7+: it
runs in whatever the image has. kiln.image_facts reads the document on the host.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from typing import Any

FORMAT = 1
DPKG_FIELDS = "${Package}\\t${Version}\\t${Architecture}\\t${source:Package}\\t${source:Version}\\n"
APT_DIR = "/etc/apt"
#: What apt reads to choose candidates, never apt.conf(.d): the host must not run its hooks.
APT_FILES = ("sources.list", "trusted.gpg", "preferences")
APT_PARTS = ("sources.list.d", "trusted.gpg.d", "preferences.d")
SIGNED_BY = re.compile(r"signed-by\s*[=:]\s*([^\]\s]+(?:[ ,][^\]\s=]+)*)", re.IGNORECASE)


def run(*argv: str) -> str:
    return subprocess.run(argv, check=True, stdout=subprocess.PIPE).stdout.decode("utf-8")


def licenses(package: str) -> list[str]:
    """License names of a DEP-5 copyright file, in the order first seen; [] for free text."""
    path = f"/usr/share/doc/{package}/copyright"
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return []
    if not text.lstrip().startswith("Format:"):
        return []
    found: list[str] = []
    for match in re.finditer(r"^License:[ \t]*(\S[^\n]*)$", text, re.MULTILINE):
        name = match.group(1).strip()
        if name and name not in found:
            found.append(name)
    return found


def packages() -> list[dict[str, Any]]:
    listed = []
    for line in run("dpkg-query", "-W", "-f=" + DPKG_FIELDS).splitlines():
        name, version, arch, source, source_version = (line.split("\t") + [""] * 5)[:5]
        if not name:
            continue
        listed.append(
            {
                "name": name,
                "version": version,
                "arch": arch,
                "source": source or name,
                "source_version": source_version or version,
                "licenses": licenses(name),
            }
        )
    return listed


def read(path: str) -> str:
    with open(path, "rb") as handle:
        return base64.b64encode(handle.read()).decode("ascii")


def apt_files() -> dict[str, str]:
    files: dict[str, str] = {}
    for name in APT_FILES:
        path = os.path.join(APT_DIR, name)
        if os.path.isfile(path):
            files[path] = read(path)
    for name in APT_PARTS:
        directory = os.path.join(APT_DIR, name)
        if os.path.isdir(directory):
            for entry in sorted(os.listdir(directory)):
                path = os.path.join(directory, entry)
                if os.path.isfile(path):
                    files[path] = read(path)
    # The keyrings a source names with Signed-By (an inline key needs no file).
    for path in list(files):
        if "/sources.list" not in path:
            continue
        text = base64.b64decode(files[path]).decode("utf-8", "replace")
        for match in SIGNED_BY.finditer(text):
            for key in re.split(r"[ ,]+", match.group(1)):
                if key.startswith("/") and os.path.isfile(key):
                    files[key] = read(key)
    return files


def os_release() -> dict[str, str]:
    found: dict[str, str] = {}
    try:
        with open("/etc/os-release", encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.strip().partition("=")
                found[key] = value.strip('"')
    except OSError:
        pass
    return {"id": found.get("ID", "debian"), "version_id": found.get("VERSION_ID", "")}


def main() -> None:
    foreign = run("dpkg", "--print-foreign-architectures").split()
    document = {
        "format": FORMAT,
        "os": os_release(),
        "packages": packages(),
        "apt": {
            "architecture": run("dpkg", "--print-architecture").strip(),
            "foreign_architectures": foreign,
            "files": apt_files(),
        },
    }
    text = json.dumps(document, sort_keys=True)
    out = os.environ.get("KILN_FACTS_OUT")
    if out:
        with open(out, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
