"""The sandbox's environment: built from an allow-list, never inherited whole.

Nothing of the operator's shell reaches Ansible: no ANSIBLE_* but the settings kiln's rendered
HCL gives, no AWS_*, DOCKER_HOST, SSH_AUTH_SOCK, proxies or credentials.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

import kiln
from kiln.controller.sandbox import DOCKER_SOCKET

#: The ANSIBLE_* settings kiln's templates set (kiln.targets.base, the qemu target) and Packer
#: adds; Packer applies the template's after the caller's, so an operator's value cannot survive.
ANSIBLE_SETTINGS = frozenset(
    {
        "ANSIBLE_PIPELINING",
        "ANSIBLE_NO_TARGET_SYSLOG",
        "ANSIBLE_CALLBACKS_ENABLED",
        "ANSIBLE_RETRY_FILES_ENABLED",
        "ANSIBLE_NOCOLOR",
        "ANSIBLE_ROLES_PATH",
        "ANSIBLE_COLLECTIONS_PATH",
        "ANSIBLE_CALLBACK_PLUGINS",
        "ANSIBLE_STRATEGY_PLUGINS",
        "ANSIBLE_STRATEGY",
        "ANSIBLE_SSH_RETRIES",
        "ANSIBLE_TIMEOUT",
        "ANSIBLE_HOST_KEY_CHECKING",
        "ANSIBLE_SCP_IF_SSH",
    }
)
#: kiln's own variables for the run (events file, idempotence pass).
KILN_SETTINGS = frozenset({"KILN_EVENTS_FILE", "KILN_PASS"})
#: Plain process settings, harmless to pass on.
PASSED = frozenset({"LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM"})


def sandbox_environment(env: Mapping[str, str], run: Path) -> dict[str, str]:
    """The environment inside the sandbox for a run whose private directory is run."""
    allowed = ANSIBLE_SETTINGS | KILN_SETTINGS | PASSED
    inside = {name: value for name, value in env.items() if name in allowed}
    home = run / "home"
    inside.update(
        PATH=os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin", "/bin"]),
        HOME=str(home),
        ANSIBLE_HOME=str(home / ".ansible"),
        ANSIBLE_LOCAL_TEMP=str(home / ".ansible" / "tmp"),
        # kiln's own configuration file: a project's ansible.cfg is never read.
        ANSIBLE_CONFIG=str(run / "ansible.cfg"),
        # The docker client: the engine's socket only, and no client configuration (registry
        # credentials live in ~/.docker/config.json, which is not in the sandbox anyway).
        DOCKER_HOST=f"unix://{DOCKER_SOCKET}",
        DOCKER_CONFIG=str(home / ".docker"),
        TMPDIR="/tmp",
        # The directory kiln was imported from (a checkout on PYTHONPATH, or site-packages):
        # the same kiln inside as outside, with what is installed beside it.
        PYTHONPATH=str(Path(kiln.__file__).parent.parent),
        PYTHONDONTWRITEBYTECODE="1",
    )
    inside.setdefault("LANG", "C.UTF-8")
    return inside
