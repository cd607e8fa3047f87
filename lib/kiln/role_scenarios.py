"""Molecule scenarios that Ansible roles ship themselves (roles/<role>/molecule/<scenario>/),
adapted to run offline against kiln's throwaway systemd containers without touching the role.

The scenario is copied into a temporary project that mirrors the role (symlinks to its files), and
its molecule.yml is rewritten there: kiln's delegated driver and images, the scenario's own rest.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from molecule.constants import DEFAULT_CONFIG as MOLECULE_DEFAULTS

from kiln.errors import DefinitionError

__all__ = [
    "DEFAULT_SCENARIO",
    "IMAGE_REF",
    "Adaptation",
    "PreparedScenario",
    "adapt_molecule_config",
    "find_role",
    "instance_names",
    "prepare_scenario",
    "role_fqrn",
    "shipped_scenarios",
]

#: The scenario `molecule test` runs when none is named.
DEFAULT_SCENARIO = "default"
#: The image of every instance: the same expression kiln's own scenarios use (KILN_TEST_IMAGE).
IMAGE_REF = "${KILN_TEST_IMAGE:-kiln/debian-bookworm:latest}"
#: Platform keys that describe the inventory rather than the container, so they are kept.
KEPT_PLATFORM_KEYS = ("name", "groups", "children")
#: Steps that would need the network (Galaxy) or tools kiln does not run; dropped from sequences.
DROPPED_STEPS = frozenset({"dependency", "lint"})
#: Steps a test sequence runs before `create` to clear a previous run's instances. kiln names
#: every instance for its run alone and its create playbook removes a leftover of that name, so
#: they would only start ansible-playbook for nothing.
CLEARING_STEPS = frozenset({"cleanup", "destroy"})
#: Docker accepts longer names, but a bounded one stays readable in `docker ps`.
MAX_CONTAINER_NAME = 63
#: Role entries never mirrored into the temporary project: VCS data and tool caches.
_HIDDEN = re.compile(r"^\.")
_UNSAFE_NAME = re.compile(r"[^a-z0-9_.-]+")
_UNSAFE_HOST = re.compile(r"[^a-z0-9-]+")

_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Adaptation:
    """What kiln changed in a scenario's molecule.yml, for the report."""

    #: (platform name, the image the scenario named) for every platform, in order.
    replaced_images: tuple[tuple[str, str], ...]
    #: The driver the scenario named (docker, podman...).
    driver: str
    #: Steps removed from the scenario's sequences (they need Galaxy or a linter).
    dropped_steps: tuple[str, ...] = ()
    #: Steps removed from the start of the test sequence (nothing to clear: see CLEARING_STEPS).
    skipped_clearing: tuple[str, ...] = ()

    def notes(self, image: str) -> list[str]:
        """One line per change, image being the kiln image that replaced the platforms' own."""
        lines = [f"driver {self.driver} replaced by kiln's delegated driver"]
        lines += [f"platform {name}: {old} -> {image}" for name, old in self.replaced_images]
        if self.dropped_steps:
            lines.append(f"offline: skipped {', '.join(self.dropped_steps)}")
        if self.skipped_clearing:
            steps = ", ".join(self.skipped_clearing)
            lines.append(f"new instances for this run: skipped {steps} before create")
        return lines


@dataclass(frozen=True)
class PreparedScenario:
    """A role scenario ready to run: ``molecule test -s scenario`` from ``project_dir``."""

    role: str
    scenario: str
    project_dir: Path
    platforms: tuple[str, ...]
    adaptation: Adaptation


def find_role(name: str, roles_paths: Sequence[Path]) -> Path | None:
    """The directory of role NAME in the first roles path that holds it, or None."""
    if not name or "/" in name or name.startswith("."):
        return None
    for roles_path in roles_paths:
        path = roles_path / name
        if path.is_dir():
            return path
    return None


def shipped_scenarios(role_path: Path) -> list[str]:
    """Names of the scenarios a role ships in its own molecule/ directory."""
    molecule = role_path / "molecule"
    if not molecule.is_dir():
        return []
    return sorted(p.name for p in molecule.iterdir() if (p / "molecule.yml").is_file())


def role_fqrn(role_path: Path) -> str:
    """The name Molecule links the role under: galaxy_info namespace.role_name, as ansible-compat.

    Without a namespace (or with an author's full name instead) it is the bare role name; without
    role_name, the directory name without an ``ansible-role-`` prefix.
    """
    info = _galaxy_info(role_path)
    namespace = info.get("namespace") or info.get("author") or ""
    if not isinstance(namespace, str) or re.match(r"^\w+ \w+", namespace):
        namespace = ""
    role_name = info.get("role_name")
    if not isinstance(role_name, str) or not role_name:
        role_name = re.sub(r"^ansible-(role-)?", "", role_path.name).split(".", maxsplit=2)[-1]
    return f"{namespace}.{role_name}" if namespace else role_name


