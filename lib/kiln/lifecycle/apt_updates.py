"""Which recorded images have pending (security) updates upstream, asked of the host's own apt
from the sources, keys and pins each version recorded at bake time, without baking anything.

Each distinct apt state gets a private apt tree under the caller's cache directory: the image's
files under ``root/``, apt's lists (kept between checks: apt's If-Modified-Since makes a warm
update cheap) and caches. apt reads only that tree: ``APT_CONFIG`` names the tree's own empty
configuration, so neither the host's apt.conf(.d) (with its hooks) nor the host's sources,
keys or pins take part, and the image's apt.conf(.d) was never captured. apt does all the
work it does for any machine: fetching, gpgv verification, pinning and version comparison.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from kiln.errors import ToolError, UpstreamError
from kiln.image_facts import AptState
from kiln.registry import Package

__all__ = ["ImageToCheck", "PendingUpdate", "check_upstream"]

#: Seconds apt waits on a silent mirror, and for a whole `apt-get update` or policy query.
HTTP_TIMEOUT = 20
RUN_TIMEOUT = 600
#: Where the image keeps the files that name sources (mirror URIs and Signed-By are rewritten).
_SOURCES = ("/etc/apt/sources.list", "/etc/apt/sources.list.d/")
#: `[signed-by=/a.gpg]` on a one-line source, `Signed-By: /a.gpg` in a deb822 stanza.
_SIGNED_BY = re.compile(r"signed-by=([^\s\]]+)|^Signed-By:[ \t]*(\S[^\n]*)$", re.M | re.I)
#: apt-get update's words for a source it could not fetch or verify, on stdout or stderr.
_FAILURE = re.compile(
    r"^(E: .*|W: (Failed to fetch|Some index files failed|GPG error|An error occurred during "
    r"the signature verification|The repository .* is (not|no longer) signed|.*NO_PUBKEY).*)$"
)
#: The E:/W: lines that only repeat an Err item of the output, or sum the failures up.
_REPEATS = re.compile(
    r"^[EW]: (Failed to fetch|Some index files failed|An error occurred during the signature)"
)
_ERR_ITEM = re.compile(r"^Err:\d+ (.*)$")
#: `apt-cache policy`: a package's block, its version lines and the sources under them.
_HEADER = re.compile(r"^(\S+):$")
_VERSION = re.compile(r"^ (\*\*\*| {3}) (\S+) (-?\d+)$")
_SOURCE = re.compile(r"^ {8}(-?\d+) (.+)$")
_FILE = re.compile(r"^ *(-?\d+) (.+)$")
_RELEASE = re.compile(r"^ +release (.*)$")


@dataclass(frozen=True)
class PendingUpdate:
    """An installed package with a newer candidate upstream."""

    name: str
    arch: str
    installed: str
    candidate: str
    #: Where the candidate comes from: each source's codename (its suite when it has none),
    #: e.g. ("bookworm-security",).
    suites: tuple[str, ...]
    #: The candidate comes from a security suite: one of its sources has a suite or codename
    #: ending in "-security", or a Label containing "Security" (Debian's is Debian-Security).
    security: bool

    def as_dict(self) -> dict[str, object]:
        """As --json prints it and a bake-reason document records it."""
        return {
            "name": self.name,
            "arch": self.arch,
            "installed": self.installed,
            "candidate": self.candidate,
            "suites": list(self.suites),
            "security": self.security,
        }


@dataclass(frozen=True)
class ImageToCheck:
    #: The caller's label, e.g. "web v3": the key of check_upstream's answer.
    key: str
    apt: AptState
    packages: tuple[Package, ...]


@dataclass(frozen=True)
class _Tree:
    """One private apt tree: where apt reads the image's configuration and keeps its lists."""

    dir: Path
    apt: AptState
    #: Host URI -> the image's URI, to name a failed source as the image knows it too.
    mirrored: Mapping[str, str]

    @property
    def root(self) -> Path:
        return self.dir / "root"

    def env(self) -> dict[str, str]:
        # C locale: kiln reads apt's output. APT_CONFIG: apt reads this file before apt.conf.d
        # and apt.conf, and it moves Dir::Etc (with ::main and ::parts) off the host's
        # /etc/apt: an -o option comes too late, after apt has read apt.conf.d.
        return {**os.environ, "LC_ALL": "C", "APT_CONFIG": str(self.dir / "apt.conf")}

    def options(self, status: Path) -> list[str]:
        etc = self.root / "etc" / "apt"
        arches = ",".join((self.apt.architecture, *self.apt.foreign_architectures))
        settings = {
            "Dir::Etc::sourcelist": etc / "sources.list",
            "Dir::Etc::sourceparts": etc / "sources.list.d",
            "Dir::Etc::trusted": etc / "trusted.gpg",
            "Dir::Etc::trustedparts": etc / "trusted.gpg.d",
            "Dir::Etc::preferences": etc / "preferences",
            "Dir::Etc::preferencesparts": etc / "preferences.d",
            "Dir::State": self.dir / "state",
            "Dir::State::Lists": self.dir / "state" / "lists",
            "Dir::State::status": status,
            "Dir::Cache": self.dir / "cache",
            # Lists only (srcpkgcache.bin): each version's status is its own, so no pkgcache.
            "Dir::Cache::pkgcache": "",
            "Dir::Log": self.dir / "log",
            "APT::Architecture": self.apt.architecture,
            "APT::Architectures": arches,
            "APT::Sandbox::User": "root",
            "Acquire::Languages": "none",
            "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled": "false",
            "Acquire::http::Timeout": HTTP_TIMEOUT,
            "Acquire::https::Timeout": HTTP_TIMEOUT,
            "Acquire::Retries": 0,
            # A failed fetch makes `apt-get update` exit non-zero (apt 2.3+), not only warn.
            "APT::Update::Error-Mode": "any",
        }
        return [f"-o{name}={value}" for name, value in settings.items()]


