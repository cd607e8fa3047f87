"""The rules each play and task is checked against: delegation, hosts, connection vars, secrets."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiln.errors import DefinitionError
from kiln.guard.arguments import _JINJA_RE, _TEMPLATED_RE, _strings, _truthy
from kiln.guard.control_host import _ControlHost
from kiln.guard.findings import _Recorder, _Where
from kiln.guard.lookups import keyword_lookups
from kiln.guard.rule import Rule
from kiln.guard.sources import controller_sources

_LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_SELF_RE = re.compile(r"\{\{\s*inventory_hostname\s*\}\}")
_HOST_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")
_SECRET_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CONNECTION_VARS = frozenset(
    {"ansible_host", "ansible_ssh_host", "ansible_connection", "ansible_docker_host"}
)


@dataclass(frozen=True)
class _Ctx:
    """What a task inherits from its role, play, block or include."""

    role: str  # "" outside a role
    role_dir: Path | None
    local: bool = False  # runs on the control host
    no_log: bool = False


class _Rules:
    """Checks plays and tasks against every rule, recording what breaks one."""

    def __init__(
        self,
        recorder: _Recorder,
        *,
        work_dir: Path | None,
        production_hosts: Sequence[str],
        secret_vars: Sequence[str],
        builder_group: str,
    ) -> None:
        self._rec = recorder
        normalised = os.path.normpath(os.path.abspath(work_dir)) if work_dir else None
        self._control_host = _ControlHost(recorder, normalised)
        self._work_dir = normalised
        self._prod = tuple(p for p in (_normalize_host(h) for h in production_hosts) if p)
        for name in secret_vars:
            if not _SECRET_NAME_RE.match(name):
                raise DefinitionError(f"secret variable name {name!r} is not a valid identifier")
        # A whole name: not part of a longer one, an attribute or a quoted string.
        self._secrets = tuple(
            (name, re.compile(rf"(?<![\w.'\"]){re.escape(name)}(?![\w'\"])"))
            for name in secret_vars
        )
        self._group = builder_group

    # -- plays

    def play_hosts(self, hosts: object, where: _Where) -> None:
        bad = _bad_host_patterns(hosts, self._group)
        if bad:
            self._rec.add(
                where,
                Rule.PLAY_HOSTS,
                f"the play targets {', '.join(bad)}; a bake may only target 'all' or the "
                f"builder group {self._group!r}: set hosts: {self._group}",
            )

    # -- where a task runs

    def keywords(
        self, task: Mapping[Any, Any], where: _Where, ctx: _Ctx, *, sync: bool = False
    ) -> _Ctx:
        """Check the keywords that choose where a task runs; return the context it runs in."""
        local, no_log = ctx.local, ctx.no_log
        if "no_log" in task:
            no_log = _truthy(task["no_log"])
        connection = task.get("connection")
        if isinstance(connection, str) and connection.rsplit(".", 1)[-1] == "local":
            local = True
        variables = task.get("vars")
        if isinstance(variables, Mapping) and self._connection_vars(variables, where):
            local = True
        if "local_action" in task:
            local = True
        if "delegate_to" in task and task["delegate_to"] is not None:
            local = self._delegate_to(str(task["delegate_to"]).strip(), where, sync=sync)
        return _Ctx(ctx.role, ctx.role_dir, local, no_log)

    def _connection_vars(self, variables: Mapping[Any, Any], where: _Where) -> bool:
        """Record each connection variable ``vars`` sets; True if it sets a local connection."""
        local = False
        for var in sorted(_CONNECTION_VARS & {k for k in variables if isinstance(k, str)}):
            value = variables[var]
            if var == "ansible_connection" and str(value).rsplit(".", 1)[-1] == "local":
                local = True
                continue
            self._rec.add(
                where,
                Rule.CONNECTION_VAR,
                f"vars sets {var}: {value!r}, which points Ansible at another machine: "
                "remove it, the inventory already reaches the builder",
            )
        return local

    def _delegate_to(self, target: str, where: _Where, *, sync: bool) -> bool:
        """Record a delegation to another host; True if the task now runs on the control host."""
        if target.lower() in _LOCAL_NAMES:
            return True
        if _SELF_RE.fullmatch(target):
            return False  # delegating to itself is the builder still
        why = (
            "is templated, so kiln cannot prove it is the builder"
            if _TEMPLATED_RE.search(target)
            else "runs the task on another host"
        )
        if sync:
            self._rec.add(
                where,
                Rule.REMOTE_SYNC,
                f"synchronize with delegate_to {target!r} {why}, copying between "
                "that host and the builder: sync from the control host instead",
            )
        else:
            self._rec.add(
                where,
                Rule.DELEGATE_TO,
                f"delegate_to {target!r} {why}; only the builder may be touched: "
                "remove delegate_to (localhost is allowed for steps that stay in the "
                "work directory)",
            )
        return False

    # -- what a task does

    def task(
        self,
        task: Mapping[Any, Any],
        module: str,
        args: Mapping[Any, Any],
        where: _Where,
        run: _Ctx,
    ) -> None:
        """Check one task that calls ``module`` with ``args`` and runs in ``run``."""
        self._module(module, args, where, run)
        self._production(task, where)
        self.lookups(task, where)
        self._sources(module, args, where)
        self.secret_in_name(task.get("name"), where)
        self._secret(task, run, where)

    def lookups(self, keywords: Mapping[Any, Any], where: _Where) -> None:
        """Lookups in a task's, block's or play's keywords that reach the bake host."""
        for problem in keyword_lookups(keywords):
            self._rec.add(where, Rule.CONTROLLER_LOOKUP, problem)

    def _sources(self, module: str, args: Mapping[Any, Any], where: _Where) -> None:
        for key, path, problem in controller_sources(module.rsplit(".", 1)[-1], args):
            if self._in_work_dir(path):
                continue  # kiln's own directory for the bake, where local tasks may write
            self._rec.add(
                where,
                Rule.CONTROLLER_SRC,
                f"{module} {key + ' ' if key else ''}{path!r} {problem}, which Ansible reads "
                "there: keep the file in the role (files/, templates/, vars/) and name it by a "
                "relative path",
            )

    def _in_work_dir(self, path: str) -> bool:
        if self._work_dir is None or not os.path.isabs(path):
            return False
        return os.path.normpath(path).startswith(self._work_dir.rstrip(os.sep) + os.sep)

    def secret_in_name(self, name: object, where: _Where) -> None:
        """A secret in a task's or play's name: Ansible prints names whatever no_log says."""
        used = self._secrets_in(name)
        if used:
            self._rec.add(
                where,
                Rule.SECRET_IN_NAME,
                f"the name uses secret {', '.join(used)}, and Ansible prints names even with "
                "no_log: true: take the secret out of the name",
            )

    def _module(self, module: str, args: Mapping[Any, Any], where: _Where, run: _Ctx) -> None:
        short = module.rsplit(".", 1)[-1]
        if short == "add_host":
            self._rec.add(
                where,
                Rule.ADD_HOST,
                "add_host puts a new host in the inventory, so later tasks could reach it: "
                "remove the task, the bake only configures the builder",
            )
        elif short == "group_by":
            self._rec.add(
                where,
                Rule.GROUP_BY,
                "group_by builds host groups at run time, so plays could reach other hosts: "
                f"target the builder group {self._group!r} instead",
            )
        elif short == "set_fact":
            for var in sorted(_CONNECTION_VARS & {k for k in args if isinstance(k, str)}):
                self._rec.add(
                    where,
                    Rule.CONNECTION_VAR,
                    f"set_fact sets {var}, which points every later task at another machine: "
                    "remove it, the inventory already reaches the builder",
                )
        elif short == "synchronize":
            self._control_host.synchronize(args, where)
        elif short == "fetch":
            self._control_host.write(where, "fetch copies files to the control host", args, "fetch")
        elif run.local:
            self._control_host.local(short, module, args, where)

    def _production(self, task: Mapping[Any, Any], where: _Where) -> None:
        if not self._prod:
            return
        # Every string but the task's name: URLs, host arguments and command lines alike.
        values = [v for k, v in task.items() if k != "name"]
        hits: dict[str, str] = {}
        for text in _strings(values):
            for token in _HOST_TOKEN_RE.findall(text):
                entry = _production_entry(token.lower(), self._prod)
                if entry is not None:
                    hits.setdefault(token.lower(), entry)
        for host, entry in sorted(hits.items()):
            listed = "" if host == entry else f" (under {entry})"
            self._rec.add(
                where,
                Rule.PROD_URL,
                f"reaches production host {host}{listed}; bake-time tasks may only touch the "
                "builder: use a non-production mirror or bake the file into the role",
            )

    def _secrets_in(self, value: object) -> list[str]:
        """The secret variables the Jinja in value's strings uses, by name."""
        return sorted(
            {
                name
                for text in _strings(value)
                for expr in _JINJA_RE.findall(text)
                for name, pattern in self._secrets
                if pattern.search(expr)
            }
        )

    def _secret(self, task: Mapping[Any, Any], run: _Ctx, where: _Where) -> None:
        if not self._secrets or run.no_log:
            return
        # The name has a rule of its own: no_log would not hide it.
        used = self._secrets_in({k: v for k, v in task.items() if k != "name"})
        if used:
            self._rec.add(
                where,
                Rule.SECRET_NO_LOG,
                f"uses secret {', '.join(used)} without no_log: true, so its value can reach "
                "the bake log: add no_log: true to the task",
            )