def instance_names(label: str, platforms: Sequence[str], run_id: str) -> dict[str, dict[str, str]]:
    """Docker container name and hostname for each platform of one run of scenario ``label``.

    Names are lowercase, use only the characters Docker allows, stay within MAX_CONTAINER_NAME
    characters and end with the run id and the platform's index, so they never collide.
    """
    prefix = "kiln-molecule-"
    names: dict[str, dict[str, str]] = {}
    for index, platform in enumerate(platforms):
        suffix = f"-{_safe(run_id, _UNSAFE_NAME, 16)}-{index}"
        room = MAX_CONTAINER_NAME - len(prefix) - len(suffix)
        middle = _safe(f"{label}-{platform}", _UNSAFE_NAME, room)
        names[platform] = {
            "container": f"{prefix}{middle}{suffix}",
            "hostname": _safe(platform, _UNSAFE_HOST, 63),
        }
    return names


def _safe(text: str, unsafe: re.Pattern[str], limit: int) -> str:
    cleaned = unsafe.sub("-", text.lower()).strip("-_.")
    return cleaned[:limit].rstrip("-_.") or "x"


def adapt_molecule_config(
    config: Mapping[str, Any],
    *,
    create_playbook: str,
    destroy_playbook: str,
    roles_path: str,
) -> tuple[dict[str, Any], Adaptation]:
    """The molecule.yml kiln runs in place of a role scenario's own, and what changed.

    Kept: provisioner settings (inventory, host_vars, group_vars, playbooks, options), the
    ``ansible`` section, verifier, scenario sequences and each platform's name, groups and
    children. Replaced: the driver (kiln's delegated one, with kiln's create and destroy
    playbooks), every platform's image (IMAGE_REF) and container settings, and Galaxy (the
    dependency step and prerun are off). ``roles_path`` is put before any roles path the scenario
    sets itself.
    """
    if not isinstance(config, Mapping):
        raise DefinitionError("molecule.yml is not a mapping")
    adapted: dict[str, Any] = copy.deepcopy(dict(config))
    driver = adapted.get("driver") or {}
    driver_name = str(driver.get("name", "default")) if isinstance(driver, Mapping) else "?"
    adapted["driver"] = {"name": "default", "options": {"managed": True}}
    dependency = adapted.get("dependency")
    dependency = dict(dependency) if isinstance(dependency, Mapping) else {}
    adapted["dependency"] = {**dependency, "name": "galaxy", "enabled": False}
    adapted["prerun"] = False
    adapted["shared_state"] = False  # kiln's create and destroy belong to this scenario alone
    adapted.pop("lint", None)
    platforms, replaced = _adapt_platforms(adapted.get("platforms"))
    adapted["platforms"] = platforms
    _set_playbooks(adapted, create=create_playbook, destroy=destroy_playbook)
    _prepend_roles_path(adapted, roles_path)
    clearing = _skip_clearing_steps(adapted)
    dropped = _drop_offline_steps(adapted)
    return adapted, Adaptation(tuple(replaced), driver_name, tuple(dropped), tuple(clearing))


def _adapt_platforms(platforms: object) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    if not platforms:
        platforms = [{"name": "instance"}]
    if not isinstance(platforms, list) or not all(isinstance(p, Mapping) for p in platforms):
        raise DefinitionError("molecule.yml: platforms must be a list of mappings")
    kept: list[dict[str, Any]] = []
    replaced: list[tuple[str, str]] = []
    for platform in platforms:
        name = platform.get("name")
        if not isinstance(name, str) or not name:
            raise DefinitionError(f"molecule.yml: a platform has no name: {dict(platform)}")
        kept.append({k: platform[k] for k in KEPT_PLATFORM_KEYS if k in platform})
        kept[-1]["image"] = IMAGE_REF
        replaced.append((name, str(platform.get("image") or platform.get("box") or "none")))
    return kept, replaced


def _set_playbooks(config: dict[str, Any], *, create: str, destroy: str) -> None:
    # Molecule moves provisioner.playbooks over ansible.playbooks when both exist, so kiln's
    # playbooks go into whichever section Molecule will read.
    section = _legacy_or_ansible(config, "playbooks")
    section["create"] = create
    section["destroy"] = destroy


def _prepend_roles_path(config: dict[str, Any], roles_path: str) -> None:
    env = _legacy_or_ansible(config, "env")
    own = env.get("ANSIBLE_ROLES_PATH")
    env["ANSIBLE_ROLES_PATH"] = f"{roles_path}{os.pathsep}{own}" if own else roles_path


