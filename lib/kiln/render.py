"""Rendering role definitions into Packer HCL2 and Ansible playbooks: injection-proof, reproducible.

Templates live in templates/. Every value goes through the ``hcl`` filter, which escapes it for HCL
(quotes, backslashes, ``${``, ``%{``, control characters). Each rendered file is parsed back with
python-hcl2 and compared with the model before anything runs it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from kiln.errors import RenderError


class Interpolated(str):
    """A kiln-authored HCL string whose ``${...}`` interpolations are meant to be evaluated.

    Only template authors create these; user values are always plain str and fully escaped.
    """

    __slots__ = ()


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_NEEDS_ESCAPE = re.compile(r'["\\\n\r\t]|[\x00-\x1f\x7f\u2028\u2029]|\$\{|%\{')


def _escape_match(match: re.Match[str]) -> str:
    text = match.group(0)
    # "$${" is HCL's own escape, but python-hcl2 only lexes it when a "}" follows somewhere
    # later (and then its token can run on across strings to that "}"). "\u0024{" means the same
    # to Packer and parses the same everywhere.
    if text == "${":
        return "\\u0024{"
    if text == "%{":
        return "\\u0025{"
    if text in _ESCAPES:
        return _ESCAPES[text]
    return f"\\u{ord(text):04x}"


def hcl_string(value: str) -> str:
    """value as a quoted HCL string literal that evaluates to exactly value."""
    return '"' + _NEEDS_ESCAPE.sub(_escape_match, value) + '"'


def hcl_value(value: Any, indent: int = 0) -> str:
    """A JSON-like value as an HCL expression. Lists and maps of more than one item span lines.

    indent is the nesting level of the attribute, so multi-line values come out `packer fmt`-clean.
    """
    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined raises UndefinedError naming the missing variable
    if isinstance(value, Interpolated):
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, str):
        return hcl_string(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if value is None:
        return "null"
    pad = "  " * (indent + 1)
    if isinstance(value, list | tuple):
        if len(value) <= 1:
            return "[" + "".join(hcl_value(v, indent) for v in value) + "]"
        items = "".join(f"{pad}{hcl_value(v, indent + 1)},\n" for v in value)
        return "[\n" + items + "  " * indent + "]"
    if isinstance(value, Mapping):
        keys = [hcl_string(str(k)) for k in value]
        width = max((len(k) for k in keys), default=0)
        lines = "".join(
            f"{pad}{k.ljust(width)} = {hcl_value(v, indent + 1)}\n"
            for k, v in zip(keys, value.values(), strict=True)
        )
        return "{\n" + lines + "  " * indent + "}"
    raise RenderError(f"cannot render a {type(value).__name__} into HCL")


def hcl_body(attributes: Mapping[str, Any], indent: int = 1, blocks: Sequence[str] = ()) -> str:
    """Attributes (and nested blocks named in blocks) laid out the way `packer fmt` does:
    `=` aligned within runs of one-line attributes; multi-line values and blocks stand alone."""
    pad = "  " * indent
    lines: list[str] = []
    run: list[tuple[str, str]] = []

    def flush() -> None:
        width = max((len(k) for k, _ in run), default=0)
        lines.extend(f"{pad}{k.ljust(width)} = {v}" for k, v in run)
        run.clear()

    for key, value in attributes.items():
        if key in blocks:
            flush()
            body = hcl_body(value, indent + 1, blocks)
            lines.append(f"{pad}{key} {{\n{body}\n{pad}}}")
            continue
        rendered = hcl_value(value, indent)
        if "\n" in rendered:
            flush()
            lines.append(f"{pad}{key} = {rendered}")
        else:
            run.append((key, rendered))
    flush()
    return "\n".join(lines)


_UNESCAPE = re.compile(r'\\(["\\nrt]|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8})|\$\$\{|%%\{')


def decode_hcl_string(literal: str) -> str:
    """Inverse of hcl_string for python-hcl2's output, which keeps quotes and escapes as written."""
    if len(literal) < 2 or literal[0] != '"' or literal[-1] != '"':
        raise RenderError(f"expected a quoted HCL string, got {literal[:40]!r}")

    def replace(match: re.Match[str]) -> str:
        text = match.group(0)
        if text == "$${":
            return "${"
        if text == "%%{":
            return "%{"
        code = match.group(1)
        if code[0] in "uU":
            return chr(int(code[1:], 16))
        return {'"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t"}[code]

    return _UNESCAPE.sub(replace, literal[1:-1])


def decode_hcl(value: Any) -> Any:
    """python-hcl2 output with every string literal decoded to its Python value."""
    if isinstance(value, str):
        return decode_hcl_string(value) if value.startswith('"') else value
    if isinstance(value, list):
        return [decode_hcl(v) for v in value]
    if isinstance(value, dict):
        return {
            (decode_hcl_string(k) if k.startswith('"') else k): decode_hcl(v)
            for k, v in value.items()
            if k != "__is_block__"
        }
    return value


def parse_hcl(text: str, *, source: str) -> dict[str, Any]:
    """Parse HCL with python-hcl2 and decode its strings; syntax errors become RenderError."""
    import hcl2  # lark builds its parser on import: keep it off the no-op bake path

    try:
        parsed = hcl2.loads(text)
    except Exception as exc:  # lark raises several unrelated exception types
        raise RenderError(f"{source}: rendered HCL does not parse: {exc}") from exc
    decoded = decode_hcl(parsed)
    assert isinstance(decoded, dict)
    return decoded


@cache
def _environment(templates_path: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_path),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["hcl"] = hcl_value
    env.filters["hcl_body"] = hcl_body
    return env


def render_template(templates_path: Path, name: str, context: Mapping[str, Any]) -> str:
    try:
        return _environment(templates_path).get_template(name).render(**context)
    except jinja2.TemplateNotFound as exc:
        raise RenderError(f"template {name!r} not found in {templates_path}") from exc
    except jinja2.UndefinedError as exc:
        raise RenderError(f"template {name}: {exc.message}") from exc
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(f"template {exc.filename or name}:{exc.lineno}: {exc.message}") from exc


@dataclass(frozen=True)
class RenderedFile:
    path: Path
    text: str


def write_if_changed(rendered: Sequence[RenderedFile]) -> list[Path]:
    """Write files atomically, leaving unchanged ones untouched; returns what was written."""
    written = []
    for item in rendered:
        try:
            if item.path.read_text() == item.text:
                continue
        except FileNotFoundError:
            pass
        item.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = item.path.with_name(f".{item.path.name}.{os.getpid()}.tmp")
        tmp.write_text(item.text)
        os.replace(tmp, item.path)
        written.append(item.path)
    return written


def check_values(parsed: Mapping[str, Any], expected: Mapping[str, Any], *, source: str) -> None:
    """Compare values found by path in parsed HCL with what the model says they must be."""
    for path, want in expected.items():
        got = lookup(parsed, path)
        if got != want:
            raise RenderError(
                f"{source}: {path} is {got!r} after parsing the rendered HCL, "
                f"but the model says {want!r}"
            )


def lookup(tree: Any, path: str) -> Any:
    """Follow a dotted path through parsed HCL; block lists are searched for the named key."""
    node = tree
    for part in path.split("."):
        if isinstance(node, list):
            node = next(
                (item[part] for item in node if isinstance(item, dict) and part in item), None
            )
        elif isinstance(node, dict):
            node = node.get(part)
        else:
            return None
        if node is None:
            return None
    return node
