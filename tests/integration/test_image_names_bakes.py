"""Two checkouts of one project on one Docker engine, each with its own registry: image names.

The measured problem: a second checkout's bake of web tagged kiln/web:1 over the first's, and the
first then rebaked base and web because its recorded image had gone. Here both checkouts have
the same image namespace and the same project name (their directories are both `project`), so
only their registries tell their images apart. The first checkout bakes web, then the second
does; then the first checkout's tag is moved onto the second's image.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from conftest import Sandbox, clone_sandbox, make_sandbox
from kiln.docker import throwaway_instance

pytestmark = pytest.mark.integration

PAGE = "import urllib.request as u; print(u.urlopen('http://127.0.0.1/').read().decode())"
SECOND_TITLE = "Hello from the second checkout"


@dataclass(frozen=True)
class Checkouts:
    first: Sandbox  # web v1 baked and tested (a clone of the session's baked sandbox)
    second: Sandbox  # the same project and namespace, a registry of its own; web baked here


@pytest.fixture(scope="module")
def checkouts(
    baked_sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Checkouts]:
    first = clone_sandbox(baked_sandbox, tmp_path_factory.mktemp("first"))
    second = make_sandbox(tmp_path_factory.mktemp("second"))
    second.namespace = first.namespace  # one engine, one namespace: as two clones of one repo
    second.set_web_variables(web_title=SECOND_TITLE)  # so that the two images differ
    try:
        second.invoke("bake", "web", "--skip-tests", check=True)
        yield Checkouts(first, second)
    finally:
        second.cleanup()  # the shared namespace: the first checkout's images go too
        first.cleanup()


def recorded(box: Sandbox, role: str, version: int) -> tuple[str, str]:
    """The ref and image id the registry recorded for role v<version>."""
    with box.registry() as registry:
        found = registry.get(role, version)
    assert found is not None, f"{role} v{version} is not recorded"
    artifact = found.artifact("docker")
    assert artifact is not None
    return artifact.ref, artifact.image_id


def image_id(box: Sandbox, ref: str) -> str:
    return box.docker("image", "inspect", "--format", "{{.Id}}", ref)


def page(ref: str) -> str:
    with throwaway_instance(ref, purpose="test") as instance:
        return instance.exec("python3", "-c", PAGE).stdout


def versions(box: Sandbox, role: str) -> list[int]:
    with box.registry() as registry:
        return sorted(v.version for v in registry.history(role))


def test_two_checkouts_with_their_own_registries_keep_their_own_images(
    checkouts: Checkouts,
) -> None:
    first, second = checkouts.first, checkouts.second
    first_ref, first_id = recorded(first, "web", 1)
    second_ref, second_id = recorded(second, "web", 1)
    # Same namespace, project name, role and version: only the registries' identities differ.
    with first.registry() as a, second.registry() as b:
        assert a.identity() != b.identity()
        prefixes = (f"{first.namespace}/project-{a.identity()[:8]}/",
                    f"{first.namespace}/project-{b.identity()[:8]}/")  # fmt: skip
    assert (first_ref, second_ref) == (f"{prefixes[0]}web:1", f"{prefixes[1]}web:1")
    assert first_id != second_id
    # Each tag still names the image its own registry recorded, and each serves its own page.
    assert image_id(first, first_ref) == first_id
    assert image_id(second, second_ref) == second_id
    assert "<h1>Hello from kiln</h1>" in page(first_ref)
    assert f"<h1>{SECOND_TITLE}</h1>" in page(second_ref)
    # The first checkout finds its image where it left it: nothing is baked again.
    again = first.invoke("bake", "web", check=True)
    assert "nothing baked" in again.stdout + again.stderr
    assert versions(first, "web") == [1] and versions(first, "base") == [1]
    assert image_id(first, first_ref) == first_id


def test_a_tag_moved_onto_another_image_is_reported_not_rebaked(checkouts: Checkouts) -> None:
    """As a kiln from before these names did to a shared kiln/web:1: the first checkout's tag now
    names the second checkout's image. The bake and `invoke run` say so and change nothing;
    the remedy they print puts the tag back, and the bake is a no-op again."""
    first, second = checkouts.first, checkouts.second
    ref, recorded_id = recorded(first, "web", 1)
    second_ref, second_id = recorded(second, "web", 1)
    first.docker("tag", second_ref, ref)
    try:
        bake = first.invoke("bake", "web")
        run = first.invoke("run", "web")
    finally:
        restore = f"docker tag {recorded_id} {ref}"
        first.docker(*restore.split()[1:])

    for proc in (bake, run):
        said = proc.stdout + proc.stderr
        assert proc.returncode == 1, said
        assert "Traceback" not in said
        assert f"web v1's image {ref} was recorded as {recorded_id[:19]}" in said
        assert f"now names another image, {second_id[:19]}" in said
        assert f"`{restore}` puts the tag back" in said  # the recorded image is still there
        assert "`invoke bake web --force`" in said
    assert versions(first, "web") == [1] and versions(first, "base") == [1]
    assert not (first.root / ".kiln" / "logs" / "web" / "2").exists()  # no bake started
    assert not first.containers()  # nothing was started from the other image
    assert image_id(second, second_ref) == second_id  # the other checkout's image is untouched
    # The remedy worked: the recorded image is back under its tag, and up to date.
    assert image_id(first, ref) == recorded_id
    again = first.invoke("bake", "web", check=True)
    assert "nothing baked" in again.stdout + again.stderr
