"""Images in a real OCI registry (Debian's docker-registry on 127.0.0.1): pushed by digest after
their tests, pulled and verified by a checkout whose engine lacks them, and a push that fails
while the registry is down, retried by the next bake.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Sandbox, clone_sandbox
from kiln.registry import Registry
from oci_registry import OciRegistry, throwaway_registry
from postgres_cluster import PostgresCluster


def _json(box: Sandbox, env: dict[str, str], *args: str) -> Any:
    return json.loads(box.invoke(*args, "--json", env=env, check=True).stdout)


def test_a_pushed_version_deploys_from_another_checkout_by_digest(
    baked_clone: Sandbox,
    baked_sandbox: Sandbox,
    postgres: PostgresCluster,
    oci_registry: OciRegistry,
    tmp_path: Path,
) -> None:
    url = postgres.new_database()
    first = baked_clone
    first.invoke("registry-copy", "--to", url, check=True)
    team = {"KILN_REGISTRY_URL": url, "KILN_IMAGE_REGISTRY": f"{oci_registry.address}/team"}
    [pushed] = _json(first, team, "push", "web")
    assert pushed["reference"].startswith(f"{oci_registry.address}/team/")
    assert pushed["reference"].endswith("@" + pushed["digest"])
    first.invoke("promote", "web", "1", "--channel", "prod", env=team, check=True)
    channel = _json(first, team, "channel", "web", "prod")
    assert (channel["version"], channel["image"], channel["digest"]) == (
        1,
        pushed["reference"],
        pushed["digest"],
    )
    with Registry(url) as registry:
        artifact = registry.get("web", 1).artifact("docker")  # type: ignore[union-attr]
    assert artifact is not None and channel["artifacts"][0]["image_id"] == artifact.image_id

    second = clone_sandbox(baked_sandbox, tmp_path / "second")
    try:
        second.docker("image", "rm", artifact.ref)  # this engine no longer has it by that name
        assert second.docker("image", "inspect", artifact.ref, check=False) in ("", "[]")
        second.invoke("deploy", "web", "prod", env=team, check=True)
        assert second.docker("image", "inspect", "--format", "{{.Id}}", artifact.ref) == (
            artifact.image_id
        )
        servers = _json(second, team, "servers", "--role", "web")
        assert [(s["version"], s["image_id"]) for s in servers] == [(1, artifact.image_id)]
    finally:
        second.cleanup()


@pytest.fixture
def own_oci_registry() -> Iterator[OciRegistry]:
    """A registry of this test's own: it stops it."""
    with throwaway_registry() as registry:
        yield registry


def test_a_push_that_fails_leaves_the_version_unpushed_and_the_next_bake_pushes_it(
    baked_clone: Sandbox, own_oci_registry: OciRegistry
) -> None:
    box = baked_clone
    env = {"KILN_IMAGE_REGISTRY": own_oci_registry.address}
    own_oci_registry.stop()
    failed = box.invoke("bake", "web", env=env)
    assert failed.returncode != 0
    assert "cannot push base v1" in failed.stderr or "cannot push web v1" in failed.stderr
    assert "stays recorded as not pushed" in failed.stderr, failed.stderr
    assert _json(box, env, "show", "web")["pushes"] == []
    assert _json(box, env, "show", "web")["summary"]["status"] == "tested"

    own_oci_registry.start()
    retried = box.invoke("bake", "web", env=env, check=True)
    assert "nothing baked" in retried.stdout
    [push] = _json(box, env, "show", "web")["pushes"]
    assert push["registry"] == own_oci_registry.address and push["digest"].startswith("sha256:")
    again = _json(box, env, "push", "web")
    assert again == [], "a version already pushed was pushed again"
