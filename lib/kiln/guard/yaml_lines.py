"""A YAML loader that records the line each mapping, sequence and sequence item starts on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from kiln.guard.rule import Rule


class _Map(dict[Any, Any]):
    """A YAML mapping that remembers the 1-based line it starts on."""

    line: int | None = None
    key_lines: dict[Any, int] = {}  # noqa: RUF012 - replaced per instance, never mutated


class _Seq(list[Any]):
    """A YAML sequence that remembers the 1-based line of each item."""

    line: int | None = None
    item_lines: tuple[int, ...] = ()


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps line numbers and accepts Ansible's own tags (!unsafe, !vault)."""


def _construct_map(loader: yaml.SafeLoader, node: yaml.MappingNode) -> Iterator[_Map]:
    data = _Map()
    data.line = node.start_mark.line + 1
    yield data
    data.update(loader.construct_mapping(node))
    data.key_lines = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if isinstance(key, str | int | float | bool):
            data.key_lines[key] = key_node.start_mark.line + 1


def _construct_seq(loader: yaml.SafeLoader, node: yaml.SequenceNode) -> Iterator[_Seq]:
    data = _Seq()
    data.line = node.start_mark.line + 1
    data.item_lines = tuple(child.start_mark.line + 1 for child in node.value)
    yield data
    data.extend(loader.construct_sequence(node))


def _construct_tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    assert isinstance(node, yaml.ScalarNode)
    return loader.construct_scalar(node)


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)
_Loader.add_multi_constructor("!", _construct_tagged)


def _line_of(value: object) -> int | None:
    return value.line if isinstance(value, _Map | _Seq) else None


def _key_line(mapping: object, key: object) -> int | None:
    """The line ``key`` of a loaded mapping is on, else the mapping's own."""
    if isinstance(mapping, _Map):
        return mapping.key_lines.get(key, mapping.line)
    return None


def _item_line(items: list[Any], index: int) -> int | None:
    if isinstance(items, _Seq) and index < len(items.item_lines):
        return items.item_lines[index]
    return _line_of(items)


class _Unreadable(NamedTuple):
    """Why a file could not be loaded: the rule it breaks, the line at fault and the message."""

    rule: Rule
    line: int | None
    message: str


def _load_file(path: Path) -> Any | _Unreadable:
    """The YAML document of ``path`` with line numbers, or why it could not be read."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return _Unreadable(Rule.YAML_ERROR, None, f"cannot be read: {exc}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_line = raw[: exc.start].count(b"\n") + 1
        return _Unreadable(
            Rule.NOT_UTF8,
            bad_line,
            f"byte 0x{raw[exc.start]:02x} on line {bad_line} is not UTF-8, so kiln cannot "
            "audit this file: save it as UTF-8",
        )
    try:
        return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        line: int | None = None
        problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, yaml.MarkedYAMLError):
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            problem = exc.problem or exc.context or problem
        elif isinstance(exc, yaml.reader.ReaderError):
            line = text[: exc.position].count("\n") + 1
        return _Unreadable(
            Rule.YAML_ERROR,
            line,
            f"is not valid YAML ({problem}), so kiln cannot audit it: fix the syntax",
        )
