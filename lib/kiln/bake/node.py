"""Baking one node once the Baker has decided it must: bootstrap a base, or run Packer for a role.

Each runs inside nested context managers (work directory, pending artifact): whatever fails, no
artifact and no work files are left, and only a recorded version keeps its artifact.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from kiln import tools
from kiln.ansible_events import strategy_of
from kiln.bake.audit import audit_rendered_playbook, audit_role
from kiln.bake.failures import raise_for_run, write_failure
from kiln.bake.invocation import PackerInvocation, keep_events, packer_env
from kiln.bake.plugins import install_plugins
from kiln.bake.policy import BakePolicy
from kiln.bake.record import (
    GitState,
    base_record,
    packer_phases,
    record_version,
    role_record,
)
from kiln.bake.scope import PendingArtifact, packer_temp_dir, pending_artifact, workspace
from kiln.console import Reporter
from kiln.fingerprint import Fingerprint
from kiln.image_facts import FACTS_FILE, read_facts
from kiln.image_names import ImageNames
from kiln.lint import LintVerdict
from kiln.model import Base, Project, Role
from kiln.packer import PackerRun, run_packer
from kiln.private_files import log_dir as private_log_dir
from kiln.private_files import private_open
from kiln.redact import Redactor
from kiln.registry import Registry, Version, VersionStatus
from kiln.render import write_if_changed
from kiln.secret_files import secret_vars_file
from kiln.targets.base import BakePlan, BakeTarget
from kiln.watchdog import Lease, watchdog

#: How long the reap keeps looking for a builder still being created after kiln stopped packer.
REAP_SETTLE_S = 5.0
REAP_INTERVAL_S = 0.5


@dataclass(frozen=True)
class Built:
    """A version baked and recorded, not yet through its acceptance gate."""

    record: Version
    log_dir: Path
    redact: Redactor | None = None


@dataclass(frozen=True)
class NodeBake:
    """Bakes and records one node on one target; the new versions get status."""

    project: Project
    target: BakeTarget
    registry: Registry
    #: The names new images get: the project's, in this registry (Baker.images).
    images: ImageNames
    reporter: Reporter
    git_state: Callable[[], GitState]
    status: VersionStatus
    check_idempotence: bool = False

    def bootstrap(
        self, base: Base, fingerprint: Fingerprint, *, reason: str | None = None
    ) -> Built:
        started = time.monotonic()
        version = self.registry.allocate_version(base.name)
        log_dir = self._log_dir(base.name, version)
        self.reporter.phase(base.name, "base", f"bootstrapping {base.suite} as version {version}")
        with pending_artifact(self.target, None, version) as pending:
            with private_open(log_dir / "bootstrap.log") as log:
                artifact = self.target.bootstrap_base(
                    self.project,
                    self.images,
                    base,
                    version,
                    fingerprint.digest,
                    partial(print, file=log),
                    reuse=reason is None,
                )
            pending.hold(artifact)
            facts = self.target.base_facts(artifact)
            took = time.monotonic() - started
            record = base_record(
                base,
                version,
                fingerprint,
                target=self.target.name,
                status=self.status,
                git=self.git_state(),
                took=took,
                artifact=artifact,
            )
            record_version(self.registry, record, facts, reason)
            pending.keep()
        self.reporter.phase(base.name, "base", f"version {version} ready in {took:.1f}s")
        return Built(record, log_dir)

    def role(
        self,
        role: Role,
        fingerprint: Fingerprint,
        parent: Version,
        secrets: Mapping[str, str],
        *,
        lint: LintVerdict | None,
        reason: str | None = None,
    ) -> Built:
        """Bake role on parent and record it; reason says why when its inputs are unchanged."""
        started = time.monotonic()
        packer = tools.which("packer")
        version = self.registry.allocate_version(role.name)
        log_dir = self._log_dir(role.name, version)
        redact = Redactor(list(secrets.values()))
        self.reporter.mask(secrets.values())
        plan = BakePlan(
            self.project,
            role,
            fingerprint,
            parent,
            self.target,
            self.images,
            check_idempotence=self.check_idempotence,
            packer_version=tools.packer_version(self.project.state_path),
        )
        with workspace(self.project.state_path / "work" / role.name / str(version)) as work:
            hcl = self._render(plan, version, work)
            timings = {"render": time.monotonic() - started}
            invocation = self._invocation(packer, plan, version, work)
            self._install_plugins(invocation, hcl, log_dir, redact, timings)
            with pending_artifact(self.target, plan, version) as pending:
                run = self._run_packer(invocation, secrets, log_dir, redact, timings)
                raise_for_run(
                    role,
                    version,
                    run,
                    log_dir=log_dir,
                    root=self.project.root,
                    redact=redact,
                    check_idempotence=self.check_idempotence,
                )
                record = self._record_role(
                    invocation, pending, timings, started, (lint, reason), (run, redact)
                )
                pending.keep()  # before the gate: a version that fails its tests keeps its image
        return Built(record, log_dir, redact)

    def _render(self, plan: BakePlan, version: int, work: Path) -> str:
        """Audit the role, refuse a bad parent, render its files and audit the playbook.

        Returns the rendered HCL.
        """
        role, parent = plan.role, plan.parent
        assert parent is not None
        audit_role(self.project, role, self.reporter, work, warn=True)
        BakePolicy.refuse_unusable_parent(role, parent)
        self.reporter.phase(
            role.name, "render", f"version {version} on {parent.role} v{parent.version}"
        )
        files = self.target.render(plan)
        write_if_changed(files)
        audit_rendered_playbook(self.project, role, plan.playbook_path, work)
        return next(f.text for f in files if f.path == plan.hcl_path)

    def _install_plugins(
        self,
        invocation: PackerInvocation,
        hcl: str,
        log_dir: Path,
        redact: Redactor,
        timings: dict[str, float],
    ) -> None:
        """`packer init` when the HCL pins plugins (Packer 1.7+); adds its time to timings."""
        started = time.monotonic()
        if install_plugins(invocation, hcl, self.reporter, log_dir=log_dir, redact=redact):
            timings["plugins"] = time.monotonic() - started

    def _invocation(
        self, packer: str, plan: BakePlan, version: int, work: Path
    ) -> PackerInvocation:
        commit, dirty = self.git_state()
        return PackerInvocation(
            packer=packer,
            plan=plan,
            version=version,
            bake_id=f"{plan.role.name}:{version}:{uuid.uuid4().hex[:8]}",
            source_commit=f"{commit}{'-dirty' if dirty else ''}",
            work=work,
        )

    def _run_packer(
        self,
        invocation: PackerInvocation,
        secrets: Mapping[str, str],
        log_dir: Path,
        redact: Redactor,
        timings: dict[str, float],
    ) -> PackerRun:
        """Run packer in the target's bake session; adds its phases to timings.

        The secrets file is made last and removed first: it exists only while packer runs.
        """
        plan, work, role = invocation.plan, invocation.work, invocation.plan.role.name
        self.reporter.phase(role, "builder start", f"packer build {plan.relative(plan.hcl_path)}")
        started = time.monotonic()
        stopped = True  # by kiln: Ctrl-C, a full disk, any exception while packer ran
        # Around kiln's own cleanup too: killed while it reaps, the watchdog still reaps.
        with watchdog(self._lease(invocation, log_dir)) as lease:
            try:
                with (
                    self.target.bake_session(plan, work) as session_vars,
                    packer_temp_dir() as temp_dir,
                    private_open(log_dir / "packer.log") as log,
                    _secrets_file(invocation.plan, secrets) as secret_file,
                ):
                    run = run_packer(
                        replace(invocation, secret_file=secret_file).argv(session_vars),
                        cwd=self.project.root,
                        env={
                            **packer_env(self.project, self.reporter, temp_dir),
                            **lease.env,
                            # kiln-ansible keeps ansible-runner's artifacts here, redacted.
                            "KILN_ANSIBLE_LOG_DIR": str(log_dir / "ansible"),
                        },
                        events_path=invocation.events_path,
                        log=log,
                        on_line=partial(self.reporter.packer_line, role),
                        on_event=partial(self.reporter.ansible_event, role),
                        redact=redact,
                    )
                    stopped = run.interrupted
            except OSError as exc:  # the log's disk is full: packer was stopped before this
                where = log_dir / "packer.log"
                version = invocation.version
                raise write_failure(plan.role, version, exc, where, self.project.root) from exc
            finally:
                self._reap(role, invocation.bake_id, settle=stopped)
                keep_events(work, log_dir, redact, self.reporter)
        timings.update(packer_phases(run, started))
        self._warn_without_mitogen(plan, run)
        return run

    def _lease(self, invocation: PackerInvocation, log_dir: Path) -> Lease:
        """What the watchdog ends if kiln dies during the run: packer's processes, the builder."""
        return Lease(
            target=self.target.name,
            role=invocation.plan.role.name,
            bake_id=invocation.bake_id,
            log=str(log_dir / "watchdog.log"),
        )

    def _reap(self, role: str, bake_id: str, *, settle: bool) -> None:
        """Remove what is left of the bake's builder; after a stop, look again a while.

        A `docker run` that packer had sent when kiln stopped it is still carried out by the
        engine, its client gone: that builder can appear after packer's exit and a first look.
        """
        self.target.reap_builders(role=role, bake_id=bake_id)
        deadline = time.monotonic() + (REAP_SETTLE_S if settle else 0)
        while time.monotonic() < deadline:
            time.sleep(REAP_INTERVAL_S)
            self.target.reap_builders(role=role, bake_id=bake_id)

    def _warn_without_mitogen(self, plan: BakePlan, run: PackerRun) -> None:
        """One warning (the reporter repeats none) when Mitogen was wanted and did not load."""
        strategy = strategy_of(run.events)
        if plan.role.mitogen and strategy is not None and not strategy.mitogen:
            self.reporter.warning(
                "kiln",
                f"Mitogen did not load ({strategy.fallback or 'no reason given'}): Ansible ran "
                "its linear strategy, slower, same image. Install a Mitogen release that supports "
                "this ansible-core, or set mitogen=False on the project or role.",
            )

    def _record_role(
        self,
        invocation: PackerInvocation,
        pending: PendingArtifact,
        timings: dict[str, float],
        started: float,
        why: tuple[LintVerdict | None, str | None],
        ran: tuple[PackerRun, Redactor],
    ) -> Version:
        """Collect the artifact and the image's facts, and record the new version with its lint
        verdict and, for unchanged inputs, the reason it was baked."""
        lint, reason = why
        run, redact = ran
        plan, version = invocation.plan, invocation.version
        assert plan.parent is not None
        record_started = time.monotonic()
        self.reporter.phase(plan.role.name, "record", f"version {version}")
        artifact = self.target.collect_artifact(plan, version)
        pending.hold(artifact)
        facts = read_facts(invocation.work / FACTS_FILE).redacted(redact)
        timings["record"] = time.monotonic() - record_started
        record = role_record(
            plan.role,
            version,
            plan.fingerprint,
            plan.parent,
            target=self.target.name,
            status=self.status,
            git=self.git_state(),
            timings=timings,
            took=time.monotonic() - started,
            artifact=artifact,
            lint=lint,
            strategy=strategy_of(run.events),
        )
        record_version(self.registry, record, facts, reason)
        return record

    def _log_dir(self, role: str, version: int) -> Path:
        return private_log_dir(self.project.state_path, role, version)


def _secrets_file(
    plan: BakePlan, secrets: Mapping[str, str]
) -> AbstractContextManager[Path | None]:
    """The extra-vars file of the plan's secrets on a tmpfs (kiln.secret_files), or None."""
    return secret_vars_file(secrets) if plan.secrets else nullcontext(None)
