"""Redactor: a secret is masked in every form output gives it, and only the secret is masked.

The forms are computed here independently of kiln.redact, and each test first shows the detector
(`leaks`) finding the form in the text (the positive control) before showing it gone.
"""

from __future__ import annotations

import ast
import base64
import json
import random
import shlex
import urllib.parse
from collections.abc import Callable

import pytest
from kiln.bake import Redactor as RedactorFromBake
from kiln.redact import MASK, Redactor

# Every character class the issue names: quotes, backslashes, %, $, spaces, non-ASCII letters
# (one outside the BMP, which ensure_ascii writes as a surrogate pair).
SECRET = "Kx7\"q\\w'e%r$t y é ß Ж 漢 𝒜 z9{{%s}}"
ALPHABET = "abcXYZ0189\"\\'%$ éßЖ漢ñ𝒜-_:;!@&*()=+"
# With control characters, which repr writes as \x.. and JSON as \u.... or not at all.
CONTROL = "Ctl\x7f'q\\w%r$t y é\x1b z9-0123456789-漢"

ENCODINGS: dict[str, Callable[[str], str]] = {
    "raw": lambda s: s,
    "json": lambda s: json.dumps(s, ensure_ascii=False)[1:-1],
    "json-ascii": lambda s: json.dumps(s, ensure_ascii=True)[1:-1],
    "repr": repr,
    "shell": shlex.quote,
    "url": urllib.parse.quote,
    "base64": lambda s: base64.b64encode(s.encode()).decode(),
}


def leaks(text: str, secret: str) -> list[str]:
    """The names of the encodings of secret that text contains."""
    return [name for name, encode in ENCODINGS.items() if encode(secret) in text]


def strings(value: object) -> str:
    """Every string in a decoded JSON document or Python literal, one per line."""
    if isinstance(value, dict):
        return "\n".join(strings(item) for item in value.values())
    if isinstance(value, list):
        return "\n".join(strings(item) for item in value)
    return str(value)


def random_secrets(count: int) -> list[str]:
    rng = random.Random(18)
    return ["".join(rng.choice(ALPHABET) for _ in range(40)) for _ in range(count)]


@pytest.mark.parametrize("name", list(ENCODINGS))
@pytest.mark.parametrize("secret", [SECRET, CONTROL, *random_secrets(3)])
def test_each_encoding_is_found_when_present_and_gone_after_redaction(
    name: str, secret: str
) -> None:
    text = f"before <{ENCODINGS[name](secret)}> after"
    assert name in leaks(text, secret)  # the positive control
    redacted = Redactor([secret])(text)
    assert leaks(redacted, secret) == []
    assert redacted.startswith("before <") and redacted.endswith("> after")
    assert MASK in redacted


# Where each form really turns up, and how to read the secret back out of what was written.
EMBEDDINGS: dict[str, tuple[Callable[[str], str], Callable[[str], str]]] = {
    "ansible result (JSON)": (
        lambda s: json.dumps({"stdout": s, "cmd": ["printf", s]}, ensure_ascii=False),
        lambda t: strings(json.loads(t)),
    ),
    "kiln event (JSON, ensure_ascii)": (
        lambda s: json.dumps({"event": "task_result", "msg": f"the token is {s}"}),
        lambda t: strings(json.loads(t)),
    ),
    "shell command inside a JSON event": (
        lambda s: json.dumps({"cmd": f"printf '%s' {shlex.quote(s)} >&2; exit 3"}),
        lambda t: " ".join(shlex.split(json.loads(t)["cmd"])),
    ),
    "Python repr of a dict": (
        lambda s: repr({"api_token": s, "other": 'it\'s "quoted"'}),
        lambda t: strings(ast.literal_eval(t)),
    ),
    "repr inside a longer string": (
        lambda s: repr(f"it's {s} (quoted)"),
        lambda t: strings(ast.literal_eval(t)),
    ),
    "URL query": (
        lambda s: f"https://example.invalid/?token={urllib.parse.quote_plus(s)}&x=1",
        urllib.parse.unquote_plus,
    ),
    "URL path": (
        lambda s: f"https://example.invalid/{urllib.parse.quote(s, safe='')}/x",
        urllib.parse.unquote,
    ),
}


# A secret without '"' inside a longer string that holds a "'": repr() then delimits it with '"'
# and leaves its "'" unescaped, unlike the repr of the secret alone.
SECRETS = [SECRET, SECRET.replace('"', ""), CONTROL, *random_secrets(3)]


@pytest.mark.parametrize("where", list(EMBEDDINGS))
@pytest.mark.parametrize("secret", SECRETS)
def test_the_secret_cannot_be_read_back_from_redacted_output(where: str, secret: str) -> None:
    encode, decode = EMBEDDINGS[where]
    text = encode(secret)
    assert secret in decode(text)  # the positive control: decoding the output finds it
    redacted = Redactor([secret])(text)
    assert MASK in redacted
    assert secret[:12] not in decode(redacted) and secret[-12:] not in decode(redacted)


