"""The OCI registry setting, and what a channel resolves to once its version is pushed."""

from __future__ import annotations

from dataclasses import replace

import pytest
from conftest import parent_version
from kiln import DefinitionError, Registry, RegistryError
from kiln.image_registry import checked_image_registry, push_role
from kiln.lifecycle import resolve_channel
from kiln.registry import Push


@pytest.mark.parametrize(
    "text", ["127.0.0.1:5000", "127.0.0.1:5000/team", "registry.internal/a/b", "localhost/x/"]
)
def test_a_registry_is_host_and_port_or_a_dotted_host_with_a_prefix(text: str) -> None:
    assert checked_image_registry(text) == text.rstrip("/")


@pytest.mark.parametrize(
    "text", ["team", "team/kiln", "Registry.internal", "host:port/x", "127.0.0.1:5000/Team", ""]
)
def test_anything_docker_would_read_as_a_docker_hub_account_or_refuse_is_refused(
    text: str,
) -> None:
    with pytest.raises(DefinitionError, match="is not HOST:PORT"):
        checked_image_registry(text)


def test_a_channel_resolves_to_the_pushed_digest_and_before_that_to_the_local_ref(
    registry_url: str,
) -> None:
    with Registry(registry_url) as registry:
        version = replace(parent_version("web", 1), status="tested")
        registry.record_version(version)
        with registry.transaction() as tx:
            tx.set_channel(role="web", channel="prod", version=1, action="promote", actor="ann")
        local = resolve_channel(registry, "web", "prod")
        assert (local.image, local.digest, local.pushes) == ("kiln/web:1", None, ())
        digest = "sha256:" + "d" * 64
        push = Push("web", 1, "docker", "127.0.0.1:5000/team",
                    f"127.0.0.1:5000/team/kiln/web@{digest}", digest, "t")  # fmt: skip
        registry.record_push(push)
        pushed = resolve_channel(registry, "web", "prod")
        assert (pushed.image, pushed.digest, pushed.pushes) == (push.reference, digest, (push,))
        assert pushed.fingerprint == version.fingerprint and pushed.artifacts == version.artifacts
        with pytest.raises(RegistryError, match="has no channel 'dev' pointing at a version"):
            resolve_channel(registry, "web", "dev")
        # Already pushed to that registry: nothing to push, and no docker command runs.
        assert push_role(registry, "web", "127.0.0.1:5000/team") == []
        with pytest.raises(DefinitionError, match="no image registry to push to"):
            push_role(registry, "web", None)