def _bad_host_patterns(hosts: object, group: str) -> list[str]:
    """The positive host patterns of a play other than all, * and the builder group."""
    if hosts is None:
        return ["no hosts"]
    if isinstance(hosts, list):
        terms = [str(h) for h in hosts]
    else:
        text = str(hosts)
        if _TEMPLATED_RE.search(text):
            return [repr(text)]
        terms = re.split(r"[,:]", text)
    bad: list[str] = []
    for term in (t.strip() for t in terms):
        if not term or term[0] in "!&":
            continue  # exclusions and intersections only narrow the set
        if _TEMPLATED_RE.search(term) or term not in {"all", "*", group}:
            bad.append(repr(term))
    return bad


def _normalize_host(host: str) -> str:
    """A production host entry as a bare lower-case name: no scheme, path or leading wildcard."""
    host = host.strip().lower()
    if "://" in host:
        host = host.split("://", 1)[1]
    host = host.split("/", 1)[0]
    host = host.removeprefix("*.").lstrip(".").rstrip(".")
    return host


def _production_entry(token: str, production: Sequence[str]) -> str | None:
    """The production entry ``token`` is, or is a subdomain of."""
    token = token.rstrip(".")
    for entry in production:
        if token == entry or token.endswith("." + entry):
            return entry
    return None
