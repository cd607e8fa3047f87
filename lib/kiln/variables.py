"""What a role variable may hold: plain JSON that reaches Ansible intact through Packer's HCL.

Names are Ansible variable names outside ansible_*; values round-trip through JSON, stay under a
size limit, and never hold Go template braces that Packer would evaluate first.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from kiln.errors import DefinitionError

__all__ = ["MAX_VARIABLE_BYTES", "check_variable", "valid_variable_name"]

VARIABLE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MAX_VARIABLE_BYTES = 64 * 1024


def check_variable(role: str, name: str, value: Any) -> None:
    """Variables travel as JSON into HCL and Ansible: refuse anything that does not round-trip."""
    if not isinstance(name, str) or not valid_variable_name(name):
        raise DefinitionError(
            f"role {role!r}: variable name {name!r} is invalid "
            "(letters, digits and underscores, not starting with ansible_)"
        )
    _check_json_value(role, name, value)
    size = len(json.dumps(value, ensure_ascii=False).encode())
    if size > MAX_VARIABLE_BYTES:
        raise DefinitionError(
            f"role {role!r}: variable {name!r} is {size} bytes, over the {MAX_VARIABLE_BYTES}-byte "
            "limit; ship large content as a file in the Ansible role instead"
        )


def valid_variable_name(name: str) -> bool:
    # fullmatch: with match, "$" would also accept a name ending in a newline.
    return bool(VARIABLE_NAME_RE.fullmatch(name)) and not name.startswith("ansible_")


def _check_json_value(role: str, name: str, value: Any) -> None:
    if isinstance(value, str):
        _check_no_go_template(role, name, value)
        return
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise DefinitionError(f"role {role!r}: variable {name!r} holds {value!r}, not JSON")
        return
    if isinstance(value, list | tuple):
        for item in value:
            _check_json_value(role, name, item)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise DefinitionError(
                    f"role {role!r}: variable {name!r} has a non-string key {key!r}"
                )
            _check_no_go_template(role, name, key)
            _check_json_value(role, name, item)
        return
    raise DefinitionError(
        f"role {role!r}: variable {name!r} has type {type(value).__name__}, which is not "
        "serialisable (use str, int, float, bool, None, lists and dicts with string keys)"
    )


def _check_no_go_template(role: str, name: str, text: str) -> None:
    # Variables reach Ansible as a packer provisioner argument, which packer renders with its Go
    # template engine first: "{{ x }}" fails the build, "{{ timestamp }}" changes silently.
    if "{{" in text:
        raise DefinitionError(
            f"role {role!r}: variable {name!r} contains '{{{{', which Packer's template engine "
            "would evaluate before Ansible sees it; put Jinja expressions in the Ansible role's "
            "defaults/ or vars/ instead"
        )
