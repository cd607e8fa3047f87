"""The docker target: a container builder with systemd as PID 1, producing a local Docker image."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from kiln import tools
from kiln.docker import INIT, SYSTEMD_RUN_FLAGS, recorded_image_present
from kiln.errors import BuildError
from kiln.fingerprint import file_digest
from kiln.image_facts import ImageFacts, facts_from_capture
from kiln.image_names import ImageNames
from kiln.model import Base, Project
from kiln.registry import Artifact
from kiln.render import Interpolated
from kiln.targets.base import (
    FACTS_SCRIPT,
    BakePlan,
    BakeTarget,
    LineSink,
    ansible_arguments,
    ansible_env_vars,
    render_playbook,
)

BAKE_LABEL = "kiln.bake"
NAMESPACE_LABEL = "kiln.namespace"  # the image namespace: finds a namespace's builders
#: Whose builder it is (an ImageNames.prefix: project and registry): see reap_builders.
OWNER_LABEL = "kiln.owner"
# The shared apt cache (see apt_cache.py): a named volume, mounted in builders only, under the
# /run tmpfs so that not even its mount point is committed. KILN_APT_CACHE=off bakes without it.
APT_CACHE_VOLUME = "kiln-apt-archives"
APT_CACHE_MOUNT = "/run/kiln-apt-cache"
APT_CACHE_SCRIPT = Path(__file__).resolve().parent / "apt_cache.py"
APT_CACHE_HOOKS_IN_BUILDER = "/run/kiln-apt.py"
# The play's first task: the builder's `apt-get update` runs while Ansible starts (see the HCL).
WAIT_FOR_LISTS = f"python3 {APT_CACHE_HOOKS_IN_BUILDER} wait-update"
# Where the image's facts (kiln.image_facts) wait until the host copies them out, and the script
# that writes them: /run is a tmpfs, never committed.
MANIFEST_IN_BUILDER = "/run/kiln-facts.json"
FACTS_SCRIPT_IN_BUILDER = "/run/kiln-facts.py"
CAPTURE_COMMANDS = (
    f"python3 {APT_CACHE_HOOKS_IN_BUILDER} finish",
    f"KILN_FACTS_OUT={MANIFEST_IN_BUILDER} python3 {FACTS_SCRIPT_IN_BUILDER}",
)
SEAL_COMMANDS = (
    "apt-get clean",
    # Ansible's module temp files stay in root's home after a docker exec connection.
    "rm -rf /var/lib/apt/lists/* /tmp/* /var/tmp/* /root/.ansible",
    # The lists are gone: mark them stale, or roles using apt cache_valid_time skip the update.
    "rm -f /var/lib/apt/periodic/update-success-stamp",
    "touch -d @0 /var/lib/apt/lists",
    "find /var/log -type f -name '*.log' -exec truncate -s 0 {} +",
    # The bake's journal (what systemd and the services logged while Ansible ran) is not the
    # image's: a server starts with an empty one.
    "find /var/log/journal -type f -name '*.journal*' -delete",
)


# Run on the host by shell-local (`sh -e`): capture and seal in the builder in one `docker exec`
# (the commands reach its shell through a quoted here-document, so the host expands none of
# them), copy the package list out, then tell kiln's progress display (through the events file)
# that packer now commits the builder.
SEAL_DELIMITER = "KILN_SEAL"
CAPTURE_SEAL_AND_MARK_COMMIT = (
    Interpolated(
        f"docker exec -i ${{build.ID}} sh -c 'cat > {FACTS_SCRIPT_IN_BUILDER}'"
        ' < "$KILN_FACTS_SCRIPT"'
    ),
    Interpolated(f"docker exec -i ${{build.ID}} sh -e <<'{SEAL_DELIMITER}'"),
    *CAPTURE_COMMANDS,
    *SEAL_COMMANDS,
    SEAL_DELIMITER,
    'mkdir -p "$(dirname "$KILN_MANIFEST_FILE")"',
    Interpolated(f'docker exec ${{build.ID}} cat {MANIFEST_IN_BUILDER} > "$KILN_MANIFEST_FILE"'),
    '[ -z "$KILN_EVENTS_FILE" ] || '
    'echo \'{"event": "phase", "phase": "commit"}\' >> "$KILN_EVENTS_FILE"',
)


def apt_cache_flags() -> tuple[str, ...]:
    """docker run flags that mount the shared apt cache volume, unless KILN_APT_CACHE=off."""
    volume = os.environ.get("KILN_APT_CACHE", APT_CACHE_VOLUME)
    if volume in ("", "off", "0", "false", "no"):
        return ()
    return ("-v", f"{volume}:{APT_CACHE_MOUNT}")


class DockerTarget(BakeTarget):
    """Bakes a role as a layer on its parent's image in a systemd builder container."""

    name: ClassVar[str] = "docker"
    template: ClassVar[str] = "docker.pkr.hcl.j2"

    def hcl_name(self, role: str) -> str:
        """The local default keeps the short name the README promises: packer/<role>.pkr.hcl."""
        return f"{role}.pkr.hcl"

    def flattens_chain(self) -> bool:
        """Image layers are cheap: each role is baked on its parent's image."""
        return False

    def recipe(self) -> dict[str, Any]:
        """Builder flags, capture and seal steps, the apt hook script: part of fingerprints."""
        # The apt cache volume is not here: whether it is mounted and what it holds cannot change
        # what is installed (a cached .deb is used only if its sha256 is the one the fresh apt
        # lists name). The hook script is: it runs in the builder, like the seal commands.
        return {
            **super().recipe(),
            "run": list(SYSTEMD_RUN_FLAGS),
            "init": INIT,
            "capture": list(CAPTURE_COMMANDS),
            "seal": list(SEAL_COMMANDS),
            "apt_cache_script": file_digest(APT_CACHE_SCRIPT),
        }

    def _run_command(self, plan: BakePlan) -> list[Any]:
        """docker run arguments of the builder: labelled, systemd as PID 1, the apt cache, the
        project's package source mounts (read-only; not fingerprinted, like the mirror)."""
        return [
            "-d",
            "--label",
            Interpolated(f"{BAKE_LABEL}=${{var.bake_id}}"),
            "--label",
            f"{NAMESPACE_LABEL}={plan.project.image_namespace}",
            "--label",
            f"{OWNER_LABEL}={plan.images.prefix}",
            *SYSTEMD_RUN_FLAGS,
            *apt_cache_flags(),
            *(
                flag
                for m in plan.project.package_sources.builder_mounts()
                for flag in m.docker_flags()
            ),
            "--",
            "{{.Image}}",
            INIT,
        ]

    def _changes(self, plan: BakePlan) -> list[Any]:
        """docker commit changes: the command and kiln's labels of the image."""
        return [
            f'CMD ["{INIT}"]',
            f"LABEL kiln.role={plan.role.name}",
            Interpolated("LABEL kiln.version=${var.version}"),
            f"LABEL kiln.fingerprint={plan.fingerprint.digest}",
            f"LABEL kiln.parent={plan.parent_label}",
            Interpolated("LABEL kiln.source-commit=${var.source_commit}"),
            # docker commit keeps the builder's labels: blank the bake label so that images and
            # the servers started from them are never mistaken for a leftover builder.
            f'LABEL {BAKE_LABEL}=""',
        ]

    def _ansible_arguments(self, plan: BakePlan) -> list[Any]:
        """Ansible's extra arguments: reach the builder through docker exec.

        The connection is named `docker`, which Ansible routes to community.docker.docker and
        Mitogen to its own docker method; Mitogen takes the container from ansible_ssh_host,
        which Packer's inventory sets to 127.0.0.1, so that is overridden too.
        """
        return ansible_arguments(
            plan,
            [
                Interpolated("ansible_host=${build.ID}"),
                Interpolated("ansible_ssh_host=${build.ID}"),
                "ansible_connection=docker",
                "ansible_python_interpreter=/usr/bin/python3",
            ],
        )

    def context(self, plan: BakePlan) -> dict[str, Any]:
        """Template variables for docker.pkr.hcl.j2."""
        return {
            "role_name": plan.role.name,
            "hcl_path": plan.relative(plan.hcl_path),
            "parent_image": parent_ref(plan),
            "repository": plan.repository,
            "playbook_path": plan.relative(plan.playbook_path),
            "manifest_default": plan.manifest_default,
            "has_secrets": bool(plan.role.secrets),
            "run_command": self._run_command(plan),
            "changes": self._changes(plan),
            "ansible_arguments": self._ansible_arguments(plan),
            "ansible_env_vars": ansible_env_vars(plan),
            "apt_cache_script": plan.relative(APT_CACHE_SCRIPT),
            "facts_script": plan.relative(FACTS_SCRIPT),
            "capture_seal_and_mark_commit": list(CAPTURE_SEAL_AND_MARK_COMMIT),
        }

    def playbook(self, plan: BakePlan) -> str:
        """The role's play, first waiting for the lists of the update started with the builder."""
        return render_playbook(plan, lists_wait_command=WAIT_FOR_LISTS)

    def expectations(self, plan: BakePlan) -> dict[str, Any]:
        """What the parsed HCL must hold: the parent image, run command, changes, tag."""
        source = f"source.docker.{plan.role.name}"
        return {
            f"{source}.image": parent_ref(plan),
            f"{source}.pull": False,
            f"{source}.run_command": [str(v) for v in self._run_command(plan)],
            f"{source}.changes": [str(v) for v in self._changes(plan)],
            "build.provisioner.ansible.playbook_file": plan.relative(plan.playbook_path),
            "build.provisioner.ansible.extra_arguments": [
                str(v) for v in self._ansible_arguments(plan)
            ],
            "build.post-processor.docker-tag.repository": plan.repository,
        }

    # -- baking -----------------------------------------------------------------------------
    def preflight(self) -> None:
        """Fail early without a Docker engine or mmdebstrap."""
        tools.require_docker()
        tools.which("mmdebstrap")

    def runs_acceptance_tests(self) -> bool:
        """kiln.acceptance starts its test instances as containers of these images."""
        return True

    @contextmanager
    def bake_session(self, plan: BakePlan, work: Path) -> Iterator[dict[str, str]]:
        """Nothing per bake: Ansible reaches the builder through docker exec, with no key."""
        yield {}

    def bootstrap_base(
        self,
        project: Project,
        images: ImageNames,
        base: Base,
        version: int,
        fingerprint: str,
        log: LineSink,
        *,
        reuse: bool = True,
    ) -> Artifact:
        """mmdebstrap the suite straight into `docker import`, with systemd as the command.

        An image with the same fingerprint already in the engine (another checkout baked it) is
        tagged with this project's name instead of bootstrapped again, unless reuse is False.
        """
        ref = images.ref(base.name, version)
        latest = f"{project.image_namespace}/{base.name}:latest"
        existing = tools.docker(
            "images", "-q", "--no-trunc", "--filter", f"label=kiln.fingerprint={fingerprint}"
        ).split()
        if existing and reuse:
            log(f"reusing image {existing[0]} with fingerprint {fingerprint[:12]}")
            tools.docker("tag", existing[0], ref)
            return self._tag_latest(ref, latest)
        mmdebstrap = [
            tools.which("mmdebstrap"),
            f"--variant={base.variant}",
            f"--include={','.join(base.packages)}",
            base.suite,
            "-",
        ]
        importer = [
            "docker",
            "import",
            "--change",
            f'CMD ["{INIT}"]',
            "--change",
            f"LABEL kiln.role={base.name}",
            "--change",
            f"LABEL kiln.fingerprint={fingerprint}",
            "-",
            ref,
        ]
        log(f"$ {' '.join(mmdebstrap)} | {' '.join(importer)}")
        with subprocess.Popen(mmdebstrap, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as debs:
            assert debs.stdout is not None
            imported = subprocess.run(
                importer, stdin=debs.stdout, capture_output=True, text=True, check=False
            )
            debs.stdout.close()
            stderr = debs.stderr.read().decode(errors="replace") if debs.stderr else ""
            debs.wait()
        for line in stderr.splitlines():
            log(line)
        if debs.returncode != 0 or imported.returncode != 0:
            tail = "\n".join((stderr + imported.stderr).strip().splitlines()[-20:])
            raise BuildError(
                f"bootstrapping base {base.name!r} ({base.suite}) failed: mmdebstrap exit "
                f"{debs.returncode}, docker import exit {imported.returncode}:\n{tail}"
            )
        return self._tag_latest(ref, latest)

    def base_facts(self, artifact: Artifact) -> ImageFacts:
        """The capture script run by the base image's python3 in a throwaway container with no
        network (every base has python3: Ansible needs it)."""
        script = FACTS_SCRIPT.read_text()
        result = subprocess.run(
            [
                "docker",
                "run",
                "--rm",
                "-i",
                "--network",
                "none",
                "--entrypoint",
                "python3",
                artifact.image_id,
                "-",
            ],
            input=script,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise BuildError(
                f"cannot read the package list of base image {artifact.ref}: "
                f"{result.stderr.strip()[-500:]}"
            )
        return facts_from_capture(result.stdout, artifact.ref)

    def _tag_latest(self, ref: str, latest: str) -> Artifact:
        """Bases are also tagged <namespace>/<base>:latest, the default image of Molecule
        scenarios run by hand (molecule/, KILN_TEST_IMAGE unset).

        The one name shared on purpose: no record names it and kiln never starts it (`invoke
        test-role` passes the recorded ref), so the newest bootstrap on the engine may have it.
        """
        tools.docker("tag", ref, latest)
        return self._artifact(ref)

    def _artifact(self, ref: str) -> Artifact:
        """The registry record of a local image, from docker image inspect."""
        out = tools.docker("image", "inspect", "--format", "{{.Id}} {{.Size}}", ref)
        image_id, size = out.split()
        return Artifact(
            target=self.name,
            ref=ref,
            image_id=image_id,
            sha256=image_id.removeprefix("sha256:"),
            size_bytes=int(size),
        )

    def artifact_exists(self, artifact: Artifact) -> bool:
        """Whether the engine still has the recorded image under its tag; ImageMoved when the
        tag names another image now."""
        return recorded_image_present(artifact)

    def collect_artifact(self, plan: BakePlan, version: int) -> Artifact:
        """The image packer tagged for this version."""
        ref = plan.images.ref(plan.role.name, version)
        if tools.docker_image_id(ref) is None:
            raise BuildError(f"packer finished but image {ref} is not in the Docker engine")
        return self._artifact(ref)

    def delete_artifact(self, artifact: Artifact) -> None:
        """docker rmi the image's tag; ImageMoved, untouched, if it names another image now."""
        if recorded_image_present(artifact):
            tools.run(["docker", "rmi", artifact.ref], check=False)

    def reap_builders(
        self, *, role: str, bake_id: str | None = None, owner: str | None = None
    ) -> list[str]:
        """Remove builder containers of role (or of one bake) that a killed run left behind.

        With owner, only builders of that project and registry (ImageNames.prefix): other
        checkouts and test sandboxes on the same engine bake roles of the same names, and their
        builders are alive.
        """
        fields = [
            "{{.ID}}",
            *(f'{{{{.Label "{name}"}}}}' for name in (BAKE_LABEL, OWNER_LABEL)),
        ]
        out = tools.docker(
            "ps", "-a", "--filter", f"label={BAKE_LABEL}", "--format", "\t".join(fields)
        )
        doomed = []
        for line in out.splitlines():
            container, label, made_by = [*line.split("\t"), "", ""][:3]
            mine = owner is None or made_by == owner
            if (bake_id is not None and label == bake_id) or (
                bake_id is None and label.startswith(f"{role}:") and mine
            ):
                doomed.append(container)
        if doomed:
            tools.run(["docker", "rm", "-f", "-v", *doomed], check=False, timeout=120)
        return doomed


def parent_ref(plan: BakePlan) -> str:
    """The parent's docker image a bake starts from; it must be baked already."""
    if plan.parent is None:
        raise BuildError(f"{plan.role.name} needs a baked parent for the docker target")
    artifact = plan.parent.artifact("docker")
    if artifact is None:
        raise BuildError(f"{plan.parent.label} has no docker image to bake {plan.role.name} on")
    return artifact.ref
