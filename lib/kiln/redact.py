"""Redaction: secret values masked in everything kiln writes or prints, in every form they take.

Output rarely holds a secret as its raw text only: event files hold it JSON-escaped, tracebacks
its repr, commands shell-quoted, URLs percent-encoded, file contents base64-encoded.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

from kiln.ansible_events import Event, parse_event

__all__ = ["MASK", "Redactor", "encodings"]

MASK = "********"
# A base64 run cut out of a longer encoding is only masked when it is at least this long, so
# that a short secret does not mask every two-letter run of base64 text.
_MIN_BASE64_RUN = 8


def encodings(value: str) -> set[str]:
    """The forms value can take in output, each also JSON-escaped (a quoted command in an event)."""
    forms = {
        value,
        *_json_bodies(value),
        *_repr_bodies(value),
        shlex.quote(value),
        quote(value),
        quote(value, safe=""),
        quote_plus(value),
        *_base64_forms(value),
    }
    nested = {body for form in forms for body in _json_bodies(form)}
    return {form for form in forms | nested if form}


def _json_bodies(value: str) -> set[str]:
    """value as it appears inside a JSON string, with and without ensure_ascii."""
    return {json.dumps(value, ensure_ascii=ascii)[1:-1] for ascii in (True, False)}


def _repr_bodies(value: str) -> set[str]:
    """value inside a Python repr: ' is escaped only when the whole string also holds a "."""
    escaped = repr(value + "'\"")[1:-4]  # both quotes: delimited by ', with \' inside
    return {escaped, escaped.replace("\\'", "'")}


def _base64_forms(value: str) -> set[str]:
    """value base64-encoded alone, and the run its bytes always give inside a longer encoding.

    Inside a longer encoding the secret starts at an offset of 0, 1 or 2 bytes into a 3-byte
    group; for each offset, the characters that depend on its bytes only are the same.
    """
    raw = value.encode()
    forms = {base64.b64encode(raw).decode()}
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + raw).decode().rstrip("=")
        start = -(-8 * offset // 6)  # the first character without a bit of the offset bytes
        end = 8 * (offset + len(raw)) // 6  # the last one without a bit of what follows
        run = encoded[start:end]
        if len(run) >= _MIN_BASE64_RUN:
            forms.add(run)
    return forms


class Redactor:
    """Replaces every encoding of the secret values in anything kiln writes or prints."""

    def __init__(self, values: Iterable[str]) -> None:
        forms = {form for value in values if value for form in encodings(value)}
        # Longest first: the alternation takes the first form that matches at a position, so a
        # JSON-escaped shell-quoted form is masked whole rather than around its raw core.
        ordered = sorted(forms, key=lambda form: (-len(form), form))
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(MASK, text)

    def event(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """An Ansible event with every string in it redacted (task names included)."""
        return {key: self._value(value) for key, value in event.items()}

    def ansible_event(self, event: Event) -> Event:
        """A typed Ansible event with every string in it redacted (task names included)."""
        return parse_event(self.event(event.data))

    def _value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self(value)
        if isinstance(value, Mapping):
            return self.event(value)
        if isinstance(value, list | tuple):
            return [self._value(item) for item in value]
        return value
