"""Deploy by replacement: make a role's running instances equal to the version a channel names.

New containers are started from the version's image, pass the role's health check, then the old
ones are removed; nothing is ever patched in place. `servers` and `drift` only read. This package
runs no Ansible and no SSH: its only process is `docker`, and its only `docker exec` is the role's
own read-only health check. tests/unit/test_deploy.py holds it to that. By module:

- ``deployment``: ``deploy``, one deployment from its plan to its record, and the role's lock;
- ``plan``: the desired state: what a deploy is asked for, and the version and image it runs;
- ``strategies``: rolling and blue-green, the order in which new instances replace old ones;
- ``rollout``: the instances one deployment starts, checks and retires, and its steps;
- ``rollback``: putting back the old servers when a new instance fails;
- ``health``: a role's health check, run once or until it passes;
- ``audit``: ``DeployResult`` and its record in the registry;
- ``engine``: the container engine protocol and the local Docker engine;
- ``server``: a deployed server and the labels that mark it;
- ``status``: ``servers``, each instance's health and standing now;
- ``drift_report``: ``drift``, the files an instance changed and versions no channel names;
- ``text``: servers and drift as lines of text.
"""

from __future__ import annotations

from kiln.deploy.audit import DeployResult
from kiln.deploy.deployment import deploy
from kiln.deploy.drift_report import BASELINE_DRIFT_ALLOW, FileChange, drift, significant_changes
from kiln.deploy.engine import DockerEngine, server_from_inspect
from kiln.deploy.health import BOOT_CHECK, health_check_of
from kiln.deploy.rollout import DeployStep
from kiln.deploy.server import (
    LABEL_CHANNEL,
    LABEL_ID,
    LABEL_NAMESPACE,
    LABEL_ROLE,
    LABEL_VERSION,
    Server,
    parse_docker_time,
)
from kiln.deploy.status import servers
from kiln.deploy.text import drift_lines, format_age, server_table

__all__ = [
    "BASELINE_DRIFT_ALLOW",
    "BOOT_CHECK",
    "LABEL_CHANNEL",
    "LABEL_ID",
    "LABEL_NAMESPACE",
    "LABEL_ROLE",
    "LABEL_VERSION",
    "DeployResult",
    "DeployStep",
    "DockerEngine",
    "FileChange",
    "Server",
    "deploy",
    "drift",
    "drift_lines",
    "format_age",
    "health_check_of",
    "parse_docker_time",
    "server_from_inspect",
    "server_table",
    "servers",
    "significant_changes",
]
