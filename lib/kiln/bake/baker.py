"""Baker: a bake's orchestration, node by node: the cache, the lock, the build, the gate.

It decides what to build; how to build one node is kiln.bake.node, and the rules, the record,
the gate and the errors live in the other sibling modules.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from kiln import lint, tools
from kiln.bake.audit import audit_rendered_playbook, audit_role
from kiln.bake.gate import AcceptanceGate
from kiln.bake.inputs import Secrets, chain_fingerprints
from kiln.bake.node import NodeBake
from kiln.bake.options import BakeOptions, BakeOutcome
from kiln.bake.policy import BakePolicy
from kiln.bake.record import GitState
from kiln.bake.scope import role_lock
from kiln.console import NullReporter, Reporter
from kiln.controller.config import project_config_warning
from kiln.fingerprint import (
    Fingerprint,
    FingerprintMemo,
)
from kiln.guard import AuditReport
from kiln.image_names import ImageNames
from kiln.image_registry import push_missing
from kiln.model import Base, Node, Project, Role
from kiln.registry import Registry, Version, VersionStatus
from kiln.targets import get_target
from kiln.targets.base import Renderer


def open_registry(project: Project) -> Registry:
    return Registry(project.registry_url)


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
        #: The defaults of every bake() call; a call's overrides never change them.
        self.options = BakeOptions(skip_tests=skip_tests, check_idempotence=check_idempotence)
        self.target: Renderer = get_target(target, accel=accel)
        self.registry = registry or open_registry(project)
        self.reporter = reporter or NullReporter()
        self._git: GitState | None = None
        self._images: ImageNames | None = None
        #: Lint verdicts of the roles this Baker is about to build, recorded with their versions.
        self._lint: dict[str, lint.LintVerdict] = {}

    # -- public -----------------------------------------------------------------------------
    @property
    def images(self) -> ImageNames:
        """How this project's images are named in this Baker's registry."""
        if self._images is None:
            self._images = self.project.image_names(self.registry.identity())
        return self._images

    def fingerprints(
        self, role: Role, memo: FingerprintMemo | None = None
    ) -> tuple[dict[str, Fingerprint], Secrets]:
        """Fingerprints of role and its ancestors, and the secret values read for them.

        memo (see fingerprint_chain) spares a run over many roles the work they share. Refuses
        to go on when what `invoke deps` installed differs from requirements.lock.
        """
        return chain_fingerprints(self.project, role, self.target, memo)

    def bake(
        self,
        name: str,
        *,
        force: bool = False,
        skip_tests: bool | None = None,
        check_idempotence: bool | None = None,
        reasons: Mapping[str, str] | None = None,
    ) -> list[BakeOutcome]:
        """Bake role name and any stale ancestor; returns one outcome per node, base first.

        Every new version passes the acceptance gate (or is recorded untested with skip_tests);
        skip_tests and check_idempotence override this Baker's options for this call only.
        reasons (node name -> reason document) bakes those nodes of the chain anew although
        their inputs are unchanged, and records why with each (kiln.lifecycle._upstream).
        """
        reasons = dict(reasons or {})
        force = force or name in reasons
        options = self.options.overridden(
            skip_tests=skip_tests, check_idempotence=check_idempotence
        )
        policy = self.policy(options, leaf=name, force=force)
        role = self.project.role_named(name)
        if not force:
            policy.refuse_revoked_ancestors(role)
        fingerprints, secrets = self.fingerprints(role)
        hit = None if force else policy.cached_version(role, fingerprints[name])
        if hit is not None:
            self.reporter.message(
                name,
                f"up to date at version {hit.version} (fingerprint {hit.fingerprint[:12]}); "
                "nothing baked",
            )
            return self.push_tested([BakeOutcome(version=hit, baked=False)])
        # The guard first: it is static and fast, and nothing (not even a parent) is baked for a
        # role it refuses. Its warnings are printed by the audit just before the role's builder.
        ignored_config = project_config_warning(self.project.root)
        if ignored_config is not None:  # before the audit, which may refuse every role
            self.reporter.warning("kiln", ignored_config)
        self.audit(role, self.project.state_path / "work" / role.name, warn=False)
        rebake = {name} if force else set()
        self._before_builders(role, fingerprints, policy, rebake=rebake | set(reasons))
        chain = role.ancestry()
        if self.target.flattens_chain():  # one bake on the base applies every layer's Ansible
            chain = [chain[0], role]
            secrets = {role.name: {k: v for values in secrets.values() for k, v in values.items()}}
        outcomes: list[BakeOutcome] = []
        parent: Version | None = None
        for node in chain:
            forced = (force and node is role) or node.name in reasons
            secret_values = secrets.get(node.name, {})
            outcome = self._ensure(
                node,
                fingerprints[node.name],
                parent,
                (options, policy),
                forced,
                secret_values,
                reasons.get(node.name),
            )
            outcomes.append(outcome)
            parent = outcome.version
        return self.push_tested(outcomes)

    def push_tested(self, outcomes: list[BakeOutcome]) -> list[BakeOutcome]:
        """Push each tested version's image to the project's OCI registry, if it has one and
        the version is not there yet (a push that failed before is retried here)."""
        image_registry = self.project.image_registry
        if image_registry is None:
            return outcomes
        for outcome in outcomes:
            version = outcome.version
            if version.status is not VersionStatus.TESTED:
                continue
            pushed = push_missing(self.registry, version, image_registry)
            if pushed is not None:
                self.reporter.message(version.role, f"pushed {version.label}: {pushed.reference}")
        return outcomes

    def policy(
        self, options: BakeOptions | None = None, *, leaf: str | None = None, force: bool = False
    ) -> BakePolicy:
        """The reuse and refusal rules under options (by default this Baker's), for a bake of
        leaf; force bakes anew, instead of refusing, images whose tags moved."""
        skip_tests = (options or self.options).skip_tests
        return BakePolicy(
            self.registry, self.target, skip_tests=skip_tests, leaf=leaf, rebake_moved=force
        )

    def gate(self, options: BakeOptions | None = None) -> AcceptanceGate:
        """The acceptance gate a new or untested version passes under options."""
        skip_tests = (options or self.options).skip_tests
        return AcceptanceGate(self.project, self.registry, self.target, self.reporter, skip_tests)

    def cached_version(self, node: Node, fingerprint: Fingerprint) -> Version | None:
        """The recorded version that makes a bake of node unnecessary, if its artifact exists."""
        return self.policy().cached_version(node, fingerprint)

    def audit(self, role: Role, work_dir: Path | None = None, *, warn: bool = True) -> AuditReport:
        """Refuse to bake a role whose Ansible could reach anything but the builder."""
        return audit_role(self.project, role, self.reporter, work_dir, warn=warn)

    def audit_playbook(self, role: Role, playbook: Path, work_dir: Path) -> AuditReport:
        """Audit the playbook kiln rendered for role, as it will run; its roles were audited."""
        return audit_rendered_playbook(self.project, role, playbook, work_dir)

    # -- one node ---------------------------------------------------------------------------
    def _ensure(
        self,
        node: Node,
        fingerprint: Fingerprint,
        parent: Version | None,
        rules: tuple[BakeOptions, BakePolicy],
        force: bool,
        secrets: Mapping[str, str],
        reason: str | None = None,
    ) -> BakeOutcome:
        options, policy = rules
        with role_lock(self.project, node.name, self.reporter):
            if not force:
                hit = policy.cached_version(node, fingerprint)
                if hit is not None:
                    self.reporter.message(node.name, f"up to date at version {hit.version}")
                    return BakeOutcome(version=hit, baked=False)
                untested = policy.untested(node, fingerprint)
                if untested is not None:  # recorded, but its gate was interrupted: finish it
                    self.reporter.message(node.name, f"{untested.label} is baked but not tested")
                    return self.gate(options).check(
                        node, untested, baked=False, timings={}, log_dir=None
                    )
            builder = self.target.builder()  # a render-only target refuses here
            builder.preflight()
            reaped = builder.reap_builders(role=node.name, owner=self.images.prefix)
            if reaped:
                self.reporter.warning(
                    node.name, f"removed {len(reaped)} builder(s) left by an interrupted bake"
                )
            bake = self._node_bake(options)
            if isinstance(node, Base):
                built = bake.bootstrap(node, fingerprint, reason=reason)
            else:
                assert parent is not None
                lint_verdict = self._lint.get(node.name)
                built = bake.role(
                    node, fingerprint, parent, secrets, lint=lint_verdict, reason=reason
                )
            return self.gate(options).check(
                node,
                built.record,
                baked=True,
                timings=built.record.timings,
                log_dir=built.log_dir,
                redact=built.redact,
            )

    def _node_bake(self, options: BakeOptions) -> NodeBake:
        return NodeBake(
            project=self.project,
            target=self.target.builder(),
            registry=self.registry,
            images=self.images,
            reporter=self.reporter,
            git_state=self._git_state,
            status=self.policy(options).new_status(),
            check_idempotence=options.check_idempotence,
        )

    def _before_builders(
        self,
        role: Role,
        fingerprints: Mapping[str, Fingerprint],
        policy: BakePolicy,
        *,
        rebake: set[str],
    ) -> None:
        """Checks that need no builder, for every node this bake may build: failed twins, lint.

        rebake names the nodes baked anew whatever the registry holds (--force, reasons)."""
        for node in role.ancestry():
            forced = node.name in rebake
            fingerprint = fingerprints[node.name]
            if not forced and (
                policy.cached_version(node, fingerprint) or policy.untested(node, fingerprint)
            ):
                continue
            if not forced:
                policy.refuse_failed_twin(node, fingerprint, role)
            if isinstance(node, Role):
                self._lint[node.name] = lint.check_role(self.project, node, reporter=self.reporter)

    # -- helpers ----------------------------------------------------------------------------
    def _git_state(self) -> GitState:
        if self._git is None:
            self._git = tools.git_state(self.project.root)
        return self._git