def check_upstream(
    images: Sequence[ImageToCheck],
    *,
    cache_dir: Path,
    mirrors: Mapping[str, str] | None = None,
) -> dict[str, list[PendingUpdate]]:
    """key -> pending updates (sorted by name), every source refreshed and verified first.

    ``mirrors`` maps an image URI prefix to the URI the host reads instead (a builder reads a
    repository through a file: mount that the host serves over HTTP). Raises UpstreamError
    when any source could not be fetched or verified: then nothing is known, not "no updates".
    """
    by_tree: dict[str, list[ImageToCheck]] = {}
    for image in images:
        by_tree.setdefault(_tree_key(image.apt), []).append(image)
    trees = {
        key: _prepare_tree(cache_dir / key, group[0].apt, mirrors or {})
        for key, group in by_tree.items()
    }
    # Updates wait on mirrors, not on this host's CPUs: all source sets at once.
    with ThreadPoolExecutor(max_workers=min(8, len(trees)) or 1) as pool:
        refreshed = dict(
            zip(trees, pool.map(_refresh, trees.values(), by_tree.values()), strict=True)
        )
    failed = [found for found in refreshed.values() if isinstance(found, UpstreamError)]
    if failed:
        raise failed[0] if len(failed) == 1 else _together(failed)
    releases = {k: v for k, v in refreshed.items() if not isinstance(v, UpstreamError)}
    jobs = [(trees[key], image) for key, group in by_tree.items() for image in group]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        answers = pool.map(
            lambda job: _pending(job[0], job[1].packages, releases[job[0].dir.name]), jobs
        )
        return {image.key: found for (_, image), found in zip(jobs, answers, strict=True)}


def _refresh(
    tree: _Tree, images: Sequence[ImageToCheck]
) -> Mapping[str, Mapping[str, str]] | UpstreamError:
    """The tree's sources updated and their Release fields, or why they could not be."""
    try:
        _update(tree, [image.key for image in images])
        return _releases(tree)
    except UpstreamError as exc:
        return exc


def _together(failed: Sequence[UpstreamError]) -> UpstreamError:
    return UpstreamError(
        "\n\n".join(str(exc) for exc in failed),
        sources=[source for exc in failed for source in exc.sources],
    )


def _tree_key(apt: AptState) -> str:
    document = json.dumps(apt.to_json(), sort_keys=True).encode()
    return hashlib.sha256(document).hexdigest()[:32]


