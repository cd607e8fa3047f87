"""Rendering role definitions into Packer HCL2 and Ansible playbooks: injection-proof, reproducible.

Templates live in templates/. Every value goes through the ``hcl`` filter, which escapes it for HCL
(quotes, backslashes, ``${``, ``%{``, control characters). Each rendered file is parsed back with
python-hcl2 and compared with the model before anything runs it.
"""

from __future__ import annotations

import copy
import json
import os
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from kiln.errors import RenderError
from kiln.resources import TEMPLATES_DIR


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
    if "\\" not in literal and "{" not in literal:
        return literal[1:-1]  # nothing _UNESCAPE could match: the common case, kept fast

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
            if k not in ("__is_block__", "__comments__")
        }
    return value


# -- the parse-back check, fast ------------------------------------------------------------------
# python-hcl2 needs several milliseconds per rendered file, and the files of many roles differ
# only in their plain string literals (role names, images, labels, variables). A file's *shape*
# is its text with each plain literal replaced by an indexed placeholder and comments emptied:
# the lexer sees the same tokens in the same order, so the shape parses to the file's tree with
# placeholders where the literals are. Shapes are parsed once and cached; each file's literals are
# then put back. A literal counts as plain only if it matches HCL's quoted-string grammar exactly
# (no ${ or %{, only HCL's escapes); anything else in the text (other strings stay as they are;
# heredocs and block comments send the whole file to python-hcl2) keeps the full check.
_PLAIN_CHAR = r"""[^"\\\n\r$%]|\\[nrt"\\]|\\u[0-9a-fA-F]{4}|\\U[0-9a-fA-F]{8}|\$(?!\{)|%(?!\{)"""
_PLAIN = re.compile(rf'"(?:{_PLAIN_CHAR})*"')
_TEMPLATE = re.compile(
    rf'"(?:{_PLAIN_CHAR}|\$\$\{{|%%\{{|\$\{{[^{{}}"\n]*\}}|%\{{[^{{}}"\n]*\}})*"'
)
_QUOTED = re.compile(r'"(?:[^"\\\n]|\\.)*"')  # where a string ends; the two above judge it
_SCAN = re.compile(r'"|#|//|/\*|<<')
_PLACEHOLDER = re.compile(r'"_kiln(\d+)"')
_SHAPES: dict[str, Any] = {}
_TEXTS: dict[str, Any] = {}
_CACHE_MAX = 4096


def clear_parse_cache() -> None:
    _SHAPES.clear()
    _TEXTS.clear()


def hcl_shape(text: str) -> tuple[str, list[str]] | None:
    """(shape, plain literals in order), or None if the text needs python-hcl2 as a whole."""
    out: list[str] = []
    literals: list[str] = []
    pos = 0
    while True:
        found = _SCAN.search(text, pos)
        if found is None:
            out.append(text[pos:])
            shape = "".join(out)
            # Placeholders must be unambiguous: "_kiln" anywhere else sends the file to hcl2.
            return (shape, literals) if shape.count("_kiln") == len(literals) else None
        start = found.start()
        out.append(text[pos:start])
        token = found.group()
        if token == '"':
            quoted = _QUOTED.match(text, start)
            if quoted is None:
                return None
            literal = quoted.group()
            pos = quoted.end()
            if "${" in literal or "%{" in literal:
                if _TEMPLATE.fullmatch(literal) is None:
                    return None
                out.append(literal)  # kiln-authored ${...}: kept as it is in the shape
            elif _PLAIN.fullmatch(literal) is None:
                return None
            else:
                out.append(f'"_kiln{len(literals)}"')
                literals.append(literal)
        elif token in ("#", "//"):
            end = text.find("\n", start)
            out.append(token)  # comments cannot change the parse; their text is not checked
            pos = len(text) if end < 0 else end
        else:
            return None  # a block comment or a heredoc


def _put_back(tree: Any, literals: list[str]) -> Any:
    """The decoded shape tree with each placeholder replaced by its literal's value.

    A whole placeholder string becomes the decoded literal; one inside an expression (kept as
    source text by python-hcl2) gets the literal's source text back.
    """
    if isinstance(tree, str):
        if tree.startswith("_kiln") and tree[5:].isdigit():
            return decode_hcl_string(literals[int(tree[5:])])
        if "_kiln" in tree:
            return _PLACEHOLDER.sub(lambda m: literals[int(m.group(1))], tree)
        return tree
    if isinstance(tree, list):
        return [_put_back(item, literals) for item in tree]
    if isinstance(tree, dict):
        return {_put_back(k, literals): _put_back(v, literals) for k, v in tree.items()}
    return tree


# python-hcl2 8 serializes every tree with one shared, mutable default context: a thread inside a
# "${...}" string makes another thread's `false` come back as the string "false". Parallel bakes
# render in threads, so parses take turns (they hold the GIL throughout anyway).
_PARSE_LOCK = threading.Lock()


def _loads(text: str, cache: dict[str, Any]) -> Any:
    import hcl2  # lark builds its parser on import: keep it off the no-op bake path

    with _PARSE_LOCK:
        tree = cache.get(text)
        if tree is None:
            if len(cache) >= _CACHE_MAX:
                cache.clear()
            tree = cache[text] = decode_hcl(hcl2.loads(text))
        return tree


def parse_hcl(text: str, *, source: str) -> dict[str, Any]:
    """Parse HCL with python-hcl2 and decode its strings; syntax errors become RenderError.

    Parses are cached by shape (see hcl_shape), so rendering many roles parses one file.
    """
    try:
        shape = hcl_shape(text)
        if shape is None:
            decoded = copy.deepcopy(_loads(text, _TEXTS))
        else:
            decoded = _put_back(_loads(shape[0], _SHAPES), shape[1])
    except Exception as exc:  # lark raises several unrelated exception types
        try:
            _loads(text, _TEXTS)  # the real file's own error, with its own line and column
        except Exception as real:
            raise RenderError(f"{source}: rendered HCL does not parse: {real}") from real
        raise RenderError(f"{source}: rendered HCL does not parse: {exc}") from exc
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
        hint = ""
        if templates_path == TEMPLATES_DIR:
            # Only a wheel built without its package data gets here: say so, not blame the user.
            hint = "; this kiln installation lacks its templates: reinstall it from a full wheel"
        raise RenderError(f"template {name!r} not found in {templates_path}{hint}") from exc
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
