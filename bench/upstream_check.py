"""Benchmark: kiln's upstream check (kiln.lifecycle.apt_updates) against Debian's real mirrors.

Checks --versions images that each hold this host's installed packages (dpkg-query) with
Debian bookworm's sources (main, -updates, -security) and keyring, as a bake records them,
from --trees distinct apt states: first with an empty cache directory (cold: every list is
downloaded), then --runs times again (warm: apt's If-Modified-Since, the kept lists and
srcpkgcache.bin). Needs the network (deb.debian.org); prints the times and what is pending.

Run from the repository root: .venv/bin/python bench/upstream_check.py [--versions 20]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from kiln.image_facts import AptState
from kiln.lifecycle.apt_updates import ImageToCheck, check_upstream
from kiln.registry import Package

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
SOURCES = f"""\
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: {KEYRING}

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: {KEYRING}
"""


def host_packages() -> tuple[Package, ...]:
    listing = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${Version} ${Architecture}\n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return tuple(Package(*line.split()) for line in listing.splitlines())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--versions", type=int, default=20)
    parser.add_argument("--trees", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    packages = host_packages()
    keyring = Path(KEYRING).read_bytes()
    images = []
    for n in range(args.versions):
        # A comment makes an apt state distinct, as another role's sources would be.
        text = f"# tree {n % args.trees}\n{SOURCES}".encode()
        apt = AptState(
            "amd64", files={"/etc/apt/sources.list.d/debian.sources": text, KEYRING: keyring}
        )
        images.append(ImageToCheck(f"role v{n}", apt, packages))
    with tempfile.TemporaryDirectory(prefix="kiln-upstream-bench-") as tmp:
        for run in range(1 + args.runs):
            start = time.monotonic()
            found = check_upstream(images, cache_dir=Path(tmp))
            kind = "cold" if run == 0 else "warm"
            print(f"{kind}: {time.monotonic() - start:.2f} s for {len(images)} versions")
    pending = found["role v0"]
    security = sum(update.security for update in pending)
    print(f"{len(packages)} packages installed, {len(pending)} pending, {security} security")


if __name__ == "__main__":
    main()