def _prepare_tree(where: Path, apt: AptState, mirrors: Mapping[str, str]) -> _Tree:
    """Write the image's apt files into the tree, its sources pointed at the private keyrings
    and the host's mirrors; the lists and caches of an earlier check stay."""
    root = where / "root"
    for sub in ("etc/apt/sources.list.d", "etc/apt/trusted.gpg.d", "etc/apt/preferences.d"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for sub in ("state/lists/partial", "cache/archives/partial", "log", "etc/apt.conf.d"):
        (where / sub).mkdir(parents=True, exist_ok=True)
    # Dir::Etc too: whatever else apt finds relative to it (auth.conf.d's credentials for the
    # host's mirrors...) is the tree's, and empty.
    (where / "apt.conf").write_text(
        f'Dir::Etc "{where}/etc";\nDir::Etc::main "apt.conf";\nDir::Etc::parts "apt.conf.d";\n'
    )
    (where / "etc" / "apt.conf").write_text("")
    for path, content in apt.files.items():
        target = _inside(root, path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.startswith(_SOURCES):
            text = _rewrite_sources(content.decode(), path, apt, root, mirrors)
            content = text.encode()
        target.write_bytes(content)
    mirrored = {host: image for image, host in mirrors.items()}
    return _Tree(where, apt, mirrored)


def _inside(root: Path, path: str) -> Path:
    """Where a file of the image goes in the tree; never outside it."""
    pure = PurePosixPath(path)
    if not pure.is_absolute() or ".." in pure.parts:
        raise UpstreamError(f"the recorded apt state holds a file at {path!r}: not a plain path")
    return root.joinpath(*pure.parts[1:])


def _rewrite_sources(
    text: str, path: str, apt: AptState, root: Path, mirrors: Mapping[str, str]
) -> str:
    """Signed-By paths -> the tree's copies; image URIs -> the host's mirrors."""
    keyrings: set[str] = set()
    for found in _SIGNED_BY.finditer(text):
        value = found.group(1) or found.group(2)
        keyrings.update(word for word in re.split(r"[\s,]+", value) if word.startswith("/"))
    for keyring in sorted(keyrings):
        if keyring not in apt.files:
            raise UpstreamError(
                f"{path} names the keyring {keyring} in Signed-By, but the bake did not capture "
                "it: the source cannot be verified. Rebake the version to capture its apt state."
            )
    copies = {keyring: str(_inside(root, keyring)) for keyring in keyrings}
    text = _replace_all(text, copies, lambda p: "")
    # A prefix matches whole path segments: file:/srv/a is not file:/srv/ab's mirror.
    return _replace_all(text, mirrors, lambda p: "" if p.endswith("/") else r"(?=[/\s\]]|$)")


def _replace_all(text: str, new: Mapping[str, str], end: Callable[[str], str]) -> str:
    """Each key of ``new`` replaced by its value in one pass, longest first: a replacement is
    never rewritten again by another entry (a private keyring path ends in the image's path)."""
    if not new:
        return text
    olds = sorted(new, key=len, reverse=True)
    pattern = "|".join(re.escape(old) + end(old) for old in olds)
    return re.sub(pattern, lambda found: new[found.group(0)], text, flags=re.M)


@contextmanager
def _status_file(tree: _Tree, packages: Sequence[Package]) -> Iterator[Path]:
    """A dpkg status file that says the packages are installed: all apt needs to know."""
    arches: dict[str, set[str]] = {}
    for package in packages:
        arches.setdefault(package.name, set()).add(package.arch)
    stanzas = []
    for package in packages:
        # Co-installed architectures of one package must be Multi-Arch: same for apt.
        multi = "Multi-Arch: same\n" if len(arches[package.name]) > 1 else ""
        stanzas.append(
            f"Package: {package.name}\nStatus: install ok installed\n"
            f"Version: {package.version}\nArchitecture: {package.arch}\n{multi}"
        )
    with tempfile.NamedTemporaryFile("w", dir=tree.dir, suffix=".status") as status:
        status.write("\n".join(stanzas))
        status.flush()
        yield Path(status.name)


def _apt(
    tree: _Tree, argv: list[str], status: Path | None = None
) -> subprocess.CompletedProcess[str]:
    options = tree.options(status or tree.dir / "empty.status")
    if status is None:
        (tree.dir / "empty.status").touch()
    try:
        return subprocess.run(
            [argv[0], *options, *argv[1:]],
            env=tree.env(),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
    except FileNotFoundError as exc:
        raise ToolError(f"{argv[0]} is not installed: the upstream check needs apt") from exc
    except subprocess.TimeoutExpired as exc:
        raise UpstreamError(f"{' '.join(argv)} took over {RUN_TIMEOUT} s; gave up") from exc


def _update(tree: _Tree, keys: Sequence[str]) -> None:
    """`apt-get update`: fetch and verify every source, or say precisely which failed."""
    done = _apt(tree, ["apt-get", "update"])
    failures = _update_failures(done.stdout, done.stderr)
    if done.returncode == 0 and not failures:
        return
    if not failures:
        said = (done.stderr or done.stdout).splitlines()
        failures = [line for line in said if line.strip()][-5:] or ["(apt said nothing)"]
    mirrors = [
        f"the image's {image} is read from {host}"
        for host, image in tree.mirrored.items()
        if any(host in line for line in failures)
    ]
    raise UpstreamError(
        f"apt could not fetch or verify the sources of {', '.join(keys)} (exit code "
        f"{done.returncode}), so their pending updates are unknown:\n  "
        + "\n  ".join(failures)
        + (f"\n({'; '.join(mirrors)})" if mirrors else "")
        + "\nFix the mirror, its signature or the keyring, or the mirror map, and check again.",
        sources=failures,
    )


def _update_failures(stdout: str, stderr: str) -> list[str]:
    """One line per source apt-get update could not fetch or verify, naming its URI and suite:
    its Err items (with their reason), and the E:/W: lines that do not repeat them."""
    found: list[str] = []
    lines = stdout.splitlines()
    for index, line in enumerate(lines):
        item = _ERR_ITEM.match(line)
        if item:
            reason = lines[index + 1].strip() if index + 1 < len(lines) else ""
            found.append(f"{item.group(1)}: {reason}")
    said = [line for line in stderr.splitlines() if _FAILURE.match(line)]
    if found:
        said = [line for line in said if not _REPEATS.match(line)]
    return list(dict.fromkeys(found + said))


def _releases(tree: _Tree) -> dict[str, dict[str, str]]:
    """`apt-cache policy`'s package files -> their Release fields (a=, n=, l=, o=...)."""
    done = _apt(tree, ["apt-cache", "policy"])
    if done.returncode != 0:
        raise UpstreamError(f"apt-cache policy failed: {done.stderr.strip()}")
    found: dict[str, dict[str, str]] = {}
    current = ""
    for line in done.stdout.splitlines():
        release = _RELEASE.match(line)
        if release and current:
            pairs = re.split(r",(?=\w=)", release.group(1))
            found[current] = dict(pair.split("=", 1) for pair in pairs if "=" in pair)
            continue
        file = _FILE.match(line)
        if file:
            current = file.group(2)
    return found


def _pending(
    tree: _Tree, packages: Sequence[Package], releases: Mapping[str, Mapping[str, str]]
) -> list[PendingUpdate]:
    if not packages:
        return []
    native = tree.apt.architecture
    names = [f"{p.name}:{native if p.arch == 'all' else p.arch}" for p in packages]
    with _status_file(tree, packages) as status:
        done = _apt(tree, ["apt-cache", "policy", *names], status)
    if done.returncode != 0:
        raise UpstreamError(f"apt-cache policy failed: {done.stderr.strip()}")
    # apt names an Architecture: all package by the native architecture: say it as recorded.
    recorded = {(p.name, native if p.arch == "all" else p.arch): p.arch for p in packages}
    found = (
        replace(update, arch=recorded.get((update.name, update.arch), update.arch))
        for update in _parse_policy(done.stdout, releases, native)
    )
    return sorted(found, key=lambda u: (u.name, u.arch))


def _parse_policy(
    text: str, releases: Mapping[str, Mapping[str, str]], native: str
) -> Iterator[PendingUpdate]:
    """The packages of `apt-cache policy NAME...` whose candidate is newer than the installed
    version. apt lists a package's versions highest first (its cache keeps them sorted), so a
    candidate above the installed (***) line is newer: apt compared them, not kiln."""
    for block in re.split(r"\n(?=\S)", text):
        lines = block.splitlines()
        header = _HEADER.match(lines[0]) if lines else None
        if header is None:
            continue
        name, _, arch = header.group(1).partition(":")
        fields = dict(line.strip().split(": ", 1) for line in lines[1:3] if ": " in line)
        candidate = fields.get("Candidate", "(none)")
        sources = _candidate_sources(lines[3:], candidate)
        if sources is None or candidate == fields.get("Installed"):
            continue
        found = [releases.get(source, {}) for source in sources]
        suites = tuple(dict.fromkeys(r.get("n") or r.get("a", "") for r in found if r))
        yield PendingUpdate(
            name=name,
            arch=arch or native,
            installed=fields.get("Installed", ""),
            candidate=candidate,
            suites=suites,
            security=any(_is_security(r) for r in found),
        )


def _candidate_sources(table: Sequence[str], candidate: str) -> list[str] | None:
    """The package files of the candidate, if it is listed above the installed version."""
    sources: list[str] | None = None
    collecting = False
    for line in table:
        version = _VERSION.match(line)
        if version:
            if version.group(1) == "***":
                return sources
            collecting = sources is None and version.group(2) == candidate
            if collecting:
                sources = []
            continue
        source = _SOURCE.match(line)
        if source and collecting and sources is not None:
            sources.append(source.group(2))
    return None


def _is_security(release: Mapping[str, str]) -> bool:
    suite, codename = release.get("a", ""), release.get("n", "")
    return (
        suite.endswith("-security")
        or codename.endswith("-security")
        or "Security" in release.get("l", "")
    )
