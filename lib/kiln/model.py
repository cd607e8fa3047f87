"""Role definitions: the Python objects a team writes in tasks.py to describe its server images.

A Project holds Bases (roots of image trees) and Roles (a parent plus Ansible roles applied on top),
validated as they are defined so that a typo fails at once with the role's name in the message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiln.ansible_content import AnsibleContent, is_role_name
from kiln.errors import DefinitionError, RegistryError
from kiln.guard import TaskException
from kiln.image_names import ImageNames, check_project_name, docker_component, project_name_from
from kiln.image_registry import checked_image_registry
from kiln.package_sources import PackageSources
from kiln.registry.backend import resolve_registry
from kiln.resources import TEMPLATES_DIR
from kiln.variables import MAX_VARIABLE_BYTES as MAX_VARIABLE_BYTES  # re-exported
from kiln.variables import check_variable, valid_variable_name

# Names end up in docker repositories, file paths and HCL labels: keep them to one safe alphabet.
# A docker repository component may not end in "-", hence the last character class.
ROLE_NAME_RE = re.compile(r"^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: ansible-lint's profiles, from the loosest to the strictest.
LINT_PROFILES = ("min", "basic", "moderate", "safety", "shared", "production")


@dataclass(frozen=True)
class Secret:
    """A variable whose value is read at bake time from an environment variable or a file.

    The value never appears in the definition, rendered HCL, logs, the registry or the image.
    """

    env: str | None = None
    file: str | None = None

    def __post_init__(self) -> None:
        if (self.env is None) == (self.file is None):
            raise DefinitionError("Secret() takes exactly one of env= or file=")
        valid_env = isinstance(self.env, str) and ENV_NAME_RE.fullmatch(self.env)
        if self.env is not None and not valid_env:
            raise DefinitionError(f"Secret(env={self.env!r}) is not a valid environment variable")
        if self.file is not None and (not isinstance(self.file, str) or not self.file.strip()):
            raise DefinitionError(f"Secret(file={self.file!r}) needs the path of a file")

    @property
    def source(self) -> str:
        return f"env:{self.env}" if self.env is not None else f"file:{self.file}"


@dataclass(frozen=True)
class HealthCheck:
    """A read-only command run inside an instance; exit status 0 means healthy."""

    command: tuple[str, ...] = (
        "python3",
        "-c",
        "import urllib.request as u; u.urlopen('http://127.0.0.1/', timeout=2).read()",
    )
    timeout_s: float = 60.0
    interval_s: float = 1.0


@dataclass(frozen=True)
class CloudSettings:
    """Where a cloud target bakes: the base image and the machine it runs on."""

    source_image: str
    region: str
    instance_type: str
    project_id: str = ""
    ssh_username: str = "admin"  # the login of Debian's official cloud images

    def __post_init__(self) -> None:
        for name in ("source_image", "region", "instance_type", "ssh_username"):
            if not getattr(self, name):
                raise DefinitionError(f"CloudSettings needs a non-empty {name}")


@dataclass(frozen=True, eq=False)
class Base:
    """The root of an image tree, bootstrapped locally from a Debian suite with mmdebstrap."""

    name: str
    suite: str = "bookworm"
    # python3 for Ansible, python3-apt for its apt modules (which install it on the fly, but not
    # under Mitogen); systemd-sysv and procps so the builder runs systemd as PID 1.
    packages: tuple[str, ...] = ("python3", "python3-apt", "systemd-sysv", "procps")
    variant: str = "minbase"
    cloud: Mapping[str, CloudSettings] = field(default_factory=dict)

    @property
    def parent(self) -> None:
        return None

    def inputs(self) -> dict[str, Any]:
        return {
            "kind": "base",
            "name": self.name,
            "suite": self.suite,
            "packages": list(self.packages),
            "variant": self.variant,
        }


@dataclass(frozen=True, eq=False)
class Role:
    """A server role: a parent image plus Ansible roles applied in order at bake time."""

    name: str
    parent: Role | Base
    ansible_roles: tuple[str, ...]
    variables: Mapping[str, Any]
    secrets: Mapping[str, Secret]
    tests: tuple[str, ...]
    health_check: HealthCheck | None
    audit_exceptions: tuple[TaskException, ...]
    lint_allowed: bool
    #: The ansible-lint profile whose findings block this role's bakes; None: only syntax and
    #: load errors block, and the rest are warnings (see kiln.lint).
    lint_profile: str | None
    #: Ansible's gather_subset for the play; empty means Ansible's default facts.
    gather_subset: tuple[str, ...]
    drift_allow: tuple[str, ...]
    cloud: Mapping[str, CloudSettings]
    #: Whether Ansible runs through Mitogen (one Python in the builder for the whole play); it
    #: changes how fast a bake runs, never what it bakes, so it is not part of the fingerprint.
    mitogen: bool = True

    def ancestry(self) -> list[Role | Base]:
        """This role and its ancestors, from the base down to this role."""
        chain: list[Role | Base] = []
        node: Role | Base | None = self
        while node is not None:
            if any(n is node for n in chain):
                raise DefinitionError(f"role {self.name!r}: its parents form a cycle")
            chain.append(node)
            node = node.parent
        return list(reversed(chain))

    @property
    def base(self) -> Base:
        root = self.ancestry()[0]
        assert isinstance(root, Base)
        return root

    def cloud_settings(self, target: str) -> CloudSettings | None:
        """Cloud settings are inherited: the nearest definition up the tree wins."""
        for node in reversed(self.ancestry()):
            if target in node.cloud:
                return node.cloud[target]
        return None

    def inputs(self) -> dict[str, Any]:
        """The definition as data, as recorded in the registry (secret values never included)."""
        return {
            "kind": "role",
            "name": self.name,
            "parent": self.parent.name,
            "ansible_roles": list(self.ansible_roles),
            "variables": dict(self.variables),
            "secrets": {name: secret.source for name, secret in sorted(self.secrets.items())},
            "gather_subset": list(self.gather_subset),
            "audit_exceptions": [
                {"ansible_role": e.ansible_role, "task": e.task, "rule": e.rule, "reason": e.reason}
                for e in self.audit_exceptions
            ],
            "lint_allowed": self.lint_allowed,
            "lint_profile": self.lint_profile,
        }


Node = Role | Base


def _check_lint_profile(owner: str, profile: str | None) -> str | None:
    if profile is not None and profile not in LINT_PROFILES:
        raise DefinitionError(
            f"{owner}: lint_profile {profile!r} is not an ansible-lint profile "
            f"(one of {', '.join(LINT_PROFILES)})"
        )
    return profile


def _check_switch(owner: str, name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise DefinitionError(f"{owner}: {name} must be True or False, not {value!r}")
    return value


class Project:
    """All role definitions of one repository, rooted at the directory holding roles/."""

    def __init__(
        self,
        root: Path | str,
        *,
        roles_path: Sequence[Path | str] = ("roles",),
        image_namespace: str = "kiln",
        name: str | None = None,
        production_hosts: Sequence[str] = (),
        lint_profile: str | None = None,
        mitogen: bool = True,
        registry_url: str | None = None,
        image_registry: str | None = None,
        package_sources: PackageSources | None = None,
    ) -> None:
        """root holds tasks.py; images are named <image_namespace>/<name>-<registry id>/<role>.

        name: the project's name in image names (default: root's directory name, made a docker
        name); set it so that checkouts in differently named directories agree (kiln.image_names).
        roles_path: the directories of the project's own Ansible roles, relative to root (read
        from here, never from ansible.cfg); roles installed by `invoke deps` are found after them.
        production_hosts are never to be contacted by Ansible at bake time (see `invoke audit`).
        lint_profile: an ansible-lint profile (say "production") whose findings block bakes.
        mitogen: run Ansible through Mitogen (the default; a role can say otherwise).
        registry_url: where versions are recorded: sqlite:///PATH (relative to root) or
        postgresql://... for a registry a team shares; $KILN_REGISTRY_URL overrides it, and
        without either it is .kiln/registry.db.
        image_registry: an OCI registry, HOST:PORT[/PREFIX], that each version's image is pushed
        to once its acceptance tests pass, and pulled from by digest where the engine lacks it;
        $KILN_IMAGE_REGISTRY overrides it. Without either, images stay in the local engine.
        package_sources: local package repositories builders mount and `outdated --upstream`
        reaches over HTTP (kiln.package_sources).
        """
        self.package_sources = package_sources or PackageSources()
        self.image_namespace = docker_component("image namespace", image_namespace)
        self.production_hosts = tuple(production_hosts)
        self.lint_profile = _check_lint_profile("the project", lint_profile)
        self.mitogen = _check_switch("the project", "mitogen", mitogen)
        self.root = Path(root).resolve()
        self.name = project_name_from(self.root) if name is None else check_project_name(name)
        self.own_roles_paths = self._roles_paths(roles_path)
        # kiln's own templates, from the installed package, never from the project: the
        # render checks, the audit and the fingerprint recipe all assume them (kiln.resources).
        self.templates_path = TEMPLATES_DIR
        self.packer_path = self.root / "packer"
        self.state_path = self.root / ".kiln"
        #: The registry every bake, lifecycle verb and deploy of this project shares, and its
        #: file when it is SQLite (None for PostgreSQL).
        try:
            self.registry_url, self.registry_path = resolve_registry(
                os.environ.get("KILN_REGISTRY_URL") or registry_url, self.root, self.state_path
            )
        except RegistryError as exc:
            raise DefinitionError(str(exc)) from None
        pushed_to = os.environ.get("KILN_IMAGE_REGISTRY") or image_registry
        #: Where images are pushed (HOST:PORT[/PREFIX]), or None: the local engine only.
        self.image_registry = checked_image_registry(pushed_to) if pushed_to else None
        self._nodes: dict[str, Node] = {}

    def _roles_paths(self, roles_path: Sequence[Path | str]) -> tuple[Path, ...]:
        if isinstance(roles_path, str | Path):
            roles_path = [roles_path]
        paths = tuple(self.root / Path(p) for p in roles_path)
        if not paths:
            raise DefinitionError("roles_path needs at least one directory")
        return paths

    # -- where Ansible content lives --------------------------------------------------------
    @property
    def roles_path(self) -> Path:
        """The project's own (first) roles directory: where new roles are scaffolded."""
        return self.own_roles_paths[0]

    @property
    def galaxy_path(self) -> Path:
        """Roles and collections installed from requirements.yml by `invoke deps`."""
        return self.state_path / "galaxy"

    @property
    def requirements_file(self) -> Path:
        return self.root / "requirements.yml"

    @property
    def roles_paths(self) -> tuple[Path, ...]:
        return (*self.own_roles_paths, self.galaxy_path / "roles")

    @property
    def collections_paths(self) -> tuple[Path, ...]:
        return (self.galaxy_path / "collections",)

    @property
    def content(self) -> AnsibleContent:
        return AnsibleContent(self.roles_paths, self.collections_paths)

    # -- definition -------------------------------------------------------------------------
    def base(
        self,
        name: str,
        *,
        suite: str = "bookworm",
        packages: Sequence[str] = (),
        cloud: Mapping[str, CloudSettings] | None = None,
    ) -> Base:
        """Define a base image bootstrapped from a Debian suite (extra packages on top)."""
        self._check_new_name(name)
        if not isinstance(suite, str) or not re.fullmatch(r"[a-z]+", suite):
            raise DefinitionError(f"base {name!r}: suite {suite!r} is not a Debian suite name")
        default = Base.__dataclass_fields__["packages"].default
        assert isinstance(default, tuple)
        extra = tuple(p for p in packages if p not in default)
        for package in extra:
            if not isinstance(package, str) or not re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", package):
                raise DefinitionError(f"base {name!r}: {package!r} is not a Debian package name")
        base = Base(name=name, suite=suite, packages=default + extra, cloud=dict(cloud or {}))
        self._nodes[name] = base
        return base

    def role(
        self,
        name: str,
        *,
        parent: Role | Base | str,
        ansible_roles: Sequence[str] | None = None,
        variables: Mapping[str, Any] | None = None,
        secrets: Mapping[str, Secret] | None = None,
        tests: Sequence[str] = (),
        health_check: HealthCheck | None = None,
        audit_exceptions: Sequence[TaskException] = (),
        lint_allowed: bool = False,
        lint_profile: str | None = None,
        gather_subset: Sequence[str] = (),
        drift_allow: Sequence[str] = ("/var/log", "/run", "/tmp", "/var/tmp", "/var/lib/systemd"),
        cloud: Mapping[str, CloudSettings] | None = None,
        mitogen: bool | None = None,
    ) -> Role:
        """Define a role. Ansible roles default to the one named like the role in roles/.

        mitogen: False bakes this role with Ansible's plain linear strategy; None follows the
        project.
        """
        self._check_new_name(name)
        parent_node = self._resolve_parent(name, parent)
        _check_lists(name, ansible_roles=ansible_roles, tests=tests)
        _check_mappings(name, variables=variables, secrets=secrets)
        applied = tuple(ansible_roles) if ansible_roles is not None else (name.replace("-", "_"),)
        if not applied:
            raise DefinitionError(f"role {name!r}: it applies no Ansible role")
        for ansible_role in applied:
            self._check_ansible_role(name, ansible_role)
        plain = dict(variables or {})
        for var, value in plain.items():
            check_variable(name, var, value)
        secret_map = _checked_secrets(name, dict(secrets or {}), plain)
        for test in tests:
            self._check_test_path(name, test)
        for exception in audit_exceptions:
            if not isinstance(exception, TaskException):
                raise DefinitionError(
                    f"role {name!r}: audit_exceptions holds {exception!r}; use TaskException(...)"
                )
        role = Role(
            name=name,
            parent=parent_node,
            ansible_roles=applied,
            variables=plain,
            secrets=secret_map,
            tests=tuple(tests),
            health_check=health_check,
            audit_exceptions=tuple(audit_exceptions),
            lint_allowed=lint_allowed,
            lint_profile=_check_lint_profile(f"role {name!r}", lint_profile) or self.lint_profile,
            gather_subset=self._check_gather_subset(name, gather_subset),
            drift_allow=tuple(drift_allow),
            cloud=dict(cloud or {}),
            mitogen=self.mitogen if mitogen is None else _check_switch(name, "mitogen", mitogen),
        )
        self._nodes[name] = role
        return role

    def _check_new_name(self, name: str) -> None:
        if not isinstance(name, str) or not ROLE_NAME_RE.fullmatch(name):
            raise DefinitionError(
                f"role name {name!r} is invalid: use 1-63 lowercase letters, digits and '-', "
                "starting with a letter and not ending with '-' (it names a docker repository)"
            )
        if name in self._nodes:
            raise DefinitionError(f"role {name!r} is defined twice")

    def _resolve_parent(self, name: str, parent: Role | Base | str) -> Node:
        if isinstance(parent, str):
            if parent == name:
                raise DefinitionError(f"role {name!r}: a role cannot be its own parent (cycle)")
            if parent not in self._nodes:
                raise DefinitionError(
                    f"role {name!r}: unknown parent {parent!r} "
                    f"(known: {', '.join(sorted(self._nodes)) or 'none'}; define parents first)"
                )
            return self._nodes[parent]
        if not isinstance(parent, Role | Base) or self._nodes.get(parent.name) is not parent:
            raise DefinitionError(f"role {name!r}: its parent must be defined in this project")
        return parent

    def _check_test_path(self, name: str, test: str) -> None:
        """Test paths are relative paths inside the project: tests never read outside it."""
        if not isinstance(test, str) or not test.strip() or "\x00" in test:
            raise DefinitionError(f"role {name!r}: test path {test!r} is empty or not a path")
        path = Path(test)
        if path.is_absolute() or ".." in path.parts:
            raise DefinitionError(
                f"role {name!r}: test path {test!r} must be relative to {self.root} "
                "and stay inside it (no absolute paths, no '..')"
            )
        if not (self.root / path).exists():
            raise DefinitionError(f"role {name!r}: test path {test!r} does not exist")

    def _check_ansible_role(self, name: str, ansible_role: str) -> None:
        if not is_role_name(ansible_role):
            raise DefinitionError(
                f"role {name!r}: {ansible_role!r} is not an Ansible role name (a Galaxy name such "
                "as acme.repo-epel, or a collection role such as ns.collection.role)"
            )
        # Roles from requirements.yml appear with `invoke deps`, which needs this file loaded:
        # such a project has its names checked when a bake, render or audit resolves them.
        if self.content.find(ansible_role) is None and not self.requirements_file.is_file():
            error = self.content.not_found(ansible_role)
            raise DefinitionError(f"role {name!r}: {error}")

    @staticmethod
    def _check_gather_subset(name: str, subset: Sequence[str]) -> tuple[str, ...]:
        if isinstance(subset, str) or not all(
            isinstance(s, str) and re.fullmatch(r"!?[a-z_]+", s) for s in subset
        ):
            raise DefinitionError(
                f"role {name!r}: gather_subset must be a list of Ansible fact subsets "
                f"such as ['min'] or ['!hardware'], not {subset!r}"
            )
        return tuple(subset)

    def image_names(self, registry_id: str) -> ImageNames:
        """How this project's images are named in the registry whose identity is registry_id."""
        return ImageNames(self.image_namespace, self.name, registry_id)

    # -- lookup -----------------------------------------------------------------------------
    def ansible_role_names(self) -> list[str]:
        return self.content.role_names()

    def get(self, name: str) -> Node:
        """The role or base called name, or a DefinitionError listing the known ones."""
        try:
            return self._nodes[name]
        except KeyError:
            known = ", ".join(sorted(self._nodes)) or "none"
            raise DefinitionError(f"unknown role {name!r} (known roles: {known})") from None

    def role_named(self, name: str) -> Role:
        node = self.get(name)
        if not isinstance(node, Role):
            raise DefinitionError(f"{name!r} is a base, not a role; bake a role built on it")
        return node

    def __iter__(self) -> Iterator[Node]:
        return iter(self._nodes.values())

    @property
    def roles(self) -> list[Role]:
        return [n for n in self._nodes.values() if isinstance(n, Role)]

    def children(self, node: Node) -> list[Role]:
        return [r for r in self.roles if r.parent is node]


