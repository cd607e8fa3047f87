"""Benchmark: a no-op bake and `history` over 10,000 versions, on SQLite and PostgreSQL at once.

In a scratch project (the integration tests' sandbox), bakes web (not timed) and copies its
registry with `invoke registry-copy` into a fresh database of a throwaway PostgreSQL cluster
(tests/postgres_cluster.py, on a unix socket). A second SQLite registry gets 10,000 versions of
web (the baked version under new numbers and fingerprints, through Registry.record_version; every
50th on three channels) and is copied into a second database the same way. KILN_REGISTRY_URL
picks the registry. Then, in rounds that alternate which backend goes first, on each backend:
  no-op bake  `invoke bake web` with nothing changed (the whole process, wall time)
  history     `invoke history web` over the 10,000 versions (the whole process, wall time)
  in-process  kiln.lifecycle.history(registry, "web") in this process on an open registry: the
              queries and their rows, without the start of Python, invoke and kiln
Prints each round, the medians, PostgreSQL / SQLite (of the medians, and the median of the round
pairs) and the targets: no-op bake < 1 s and history < 300 ms, each on both backends. kiln's
modules are byte-compiled first, as an installed kiln's are.

Run from the repository root: .venv/bin/python bench/registry_backends.py [--rounds 10]
Needs Docker and Debian's postgresql package (initdb and pg_ctl under /usr/lib/postgresql).
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from _common import INVOKE, REPO, Sandbox, bench_env, load, make_sandbox, median, ratios, run, timed

sys.path.append(str(REPO / "tests"))  # postgres_cluster: the tests' throwaway PostgreSQL
import kiln
from kiln import lifecycle
from kiln.registry import Registry, Version
from postgres_cluster import MISSING, PostgresCluster, server_bin

VERSIONS = 10_000
NOOP_TARGET_S = 1.0
HISTORY_TARGET_S = 0.300
BACKENDS = ("sqlite", "postgresql")
#: What is timed per backend and round, with its target in seconds (None: no target).
MEASURES = {"no-op bake": NOOP_TARGET_S, "history": HISTORY_TARGET_S, "in-process": None}


def fill_history(url: str, baked: Version) -> None:
    """VERSIONS versions of web, each the baked one under a new number and fingerprint."""
    with Registry(url) as registry:
        for number in range(1, VERSIONS + 1):
            registry.record_version(
                replace(
                    baked,
                    version=number,
                    fingerprint=hashlib.sha256(str(number).encode()).hexdigest(),
                    status="failed" if number % 7 == 0 else "tested",
                    git_dirty=number % 3 == 0,
                    artifacts=tuple(
                        replace(a, ref=a.ref.rsplit(":", 1)[0] + f":{number}")
                        for a in baked.artifacts
                    ),
                )
            )
        with registry.transaction() as tx:
            for number in range(1, VERSIONS, 50):
                for channel in ("dev", "staging", "prod"):
                    tx.set_channel(
                        role="web", channel=channel, version=number, action="promote",
                        actor="bench",
                    )  # fmt: skip


def registry_env(box: Sandbox, url: str) -> dict[str, str]:
    """The sandbox's environment, with kiln's registry at url."""
    return {**bench_env(box), "KILN_REGISTRY_URL": url}


def copy_into(cluster: PostgresCluster, source: str, box: Sandbox) -> str:
    """A new database of cluster holding the registry at source, copied by `registry-copy`."""
    url = cluster.new_database()
    # registry-copy ends with VACUUM (ANALYZE): every round sees the copy as it is once in use.
    run([*INVOKE, "registry-copy", "--to", url], cwd=box.root, env=registry_env(box, source))
    return url


def timed_in_process(registry: Registry) -> float:
    """Wall seconds of lifecycle.history of web: the query and its rows, no process start."""
    started = time.perf_counter()
    result = lifecycle.history(registry, "web")
    seconds = time.perf_counter() - started
    assert len(result.versions) == VERSIONS, len(result.versions)
    return seconds


def prepare(box: Sandbox, cluster: PostgresCluster, scratch: Path) -> dict[str, dict[str, str]]:
    """The registries of each backend: {"no-op bake": web baked, "history": VERSIONS of web}."""
    print(f"preparing: invoke bake web until it is up to date ({load()})", flush=True)
    run([*INVOKE, "bake", "web"], cwd=box.root, env=bench_env(box))
    baked_url = f"sqlite:///{box.root / '.kiln' / 'registry.db'}"
    with Registry(baked_url) as baked_registry:
        baked = baked_registry.latest("web")
    assert baked is not None
    started = time.perf_counter()
    history_url = f"sqlite:///{scratch / 'history.db'}"
    fill_history(history_url, baked)
    print(f"preparing: {VERSIONS:,} versions of web recorded in {time.perf_counter() - started:.1f}"
          f" s; copying both registries into PostgreSQL ({load()})", flush=True)  # fmt: skip
    # kiln's modules compiled, as an installed kiln has them: invoke never writes bytecode
    # (it sets sys.dont_write_bytecode unless given --write-pyc), so a checkout may lack it.
    compileall.compile_dir(Path(kiln.__file__).parent, quiet=1)
    return {
        "no-op bake": {"sqlite": baked_url, "postgresql": copy_into(cluster, baked_url, box)},
        "history": {"sqlite": history_url, "postgresql": copy_into(cluster, history_url, box)},
    }


def one_round(
    box: Sandbox, urls: dict[str, dict[str, str]], registries: dict[str, Registry], first: int
) -> dict[str, dict[str, float]]:
    """Each measure on each backend, the backends in turn, starting with BACKENDS[first]."""
    took: dict[str, dict[str, float]] = {}
    for backend in BACKENDS[first:] + BACKENDS[:first]:
        noop_env = registry_env(box, urls["no-op bake"][backend])
        history_env = registry_env(box, urls["history"][backend])
        took[backend] = {
            "no-op bake": timed([*INVOKE, "bake", "web"], cwd=box.root, env=noop_env),
            "history": timed([*INVOKE, "history", "web"], cwd=box.root, env=history_env),
            "in-process": timed_in_process(registries[backend]),
        }
    return took


def check_nothing_baked(box: Sandbox, urls: dict[str, str]) -> None:
    """Every timed bake was a no-op: web is still up to date at v1 on both backends."""
    for url in urls.values():
        out = run([*INVOKE, "bake", "web"], cwd=box.root, env=registry_env(box, url)).stdout
        assert "up to date" in out or "cached" in out, out
        with Registry(url) as registry:
            assert [v.version for v in registry.history("web")] == [1], url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    bindir = server_bin()
    if bindir is None:
        sys.exit(MISSING)
    samples: dict[str, dict[str, list[float]]] = {b: {m: [] for m in MEASURES} for b in BACKENDS}
    with tempfile.TemporaryDirectory(prefix="kiln-bench-registry-") as tmp:
        box = make_sandbox(Path(tmp))
        cluster = PostgresCluster(bindir)
        try:
            cluster.start()
            urls = prepare(box, cluster, Path(tmp))
            with ExitStack() as stack:
                registries = {
                    b: stack.enter_context(Registry(urls["history"][b])) for b in BACKENDS
                }
                for registry in registries.values():
                    timed_in_process(registry)  # warm: imports, caches, the connection
                for index in range(args.rounds):
                    took = one_round(box, urls, registries, first=index % 2)
                    for backend, figures in took.items():
                        for measure, seconds in figures.items():
                            samples[backend][measure].append(seconds)
                    print(f"round {index + 1}: " + ", ".join(
                        f"{b} {f['no-op bake']:.2f} s / {f['history'] * 1000:.0f} ms / "
                        f"{f['in-process'] * 1000:.0f} ms" for b, f in took.items()
                    ) + f" ({load()})", flush=True)  # fmt: skip
            check_nothing_baked(box, urls["no-op bake"])
        finally:
            cluster.remove()
            box.cleanup()
    report(samples, args.rounds)
    return 0


def report(samples: dict[str, dict[str, list[float]]], rounds: int) -> None:
    print(f"medians of {rounds} rounds (round by round: no-op bake / history / in-process):")
    print(f"{'':<12} {'SQLite':>10} {'PostgreSQL':>11} {'PG / SQLite':>12} {'of pairs':>9}  target")
    for measure, target in MEASURES.items():
        lite, pg = samples["sqlite"][measure], samples["postgresql"][measure]
        of_medians, of_pairs = ratios(pg, lite)
        verdict = ""
        if target is not None:
            verdict = f"< {target * 1000:.0f} ms: " + ", ".join(
                f"{name} {'met' if median(values) < target else 'MISSED'}"
                for name, values in (("SQLite", lite), ("PostgreSQL", pg))
            )
        print(
            f"{measure:<12} {median(lite) * 1000:>7.0f} ms {median(pg) * 1000:>8.0f} ms "
            f"{of_medians:>12.2f} {of_pairs:>9.2f}  {verdict}"
        )
    print(f"history: {VERSIONS:,} versions of web; in-process: lifecycle.history on an open "
          f"connection ({load()})")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
