"""The Packer command line of one bake, and the environment Packer (and Ansible) run in."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kiln.console import Reporter
from kiln.guard import ansible_environment
from kiln.image_facts import FACTS_FILE
from kiln.model import Project
from kiln.private_files import write_private
from kiln.redact import Redactor
from kiln.targets.base import BakePlan


@dataclass(frozen=True)
class PackerInvocation:
    """`packer build` of one plan as one version: its -var list and its HCL file."""

    packer: str
    plan: BakePlan
    version: int
    bake_id: str
    source_commit: str
    work: Path
    #: The JSON file of secret values on a tmpfs (kiln.secret_files), while packer runs.
    secret_file: Path | None = None

    @property
    def events_path(self) -> Path:
        return self.work / "events.jsonl"

    def variables(self, session_vars: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
        """The -var values in order: kiln's, the secrets file, then the target's session."""
        values = [
            ("version", str(self.version)),
            ("source_commit", self.source_commit),
            ("bake_id", self.bake_id),
            ("manifest_file", self.plan.relative(self.work / FACTS_FILE)),
            ("events_file", str(self.events_path.resolve())),
        ]
        if self.secret_file is not None:
            values.append(("secret_vars_file", str(self.secret_file.resolve())))
        return values + list((session_vars or {}).items())

    def argv(self, session_vars: Mapping[str, str] | None = None) -> list[str]:
        argv = [self.packer, "build", "-machine-readable"]
        for name, value in self.variables(session_vars):
            argv += ["-var", f"{name}={value}"]
        return [*argv, self.plan.relative(self.plan.hcl_path)]

    def init_argv(self) -> list[str]:
        """`packer init` of the HCL, which installs the plugins it pins (Packer 1.7+)."""
        return [self.packer, "init", self.plan.relative(self.plan.hcl_path)]


def packer_env(project: Project, reporter: Reporter, temp_dir: Path) -> dict[str, str]:
    """kiln's environment without variables that could point Ansible elsewhere than the builder.

    Packer, its plugins and Ansible keep their temporary files (the ansible provisioner's copy of
    the builder's private key, cloud-init seed ISOs, plugin sockets) in temp_dir, which the bake
    removes: left in /tmp, they outlived every bake, even a successful one.
    """
    env, dropped = ansible_environment(os.environ)
    for name in dropped:
        reporter.warning(
            "kiln", f"ignoring {name}: Ansible only ever targets the throwaway builder"
        )
    # ansible-playbook comes from the same environment as kiln, venv or not.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(
        CHECKPOINT_DISABLE="1",  # packer would otherwise call home on every run
        PACKER_NO_COLOR="1",
        PACKER_CACHE_DIR=str(project.state_path / "packer_cache"),
        # TMPDIR for Go's and Python's temp files, PACKER_TMP_DIR for the plugin SDK's.
        TMPDIR=str(temp_dir),
        PACKER_TMP_DIR=str(temp_dir),
    )
    return env


def keep_events(work: Path, log_dir: Path, redact: Redactor, reporter: Reporter) -> None:
    """Move Ansible's events of a run into its log directory, redacted."""
    events = work / "events.jsonl"
    if events.exists():
        try:
            write_private(log_dir / "ansible-events.jsonl", redact(events.read_text()))
        except OSError as exc:  # runs in a finally: never hide the bake's own error
            reporter.warning("kiln", f"cannot keep the Ansible events in {log_dir}: {exc}")
        events.unlink()
