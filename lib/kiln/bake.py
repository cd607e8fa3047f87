"""Baking: resolve a role's ancestry, skip what is up to date, run Packer for the rest.

A bake either records a whole version (artifact, packages, timings) or nothing at all; the builder
is removed whatever happens. Bakes of one role are serialised with a file lock, so a concurrent
second bake waits and then finds the first one's version.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
import time
import uuid
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from kiln import lint, requirements, tools
from kiln.console import NullReporter, Reporter
from kiln.errors import (
    BuildError,
    GuardError,
    Interrupted,
    ProvisionError,
    RegistryError,
    TestFailure,
)
from kiln.fingerprint import (
    Fingerprint,
    FingerprintMemo,
    fingerprint_chain,
    read_secret,
    secret_key,
)
from kiln.guard import (
    AuditReport,
    ansible_environment,
    audit_playbook,
    audit_roles,
    check_single_host_inventory,
    raise_for_findings,
)
from kiln.locks import file_lock
from kiln.model import Base, Node, Project, Role
from kiln.packer import PackerRun, run_packer
from kiln.redact import Redactor
from kiln.registry import Package, Registry, Version, utc_now
from kiln.render import write_if_changed
from kiln.targets import get_target
from kiln.targets.base import PLAYBOOK_TEMPLATE, BakePlan, Target, secret_vars_file


@dataclass(frozen=True)
class BakeOutcome:
    """What happened to one node of the chain: baked anew, or found up to date."""

    version: Version
    baked: bool
    timings: Mapping[str, float] = field(default_factory=dict)
    log_dir: Path | None = None


def open_registry(project: Project) -> Registry:
    return Registry(project.registry_path)


def role_lock(project: Project, role: str, reporter: Reporter) -> AbstractContextManager[None]:
    """Serialise bakes of one role across processes."""
    return file_lock(
        project.state_path / "locks" / f"{role}.lock",
        on_wait=lambda: reporter.message(
            role, "another bake of this role is running; waiting for it"
        ),
    )


class Baker:
    """Bakes roles of one project on one target, recording versions in its registry."""

    def __init__(
        self,
        project: Project,
        *,
        target: str = "docker",
        registry: Registry | None = None,
        reporter: Reporter | None = None,
        skip_tests: bool = False,
        check_idempotence: bool = False,
        accel: str | None = None,
    ) -> None:
        self.project = project
        #: Record new versions as untested instead of running their acceptance tests.
        self.skip_tests = skip_tests
        #: Run Ansible twice in each builder; a change in the second pass fails the bake.
        self.check_idempotence = check_idempotence
        self.target_name = target
        self.target: Target = get_target(target, accel=accel)
        self.registry = registry or open_registry(project)
        self.reporter = reporter or NullReporter()
        self._git: tuple[str, bool] | None = None
        #: Lint verdicts of the roles this Baker is about to build, recorded with their versions.
        self._lint: dict[str, lint.LintVerdict] = {}

    # -- public -----------------------------------------------------------------------------
    def fingerprints(
        self, role: Role, memo: FingerprintMemo | None = None
    ) -> tuple[dict[str, Fingerprint], dict[str, dict[str, str]]]:
        """Fingerprints of role and its ancestors, and the secret values read for them.

        memo (see fingerprint_chain) spares a run over many roles the work they share. Refuses
        to go on when what `invoke deps` installed differs from requirements.lock.
        """
        requirements.check_installed(self.project)
        secrets = {
            node.name: {
                name: read_secret(node.name, name, secret, self.project.root)
                for name, secret in node.secrets.items()
            }
            for node in role.ancestry()
            if isinstance(node, Role)
        }
        templates = {
            "hcl": self.project.templates_path / self.target.template,
            "playbook": self.project.templates_path / PLAYBOOK_TEMPLATE,
        }
        fingerprints = fingerprint_chain(
            role,
            content=self.project.content,
            templates_for=templates,
            recipe=self.target.recipe(),
            target=self.target_name,
            tools=tools.tool_versions(self.project.state_path),
            secret_values=secrets,
            key=secret_key(self.project.state_path),
            requirements=requirements.locked_content(self.project),
            memo=memo,
        )
        return fingerprints, secrets

    def bake(
        self,
        name: str,
        *,
        force: bool = False,
        skip_tests: bool | None = None,
        check_idempotence: bool | None = None,
    ) -> list[BakeOutcome]:
        """Bake role name and any stale ancestor; returns one outcome per node, base first.

        Every new version passes the acceptance gate (or is recorded untested with skip_tests);
        skip_tests and check_idempotence default to this Baker's settings.
        """
        if skip_tests is not None:
            self.skip_tests = skip_tests
        if check_idempotence is not None:
            self.check_idempotence = check_idempotence
        role = self.project.role_named(name)
        if not force:
            self._refuse_revoked_ancestors(role)
        fingerprints, secrets = self.fingerprints(role)
        if not force:
            hit = self.cached_version(role, fingerprints[name])
            if hit is not None:
                self.reporter.message(
                    name, f"up to date at version {hit.version} "
                    f"(fingerprint {hit.fingerprint[:12]}); nothing baked",
                )  # fmt: skip
                return [BakeOutcome(version=hit, baked=False)]
        # The guard first: it is static and fast, and nothing (not even a parent) is baked for a
        # role it refuses. Its warnings are printed by the audit just before the role's builder.
        self.audit(role, self.project.state_path / "work" / role.name, warn=False)
        self._before_builders(role, fingerprints, force=force)
        outcomes: list[BakeOutcome] = []
        parent: Version | None = None
        chain = role.ancestry()
        if self.target.flattens_chain:  # one bake on the base applies every layer's Ansible
            chain = [chain[0], role]
            secrets = {role.name: {k: v for values in secrets.values() for k, v in values.items()}}
        for node in chain:
            outcome = self._ensure(
                node,
                fingerprints[node.name],
                parent,
                force=force and node is role,
                secrets=secrets.get(node.name, {}),
            )
            outcomes.append(outcome)
            parent = outcome.version
        return outcomes

    # -- one node ---------------------------------------------------------------------------
    def _ensure(
        self,
        node: Node,
        fingerprint: Fingerprint,
        parent: Version | None,
        *,
        force: bool,
        secrets: Mapping[str, str],
    ) -> BakeOutcome:
        with role_lock(self.project, node.name, self.reporter):
            if not force:
                hit = self.cached_version(node, fingerprint)
                if hit is not None:
                    self.reporter.message(node.name, f"up to date at version {hit.version}")
                    return BakeOutcome(version=hit, baked=False)
                pending = self._untested(node, fingerprint)
                if pending is not None:  # recorded, but its gate was interrupted: finish it
                    self.reporter.message(node.name, f"{pending.label} is baked but not tested")
                    return self._gate(node, pending, baked=False, timings={}, log_dir=None)
            self.target.preflight()
            reaped = self.target.reap_builders(
                role=node.name, namespace=self.project.image_namespace
            )
            if reaped:
                self.reporter.warning(
                    node.name, f"removed {len(reaped)} builder(s) left by an interrupted bake"
                )
            if isinstance(node, Base):
                return self._bootstrap(node, fingerprint)
            assert parent is not None
            return self._bake_role(node, fingerprint, parent, secrets)

    def cached_version(self, node: Node, fingerprint: Fingerprint) -> Version | None:
        """The recorded version that makes a bake of node unnecessary, if its artifact exists."""
        hit = self.registry.find_reusable(node.name, fingerprint.digest, self.target_name)
        if hit is None:
            return None
        if hit.parent_role is not None and hit.parent_version is not None:
            # An image built on a revoked one inherits whatever made it revoked.
            parent = self.registry.get(hit.parent_role, hit.parent_version)
            if parent is None or parent.status == "revoked":
                return None
        if hit.status == "baked" and not self.skip_tests:
            return None  # its acceptance tests never ran: not ready to stand in for a bake
        artifact = hit.artifact(self.target_name)
        return hit if artifact is not None and self.target.artifact_exists(artifact) else None

    def _untested(self, node: Node, fingerprint: Fingerprint) -> Version | None:
        """A version with this fingerprint whose acceptance tests have not run yet."""
        if self.skip_tests:
            return None
        hit = self.registry.find_reusable(node.name, fingerprint.digest, self.target_name)
        if hit is None or hit.status != "baked":
            return None
        artifact = hit.artifact(self.target_name)
        return hit if artifact is not None and self.target.artifact_exists(artifact) else None

    def _before_builders(
        self, role: Role, fingerprints: Mapping[str, Fingerprint], *, force: bool
    ) -> None:
        """Checks that need no builder, for every node this bake may build: failed twins, lint."""
        for node in role.ancestry():
            forced = force and node is role
            fingerprint = fingerprints[node.name]
            if not forced and (
                self.cached_version(node, fingerprint) or self._untested(node, fingerprint)
            ):
                continue
            if not forced:
                self._refuse_failed_twin(node, fingerprint, role)
            if isinstance(node, Role):
                self._lint[node.name] = lint.check_role(self.project, node, reporter=self.reporter)

    def _refuse_failed_twin(self, node: Node, fingerprint: Fingerprint, leaf: Role) -> None:
        """Refuse to rebuild inputs whose newest version failed its tests: it would fail again."""
        twins = [
            v for v in self.registry.history(node.name)
            if v.fingerprint == fingerprint.digest and v.target == self.target_name
        ]  # fmt: skip
        if not twins or twins[0].status != "failed":
            return
        failed = twins[0]
        child = "" if node is leaf else f", and {leaf.name} is never baked on a failed parent"
        raise TestFailure(
            f"cannot bake {leaf.name}: {failed.label} has the same inputs and failed its "
            f"acceptance tests ({failed.status_reason or 'no reason recorded'}){child}. "
            f"Fix {node.name} (or its tests) and bake again; if the failure was transient, rerun "
            f"its tests with `invoke test {node.name} --version {failed.version}`, or rebake it "
            f"deliberately with `invoke bake {node.name} --force`. Nothing was baked."
        )

    def _refuse_revoked_ancestors(self, role: Role) -> None:
        """Never build on a revoked image by accident: rebaking the same inputs may repeat the
        reason it was revoked, so kiln asks for --force (or a changed definition) first."""
        for node in role.ancestry()[:-1]:
            newest = self.registry.latest(node.name, target=self.target_name)
            if newest is not None and newest.status == "revoked":
                why = f" ({newest.status_reason})" if newest.status_reason else ""
                raise RegistryError(
                    f"cannot bake {role.name}: its ancestor {newest.label} is revoked{why}, and "
                    "kiln does not build on a revoked image. Fix the reason in its definition, "
                    f"or bake a new {node.name} deliberately with `invoke bake {role.name} "
                    "--force` (the revoked version is never reused). No version was recorded."
                )

    def _git_state(self) -> tuple[str, bool]:
        if self._git is None:
            self._git = tools.git_state(self.project.root)
        return self._git

    def _bootstrap(self, base: Base, fingerprint: Fingerprint) -> BakeOutcome:
        started = time.monotonic()
        version = self.registry.allocate_version(base.name)
        log_dir = self._log_dir(base.name, version)
        self.reporter.phase(base.name, "base", f"bootstrapping {base.suite} as version {version}")
        with (log_dir / "bootstrap.log").open("w") as log:
            artifact = self.target.bootstrap_base(
                self.project, base, version, fingerprint.digest, lambda line: print(line, file=log)
            )
        took = time.monotonic() - started
        commit, dirty = self._git_state()
        record = Version(
            role=base.name, version=version, kind="base", target=self.target_name,
            fingerprint=fingerprint.digest, parent_role=None, parent_version=None,
            status=self._new_status(), git_commit=commit, git_dirty=dirty, tools={},
            inputs=dict(fingerprint.inputs), timings={"base": round(took, 3)},
            bake_seconds=round(took, 3), created_at=utc_now(), artifacts=(artifact,),
        )  # fmt: skip
        self._record(record, [], artifact_cleanup=True)
        self.reporter.phase(base.name, "base", f"version {version} ready in {took:.1f}s")
        return self._gate(base, record, baked=True, timings=record.timings, log_dir=log_dir)

    def _log_dir(self, role: str, version: int) -> Path:
        path = self.project.state_path / "logs" / role / str(version)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _bake_role(
        self, role: Role, fingerprint: Fingerprint, parent: Version, secrets: Mapping[str, str]
    ) -> BakeOutcome:
        started = time.monotonic()
        timings: dict[str, float] = {}
        packer = tools.which("packer")
        version = self.registry.allocate_version(role.name)
        bake_id = f"{role.name}:{version}:{uuid.uuid4().hex[:8]}"
        log_dir = self._log_dir(role.name, version)
        work = self.project.state_path / "work" / role.name / str(version)
        work.mkdir(parents=True, exist_ok=True)
        redact = Redactor(list(secrets.values()))
        self.audit(role, work)
        if parent.status in ("failed", "revoked"):
            raise RegistryError(
                f"refusing to bake {role.name} on {parent.label}: it is {parent.status}"
                f"{f' ({parent.status_reason})' if parent.status_reason else ''}"
            )
        plan = BakePlan(
            self.project, role, fingerprint, parent, self.target_name,
            check_idempotence=self.check_idempotence, flatten=self.target.flattens_chain,
        )  # fmt: skip
        self.reporter.phase(
            role.name, "render", f"version {version} on {parent.role} v{parent.version}"
        )
        write_if_changed(self.target.render(plan))
        self.audit_playbook(role, plan.playbook_path, work)
        timings["render"] = time.monotonic() - started

        commit, dirty = self._git_state()
        argv = [
            packer, "build", "-machine-readable",
            "-var", f"version={version}",
            "-var", f"source_commit={commit}{'-dirty' if dirty else ''}",
            "-var", f"bake_id={bake_id}",
            "-var", f"manifest_file={plan.relative(work / 'packages.tsv')}",
            "-var", f"events_file={(work / 'events.jsonl').resolve()}",
        ]  # fmt: skip
        if plan.secrets:
            secret_file = secret_vars_file(work / "secrets.json", secrets)
            argv += ["-var", f"secret_vars_file={secret_file.resolve()}"]
        argv.append(plan.relative(plan.hcl_path))

        self.reporter.phase(
            role.name, "builder start", f"packer build {plan.relative(plan.hcl_path)}"
        )
        packer_started = time.monotonic()
        try:
            with (
                self.target.bake_session(plan, work) as session_vars,
                (log_dir / "packer.log").open("w") as log,
            ):
                for name, value in session_vars.items():
                    argv[-1:-1] = ["-var", f"{name}={value}"]
                run = run_packer(
                    argv, cwd=self.project.root, env=self._packer_env(), events_path=work /
                    "events.jsonl", log=log, on_line=lambda line: self.reporter.packer_line(
                        role.name, line), on_event=lambda event: self.reporter.ansible_event(
                        role.name, event), redact=redact,
                )  # fmt: skip
        except OSError as exc:  # the log's disk is full: packer was stopped before this
            self._discard(plan, version)
            shutil.rmtree(work, ignore_errors=True)
            log_file = log_dir / "packer.log"
            raise _write_failure(role, version, exc, log_file, self.project.root) from exc
        finally:
            (work / "secrets.json").unlink(missing_ok=True)
            self.target.reap_builders(role=role.name, bake_id=bake_id)
            self._keep_events(work, log_dir, redact)
        timings.update(_packer_phases(run, packer_started))
        refused = _inventory_refusal(run, required=not (run.interrupted or run.returncode))
        if refused or run.interrupted or run.returncode != 0:
            self._discard(plan, version)
            shutil.rmtree(work, ignore_errors=True)
            if refused:
                raise GuardError(f"bake of {role.name} v{version}: {refused}")
            raise _failure(role, version, run, log_dir, self.project.root, redact)
        if self.check_idempotence:
            problem = _idempotence_failure(role, version, run, log_dir, self.project.root)
            if problem is not None:  # nothing is recorded: the image goes, like the builder
                self._discard(plan, version)
                shutil.rmtree(work, ignore_errors=True)
                raise problem

        record_started = time.monotonic()
        self.reporter.phase(role.name, "record", f"version {version}")
        artifact = self.target.collect_artifact(plan, version)
        packages = _read_manifest(work / "packages.tsv")
        shutil.rmtree(work, ignore_errors=True)
        timings["record"] = time.monotonic() - record_started
        took = time.monotonic() - started
        record = Version(
            role=role.name, version=version, kind="role", target=self.target_name,
            fingerprint=fingerprint.digest, parent_role=parent.role,
            parent_version=parent.version, status=self._new_status(), git_commit=commit,
            git_dirty=dirty,
            tools=dict(fingerprint.inputs.get("tools", {})),
            # What was fingerprinted (secrets as keyed digests), plus the audit exceptions.
            inputs={
                **fingerprint.inputs,
                "definition": {**role.inputs(), **fingerprint.inputs["definition"]},
                **({"lint": self._lint[role.name].record()} if role.name in self._lint else {}),
            },
            timings={k: round(v, 3) for k, v in timings.items()},
            bake_seconds=round(took, 3), created_at=utc_now(), artifacts=(artifact,),
        )  # fmt: skip
        self._record(record, packages, artifact_cleanup=True)
        return self._gate(
            role, record, baked=True, timings=record.timings, log_dir=log_dir, redact=redact
        )

    # -- the acceptance gate ----------------------------------------------------------------
    def _new_status(self) -> str:
        """A new version is `baked` until its gate decides, or `untested` when tests are skipped."""
        return "untested" if self.skip_tests or not self.target.runs_acceptance_tests else "baked"

    def _gate(
        self,
        node: Node,
        version: Version,
        *,
        baked: bool,
        timings: Mapping[str, float],
        log_dir: Path | None,
        redact: Redactor | None = None,
    ) -> BakeOutcome:
        """Run version's acceptance tests and record the verdict; a failure raises TestFailure."""
        from kiln import acceptance  # testinfra machinery: kept off the no-op bake path

        if not self.target.runs_acceptance_tests:
            self.reporter.message(
                node.name, f"{version.label} recorded untested: acceptance tests run on docker "
                f"instances; boot this {self.target_name} image with `invoke boot {node.name}`",
            )  # fmt: skip
            return BakeOutcome(version=version, baked=baked, timings=timings, log_dir=log_dir)
        if self.skip_tests:
            self.reporter.message(node.name, f"{version.label} recorded untested (--skip-tests)")
            return BakeOutcome(version=version, baked=baked, timings=timings, log_dir=log_dir)
        self.reporter.phase(node.name, "tests", f"acceptance tests of {version.label}")
        result = acceptance.run_acceptance(
            self.project, node, version, registry=self.registry, reporter=self.reporter,
            redact=redact or str, target=self.target_name,
        )  # fmt: skip
        tested = acceptance.record_result(self.registry, version, result)
        log = acceptance.write_log(self.project, result)
        if not result.passed:
            raise TestFailure(
                acceptance.failure_message(result, log=_relative_path(str(log), self.project.root))
            )
        self.reporter.phase(
            node.name, "tests", f"{version.label} {tested.status}: {result.summary} "
            f"in {result.duration_s:.1f}s",
        )  # fmt: skip
        timings = {**timings, "tests": round(result.duration_s, 3)}
        return BakeOutcome(version=tested, baked=baked, timings=timings, log_dir=log_dir)

    def _record(self, record: Version, packages: list[Package], *, artifact_cleanup: bool) -> None:
        """Record a version; if that fails, remove its artifact so nothing is half-registered."""
        try:
            self.registry.record_version(record, packages=packages)
        except (RegistryError, OSError) as exc:
            if artifact_cleanup:
                for artifact in record.artifacts:
                    self.target.delete_artifact(artifact)
            if isinstance(exc, RegistryError):
                raise
            raise RegistryError(f"cannot record {record.label}: {exc}") from exc

    def _discard(self, plan: BakePlan, version: int) -> None:
        """After a failed bake, remove any artifact packer managed to produce."""
        try:
            artifact = self.target.collect_artifact(plan, version)
        except BuildError:
            return
        self.target.delete_artifact(artifact)

    def _keep_events(self, work: Path, log_dir: Path, redact: Redactor) -> None:
        events = work / "events.jsonl"
        if events.exists():
            try:
                (log_dir / "ansible-events.jsonl").write_text(redact(events.read_text()))
            except OSError as exc:  # runs in a finally: never hide the bake's own error
                self.reporter.warning("kiln", f"cannot keep the Ansible events in {log_dir}: {exc}")
            events.unlink()

    def audit(self, role: Role, work_dir: Path | None = None, *, warn: bool = True) -> AuditReport:
        """Refuse to bake a role whose Ansible could reach anything but the builder."""
        report = audit_roles(
            role.ansible_roles,
            roles_path=self.project.content,
            root=self.project.root,
            work_dir=work_dir,
            exceptions=role.audit_exceptions,
            production_hosts=self.project.production_hosts,
            secret_vars=list(role.secrets),
        )
        for finding in report.warnings if warn else ():
            self.reporter.warning(
                role.name, f"{finding.location} [{finding.rule}] {finding.task}: {finding.message}"
            )
        raise_for_findings(report, role.name)
        return report

    def audit_playbook(self, role: Role, playbook: Path, work_dir: Path) -> AuditReport:
        """Audit the playbook kiln rendered for role, as it will run; its roles were audited."""
        report = audit_playbook(
            playbook,
            work_dir=work_dir,
            production_hosts=self.project.production_hosts,
            secret_vars=list(role.secrets),
        )
        raise_for_findings(report, role.name)
        return report

    def _packer_env(self) -> dict[str, str]:
        env, dropped = ansible_environment(os.environ)
        for name in dropped:
            self.reporter.warning(
                "kiln", f"ignoring {name}: Ansible only ever targets the throwaway builder"
            )
        # ansible-playbook comes from the same environment as kiln, venv or not.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env.update(
            CHECKPOINT_DISABLE="1",  # packer would otherwise call home on every run
            PACKER_NO_COLOR="1",
            PACKER_CACHE_DIR=str(self.project.state_path / "packer_cache"),
        )
        return env


