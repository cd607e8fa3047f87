"""The shape of the package: no import cycles, and nothing below the command line imports it."""

from __future__ import annotations

import ast
from pathlib import Path

LIB = Path(__file__).resolve().parents[2] / "lib"


def _module_name(path: Path) -> str:
    name = ".".join(path.relative_to(LIB).with_suffix("").parts)
    return name.removesuffix(".__init__")


MODULES = {_module_name(p): p for p in (LIB / "kiln").rglob("*.py")}


def _imports(name: str, path: Path) -> set[str]:
    """The kiln modules `name` imports when it is imported: its top-level imports, not the lazy
    ones inside functions, nor those under `if TYPE_CHECKING:` (never run)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            # `from kiln import tools` imports the module kiln.tools; `from kiln.x import f`, kiln.x
            found |= {
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names
            }
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each group of modules that import one another, round and round (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while not group or group[-1] != node:
                group.append(stack.pop())
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_the_graph_is_read_from_the_package() -> None:
    # The reader sees the imports it must: a relative one, a package's module, a plain one.
    assert "kiln.registry.rows" in GRAPH["kiln.registry.versions"]
    assert "kiln.tools" in GRAPH["kiln.roletest"]  # `from kiln import tools`
    assert "kiln.errors" in GRAPH["kiln.tools"]


def test_cycles_are_found_where_there_are_some() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_module_imports_itself_back_round_a_cycle() -> None:
    assert _cycles(GRAPH) == []


def test_only_the_command_line_imports_the_command_line() -> None:
    # kiln.cli and kiln.tasks print and parse arguments; the library below returns data.
    def is_cli(name: str) -> bool:
        return name == "kiln.tasks" or name == "kiln.cli" or name.startswith("kiln.cli.")

    upward = sorted((a, b) for a in GRAPH for b in GRAPH[a] if is_cli(b) and not is_cli(a))
    assert upward == []


def test_errors_import_nothing_of_kiln() -> None:
    # Every module raises them: the error tree sits at the bottom of the graph.
    assert GRAPH["kiln.errors"] == set()
