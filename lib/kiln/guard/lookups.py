"""Lookups run on the control host, which is the bake host: the ones that reach past the role.

Ansible runs every lookup (``lookup``, ``query``, ``q`` and the ``with_<lookup>`` loops) on the
controller while it templates a task, so ``pipe`` runs a command on the bake host, ``env`` reads
kiln's own environment (AWS_SECRET_ACCESS_KEY included) and ``file`` reads any file there. The
Jinja is parsed, not searched, so that a lookup's plugin name and path are read as Ansible reads
them, in any quoting and in bare conditionals (``when``, ``until``) as much as in ``{{ }}``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import jinja2
from jinja2 import nodes

from kiln.guard.arguments import _TEMPLATED_RE, _strings
from kiln.guard.sources import path_problem

# Lookups that reach the bake host whatever their arguments, with what they do there.
_ALWAYS: Mapping[str, str] = {
    "pipe": "runs a command on the bake host: run it as a task on the builder",
    "lines": "runs a command on the bake host: run it as a task on the builder",
    "env": "reads kiln's own environment, cloud credentials included: pass the value as a "
    "variable or Secret of the role definition",
    "url": "fetches from the bake host's network: download on the builder (get_url, uri)",
}
# Lookups that read the files they name on the bake host: fine inside the role, not outside.
_PATHS = frozenset({"file", "fileglob", "template", "unvault"})
_PASSWORD = "password"  # creates the file it names unless that is /dev/null
_CALLS = frozenset({"lookup", "query", "q"})
# Keywords Ansible reads as bare Jinja expressions, without {{ }}.
_CONDITIONALS = ("when", "changed_when", "failed_when", "until")
# The assert module's `that` is read the same way.
_ASSERTS = ("assert", "ansible.builtin.assert", "ansible.legacy.assert")
_FALLBACK_RE = re.compile(r"\b(?:lookup|query|q)\s*\(\s*(['\"])([\w.]+)\1")
# Parsing only, nothing is rendered; Ansible enables these two extensions.
_JINJA = jinja2.Environment(extensions=["jinja2.ext.do", "jinja2.ext.loopcontrols"])
_UNKNOWN = "\0"


def keyword_lookups(keywords: Mapping[Any, Any]) -> list[str]:
    """Why each lookup of a task, block or play (its arguments, vars, loops, conditionals,
    name) reaches the bake host; the same problem once."""
    problems: list[str] = []
    for text in _strings(keywords):
        if _TEMPLATED_RE.search(text):
            problems += template_lookups(text)
    for key in _CONDITIONALS:
        problems += _bare_lookups(keywords.get(key))
    for module in _ASSERTS:
        args = keywords.get(module)
        if isinstance(args, Mapping):
            problems += _bare_lookups(args.get("that"))
    for key, value in keywords.items():
        if isinstance(key, str) and key.startswith("with_"):
            problems += _with_lookup(key, value)
    return list(dict.fromkeys(problems))


def _bare_lookups(exprs: object) -> list[str]:
    """The problems of bare Jinja expressions (a conditional, or an assert's `that`)."""
    problems: list[str] = []
    for expr in _as_list(exprs):
        if isinstance(expr, str) and not _TEMPLATED_RE.search(expr):
            problems += template_lookups(f"{{{{ {expr} }}}}")
    return problems


def value_lookups(value: object) -> list[str]:
    """Why each lookup in a variable's value (a role's defaults or vars) reaches the bake host."""
    found = (template_lookups(t) for t in _strings(value) if _TEMPLATED_RE.search(t))
    return list(dict.fromkeys(problem for problems in found for problem in problems))


def template_lookups(source: str) -> list[str]:
    """Why each lookup in the Jinja template ``source`` reaches the bake host."""
    try:
        tree = _JINJA.parse(source)
    except jinja2.TemplateSyntaxError:
        # Ansible would refuse it too; the names alone still say what it would have run.
        return [_unparsed(match.group(2)) for match in _FALLBACK_RE.finditer(source)]
    problems = []
    for call in tree.find_all(nodes.Call):
        if isinstance(call.node, nodes.Name) and call.node.name in _CALLS and call.args:
            problem = _call_problem(call.node.name, call.args[0], call.args[1:])
            if problem is not None:
                problems.append(problem)
    return problems


def _call_problem(call: str, plugin: nodes.Expr, terms: list[nodes.Expr]) -> str | None:
    if not (isinstance(plugin, nodes.Const) and isinstance(plugin.value, str)):
        return (
            f"{call}() of a templated plugin name, so kiln cannot tell what it runs on the "
            "bake host: name the lookup plugin"
        )
    name = plugin.value.strip().rsplit(".", 1)[-1]
    shown = f"{call}('{plugin.value}')"
    if name in _ALWAYS:
        return f"{shown} {_ALWAYS[name]}"
    judge = _path_problem if name in _PATHS else _password_problem if name == _PASSWORD else None
    if judge is not None:
        for skeleton in _term_skeletons(terms):
            problem = judge(shown, skeleton)
            if problem is not None:
                return problem
    return None


def _with_lookup(key: str, value: object) -> list[str]:
    """The problem of a ``with_<lookup>`` loop: the lookup runs over each of its terms."""
    name = key.removeprefix("with_").rsplit(".", 1)[-1]
    if name in _ALWAYS:
        return [f"{key} {_ALWAYS[name]}"]
    terms = [t for t in _as_list(value) if isinstance(t, str)]
    if name in _PATHS:
        found = (_path_problem(key, t) for t in terms)
    elif name == _PASSWORD:
        found = (_password_problem(key, t) for t in terms)
    else:
        return []
    return [problem for problem in found if problem is not None]


def _path_problem(shown: str, path: str) -> str | None:
    problem = path_problem(path)
    if problem is None:
        return None
    return (
        f"{shown} of {_printable(path)} {problem}: keep the file in the role (files/, "
        "templates/) and name it by a path relative to the role"
    )


def _password_problem(shown: str, term: str) -> str | None:
    """password creates and keeps its file on the bake host; /dev/null only generates."""
    words = term.split()
    if words and words[0] == "/dev/null":
        return None
    return (
        f"{shown} of {_printable(term)} stores a password in a file on the bake host: use "
        "'/dev/null' to generate one, or a Secret of the role definition"
    )


def _unparsed(name: str) -> str:
    return f"lookup('{name}') is in Jinja kiln cannot parse, so kiln cannot check it: fix it"


def _term_skeletons(terms: Iterable[nodes.Expr]) -> Iterator[str]:
    """Each term as its literal text, a templated part as _UNKNOWN; lists give their items."""
    for term in terms:
        if isinstance(term, nodes.List | nodes.Tuple):
            yield from _term_skeletons(term.items)
        else:
            yield _skeleton(term)


def _skeleton(node: nodes.Expr) -> str:
    """A string expression as its literal text; what only rendering knows is _UNKNOWN, but
    role_path first is the role's own directory."""
    if isinstance(node, nodes.Const) and isinstance(node.value, str):
        return node.value
    if isinstance(node, nodes.Name) and node.name == "role_path":
        return "{{ role_path }}"
    if isinstance(node, nodes.Add):
        return _skeleton(node.left) + _skeleton(node.right)
    if isinstance(node, nodes.Concat):
        return "".join(_skeleton(part) for part in node.nodes)
    return _UNKNOWN


def _printable(text: str) -> str:
    return repr(text.replace(_UNKNOWN, "{{ ... }}"))


def _as_list(value: object) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]