def _legacy_or_ansible(config: dict[str, Any], key: str) -> dict[str, Any]:
    provisioner = config.get("provisioner")
    if isinstance(provisioner, dict) and isinstance(provisioner.get(key), dict):
        section: dict[str, Any] = provisioner[key]
        return section
    ansible = config.setdefault("ansible", {})
    if not isinstance(ansible, dict):
        raise DefinitionError("molecule.yml: ansible must be a mapping")
    value = ansible.get(key)
    if not isinstance(value, dict):
        value = ansible[key] = {}
    return value


def _drop_offline_steps(config: dict[str, Any]) -> list[str]:
    scenario = config.get("scenario")
    if not isinstance(scenario, dict):
        return []
    dropped: set[str] = set()
    for key, steps in scenario.items():
        if key.endswith("_sequence") and isinstance(steps, list):
            dropped.update(step for step in steps if step in DROPPED_STEPS)
            scenario[key] = [step for step in steps if step not in DROPPED_STEPS]
    return sorted(dropped)


def _skip_clearing_steps(config: dict[str, Any]) -> list[str]:
    """Drop cleanup and destroy before the test sequence's first real step; returns them.

    A scenario without a test sequence gets Molecule's own default, so that only those go.
    """
    scenario = config.setdefault("scenario", {})
    if not isinstance(scenario, dict):
        raise DefinitionError("molecule.yml: scenario must be a mapping")
    steps = scenario.get("test_sequence", MOLECULE_DEFAULTS["scenario"]["test_sequence"])
    if not isinstance(steps, list):
        return []
    kept: list[Any] = []
    skipped: list[str] = []
    for step in steps:
        started = any(s not in CLEARING_STEPS | DROPPED_STEPS for s in kept)
        if step in CLEARING_STEPS and not started:
            skipped.append(str(step))
        else:
            kept.append(step)
    scenario["test_sequence"] = kept
    return skipped


def prepare_scenario(
    role_path: Path,
    scenario: str,
    workdir: Path,
    *,
    shared_dir: Path,
    roles_paths: Sequence[Path],
) -> PreparedScenario:
    """Lay out a temporary project in workdir from which the adapted scenario runs.

    workdir/<role>/ mirrors the role (a symlink per entry, so reads see the role and nothing is
    written into it) with a copy of its molecule/ directory holding the adapted molecule.yml;
    workdir/roles/ links the role under its Galaxy name (namespace.role_name), ahead of the
    project's roles paths.
    """
    source = role_path / "molecule" / scenario / "molecule.yml"
    try:
        config = yaml.load(source.read_text(encoding="utf-8"), Loader=_SafeLoader) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise DefinitionError(f"cannot read {source}: {exc}") from exc
    project_dir = workdir / role_path.name
    _mirror_role(role_path, project_dir)
    for other in shipped_scenarios(role_path):
        # Molecule loads every scenario it finds, and the others still name drivers and images
        # kiln does not have; their files stay, for scenarios that share playbooks.
        if other != scenario:
            (project_dir / "molecule" / other / "molecule.yml").unlink()
    links = workdir / "roles"
    links.mkdir()
    for alias in dict.fromkeys((role_fqrn(role_path), role_path.name)):
        (links / alias).symlink_to(role_path.resolve(), target_is_directory=True)
    roles_path = os.pathsep.join(str(p) for p in (links, *roles_paths))
    adapted, adaptation = adapt_molecule_config(
        config,
        create_playbook=str(shared_dir / "create.yml"),
        destroy_playbook=str(shared_dir / "destroy.yml"),
        roles_path=roles_path,
    )
    target = project_dir / "molecule" / scenario / "molecule.yml"
    target.write_text(
        "# Written by kiln from the role's own molecule.yml (see kiln.role_scenarios).\n"
        + yaml.safe_dump(adapted, sort_keys=False, default_flow_style=False),
        encoding="utf-8",
    )
    platforms = tuple(str(p["name"]) for p in adapted["platforms"])
    return PreparedScenario(role_path.name, scenario, project_dir, platforms, adaptation)


def _mirror_role(role_path: Path, project_dir: Path) -> None:
    project_dir.mkdir(parents=True)
    for entry in sorted(role_path.iterdir()):
        if _HIDDEN.match(entry.name):
            continue
        if entry.name == "molecule":
            # A copy, not a link: Molecule writes its adapted molecule.yml and pytest its cache
            # next to the scenario's files.
            shutil.copytree(entry, project_dir / "molecule", symlinks=True)
        else:
            (project_dir / entry.name).symlink_to(entry.resolve())


def _galaxy_info(role_path: Path) -> dict[str, Any]:
    for name in ("main.yml", "main.yaml", "main"):
        meta = role_path / "meta" / name
        if meta.is_file():
            try:
                data = yaml.load(meta.read_text(encoding="utf-8"), Loader=_SafeLoader)
            except (OSError, yaml.YAMLError):
                return {}
            info = data.get("galaxy_info") if isinstance(data, dict) else None
            return dict(info) if isinstance(info, dict) else {}
    return {}
