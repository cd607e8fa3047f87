"""Sandboxes for integration tests: a copy of the project with its own registry and image names.

Each sandbox has its own root (registry under .kiln/) and its own Docker image namespace, so tests
never clobber each other's tags or the developer's own `kiln/*` images (named
<namespace>/project-<registry id>/<role>:<N>, see kiln.image_names). The Debian base is reused
across sandboxes by fingerprint, so only the first bootstrap on a machine pays for mmdebstrap.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kiln import Baker, Project
from kiln.console import Reporter
from kiln.registry import Registry

REPO = Path(__file__).resolve().parents[2]
COPIED = ("roles", "templates", "tests/images")
REGISTRY_DB = Path(".kiln/registry.db")
IMMUTABLE_REF_TRIGGER = "artifact_ref_is_immutable"  # lib/kiln/registry/schema.py, migration 1

TASKS_TEMPLATE = '''
"""Role definitions of a test sandbox (written by tests/integration/conftest.py)."""
import json
import os
from pathlib import Path

from kiln import HealthCheck, Project
from kiln.tasks import collection

here = Path(__file__).resolve().parent
project = Project(here, image_namespace=os.environ["KILN_IMAGE_NAMESPACE"])
bookworm = project.base("debian-bookworm", suite="bookworm")
project.role("base", parent=bookworm, ansible_roles=["common"])
project.role(
    "web",
    parent="base",
    ansible_roles=["web"],
    variables=json.loads((here / "web-variables.json").read_text()),
    health_check=HealthCheck(),
    tests=["tests/images/web"],
)
{extra}
ns = collection(project)
'''

WEB_VARIABLES = {"web_title": "Hello from kiln", "web_message": "Baked once, never patched."}


@dataclass
class Sandbox:
    """A throwaway copy of the project. `invoke(...)` runs the real CLI in it."""

    root: Path
    namespace: str
    web_variables: dict[str, Any] = field(default_factory=lambda: dict(WEB_VARIABLES))
    first_bake: subprocess.CompletedProcess[str] | None = None
    first_bake_seconds: float = 0.0

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        # The HMAC keys of kiln.hmac_key: the test session's (tests/conftest.py), or, for the
        # benchmarks that borrow these sandboxes, one beside the sandbox, never ~/.local/state.
        env.setdefault("XDG_STATE_HOME", str(self.root.parent / "xdg-state"))
        env["KILN_IMAGE_NAMESPACE"] = self.namespace
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        return env

    def write_tasks(self, extra: str = "") -> None:
        """(Re)write the sandbox's tasks.py; extra is Python appended before `ns = ...`."""
        (self.root / "web-variables.json").write_text(json.dumps(self.web_variables))
        (self.root / "tasks.py").write_text(
            TASKS_TEMPLATE.replace("{extra}", textwrap.dedent(extra))
        )

    def set_web_variables(self, **variables: Any) -> None:
        self.web_variables.update(variables)
        self.write_tasks()

    def project(self) -> Project:
        """The sandbox's Project, loaded from its tasks.py exactly as invoke would."""
        namespace: dict[str, Any] = {"__file__": str(self.root / "tasks.py")}
        before = os.environ.get("KILN_IMAGE_NAMESPACE")
        # Set only while tasks.py runs: unit tests later in the session must see the default.
        os.environ["KILN_IMAGE_NAMESPACE"] = self.namespace
        try:
            exec(
                compile((self.root / "tasks.py").read_text(), str(self.root / "tasks.py"), "exec"),
                namespace,
            )
        finally:
            if before is None:
                del os.environ["KILN_IMAGE_NAMESPACE"]
            else:
                os.environ["KILN_IMAGE_NAMESPACE"] = before
        project = namespace["project"]
        assert isinstance(project, Project)
        return project

    def baker(self, reporter: Reporter | None = None) -> Baker:
        return Baker(self.project(), reporter=reporter or Reporter(sys.stderr))

    def registry(self) -> Registry:
        return Registry(self.root / ".kiln" / "registry.db")

    def repository(self, role: str) -> str:
        """The docker repository kiln tags role's new versions in (its registry is created)."""
        with self.registry() as registry:
            return self.project().image_names(registry.identity()).repository(role)

    def image(self, role: str, version: int | str) -> str:
        """The image kiln names version of role (or a tag such as "dev") in this sandbox."""
        return f"{self.repository(role)}:{version}"

    def invoke(
        self,
        *args: str,
        timeout: float = 900,
        check: bool = False,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `invoke ARGS` in the sandbox as a real process (env: variables to add or replace)."""
        proc = subprocess.run(
            [sys.executable, "-m", "invoke", *args],
            cwd=self.root,
            env={**self.env(), **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"invoke {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """Start `invoke ARGS` in the sandbox (env: variables to add or replace)."""
        return subprocess.Popen(
            [sys.executable, "-m", "invoke", *args],
            cwd=self.root,
            env={**self.env(), **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def docker(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {proc.stderr}")
        return proc.stdout.strip()

    def containers(self) -> list[str]:
        """Every container, running or not, started from one of this sandbox's images."""
        out = self.docker("ps", "-a", "--format", "{{.ID}} {{.Image}}")
        return [
            line.split()[0]
            for line in out.splitlines()
            if line.split()[1].startswith(f"{self.namespace}/")
        ]

    def cleanup(self) -> None:
        ids = self.containers()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False)
        images = self.docker(
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            *image_filters(self.namespace),
            check=False,
        ).split()
        if images:
            subprocess.run(["docker", "rmi", "-f", *images], capture_output=True, check=False)


