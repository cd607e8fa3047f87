"""kiln's shared apt cache and package lists, run inside a docker builder by its own python3.

The cache is a named volume at /run/kiln-apt-cache (under the /run tmpfs: never committed) that
holds .debs by sha256 and apt's lists by file name. Each builder keeps its own archives directory,
which apt locks for a whole install; apt hooks installed by `setup` connect the two: `link` and
`verify` use a cached .deb only where the signature-checked lists give its SHA256 and hash it again
before dpkg; `publish` adds what apt downloaded; `restore-lists` and `save-lists` keep the index
files a gpgv-checked InRelease names. `update` runs the first `apt-get update` detached while
Ansible starts, and `wait-update` (the play's first task) waits for it. `finish` removes every
trace before the commit. docs/performance.md explains each step and why it is safe.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import json
import lzma
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

POOL = Path(os.environ.get("KILN_APT_POOL", "/run/kiln-apt-cache"))
STATE = Path(os.environ.get("KILN_APT_STATE", "/run/kiln-apt"))
ARCHIVES = Path(os.environ.get("KILN_APT_ARCHIVES", "/var/cache/apt/archives"))
LISTS = Path(os.environ.get("KILN_APT_LISTS", "/var/lib/apt/lists"))
APT_CONF_D = Path(os.environ.get("KILN_APT_CONF_D", "/etc/apt/apt.conf.d"))
# The keys a cached InRelease must be signed with, as the builder's image has them: Debian's
# archive keyring and the binary keyrings in trusted.gpg.d, which apt trusts for every source.
# Never the removed keys. A release signed otherwise (a Signed-By source) is simply downloaded.
ARCHIVE_KEYRING = Path(
    os.environ.get("KILN_APT_KEYRING", "/usr/share/keyrings/debian-archive-keyring.gpg")
)
TRUSTED_D = Path(os.environ.get("KILN_APT_TRUSTED_D", "/etc/apt/trusted.gpg.d"))
HOOK_CONF = "00kiln-apt-cache"
DOCKER_CLEAN = "docker-clean"
SCRIPT = os.environ.get("KILN_APT_SCRIPT", "/run/kiln-apt.py")


def _log(message: str) -> None:
    """Hooks run inside apt, whose stdout may be a module's JSON: they only ever log to a file."""
    with (STATE / "log").open("a", encoding="utf-8") as handle:
        handle.write(message + "\n")


def _stats() -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((STATE / "stats.json").read_text())
        return data
    except (OSError, ValueError):
        return {"cached": {}, "downloaded": {}, "published": 0, "linked": 0, "lists": {}}