def _check_lists(role: str, **lists: object) -> None:
    """A string where a list belongs is a common slip (tests="tests/web"): say so."""
    for arg, value in lists.items():
        if isinstance(value, str):
            raise DefinitionError(
                f"role {role!r}: {arg} must be a list of names, not the string {value!r}"
            )


def _check_mappings(role: str, **mappings: object) -> None:
    for arg, value in mappings.items():
        if value is not None and not isinstance(value, Mapping):
            raise DefinitionError(f"role {role!r}: {arg} must be a dict")


def _checked_secrets(
    role: str, secrets: dict[str, Secret], variables: Mapping[str, Any]
) -> dict[str, Secret]:
    """secrets, once every name is a valid variable and every value a Secret, none a variable."""
    for var, secret in secrets.items():
        if not isinstance(var, str) or not valid_variable_name(var):
            raise DefinitionError(
                f"role {role!r}: secret name {var!r} is invalid "
                "(letters, digits and underscores, not starting with ansible_)"
            )
        if not isinstance(secret, Secret):
            raise DefinitionError(
                f"role {role!r}: secret {var!r} must be Secret(env=...) or Secret(file=...), "
                "never a literal value"
            )
        if var in variables:
            raise DefinitionError(f"role {role!r}: {var!r} is both a variable and a secret")
    return secrets
