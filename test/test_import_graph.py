"""The house (issue 31): the project's own imports, read with `ast` from every module at the top level and in the
packages (not test/ or bench/), top-level and inside functions alike, form no circle, and no package module imports
`main` or `web_server` (the faces import packages; packages never import the faces' entry points back)."""
from __future__ import annotations

import ast
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
FORBIDDEN_FOR_PACKAGES = {"main", "web_server"}


def project_modules() -> dict[str, Path]:
    """Dotted name → file, for the top-level modules and every package's modules."""
    modules = {path.stem: path for path in PROJECT.glob("*.py")}
    for init in PROJECT.glob("*/__init__.py"):
        package = init.parent.name
        modules[package] = init
        for path in init.parent.glob("*.py"):
            if path.name != "__init__.py":
                modules[f"{package}.{path.stem}"] = path
    return modules


def imports_of(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The project modules that `name` imports anywhere in its file (a `from package import module` counts as
    the module; a `from module import name` as the module)."""
    found: set[str] = set()
    package = name.rpartition(".")[0] if path.name != "__init__.py" else name
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - (node.level - 1)] if package else []
                base = ".".join(part for part in (*parent, base) if part)
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    found.add(f"{base}.{alias.name}")
                elif base in modules:
                    found.add(base)
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(path, name, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_the_packages_and_the_imports_inside_functions():
    graph = import_graph()
    assert {"main", "web_server", "backtest", "webapi.common", "backtesting.run", "core.models"} <= set(graph)
    assert "backtesting.run" in graph["backtest"]  # a top-level import
    assert "backtesting.optimize" in graph["backtest"]  # an import inside main()


def test_no_import_circle():
    assert cycles(import_graph()) == []


def test_the_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_package_imports_main_or_web_server():
    offenders = {name: sorted(targets & FORBIDDEN_FOR_PACKAGES) for name, targets in import_graph().items()
                 if "." in name or project_modules()[name].name == "__init__.py"}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_every_package_says_what_it_owns_and_may_import_and_holds_no_code():
    for init in PROJECT.glob("*/__init__.py"):
        tree = ast.parse(init.read_text(encoding="utf-8"))
        assert len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr), init
        assert "May import" in ast.get_docstring(tree), init