@pytest.mark.parametrize("offset", [0, 1, 2])
@pytest.mark.parametrize("secret", [SECRET, *random_secrets(3)])
def test_base64_at_any_offset_inside_a_longer_encoding(offset: int, secret: str) -> None:
    """A file slurped by Ansible: the secret's bytes start anywhere in a 3-byte group."""
    prefix, suffix = b"P" * (30 + offset), b"S" * 31
    blob = base64.b64encode(prefix + secret.encode() + suffix).decode()
    assert base64.b64decode(blob).find(secret.encode()) == len(prefix)  # the positive control
    redacted = Redactor([secret])(blob)
    before, mask, after = redacted.partition(MASK)
    assert mask
    # What is left decodes to at most the surrounding bytes and two bytes of the secret each side.
    assert len(base64.b64decode(before[: len(before) // 4 * 4])) <= len(prefix) + 2
    assert len(after) * 6 // 8 <= len(suffix) + 2 + 2
    assert blob.startswith(before) and blob.endswith(after)


def test_only_the_secret_is_masked() -> None:
    text = json.dumps({"msg": "nothing secret here: é ß \\ \" ' % $", "n": 40})
    assert Redactor([SECRET])(text) == text
    assert Redactor([])(text) == text
    assert Redactor(["", ""])(text) == text


def test_a_short_secret_does_not_mask_base64_runs_of_other_text() -> None:
    """A secret of a few bytes has base64 runs of two or three letters: those are left alone."""
    blob = base64.b64encode(random.Random(18).randbytes(8192)).decode()
    assert Redactor(["k$"])(blob) == blob


def test_several_secrets_one_a_prefix_of_another_are_all_masked_whole() -> None:
    short, long = 's3cr"et', 's3cr"et-and-more-é'
    text = f"{long} | {json.dumps(short)} | {shlex.quote(long)}"
    redacted = Redactor([short, long])(text)
    assert redacted == f'{MASK} | "{MASK}" | {MASK}'


def test_kiln_bake_still_exports_the_redactor() -> None:
    assert RedactorFromBake is Redactor


def test_events_are_redacted_in_every_string_they_hold() -> None:
    secret = 'p"a\\ss w0rd'
    redact = Redactor([secret])
    event = {
        "event": "task_start",
        "task": f"Print {secret}",
        "res": {"cmd": ["echo", secret], "stdout_lines": [f"token={secret}"]},
        "time": 1.5,
    }
    assert secret in event["task"] and secret in event["res"]["cmd"]  # the control
    redacted = redact.event(event)
    assert secret not in json.dumps(redacted, ensure_ascii=False)
    assert json.dumps(secret)[1:-1] not in json.dumps(redacted)
    assert redacted["task"] == f"Print {MASK}"
    assert redacted["res"]["cmd"] == ["echo", MASK]
    assert redacted["time"] == 1.5 and redacted["event"] == "task_start"


@pytest.mark.parametrize("name", list(ENCODINGS))
@pytest.mark.parametrize("secret", [SECRET, CONTROL, "plain-secret-value"])
def test_nothing_of_the_secret_is_left_beside_the_mask(name: str, secret: str) -> None:
    """The whole encoded form is masked, not all but its first or last characters."""
    redacted = Redactor([secret])(f"<{ENCODINGS[name](secret)}>")
    # A repr keeps its quotes around the mask; nothing else of the encoding may stay.
    assert redacted.replace(MASK, "") in {"<>", "<''>", '<"">'}, redacted


def test_a_secret_with_a_slash_is_masked_in_a_fully_quoted_url_path() -> None:
    """quote(safe="") encodes "/" too, unlike the default quote(): both forms are masked."""
    secret = "Xy/pa ss/wörd"
    text = f"https://example.invalid/{urllib.parse.quote(secret, safe='')}/x"
    assert urllib.parse.quote(secret, safe="") not in urllib.parse.quote(secret)  # the control
    assert Redactor([secret])(text) == f"https://example.invalid/{MASK}/x"
    plain = f"https://example.invalid/{urllib.parse.quote(secret)}?x"
    assert Redactor([secret])(plain) == f"https://example.invalid/{MASK}?x"


def test_a_base64_run_of_exactly_the_minimum_length_is_masked() -> None:
    """Seven bytes one byte into a 3-byte group leave exactly eight characters all their own."""
    secret = "7bytes!"
    blob = base64.b64encode(b"P" + secret.encode() + b"S" * 9).decode()
    assert base64.b64encode(secret.encode()).decode() not in blob  # only the run can match
    redacted = Redactor([secret])(blob)
    assert MASK in redacted
    assert len(redacted) == len(blob) - 8 + len(MASK)
