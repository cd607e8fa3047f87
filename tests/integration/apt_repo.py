"""A throwaway, gpg-signed apt repository served over HTTP on 127.0.0.1, for tests that need a
real upstream: apt on the host verifies it exactly as it would verify Debian's mirrors.

Packages are built here (`dpkg-deb --build`) from files written here, indexes and Release files
come from `apt-ftparchive`, and a throwaway key in a temporary GNUPGHOME signs them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import textwrap
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

#: The architectures every suite lists: apt on an amd64 host asks for binary-amd64 (empty here)
#: as well as binary-all, where the packages (all Architecture: all) are.
ARCHITECTURES = ("all", "amd64")
COPYRIGHT = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: {package}
Source: https://example.invalid/kiln-demo

Files: *
Copyright: 2026 kiln's authors
License: MIT
 Permission is hereby granted, free of charge, to any person obtaining a copy of this software
 and associated documentation files (the "Software"), to deal in the Software without
 restriction, including without limitation the rights to use, copy, modify, merge, publish,
 distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the
 Software is furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in all copies or
 substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED.
"""


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class AptRepo:
    """A signed repository in a temporary directory, served while the context is open.

    ``root`` is the served directory, ``url`` its address and ``keyring`` the binary public
    key a source's Signed-By names. Every file this class writes gets a modification time later
    than any before it, so that an HTTP If-Modified-Since from apt never hides a change made
    within the same second (http.server compares whole seconds).
    """

    def __init__(self) -> None:
        self._tmp = Path(tempfile.mkdtemp(prefix="kiln-apt-repo-"))
        self.root = self._tmp / "www"
        self.root.mkdir()
        # Short and outside pytest's long tmp_path: gpg-agent's socket path has a length limit.
        self._gnupghome = self._tmp / "gpg"
        self._gnupghome.mkdir(mode=0o700)
        self._clock = time.time()
        self._security: dict[str, bool] = {}
        self.fingerprint = self._new_key("Kiln Demo Archive <archive@kiln.invalid>")
        self.keyring = self._gpg("--export", self.fingerprint)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def __enter__(self) -> AptRepo:
        handler = partial(_QuietHandler, directory=str(self.root))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_serving()
        subprocess.run(
            ["gpgconf", "--kill", "all"], env=self._env(), check=False, capture_output=True
        )
        shutil.rmtree(self._tmp, ignore_errors=True)

    def stop_serving(self) -> None:
        """Close the port: apt then gets "connection refused", as from a mirror that is down."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def publish(
        self, suite: str, package: str, version: str, *, security: bool = False, depends: str = ""
    ) -> None:
        """Build `package` at `version` (Architecture: all, with the Depends given) into the
        suite, then re-index and re-sign it. A security suite's Label is Kiln-Demo-Security, as
        Debian's is Debian-Security; a suite keeps the security mark of its first publish."""
        self._security.setdefault(suite, security)
        pool = self.root / "pool" / suite
        pool.mkdir(parents=True, exist_ok=True)
        self._build(package, version, depends, pool / f"{package}_{version}_all.deb")
        self._index(suite)

    def create_suite(self, suite: str, *, security: bool = False) -> None:
        """An empty, signed suite: a source an image can use before anything is published in
        it (a security suite, say)."""
        self._security.setdefault(suite, security)
        (self.root / "pool" / suite).mkdir(parents=True, exist_ok=True)
        self._index(suite)

    def break_signature(self, suite: str) -> None:
        """Alter one signed byte of the suite's InRelease and Release: the signatures no longer
        match (gpgv: BADSIG), while the key is still the trusted one."""
        dist = self.root / "dists" / suite
        for name in ("InRelease", "Release"):
            path = dist / name
            text = path.read_text()
            path.write_text(text.replace("Components: main", "Components: mainx", 1))
            self._touch(path)

    def sign_with_other_key(self, suite: str) -> None:
        """Re-sign the suite with a second throwaway key that no source trusts (NO_PUBKEY)."""
        other = self._new_key("Kiln Demo Impostor <impostor@kiln.invalid>")
        self._sign(self.root / "dists" / suite, other)

    def remove_signatures(self, suite: str) -> None:
        """Serve the suite's Release without InRelease or Release.gpg: an unsigned repository."""
        for name in ("InRelease", "Release.gpg"):
            (self.root / "dists" / suite / name).unlink()

    def _index(self, suite: str) -> None:
        dist = self.root / "dists" / suite
        for arch in ARCHITECTURES:
            binary = dist / "main" / f"binary-{arch}"
            binary.mkdir(parents=True, exist_ok=True)
            packages = b""
            if arch == "all":
                packages = self._run(["apt-ftparchive", "packages", f"pool/{suite}"], cwd=self.root)
            (binary / "Packages").write_bytes(packages)
            self._touch(binary / "Packages")
        label = "Kiln-Demo-Security" if self._security[suite] else "Kiln-Demo"
        fields = {
            "Origin": "Kiln-Demo",
            "Label": label,
            "Suite": suite,
            "Codename": suite,
            "Architectures": " ".join(ARCHITECTURES),
            "Components": "main",
        }
        options = [f"-oAPT::FTPArchive::Release::{k}={v}" for k, v in fields.items()]
        release = self._run(["apt-ftparchive", *options, "release", "."], cwd=dist)
        (dist / "Release").write_bytes(release)
        self._sign(dist, self.fingerprint)

    def _sign(self, dist: Path, key: str) -> None:
        for name in ("InRelease", "Release.gpg"):
            (dist / name).unlink(missing_ok=True)
        base = ["--batch", "--yes", "--local-user", key, "--digest-algo", "SHA256"]
        self._gpg(*base, "--clearsign", "-o", str(dist / "InRelease"), str(dist / "Release"))
        self._gpg(*base, "-abs", "-o", str(dist / "Release.gpg"), str(dist / "Release"))
        for name in ("Release", "InRelease", "Release.gpg"):
            self._touch(dist / name)

    def _build(self, package: str, version: str, depends: str, deb: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="kiln-deb-") as tmp:
            tree = Path(tmp)
            (tree / "DEBIAN").mkdir()
            relations = f"Depends: {depends}\n" if depends else ""
            (tree / "DEBIAN" / "control").write_text(
                relations
                + textwrap.dedent(f"""\
                    Package: {package}
                    Version: {version}
                    Architecture: all
                    Maintainer: kiln's authors <kiln@kiln.invalid>
                    Section: misc
                    Priority: optional
                    Description: kiln's demonstration package
                     Built by kiln's tests, to see apt find pending updates.
                    """)
            )
            share = tree / "usr" / "share" / package
            share.mkdir(parents=True)
            (share / "VERSION").write_text(f"{version}\n")
            doc = tree / "usr" / "share" / "doc" / package
            doc.mkdir(parents=True)
            (doc / "copyright").write_text(COPYRIGHT.format(package=package))
            self._run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb)])

    def _new_key(self, uid: str) -> str:
        self._gpg("--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never")
        listing = self._gpg("--with-colons", "--list-keys", uid).decode()
        return next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr"))

    def _touch(self, path: Path) -> None:
        self._clock = max(self._clock + 1, time.time())
        os.utime(path, (self._clock, self._clock))

    def _env(self) -> dict[str, str]:
        return {**os.environ, "GNUPGHOME": str(self._gnupghome)}

    def _gpg(self, *args: str) -> bytes:
        return self._run(["gpg", "--batch", "--quiet", *args])

    def _run(self, argv: list[str], cwd: Path | None = None) -> bytes:
        done = subprocess.run(argv, cwd=cwd, env=self._env(), capture_output=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr.decode()}")
        return done.stdout