def image_filters(namespace: str) -> tuple[str, ...]:
    """`docker images` filters for every image of namespace: a `*` never matches a '/', and
    kiln's names have a project component (<namespace>/<project>-<id>/<role>) as well."""
    return (f"--filter=reference={namespace}/*", f"--filter=reference={namespace}/*/*")


def new_namespace() -> str:
    return f"kilntest{uuid.uuid4().hex[:8]}"


def make_sandbox(base: Path) -> Sandbox:
    """A sandbox with nothing baked: its first bake bakes the whole chain."""
    root = base / "project"
    root.mkdir(parents=True)
    for rel in COPIED:
        src = REPO / rel
        if src.exists():
            shutil.copytree(src, root / rel, symlinks=True)
    sandbox = Sandbox(root=root, namespace=new_namespace())
    sandbox.write_tasks()
    return sandbox


def clone_sandbox(template: Sandbox, base: Path) -> Sandbox:
    """A sandbox that starts where template is: its files, registry and images, own namespace.

    Each bake of the chain costs minutes on two cores, so tests that need web baked but then
    change things start from a clone of the session's baked sandbox instead of baking it again.
    The registry is copied and its artifact refs moved to the clone's namespace, with each image
    tagged there too: the clone's bakes, gc and cleanup never touch the template's images.
    """
    root = base / "project"
    shutil.copytree(
        template.root, root, symlinks=True, ignore=shutil.ignore_patterns("registry.db*")
    )
    clone = Sandbox(
        root=root, namespace=new_namespace(), web_variables=dict(template.web_variables)
    )
    with (
        closing(sqlite3.connect(template.root / REGISTRY_DB)) as source,
        closing(sqlite3.connect(root / REGISTRY_DB)) as copy,
    ):
        source.backup(copy)
        (trigger,) = copy.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?",
            (IMMUTABLE_REF_TRIGGER,),
        ).fetchone()
        with copy:  # the one place a recorded ref changes: the clone's images have new names
            copy.execute(f"DROP TRIGGER {IMMUTABLE_REF_TRIGGER}")
            prefix = f"{template.namespace}/"
            for role, version, target, ref in copy.execute(
                "SELECT role, version, target, ref FROM artifacts WHERE target = 'docker'"
            ).fetchall():
                if not ref.startswith(prefix):
                    continue
                moved = f"{clone.namespace}/{ref[len(prefix) :]}"
                template.docker("tag", ref, moved)
                copy.execute(
                    "UPDATE artifacts SET ref = ? WHERE role = ? AND version = ? AND target = ?",
                    (moved, role, version, target),
                )
            copy.execute(trigger)
    return clone


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A fresh sandbox for one test, removed with its images afterwards."""
    box = make_sandbox(tmp_path)
    try:
        yield box
    finally:
        box.cleanup()


@pytest.fixture(scope="session")
def baked_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """One sandbox with web baked, shared by tests that only read it. Do not change its roles.

    Its first bake (`first_bake`) is the one plain `invoke bake web` of the whole chain.
    """
    box = make_sandbox(tmp_path_factory.mktemp("baked"))
    try:
        started = time.monotonic()
        box.first_bake = box.invoke("bake", "web", check=True)
        box.first_bake_seconds = time.monotonic() - started
        yield box
    finally:
        box.cleanup()


@pytest.fixture
def baked_clone(baked_sandbox: Sandbox, tmp_path: Path) -> Iterator[Sandbox]:
    """A clone of the baked sandbox for one test (web v1 tested): change it at will."""
    box = clone_sandbox(baked_sandbox, tmp_path)
    try:
        yield box
    finally:
        box.cleanup()