def _packer_phases(run: PackerRun, started: float) -> dict[str, float]:
    """Split packer's wall time into builder start, provision and capture from event times."""
    wall_started = time.time() - (time.monotonic() - started)
    times = [float(e["time"]) for e in run.events if "time" in e]
    if not times:
        return {"packer": run.duration_s}
    first, last = min(times), max(times)
    end = wall_started + run.duration_s
    return {
        "builder start": max(0.0, first - wall_started),
        "provision": max(0.0, last - first),
        "capture and commit": max(0.0, end - last),
    }


def _inventory_refusal(run: PackerRun, *, required: bool) -> str | None:
    """Why Ansible's own report of its inventory does not prove it held only the builder.

    kiln's callback reports every inventory source (packer's temporary `-i` file) and the hosts
    Ansible parsed from it, and stops Ansible before its first task if they are not one host.
    """
    reports = [e for e in run.events if e.get("event") == "inventory"]
    refused = [e for e in run.events if e.get("event") == "guard"]
    if refused:
        return f"the guard stopped Ansible: {refused[0].get('message', '')}"
    if not reports:
        if required:
            return (
                "Ansible did not report its inventory, so kiln cannot prove it held only the "
                "builder; no version was recorded (is the kiln_events callback enabled?)"
            )
        return None
    for event in reports:
        hosts = event.get("hosts") or []
        try:
            if len(hosts) != 1:
                raise GuardError(f"Ansible parsed {len(hosts)} host(s): {', '.join(hosts[:5])}")
            for source in event.get("sources") or []:
                check_single_host_inventory(str(source.get("content", "")))
        except GuardError as exc:
            return f"the inventory Ansible was given is not the builder alone: {exc}"
    return None


