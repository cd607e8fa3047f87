"""kiln's Invoke collection: thin verbs over the library. tasks.py hands it the project.

The tasks live in kiln.cli, one module per concern (baking, versions, servers, roles); this
module holds what they share: the project, the error handling (`cli()`), and the collection that
puts every task at the top level (`invoke bake web`, not `invoke baking.bake web`). Each task
parses its arguments, calls one library function, prints, and turns a KilnError into
``invoke.Exit`` with a non-zero code.
"""

from __future__ import annotations

import functools
import signal
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, NoReturn

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.program import Program

from kiln.errors import KilnError
from kiln.model import Project

_state: dict[str, Project] = {}


def project() -> Project:
    try:
        return _state["project"]
    except KeyError:
        raise Exit("tasks.py must call kiln.tasks.collection(project)", 2) from None


def _excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    """tasks.py defines roles as invoke loads it, outside any task: its errors get one line too."""
    if not isinstance(exc, KilnError):
        _previous_excepthook(kind, exc, tb)
        return
    # The innermost frame outside kiln is the line of tasks.py that made the bad definition.
    where = ""
    for frame, line in traceback.walk_tb(tb):
        path = Path(frame.f_code.co_filename)
        if _PACKAGE not in path.parents and not frame.f_code.co_filename.startswith("<"):
            where = f"{path.name}:{line}: "
    sys.stderr.write(f"kiln: {where}{exc}\n")


_PACKAGE = Path(__file__).resolve().parent
_previous_excepthook = sys.excepthook
sys.excepthook = _excepthook


def _raise_interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


@contextmanager
def cli() -> Iterator[None]:
    """Errors a user can act on become one message and a non-zero exit, never a traceback."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    except KilnError as exc:
        raise Exit(f"kiln: {exc}", exc.exit_code) from None
    except KeyboardInterrupt:
        raise Exit("kiln: interrupted", 130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def _task_modules() -> tuple[ModuleType, ...]:
    # Imported here, not at the top: they import cli() and project() from this module.
    from kiln.cli import baking, roles, servers, versions

    return (baking, versions, servers, roles)


def collection(proj: Project) -> Collection:
    """The Invoke collection for proj; tasks.py sets ``ns = collection(project)``."""
    _state["project"] = proj
    ns = Collection()
    for module in _task_modules():
        for item in module.TASKS:  # flat: each task keeps its own top-level name
            ns.add_task(item)
    for name in ns.task_names:
        _answer_help_in_positionals(ns, name)
    return ns


_HELP_WORDS = frozenset({"--help", "-h"})


def _answer_help_in_positionals(ns: Collection, name: str) -> None:
    """`invoke show --help`: invoke hands `--help` to a task's missing positional as its value,
    so the task itself answers with invoke's own help for it instead of reading it as a role."""
    item = ns[name]
    body = getattr(item.body, "__wrapped__", item.body)

    @functools.wraps(body)
    def answer_help_first(c: Context, *args: Any, **kwargs: Any) -> Any:
        given = [*args, *(kwargs.get(arg) for arg in item.positional)]
        if any(isinstance(value, str) and value in _HELP_WORDS for value in given):
            Program(namespace=ns, binary="invoke").run(["invoke", "--help", name], exit=False)
            return None
        return body(c, *args, **kwargs)

    if item.positional:
        item.body = answer_help_first
