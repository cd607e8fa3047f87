"""How a task names its module and arguments, including Ansible's free-form ``key=value`` form."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

_TEMPLATED_RE = re.compile(r"\{\{|\{%")
_JINJA_RE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)

# Keywords of a task, handler or block (ansible-core 2.19 Task/Handler/Block attributes);
# the first other key of a task is its module.
_TASK_KEYWORDS = frozenset(
    {
        "action",
        "always",
        "any_errors_fatal",
        "args",
        "async",
        "become",
        "become_exe",
        "become_flags",
        "become_method",
        "become_user",
        "block",
        "changed_when",
        "check_mode",
        "collections",
        "connection",
        "debugger",
        "delay",
        "delegate_facts",
        "delegate_to",
        "diff",
        "environment",
        "failed_when",
        "ignore_errors",
        "ignore_unreachable",
        "listen",
        "local_action",
        "loop",
        "loop_control",
        "module_defaults",
        "name",
        "no_log",
        "notify",
        "poll",
        "port",
        "register",
        "remote_user",
        "rescue",
        "retries",
        "run_once",
        "tags",
        "throttle",
        "timeout",
        "until",
        "vars",
        "when",
    }
)


def _module_and_args(task: Mapping[Any, Any]) -> tuple[str, dict[Any, Any]]:
    """The module a task calls and its arguments, for the plain, action and local_action forms."""
    for key in ("local_action", "action"):
        if key in task:
            module, args = _action_value(task[key])
            break
    else:
        module = next(
            (
                k
                for k in task
                if isinstance(k, str) and k not in _TASK_KEYWORDS and not k.startswith("with_")
            ),
            "",
        )
        args = _args_value(task.get(module)) if module else {}
    extra = task.get("args")
    if isinstance(extra, Mapping):
        args = {**extra, **args}
    return module, args


def _action_value(value: object) -> tuple[str, dict[Any, Any]]:
    if isinstance(value, str):
        head, _, rest = value.strip().partition(" ")
        return head, _parse_kv(rest)
    if isinstance(value, Mapping):
        args = {k: v for k, v in value.items() if k != "module"}
        return str(value.get("module") or ""), args
    return "", {}


def _args_value(value: object) -> dict[Any, Any]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str):
        return _parse_kv(value)
    return {"_raw_params": value}


def _parse_kv(text: str) -> dict[Any, Any]:
    """Ansible's free-form ``key=value`` arguments, split by Ansible's own parser; the rest
    becomes ``_raw_params``. Text that parser cannot split (unbalanced quotes or Jinja) stays
    whole in ``_raw_params``: Ansible would refuse the task, and the audit still reads all of it."""
    # Imported here: the ansible package costs 0.2 s to import, which most commands never need.
    from ansible.errors import AnsibleParserError
    from ansible.parsing.splitter import parse_kv

    try:
        return dict(parse_kv(text))
    except AnsibleParserError:
        return {"_raw_params": text}


def _truthy(value: object) -> bool:
    """A keyword's boolean as Ansible reads it (true, t, yes, y, on, 1 in any case); a template
    or anything else is not true."""
    # Imported here: the ansible package costs 0.2 s to import, which most commands never need.
    from ansible.module_utils.parsing.convert_bool import boolean

    return bool(boolean(value, strict=False))


def _strings(value: object) -> Iterator[str]:
    """Every string in a task's values and keys, however deeply nested."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)