def _write_failure(role: Role, version: int, exc: OSError, path: Path, root: Path) -> BuildError:
    """A write that failed during a bake, with errno's name (ENOSPC) so that it can be searched."""
    code = errno.errorcode.get(exc.errno or 0, "")
    reason = exc.strerror or str(exc)
    where = _relative_path(str(exc.filename or path), root)
    advice = "Free some disk space and bake again. " if exc.errno == errno.ENOSPC else ""
    return BuildError(
        f"bake of {role.name} v{version} failed: cannot write {where}: {reason}"
        f"{f' ({code})' if code else ''}. {advice}"
        "The builder was removed and no version was recorded."
    )


def _idempotence_failure(
    role: Role, version: int, run: PackerRun, log_dir: Path, root: Path
) -> ProvisionError | BuildError | None:
    """The error for a second Ansible pass that changed something (or never ran), else None."""
    second = [e for e in run.events if str(e.get("ansible_pass")) == "2"]
    if not any(e.get("event") == "task_result" for e in second):
        return BuildError(
            f"bake of {role.name} v{version}: --check-idempotence found no second Ansible pass "
            "in the events (does this target's template render it?). No version was recorded."
        )
    changed = [e for e in second if e.get("event") == "task_result" and e.get("changed")]
    if not changed:
        return None
    lines = []
    for event in changed:
        where = _relative_path(str(event.get("path", "")), root)
        owner = str(event.get("role") or "")
        task = str(event.get("task", "")).removeprefix(f"{owner} : ")  # Ansible's "role : name"
        lines.append(f"  {task!r} of role {owner or '?'} at {where}")
    return ProvisionError(
        f"bake of {role.name} v{version} is not idempotent: {len(changed)} task(s) reported "
        "changes in a second Ansible pass over the finished builder:\n"
        + "\n".join(lines)
        + "\nMake them report changes only when they make one (changed_when, creates, a module "
        "instead of a command). The image was deleted and no version was recorded.\n"
        f"Full logs: {_relative_path(str(log_dir), root)}/ansible-events.jsonl"
    )


