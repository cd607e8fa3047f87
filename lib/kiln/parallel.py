"""Baking several roles at once: parents before children, independent roles side by side.

Each role is one job on a worker thread with its own Baker and its own registry connection (an
sqlite3 connection belongs to the thread that opened it). A failed role stops its descendants,
never unrelated roles. Bases are no jobs of their own: the bake lock in kiln.bake serialises two
roles that share a stale base, and the second finds the first one's version when it gets the lock.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from kiln import lint, packer
from kiln.bake import BakeOptions, BakeOutcome, Baker, open_registry
from kiln.console import Reporter
from kiln.errors import DefinitionError, ImageMoved, Interrupted, KilnError
from kiln.fingerprint import FingerprintMemo
from kiln.model import Project, Role
from kiln.registry import Registry, Version

INTERRUPT_GRACE_S = 150


@dataclass
class Job:
    """One role of a parallel bake and what became of it."""

    role: Role
    force: bool
    requested: bool
    parent: str | None  # the parent's job, when the parent is baked in the same run
    state: str = "pending"  # pending, running, baked, cached, failed, skipped
    outcomes: list[BakeOutcome] = field(default_factory=list)
    error: KilnError | None = None

    @property
    def name(self) -> str:
        return self.role.name

    @property
    def outcome(self) -> BakeOutcome | None:
        return self.outcomes[-1] if self.outcomes else None


@dataclass
class BatchResult:
    """Every job of a run, parents first."""

    jobs: list[Job]
    interrupted: bool = False

    @property
    def failed(self) -> list[Job]:
        return [j for j in self.jobs if j.state == "failed"]

    @property
    def skipped(self) -> list[Job]:
        return [j for j in self.jobs if j.state == "skipped"]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped and not self.interrupted


def select_roles(project: Project, names: Sequence[str], *, all_roles: bool) -> list[Role]:
    """The roles asked for, by name or all of them, each once, in definition order."""
    if all_roles:
        if names:
            raise DefinitionError("give role names or all, not both")
        return list(project.roles)
    if not names:
        raise DefinitionError("name at least one role to bake, or all")
    wanted = {project.role_named(n).name for n in names}
    return [r for r in project.roles if r.name in wanted]


def plan_jobs(roles: Sequence[Role], *, force: bool, ancestors: bool = True) -> list[Job]:
    """Jobs for roles and their Role ancestors, parents first; force applies to roles only.

    ancestors=False for targets that bake a role's whole chain in one pass (qemu).
    """
    requested = {r.name for r in roles}
    jobs: dict[str, Job] = {}
    for role in roles:
        for node in role.ancestry():
            if not isinstance(node, Role) or node.name in jobs:
                continue
            if not ancestors and node.name not in requested:
                continue
            parent = node.parent.name if isinstance(node.parent, Role) else None
            parent = parent if parent in jobs else None
            jobs[node.name] = Job(
                role=node,
                force=force and node.name in requested,
                requested=node.name in requested,
                parent=parent,
            )
    return list(jobs.values())


def default_jobs() -> int:
    return max(1, os.cpu_count() or 1)


BakerFactory = Callable[[Project, str, Reporter], Baker]


def bake_many(
    project: Project,
    roles: Sequence[Role],
    *,
    jobs: int | None = None,
    force: bool = False,
    target: str = "docker",
    accel: str | None = None,
    reporter: Reporter,
    options: BakeOptions | None = None,
    baker_factory: BakerFactory | None = None,
) -> BatchResult:
    """Bake roles in dependency order, up to `jobs` at a time; never raises for a failed role.

    Requested roles that are up to date are reported as cached without starting anything, which
    keeps `invoke bake web` with nothing changed as fast as one registry look-up. Each job gets
    its Baker from baker_factory(project, target, reporter), with a registry connection of its
    own; by default a Baker with options (skip_tests, check_idempotence) and accel.
    """
    options = options or BakeOptions()

    def make_baker(registry: Registry | None = None) -> Baker:
        return Baker(
            project,
            target=target,
            # One registry connection per thread: sqlite3 connections stay on their own thread.
            registry=registry or open_registry(project),
            reporter=reporter,
            skip_tests=options.skip_tests,
            check_idempotence=options.check_idempotence,
            accel=accel,
        )

    with open_registry(project) as registry:
        stale, cached = _split_cached(make_baker(registry), roles, force=force, reporter=reporter)
    from kiln.targets import get_target

    planned = plan_jobs(stale, force=force, ancestors=not get_target(target).flattens_chain())
    result = BatchResult(jobs=planned + cached)
    if planned:
        lint.prepare(project, [job.role for job in planned])

        def job_baker() -> Baker:
            if baker_factory is not None:
                return baker_factory(project, target, reporter)
            return make_baker()

        _run_jobs(result, planned, job_baker, reporter, max(1, jobs or default_jobs()))
    return result


def _split_cached(
    probe: Baker, roles: Sequence[Role], *, force: bool, reporter: Reporter
) -> tuple[list[Role], list[Job]]:
    """The roles to bake, and a finished job for each requested role that is up to date."""
    stale: list[Role] = []
    cached: list[Job] = []
    memo = FingerprintMemo()  # the roles share ancestors: fingerprint each once
    for role in roles:
        hit = None if force else _up_to_date(probe, role, memo)
        if hit is None:
            stale.append(role)
            continue
        outcome = BakeOutcome(version=hit, baked=False)
        job = Job(role, False, True, None, state="cached", outcomes=[outcome])
        cached.append(job)
        try:
            probe.push_tested(job.outcomes)  # a push that failed before is retried here
        except KilnError as error:
            job.state, job.error = "failed", error
            reporter.finished(role.name, "failed", str(error).splitlines()[0])
            continue
        reporter.finished(
            role.name,
            "cached",
            f"up to date at version {hit.version} (fingerprint {hit.fingerprint[:12]}); "
            "nothing baked",
        )
    return stale, cached


def _run_jobs(
    result: BatchResult,
    planned: list[Job],
    make_baker: Callable[[], Baker],
    reporter: Reporter,
    workers: int,
) -> None:
    """Run planned jobs on up to workers threads, parents first; Ctrl-C stops every packer."""
    by_name = {j.name: j for j in planned}
    for job in planned:
        reporter.waiting(job.name)

    def run(job: Job) -> list[BakeOutcome]:
        baker = make_baker()
        try:
            return baker.bake(job.name, force=job.force)
        finally:
            baker.registry.close()

    def ready() -> list[Job]:
        return [
            j
            for j in planned
            if j.state == "pending" and (j.parent is None or by_name[j.parent].state in OK_STATES)
        ]

    running: dict[Future[list[BakeOutcome]], Job] = {}
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kiln-bake")
    try:
        while True:
            if not result.interrupted:
                for job in ready()[: max(0, workers - len(running))]:
                    job.state = "running"
                    running[pool.submit(run, job)] = job
            if not running:
                break
            done, _ = wait(running, timeout=1.0, return_when=FIRST_COMPLETED)
            for future in done:
                _settle(running.pop(future), future, by_name, reporter)
    except KeyboardInterrupt:
        result.interrupted = True
        reporter.message("kiln", "interrupted: asking every running packer to remove its builder")
        packer.interrupt_running()
        wait(running, timeout=INTERRUPT_GRACE_S)
        for future, job in running.items():
            if future.done():
                _settle(job, future, by_name, reporter)
    finally:
        pool.shutdown(wait=not result.interrupted, cancel_futures=True)
    for job in planned:
        if job.state in ("pending", "running"):
            job.state = "skipped"
            reporter.finished(job.name, "skipped", "interrupted")


OK_STATES = ("baked", "cached")


def _up_to_date(probe: Baker, role: Role, memo: FingerprintMemo) -> Version | None:
    fingerprints, _secrets = probe.fingerprints(role, memo)
    try:
        return probe.cached_version(role, fingerprints[role.name])
    except ImageMoved:
        return None  # its own job reports it, and the other roles still bake


def _settle(
    job: Job, future: Future[list[BakeOutcome]], jobs: dict[str, Job], reporter: Reporter
) -> None:
    error = future.exception()
    if error is None:
        job.outcomes = future.result()
        leaf = job.outcomes[-1]
        job.state = "baked" if leaf.baked else "cached"
        took = f" in {leaf.version.bake_seconds:.1f}s" if leaf.baked else ""
        reporter.finished(job.name, job.state, f"{leaf.version.label}{took}")
        return
    job.state = "failed"
    if not isinstance(error, KilnError):
        # A bug, not a bake failure: keep the traceback for whoever reads the error.
        wrapped = KilnError(f"bake of {job.name} crashed: {error!r}")
        wrapped.__cause__ = error
        error = wrapped
    job.error = error
    reporter.finished(job.name, "failed", str(error).splitlines()[0])
    for other in _descendants(job.name, jobs):
        if other.state == "pending":
            other.state = "skipped"
            reporter.finished(other.name, "skipped", f"its ancestor {job.name} failed")


def _descendants(name: str, jobs: dict[str, Job]) -> list[Job]:
    out: list[Job] = []
    frontier = [name]
    while frontier:
        parent = frontier.pop()
        for job in jobs.values():
            if job.parent == parent:
                out.append(job)
                frontier.append(job.name)
    return out


def summary_rows(result: BatchResult) -> list[dict[str, object]]:
    """One row per job for the closing table (and --json)."""
    rows: list[dict[str, object]] = []
    for job in result.jobs:
        outcome = job.outcome
        version = outcome.version if outcome else None
        artifact = version.artifacts[0] if version and version.artifacts else None
        rows.append(
            {
                "role": job.name,
                "state": job.state,
                "version": version.version if version else None,
                "fingerprint": version.fingerprint if version else None,
                "parent": (
                    f"{version.parent_role} v{version.parent_version}"
                    if version and version.parent_role
                    else None
                ),
                "artifact": artifact.ref if artifact else None,
                "size_bytes": artifact.size_bytes if artifact else None,
                "seconds": version.bake_seconds if version and outcome and outcome.baked else 0.0,
                "timings": dict(outcome.timings) if outcome else {},
                "error": str(job.error) if job.error else None,
                "log_dir": str(outcome.log_dir) if outcome and outcome.log_dir else None,
            }
        )
    return rows


def parse_role_spec(spec: str, project: Project) -> tuple[list[str], bool]:
    """`web`, `web,worker` or `all` as (names, all roles). Invoke has no variadic positionals."""
    names = [n.strip() for n in spec.replace(" ", ",").split(",") if n.strip()]
    if names == ["all"] and not any(node.name == "all" for node in project):
        return [], True
    return names, False


def chain_outcomes(result: BatchResult, role: str) -> list[BakeOutcome]:
    """The outcomes along role's ancestry, base first, as `Baker.bake` would return them.

    Each job reports its whole chain; an ancestor counts as baked if any job of the run baked it.
    """
    found: dict[str, BakeOutcome] = {}
    for job in result.jobs:
        for outcome in job.outcomes:
            name = outcome.version.role
            if name not in found or (outcome.baked and not found[name].baked):
                found[name] = outcome
    leaf = next((j for j in result.jobs if j.name == role), None)
    if leaf is None or leaf.outcome is None:
        return []
    return [found[n.name] for n in leaf.role.ancestry() if n.name in found]


def failure(result: BatchResult) -> KilnError | None:
    """The error a command exits with: the failure itself if there is one, else a count."""
    if result.interrupted:
        return Interrupted("interrupted; running bakes were stopped and their builders removed")
    if len(result.failed) == 1 and not result.skipped:
        return result.failed[0].error
    if result.failed or result.skipped:
        failed = ", ".join(j.name for j in result.failed)
        skipped = ", ".join(j.name for j in result.skipped)
        return KilnError(
            f"{len(result.failed)} role(s) failed ({failed})"
            + (f"; not baked because an ancestor failed: {skipped}" if skipped else "")
            + ". Each failure is above, with its logs under .kiln/logs/<role>/<version>/."
        )
    return None
