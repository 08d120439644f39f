"""The shape of the package, read from its source: the protocol core imports nothing of the
rest, starts no thread and leaves the garbage collector alone, and no two modules import each
other, directly or round a longer loop.

The import graph is computed with `ast` from every module under `adapter/`, counting every
import wherever it stands (in a function, under `TYPE_CHECKING`): a lazy import is still a
dependency, and a loop of them is still a loop, only one that shows later.
"""

from __future__ import annotations

import ast
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "adapter"
CORE = "adapter.uftp"
#: What the core may import besides itself: the standard library, lxml and PyNaCl.
CORE_MAY_IMPORT = frozenset(sys.stdlib_module_names) | {"lxml", "nacl"}
#: Standard modules the core must not import: they start threads or processes, run an event
#: loop, or switch the process's garbage collector. Where a large message is faster with one
#: of them, the core takes it as an option its caller chooses (`codec.Bulk`).
CORE_MUST_NOT_IMPORT = frozenset({"gc", "_thread", "asyncio", "multiprocessing", "subprocess"})
#: Names whose use starts a thread or a process.
STARTS_A_THREAD = frozenset(
    {"Thread", "ThreadPoolExecutor", "ProcessPoolExecutor", "to_thread", "start_new_thread"}
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str, path: Path) -> Iterator[tuple[str, int]]:
    """(module, line) of every import in the module `name`, relative ones resolved; for
    `from X import y`, X.y when that is a module of the package."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                drop = node.level - 1 if is_package else node.level
                base = base[: len(base) - drop]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                yield (candidate if candidate in MODULES else source), node.lineno


def within(target: str) -> str | None:
    """The package module `target` names (itself, or the module that holds it), if any."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for target, _ in imported(name, path):
            found = within(target) if target.split(".")[0] == "adapter" else None
            if found is not None and found != name:
                edges[name].add(found)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(edges)))

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(edges[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_the_imports_it_should() -> None:
    """The reader itself: relative, lazy and TYPE_CHECKING imports all count."""
    edges = graph()
    assert "adapter.uftp.codec" in edges["adapter.uftp"]  # `from .codec import ...`
    assert "adapter.uftp.errors" in edges["adapter.server"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_of_the_package_imports_itself_round_a_loop() -> None:
    loops = cycles(graph())
    assert loops == [], "import cycles: " + "; ".join(" <-> ".join(loop) for loop in loops)


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith(CORE)))
def test_the_core_imports_only_itself_the_standard_library_lxml_and_pynacl(name: str) -> None:
    for target, line in imported(name, MODULES[name]):
        top = target.split(".")[0]
        where = f"{MODULES[name].name}:{line} imports {target}"
        if top == "adapter":
            assert target == CORE or target.startswith(CORE + "."), where
        else:
            assert top in CORE_MAY_IMPORT, where
            assert top not in CORE_MUST_NOT_IMPORT, where


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith(CORE)))
def test_the_core_starts_no_thread(name: str) -> None:
    tree = ast.parse(MODULES[name].read_text("utf-8"))
    for node in ast.walk(tree):
        used = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)
        assert used not in STARTS_A_THREAD, f"{MODULES[name].name}:{node.lineno} uses {used}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_imports_on_its_own(name: str) -> None:
    """A module that only imports after another one (a cycle papered over by import order)
    fails here; optional dependencies are installed with the test extra."""
    importlib.import_module(name)
