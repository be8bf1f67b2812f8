"""The package's layering: no import circles, and ``gateway.store`` at the bottom.

Every import counts (top level, TYPE_CHECKING blocks, imports inside functions): a circle
hidden in a function is still a circle a reader has to untangle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "gateway"


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for f in ROOT.rglob("*.py"):
        parts = list(f.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


def _graph() -> dict[str, set[str]]:
    mods = _modules()

    def resolve(name: str) -> str | None:
        while name:
            if name in mods:
                return name
            name = name.rpartition(".")[0]
        return None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                names = [f"{base}.{a.name}" for a in node.names] or [base]
            for name in names:
                target = resolve(name)
                # a package's own __init__ is not an edge back to the package
                if target and target != mod and not mod.startswith(target + "."):
                    graph[mod].add(target)
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_the_finder_sees_a_circle() -> None:
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles_in_the_gateway_package() -> None:
    graph = _graph()
    assert len(graph) > 100  # the walk found the package
    assert _circles(graph) == []


def test_store_depends_on_nothing_above_it() -> None:
    graph = _graph()
    above = {
        (mod, dep)
        for mod, deps in graph.items()
        if mod.startswith("gateway.store")
        for dep in deps
        if not dep.startswith("gateway.store")
    }
    assert above == set()


def test_media_is_a_bottom_layer() -> None:
    """The codec layer (``gateway.media``) builds on nothing of the gateway but ``gateway.aio``."""
    graph = _graph()
    assert any(mod.startswith("gateway.media.") for mod in graph)
    above = {
        (mod, dep)
        for mod, deps in graph.items()
        if mod == "gateway.media" or mod.startswith("gateway.media.")
        for dep in deps
        if not dep.startswith("gateway.media") and dep != "gateway.aio"
    }
    assert above == set()
