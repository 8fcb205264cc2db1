"""The plugins' modules import each other in layers: no circle, not even a deferred or a typing-only one.

A circle (``settings`` importing ``auth`` that imports ``settings``) forces imports inside
functions and makes the order of imports matter; ``sinks`` reaching into ``target`` tied every
sink to the whole target. This reads every import statement (inside functions and
``if TYPE_CHECKING`` blocks too) of klaviyo_core and target_klaviyo and fails on any circle;
for tap_klaviyo, whose streams name the tap in type hints, the imports that run.
"""

from __future__ import annotations

import ast
import typing as t
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("klaviyo_core", "target_klaviyo")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_type_checking_block(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return isinstance(test, ast.Name | ast.Attribute) and ast.unparse(test).endswith("TYPE_CHECKING")


def statements(tree: ast.AST, typing_only_too: bool) -> t.Iterator[ast.AST]:
    for node in ast.iter_child_nodes(tree):
        if typing_only_too or not is_type_checking_block(node):
            yield node
            yield from statements(node, typing_only_too)


def imports_of(path: Path, modules: set[str], typing_only_too: bool = True) -> set[str]:
    """The project modules ``path`` imports, wherever the import statement is."""
    found: set[str] = set()
    for node in statements(ast.parse(path.read_text(encoding="utf-8")), typing_only_too):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def import_graph(packages: tuple[str, ...] = PACKAGES, typing_only_too: bool = True) -> dict[str, set[str]]:
    paths = {module_name(p): p for package in packages for p in (ROOT / package).rglob("*.py")}
    modules = set(paths)
    return {name: imports_of(path, modules, typing_only_too) - {name} for name, path in paths.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each import circle once, as the path that closes it."""
    found: list[list[str]] = []
    seen: set[frozenset[str]] = set()

    def visit(module: str, path: list[str]) -> None:
        for imported in sorted(graph.get(module, ())):
            if imported in path:
                circle = path[path.index(imported) :] + [imported]
                if frozenset(circle) not in seen:
                    seen.add(frozenset(circle))
                    found.append(circle)
            elif imported not in done:
                visit(imported, [*path, imported])
        done.add(module)

    done: set[str] = set()
    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    return found


def test_no_import_circles():
    assert circles(import_graph()) == []


def test_the_tap_has_no_import_circle_at_run_time():
    """The tap's streams name the tap in type hints only (``if TYPE_CHECKING``); nothing else circles."""
    assert circles(import_graph(("klaviyo_core", "tap_klaviyo"), typing_only_too=False)) == []


@pytest.mark.parametrize(
    ("low", "high"),
    [
        ("klaviyo_core.defaults", "klaviyo_core.oauth"),  # defaults < oauth < auth < settings (checks token files)
        ("klaviyo_core.oauth", "klaviyo_core.auth"),
        ("klaviyo_core.auth", "klaviyo_core.settings"),
        ("target_klaviyo.sinks", "target_klaviyo.target"),  # a sink gets the run, never the target
    ],
)
def test_layer_does_not_import_upwards(low, high):
    graph = import_graph()
    reachable, todo = set(), [low]
    while todo:
        for imported in graph[todo.pop()] - reachable:
            reachable.add(imported)
            todo.append(imported)
    assert high not in reachable


def test_the_check_finds_a_circle():
    """The checker itself: a deferred import back is a circle too."""
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
