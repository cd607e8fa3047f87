"""When a bake may reuse a recorded version, and when it must refuse to build at all.

A cache hit needs a tested (or, with skip_tests, untested) version whose artifact exists and
whose parent is not revoked; refusals cover failed twins, revoked ancestors, bad parents and
recorded images whose tag names another image now.
"""

from __future__ import annotations

from dataclasses import dataclass

from kiln.errors import ImageMoved, Refused, TestFailure, rebake_remedy
from kiln.fingerprint import Fingerprint
from kiln.image_registry import ensure_local
from kiln.model import Node, Role
from kiln.registry import Registry, Version, VersionStatus
from kiln.targets.base import Renderer


@dataclass(frozen=True)
class BakePolicy:
    """The reuse and refusal rules of one bake, read from the registry of one target."""

    registry: Registry
    target: Renderer
    skip_tests: bool = False
    #: The role the bake was asked for: a moved image's error says to rebake it with --force.
    leaf: str | None = None
    #: --force: an image whose tag moved is baked anew like a missing one (the user asked).
    rebake_moved: bool = False

    def cached_version(self, node: Node, fingerprint: Fingerprint) -> Version | None:
        """The recorded version that makes a bake of node unnecessary, if its artifact exists."""
        hit = self.registry.find_reusable(node.name, fingerprint.digest, self.target.name)
        if hit is None:
            return None
        if hit.parent_role is not None and hit.parent_version is not None:
            # An image built on a revoked one inherits whatever made it revoked.
            parent = self.registry.get(hit.parent_role, hit.parent_version)
            if parent is None or parent.status == VersionStatus.REVOKED:
                return None
        if hit.status.awaiting_tests and not self.skip_tests:
            return None  # its acceptance tests never ran: not ready to stand in for a bake
        return hit if self._artifact_exists(hit) else None

    def untested(self, node: Node, fingerprint: Fingerprint) -> Version | None:
        """A version with this fingerprint whose acceptance tests have not run yet."""
        if self.skip_tests:
            return None
        hit = self.registry.find_reusable(node.name, fingerprint.digest, self.target.name)
        if hit is None or not hit.status.awaiting_tests:
            return None
        return hit if self._artifact_exists(hit) else None

    def new_status(self) -> VersionStatus:
        """A new version is `baked` until its gate decides, or `untested` when tests are skipped."""
        if self.skip_tests or not self.target.builder().runs_acceptance_tests():
            return VersionStatus.UNTESTED
        return VersionStatus.BAKED

    def refuse_failed_twin(self, node: Node, fingerprint: Fingerprint, leaf: Role) -> None:
        """Refuse to rebuild inputs whose newest version failed its tests: it would fail again."""
        twins = [
            v
            for v in self.registry.history(node.name)
            if v.fingerprint == fingerprint.digest and v.target == self.target.name
        ]
        if not twins or twins[0].status != VersionStatus.FAILED:
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

    def refuse_revoked_ancestors(self, role: Role) -> None:
        """Never build on a revoked image by accident: rebaking the same inputs may repeat the
        reason it was revoked, so kiln asks for --force (or a changed definition) first."""
        for node in role.ancestry()[:-1]:
            newest = self.registry.latest(node.name, target=self.target.name)
            if newest is not None and newest.status == VersionStatus.REVOKED:
                why = f" ({newest.status_reason})" if newest.status_reason else ""
                raise Refused(
                    f"cannot bake {role.name}: its ancestor {newest.label} is revoked{why}, and "
                    "kiln does not build on a revoked image. Fix the reason in its definition, "
                    f"or bake a new {node.name} deliberately with `invoke bake {role.name} "
                    "--force` (the revoked version is never reused). No version was recorded."
                )

    @staticmethod
    def refuse_unusable_parent(role: Role, parent: Version) -> None:
        """Never bake on a parent whose tests failed or that was revoked."""
        if not parent.status.usable:
            raise Refused(
                f"refusing to bake {role.name} on {parent.label}: it is {parent.status}"
                f"{f' ({parent.status_reason})' if parent.status_reason else ''}"
            )

    def _artifact_exists(self, version: Version) -> bool:
        artifact = version.artifact(self.target.name)
        if artifact is None:
            return False
        # Baked and pushed by another machine sharing the registry: pull it, do not rebake it.
        ensure_local(self.registry, version, artifact)
        try:
            return self.target.builder().artifact_exists(artifact)
        except ImageMoved as moved:
            if self.rebake_moved:
                return False
            leaf = self.leaf or version.role
            raise moved.of(version.role, version.version, rebake_remedy(leaf)) from None