def _write_atomically(target: Path, text: str) -> None:
    """Write so that a reader sees the whole text or none: a temporary name, then a rename."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, target)


def _save_stats(stats: dict[str, Any]) -> None:
    _write_atomically(STATE / "stats.json", json.dumps(stats))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def quote(text: str, bad: str) -> str:
    """apt's QuoteString: how it escapes package fields in the archives' file names."""
    out = []
    for char in text:
        code = ord(char)
        if char in bad or char == "%" or code <= 0x20 or code >= 0x7F:
            out.append(f"%{code:02x}")
        else:
            out.append(char)
    return "".join(out)


def archive_name(package: str, version: str, arch: str) -> str:
    """The file name apt gives a downloaded package: name_version_arch.deb, quoted like apt."""
    return f"{quote(package, '_:')}_{quote(version, '_:')}_{quote(arch, '_:.')}.deb"


def _read_list(path: Path) -> bytes:
    if path.name.endswith("_Packages"):
        return path.read_bytes()
    if path.name.endswith("_Packages.gz"):
        return gzip.decompress(path.read_bytes())
    if path.name.endswith("_Packages.xz"):
        return lzma.decompress(path.read_bytes())
    return b""  # lz4 and others: no links from these lists, so apt simply downloads


def _field(stanza: bytes, name: bytes) -> str | None:
    """The value of a one-line field of a Packages stanza."""
    prefix = name + b": "
    if stanza.startswith(prefix):
        start = len(prefix)
    else:
        found = stanza.find(b"\n" + prefix)
        if found < 0:
            return None
        start = found + 1 + len(prefix)
    end = stanza.find(b"\n", start)
    return stanza[start : end if end >= 0 else len(stanza)].decode("utf-8", "replace")


def wanted_links(pool: set[str], lists: list[bytes]) -> dict[str, str]:
    """archive file name -> sha256 for cached files the lists name, unambiguous ones only.

    Two entries (say of two repositories) that give one name_version_arch different hashes make
    that name ambiguous: apt only compares sizes in the archives directory, so it is never linked.
    """
    stanzas = [s for data in lists for s in data.split(b"\n\n") if s.strip()]
    found: dict[str, str] = {}
    packages: set[str] = set()
    for stanza in stanzas:
        sha = _field(stanza, b"SHA256")
        if sha is None or sha not in pool:
            continue
        package, version = _field(stanza, b"Package"), _field(stanza, b"Version")
        arch = _field(stanza, b"Architecture")
        if package and version and arch:
            found[archive_name(package, version, arch)] = sha
            packages.add(package)
    if not found:
        return {}
    ambiguous: set[str] = set()
    for stanza in stanzas:
        package = _field(stanza, b"Package")
        if package not in packages:
            continue
        name = archive_name(
            package, _field(stanza, b"Version") or "", _field(stanza, b"Architecture") or ""
        )
        if name in found and _field(stanza, b"SHA256") != found[name]:
            ambiguous.add(name)
    return {name: sha for name, sha in found.items() if name not in ambiguous}


def _pool_dir() -> Path:
    return POOL / "sha256"


def _lists_pool() -> Path:
    return POOL / "lists"


def _copy_atomically(source: Path, target: Path) -> None:
    """Copy (with the modification time, for apt's "modified since?") so that a reader sees the
    whole file or none: a temporary name, then a rename."""
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        shutil.copy2(source, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


# apt's URItoFileName: these characters are %-quoted, then every "/" becomes "_".
LIST_NAME_BAD = '\\|{}[]<>"^~_=!@#$%^&*'


def list_file_name(prefix: str, path: str) -> str:
    """The name apt gives index file `path` of the release whose InRelease is prefix+InRelease."""
    return prefix + quote(path, LIST_NAME_BAD).replace("/", "_")


def release_hashes(release: bytes) -> dict[str, str]:
    """path -> sha256 of every file the SHA256 field of a Release text names."""
    hashes: dict[str, str] = {}
    in_sha256 = False
    for line in release.decode("utf-8", "replace").splitlines():
        if not line.startswith(" "):
            in_sha256 = line.rstrip() == "SHA256:"
        elif in_sha256:
            fields = line.split()
            if len(fields) == 3:
                hashes[fields[2]] = fields[0]
    return hashes


def trusted_keyrings() -> list[Path]:
    candidates = [ARCHIVE_KEYRING, *sorted(TRUSTED_D.glob("*.gpg"))]
    return [keyring for keyring in candidates if keyring.is_file()]


# gpgv exits 0 for some signatures apt refuses: expired or revoked keys, expired signatures.
BAD_SIGNATURE = {"BADSIG", "ERRSIG", "EXPSIG", "EXPKEYSIG", "REVKEYSIG", "NO_PUBKEY"}


def signed_text(inrelease: Path) -> bytes | None:
    """The signed part of a clearsigned InRelease if gpgv accepts its signature, else None.

    Only what gpgv writes out is trusted: text around the signed block is never parsed.
    """
    keyrings = trusted_keyrings()
    if not keyrings:
        return None
    command = ["gpgv", "--status-fd", "2", "--output", "-"]
    command += [f"--keyring={k}" for k in keyrings] + [str(inrelease)]
    try:
        done = subprocess.run(command, capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    status = {
        line.split()[1]
        for line in done.stderr.decode("utf-8", "replace").splitlines()
        if line.startswith("[GNUPG:] ") and len(line.split()) > 1
    }
    if done.returncode != 0 or "VALIDSIG" not in status or status & BAD_SIGNATURE:
        return None
    return done.stdout


def _is_cache_link(path: Path) -> bool:
    return path.is_symlink() and os.readlink(path).startswith(str(_pool_dir()) + "/")


def _our_links() -> list[Path]:
    return [entry for entry in ARCHIVES.glob("*.deb") if _is_cache_link(entry)]


def enabled() -> bool:
    return (STATE / "enabled").exists()


# -- commands ---------------------------------------------------------------------------------
# Builder-only apt settings that cannot change what is installed: no description translations
# (descriptions only), and dpkg without fsync (the builder is thrown away if anything fails).
SPEED = 'Acquire::Languages "none";\nDPkg::Options:: "--force-unsafe-io";\n'


def setup() -> int:
    STATE.mkdir(parents=True, exist_ok=True)
    # Packer's file uploads use `docker cp`, which cannot write into a tmpfs: an uploaded script
    # arrives in the image layer and moves itself to /run (a tmpfs, never committed).
    here = Path(__file__).resolve()
    if here != Path(SCRIPT):
        shutil.copyfile(here, SCRIPT)
        here.unlink()
    header = "// Written by kiln for this bake only; removed before the image is committed.\n"
    if not POOL.is_dir():
        (APT_CONF_D / HOOK_CONF).write_text(header + SPEED)
        print(f"kiln apt cache: off (no cache volume mounted at {POOL})")
        return 0
    _pool_dir().mkdir(parents=True, exist_ok=True)
    (STATE / "enabled").write_text("")
    clean = APT_CONF_D / DOCKER_CLEAN
    if clean.exists():
        # It deletes every .deb after dpkg runs, before they can be cached; restored by finish.
        shutil.move(str(clean), str(STATE / DOCKER_CLEAN))
    python = sys.executable or "python3"
    hooks = (
        f'APT::Update::Pre-Invoke {{ "{python} {SCRIPT} restore-lists || true"; }};\n'
        f'APT::Update::Post-Invoke-Success {{ "{python} {SCRIPT} save-lists || true"; '
        f'"{python} {SCRIPT} link || true"; }};\n'
        f'DPkg::Pre-Install-Pkgs {{ "{python} {SCRIPT} verify"; }};\n'
        f'DPkg::Post-Invoke {{ "{python} {SCRIPT} publish || true"; }};\n'
    )
    (APT_CONF_D / HOOK_CONF).write_text(header + SPEED + hooks)
    _save_stats(_stats())
    cached = sum(1 for _ in _pool_dir().glob("*.deb"))
    print(f"kiln apt cache: on, {cached} .deb(s) in the shared cache")
    return 0


def link() -> int:
    if not enabled():
        return 0
    for old in _our_links():
        old.unlink()
    pool = {p.name[:-4] for p in _pool_dir().glob("*.deb")}
    lists = [_read_list(p) for p in sorted(LISTS.glob("*_Packages*"))]
    links = wanted_links(pool, lists)
    made = 0
    for name, sha in links.items():
        target = ARCHIVES / name
        if target.exists() or target.is_symlink():
            continue  # a real download of this bake stays
        target.symlink_to(_pool_dir() / f"{sha}.deb")
        made += 1
    stats = _stats()
    stats["linked"] = made
    _save_stats(stats)
    _log(f"link: {made} cached .deb(s) named by the lists linked into {ARCHIVES}")
    return 0


def verify(paths: list[str]) -> int:
    """Refuse any cached .deb whose content is not the file its name (from the lists) promises."""
    if not enabled():
        return 0
    stats = _stats()
    for raw in paths:
        path = Path(raw.strip())
        if not raw.strip() or not path.name.endswith(".deb"):
            continue
        if _is_cache_link(path):
            expected = Path(os.readlink(path)).name[:-4]
            actual = _sha256(path)
            if actual != expected:
                sys.stderr.write(
                    f"kiln apt cache: {path.name} in the cache is corrupt (sha256 {actual}, "
                    f"expected {expected}); remove the volume (docker volume rm "
                    "kiln-apt-archives) and bake again\n"
                )
                return 1
            stats["cached"][path.name] = path.stat().st_size
        elif path.is_file():
            stats["downloaded"][path.name] = path.stat().st_size
    _save_stats(stats)
    return 0


def publish() -> int:
    if not enabled():
        return 0
    stats = _stats()
    for entry in sorted(ARCHIVES.glob("*.deb")):
        if entry.is_symlink() or not entry.is_file():
            continue
        sha = _sha256(entry)
        final = _pool_dir() / f"{sha}.deb"
        if final.exists():
            continue
        _copy_atomically(entry, final)
        stats["published"] = int(stats.get("published", 0)) + 1
        _log(f"publish: {entry.name} as {final.name}")
    _save_stats(stats)
    return 0


def restore_lists() -> int:
    """Before `apt-get update`: put each verified cached release's lists where apt keeps them."""
    if not enabled() or not _lists_pool().is_dir():
        return 0
    stats = _stats()
    restored: dict[str, int] = stats.setdefault("lists", {})
    # Scratch space on the lists' own filesystem (/run is a tmpfs): a copy is checked there, then
    # renamed into place.
    with tempfile.TemporaryDirectory(prefix=".kiln-lists-", dir=LISTS) as scratch:
        for cached in sorted(_lists_pool().glob("*_InRelease")):
            if (LISTS / cached.name).exists():
                continue  # apt has this release already: its own files stay as they are
            # Check copies, never the shared files: another bake may replace them meanwhile.
            inrelease = Path(scratch) / cached.name
            shutil.copy2(cached, inrelease)
            signed = signed_text(inrelease)
            if signed is None:
                _log(f"restore-lists: {cached.name} not signed by a trusted key: not used")
                continue
            prefix = cached.name[: -len("InRelease")]
            for path, sha in sorted(release_hashes(signed).items()):
                name = list_file_name(prefix, path)
                if not (_lists_pool() / name).is_file():
                    continue
                copy = Path(scratch) / name
                shutil.copy2(_lists_pool() / name, copy)
                if _sha256(copy) != sha:
                    _log(f"restore-lists: {name} does not match its InRelease: not used")
                    continue
                os.replace(copy, LISTS / name)
                restored[name] = (LISTS / name).stat().st_size
            os.replace(inrelease, LISTS / cached.name)
            restored[cached.name] = (LISTS / cached.name).stat().st_size
    _save_stats(stats)
    _log(f"restore-lists: {len(restored)} list file(s) from the cache")
    return 0


def save_lists() -> int:
    """After a successful `apt-get update`: keep the lists apt just verified for the next bake."""
    if not enabled():
        return 0
    _lists_pool().mkdir(exist_ok=True)
    saved = 0
    for inrelease in sorted(LISTS.glob("*_InRelease")):
        prefix = inrelease.name[: -len("InRelease")]
        # Index files first and the InRelease last, so a reader rarely sees a mix (and if it
        # does, the hashes disagree and apt downloads).
        files = [f for f in sorted(LISTS.glob(glob.escape(prefix) + "*")) if f != inrelease]
        for source in [*files, inrelease]:
            target = _lists_pool() / source.name
            if not source.is_file() or source.is_symlink():
                continue
            if target.is_file() and _sha256(target) == _sha256(source):
                continue
            _copy_atomically(source, target)
            saved += 1
    _log(f"save-lists: {saved} list file(s) written to the cache")
    return 0


def finish() -> int:
    if not enabled():
        (APT_CONF_D / HOOK_CONF).unlink(missing_ok=True)
        print("kiln apt cache: off")
        return 0
    publish()
    for entry in _our_links():
        entry.unlink()
    (APT_CONF_D / HOOK_CONF).unlink(missing_ok=True)
    saved = STATE / DOCKER_CLEAN
    if saved.exists():
        shutil.move(str(saved), str(APT_CONF_D / DOCKER_CLEAN))
    (STATE / "enabled").unlink()
    stats = _stats()
    cached, downloaded = stats["cached"], stats["downloaded"]
    print(
        f"kiln apt cache: {len(cached)} .deb(s) from the cache "
        f"({sum(cached.values()) / 1e6:.1f} MB), {len(downloaded)} downloaded "
        f"({sum(downloaded.values()) / 1e6:.1f} MB), {stats.get('published', 0)} added to the cache"
    )
    lists = stats.get("lists", {})
    print(
        f"kiln apt cache: {len(lists)} list file(s) from the cache "
        f"({sum(lists.values()) / 1e6:.1f} MB), refreshed by apt-get update"
    )
    print("kiln apt cache stats: " + json.dumps(stats, sort_keys=True))
    return 0


# -- the first apt-get update, in the background ----------------------------------------------
UPDATE_LOG = "update.log"
UPDATE_STATUS = "update.status"
UPDATE_WAIT_S = 900.0  # apt's own network timeouts end a stuck update long before this


def update() -> int:
    """`apt-get update` with its output in STATE, then its exit status (always written)."""
    STATE.mkdir(parents=True, exist_ok=True)
    status = 1
    try:
        with (STATE / UPDATE_LOG).open("w", encoding="utf-8") as log:
            status = subprocess.run(
                ["apt-get", "-q", "update"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
            ).returncode
    except Exception:
        with (STATE / UPDATE_LOG).open("a", encoding="utf-8") as log:
            log.write(f"kiln could not run apt-get update:\n{traceback.format_exc()}")
    finally:
        _write_atomically(STATE / UPDATE_STATUS, f"{status}\n")
    return status


def wait_update() -> int:
    """Wait for `update`, print its output, and exit with its status."""
    deadline = time.monotonic() + UPDATE_WAIT_S
    while not (STATE / UPDATE_STATUS).exists():
        if time.monotonic() > deadline:
            sys.stderr.write(f"apt-get update did not finish within {UPDATE_WAIT_S:g} s\n")
            return 1
        time.sleep(0.05)
    status = int((STATE / UPDATE_STATUS).read_text())
    sys.stdout.write((STATE / UPDATE_LOG).read_text(encoding="utf-8", errors="replace"))
    if status != 0:
        sys.stderr.write(
            f"apt-get update failed in the builder (exit {status}); see its output. "
            "Check the parent image's apt sources and that the mirror is reachable.\n"
        )
    return status


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else ""
    if command == "verify":
        return verify(sys.stdin.read().splitlines())
    commands = {
        "setup": setup,
        "restore-lists": restore_lists,
        "save-lists": save_lists,
        "link": link,
        "publish": publish,
        "finish": finish,
        "update": update,
        "wait-update": wait_update,
    }
    if command not in commands:
        sys.stderr.write(f"usage: {argv[0]} {{{','.join([*commands, 'verify'])}}}\n")
        return 2
    try:
        return commands[command]()
    except Exception:
        _log(f"{command} failed:\n{traceback.format_exc()}")  # apt hides a hook's stderr
        raise


if __name__ == "__main__":
    sys.exit(main(sys.argv))
