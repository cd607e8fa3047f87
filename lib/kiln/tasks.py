"""kiln's Invoke collection: thin verbs over the library. tasks.py hands it the project.

The tasks live in kiln.cli, one module per concern (baking, versions, servers, roles); this
module holds what they share: the project, the error handling (`cli()`), and the collection that
puts every task at the top level (`invoke bake web`, not `invoke baking.bake web`). Each task
parses its arguments, calls one library function, prints, and turns a KilnError into
``invoke.Exit`` with a non-zero code.
"""

from __future__ import annotations

import signal
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType, TracebackType
from typing import NoReturn

from invoke.collection import Collection
from invoke.exceptions import Exit

from kiln import secret_files
from kiln.errors import KilnError
from kiln.model import Project
from kiln.registry import Registry

_state: dict[str, Project] = {}


def project() -> Project:
    try:
        return _state["project"]
    except KeyError:
        raise Exit("tasks.py must call kiln.tasks.collection(project)", 2) from None


def open_registry() -> Registry:
    """The project's registry, for tasks that only read or move versions: without importing
    the bake machinery (kiln.bake), which `history` and `show` would pay for on every run."""
    return Registry(project().registry_url)


def _excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    """tasks.py defines roles as invoke loads it, outside any task: its errors get one line too.

    Installed when tasks.py imports this module and put back by collection(), the last line of
    tasks.py: it only covers the loading of the definitions, never a program that imports kiln."""
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


#: Signals that stop a task as Ctrl-C does, through every finally (builders, secret files). A
#: closed terminal's SIGHUP too: by default it would kill kiln on the spot.
STOPPING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@contextmanager
def cli() -> Iterator[None]:
    """Errors a user can act on become one message and a non-zero exit, never a traceback.

    Every task runs in it, so it is where every command starts by sweeping away the secret
    files that a killed kiln left behind (kiln.secret_files).
    """
    previous = {signum: signal.signal(signum, _raise_interrupt) for signum in STOPPING_SIGNALS}
    try:
        secret_files.sweep()
        yield
    except KilnError as exc:
        raise Exit(f"kiln: {exc}", exc.exit_code) from None
    except KeyboardInterrupt:
        raise Exit("kiln: interrupted", 130) from None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _task_modules() -> tuple[ModuleType, ...]:
    # Imported here, not at the top: they import cli() and project() from this module.
    from kiln.cli import baking, registry, roles, servers, versions

    return (baking, versions, servers, roles, registry)


def collection(proj: Project) -> Collection:
    """The Invoke collection for proj; tasks.py sets ``ns = collection(project)``."""
    _state["project"] = proj
    if sys.excepthook is _excepthook:  # the definitions loaded: tasks report through cli()
        sys.excepthook = _previous_excepthook
    ns = Collection()
    for module in _task_modules():
        for item in module.TASKS:  # flat: each task keeps its own top-level name
            ns.add_task(item)
    _let_help_follow_a_task(ns, sys.argv[1:])
    return ns


_HELP_WORDS = frozenset({"--help", "-h"})


def _let_help_follow_a_task(ns: Collection, argv: list[str]) -> None:
    """`invoke promote --help` shows promote's help, as `invoke --help promote` does.

    Invoke hands `--help` after a task to the task's first missing positional as its value (so
    `show` would look up a role named "--help", and `promote`, missing its second positional,
    fails to parse). When this command line asks for a task's help, that task's positionals
    become plain flags for this one run, and invoke reads `--help` as its own help flag."""
    for index, word in enumerate(argv[:-1]):
        if word in ns.task_names and argv[index + 1] in _HELP_WORDS:
            ns[word].positional = []
            return
