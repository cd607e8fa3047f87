"""`packer init` before a build whose HCL pins its plugins (Packer 1.7 and newer).

Files rendered for Packer 1.6 pin nothing (it has neither the block nor the command): no run.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

from kiln.bake.failures import init_failure, write_failure
from kiln.bake.invocation import PackerInvocation, packer_env
from kiln.bake.scope import packer_temp_dir
from kiln.console import Reporter
from kiln.packer import run_packer
from kiln.packer_plugins import declared_plugins
from kiln.private_files import private_open
from kiln.redact import Redactor

INIT_LOG = "packer-init.log"


def install_plugins(
    invocation: PackerInvocation, hcl: str, reporter: Reporter, *, log_dir: Path, redact: Redactor
) -> dict[str, str]:
    """`packer init` the plan's HCL if it pins plugins; returns its pins (none: nothing ran).

    It runs like the build, through run_packer (its own session, Ctrl-C forwarded, output
    redacted into log_dir), and fails with PluginInitError, or Interrupted after Ctrl-C.
    """
    plan = invocation.plan
    root = plan.project.root
    plugins = declared_plugins(hcl, source=plan.relative(plan.hcl_path))
    if not plugins:
        return {}
    role = plan.role.name
    reporter.phase(role, "plugins", f"packer init {plan.relative(plan.hcl_path)}")
    output: deque[str] = deque(maxlen=20)

    def on_line(line: str) -> None:
        output.append(line)
        reporter.packer_line(role, line)

    log_path = log_dir / INIT_LOG
    try:
        with packer_temp_dir() as temp_dir, private_open(log_path) as log:
            run = run_packer(
                invocation.init_argv(),
                cwd=root,
                env=packer_env(plan.project, reporter, temp_dir),
                events_path=None,
                log=log,
                on_line=on_line,
                on_event=lambda _event: None,
                redact=redact,
            )
    except OSError as exc:  # the log's disk is full: packer was stopped before this
        raise write_failure(plan.role, invocation.version, exc, log_path, root) from exc
    if run.interrupted or run.returncode != 0:
        raise init_failure(
            plan.role,
            invocation.version,
            run,
            plugins=[f"{name} {version}" for name, version in plugins.items()],
            output=list(output),
            log=log_path,
            root=root,
        )
    return plugins
