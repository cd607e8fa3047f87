"""Benchmark: `invoke outdated --upstream` over every recorded role, cold and warm cache.

In a scratch copy of the project (the integration tests' sandbox) with web baked (not timed),
which records debian-bookworm, base and web with Debian's sources, times, alternating round by
round:
  baseline  apt-get update of the same sources into an empty lists directory (cold), then
            again into the kept one (warm): what apt itself pays to fetch and verify them
  kiln      invoke outdated --upstream --json with an empty cache directory (cold), then again
            with the kept one (warm): the lists, plus every version's candidates
Prints medians and the ratios. Target: at most 10 s for all roles with the cache warm. Needs
Debian's mirror.

Run from the repository root: .venv/bin/python bench/upstream.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from _common import INVOKE, bench_env, load, make_sandbox, median, run, timed

TARGET_WARM_S = 10.0
#: The sources a base bootstrapped by mmdebstrap has (its /etc/apt/sources.list).
SOURCES = """\
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
"""


def apt_update_argv(tree: Path) -> list[str]:
    """Plain apt-get update of SOURCES into tree, with the host's keyrings."""
    (tree / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (tree / "sources.list").write_text(SOURCES)
    return [
        "apt-get", "update", "-qq",
        f"-oDir::State::Lists={tree / 'lists'}",
        f"-oDir::Etc::sourcelist={tree / 'sources.list'}",
        "-oDir::Etc::sourceparts=/nonexistent",
        f"-oDir::Cache={tree / 'cache'}",
        "-oAcquire::Languages=none",
        "-oAcquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false",
        "-oAPT::Sandbox::User=root",
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    samples: dict[str, list[float]] = {
        k: [] for k in ("apt cold", "apt warm", "kiln cold", "kiln warm")
    }
    with tempfile.TemporaryDirectory(prefix="kiln-bench-upstream-") as tmp:
        box = make_sandbox(Path(tmp))
        env, cwd = bench_env(box), box.root
        try:
            print(f"preparing: invoke bake web ({load()})", flush=True)
            run([*INVOKE, "bake", "web"], cwd=cwd, env=env)
            check = [*INVOKE, "outdated", "--upstream", "--json"]
            for round_ in range(args.rounds):
                apt_tree, cache = Path(tmp) / f"apt-{round_}", Path(tmp) / f"cache-{round_}"
                argv = apt_update_argv(apt_tree)
                samples["apt cold"].append(timed(argv, cwd=cwd))
                samples["apt warm"].append(timed(argv, cwd=cwd))
                kiln_env = {**env, "XDG_CACHE_HOME": str(cache)}
                samples["kiln cold"].append(timed(check, cwd=cwd, env=kiln_env))
                samples["kiln warm"].append(timed(check, cwd=cwd, env=kiln_env))
                shutil.rmtree(apt_tree)
            report = json.loads(run(check, cwd=cwd, env=kiln_env).stdout)
        finally:
            box.cleanup()
    medians = {name: median(values) for name, values in samples.items()}
    for name, value in medians.items():
        print(f"{name:<10} median {value:6.2f} s over {args.rounds} rounds")
    images = report["images"]
    pending = sum(len(i["updates"]) for i in images)
    security = sum(i["security_updates"] for i in images)
    labels = ", ".join(f"{i['role']} v{i['version']}" for i in images)
    print(f"{len(images)} images checked ({labels}); {pending} pending, {security} security")
    warm = medians["kiln warm"]
    print(
        f"kiln / apt: cold {medians['kiln cold'] / medians['apt cold']:.2f}, warm "
        f"{warm / medians['apt warm']:.2f}; warm {warm:.2f} s "
        f"({'meets' if warm <= TARGET_WARM_S else 'misses'} the {TARGET_WARM_S:.0f} s target) "
        f"({load()})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