def _read_manifest(path: Path) -> list[Package]:
    if not path.exists():
        raise BuildError(f"the package manifest {path} was not captured from the builder")
    packages = []
    for line in path.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[0]:
            packages.append(Package(parts[0], parts[1], parts[2]))
    return packages


def _failure(
    role: Role, version: int, run: PackerRun, log_dir: Path, root: Path, redact: Redactor
) -> BuildError:
    try:
        logs = log_dir.relative_to(root)
    except ValueError:
        logs = log_dir
    tail = "The builder was removed and no version was recorded."
    where = f"Full logs: {logs}/packer.log"
    if run.interrupted:
        return Interrupted(f"bake of {role.name} v{version} was interrupted. {tail}\n{where}")
    failed = run.failed_tasks
    if failed:
        event = failed[-1]
        output = "\n".join(
            part for part in (event.get("msg"), event.get("module_stderr"), event.get("stderr"),
                              event.get("stdout")) if part
        )  # fmt: skip
        lines = redact(output).splitlines()[-20:]
        body = "\n".join(f"    {line}" for line in lines)
        return ProvisionError(
            f"bake of {role.name} v{version} failed: Ansible task {event.get('task')!r} "
            f"of role {event.get('role') or '?'} failed\n"
            f"  at {_relative_path(event.get('path', ''), root)}\n"
            f"  output (last {len(lines)} lines):\n{body}\n"
            f"{tail}\n{where}"
        )
    errors = "\n".join(f"    {line}" for line in run.errors[-20:]) or "    (no error output)"
    return BuildError(
        f"bake of {role.name} v{version} failed: packer exited with {run.returncode}\n"
        f"{errors}\n{tail}\n{where}"
    )


def _relative_path(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path
