"""The house stays a house: no import circle anywhere in the tree, and the floors stay in order.

Every .py file of the repository is parsed (nothing is imported): each `import` and `from ...
import` statement is an arrow from its file to the module of this tree it names, wherever it
stands (inside a function too: it runs sooner or later), except under `if TYPE_CHECKING:`, which
never runs. A name imported from a package is an arrow to that name's own module when it is one
(`from evaluation.run import answering` -> evaluation/run/answering.py), else to the package.

Two kinds of circle are refused:
- files: modules that import each other, directly or round a longer loop;
- folders (rooms): two folders neither of which holds the other, each importing from the other
  (directly or round a loop of folders). A folder may lean on the folder it stands in
  (methods/core/backends/ on methods/core/tree.py), as a room stands on the floor of its house.

And the ground floor stays the ground: methods/ imports nothing of evaluation/, leaderboard/,
training/, benchmarks/, the app or the tests.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SKIPPED_FOLDERS = {"__pycache__", "build", "dist", "node_modules"}

# room -> the rooms it must never import (prefixes of dotted module names).
FORBIDDEN = {
    "methods": ("evaluation", "leaderboard", "training", "benchmarks", "app", "tests"),
    # What the commands and the store read sits below the store: only the commands write to it.
    "evaluation.record": ("leaderboard", "evaluation.run", "evaluation.compare"),
    "evaluation.compare": ("leaderboard", "evaluation.run"),
    "evaluation.run": ("leaderboard", "evaluation.compare"),
    "leaderboard": ("evaluation.run", "evaluation.inference", "evaluation.speed", "evaluation.equal",
                    "evaluation.summary", "app"),
}


@dataclass(frozen=True)
class Arrow:
    source: str  # importing module
    target: str  # imported module of this tree
    path: str  # the importing file, relative to the tree
    line: int


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def python_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py")
                  if not any(part.startswith(".") or part in SKIPPED_FOLDERS
                             for part in p.relative_to(root).parts[:-1]))


def _is_type_checking(test: ast.expr) -> bool:
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _imports(tree: ast.AST):
    """Every Import/ImportFrom node that can run (the bodies of `if TYPE_CHECKING:` never do)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _absolute(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _in_tree(name: str, modules: set[str]):
    """The longest prefix of a dotted name that is a module of the tree, else None."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def import_arrows(root: Path) -> tuple[set[str], list[Arrow]]:
    files = {module_name(p, root): p for p in python_files(root)}
    modules = set(files)
    arrows = []
    for source, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in _imports(tree):
            if isinstance(node, ast.Import):
                targets = [_in_tree(alias.name, modules) for alias in node.names]
            else:
                base = _absolute(node, source, path.name == "__init__.py")
                targets = [(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules
                            else _in_tree(base, modules)) for alias in node.names]
            for target in dict.fromkeys(targets):
                if target and target != source:
                    arrows.append(Arrow(source, target, str(path.relative_to(root)), node.lineno))
    return modules, arrows


def find_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One loop [a, b, ..., a] through each strongly connected group of two or more nodes."""
    index, low, on_stack, stack, groups, counter = {}, {}, set(), [], [], [0]

    def visit(node):  # Tarjan's algorithm; the graphs here are a few hundred nodes deep at most
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_loop_within(group, graph) for group in groups]


def _loop_within(group: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest way from the group's first node back to itself, inside the group."""
    start = min(group)
    came_from = {start: None}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for other in sorted(graph.get(node, set()) & group):
                if other == start:
                    loop = [node]
                    while came_from[loop[-1]] is not None:
                        loop.append(came_from[loop[-1]])
                    return [start] + loop[::-1][1:] + [start] if len(loop) > 1 else [start, node, start]
                if other not in came_from:
                    came_from[other] = node
                    following.append(other)
        frontier = following
    raise AssertionError(f"no loop in {group}")  # Tarjan's groups always have one


def folder_of(module: str, modules_with_children: set[str]) -> str:
    """The folder (package) a module belongs to: itself for a package, else its parent."""
    return module if module in modules_with_children else module.rpartition(".")[0]


def circle_report(loops: list[list[str]], arrows: list[Arrow], key=lambda name: name) -> str:
    lines = []
    for loop in loops:
        lines.append(" -> ".join(n or "(top)" for n in loop))
        for a, b in zip(loop, loop[1:]):
            where = [f"{x.path}:{x.line} imports {x.target}" for x in arrows
                     if key(x.source) == a and key(x.target) == b]
            lines.append(f"    {a or '(top)'} -> {b or '(top)'}: " + "; ".join(where[:4])
                         + (f" and {len(where) - 4} more" if len(where) > 4 else ""))
    return "\n".join(lines)


def file_circles(arrows: list[Arrow]) -> list[list[str]]:
    graph = defaultdict(set)
    for a in arrows:
        graph[a.source].add(a.target)
    return find_circles(graph)


def folder_circles(modules: set[str], arrows: list[Arrow]):
    """(loops between folders, the module -> folder function they were found with)."""
    packages = {m.rpartition(".")[0] for m in modules if "." in m}

    def folder(module: str) -> str:
        return folder_of(module, packages)

    def nested(a: str, b: str) -> bool:  # one folder holds the other (or the top holds all)
        return not a or not b or a.startswith(b + ".") or b.startswith(a + ".")

    graph = defaultdict(set)
    for arrow in arrows:
        a, b = folder(arrow.source), folder(arrow.target)
        if a != b and not nested(a, b):
            graph[a].add(b)
    return find_circles(graph), folder


@pytest.fixture(scope="module")
def house():
    return import_arrows(REPO_ROOT)


def test_no_module_imports_another_that_imports_it_back(house):
    modules, arrows = house
    assert len(modules) > 100  # the whole tree was read, not an empty folder
    loops = file_circles(arrows)
    assert not loops, "import circle(s) between files:\n" + circle_report(loops, arrows)


def test_no_two_folders_import_each_other(house):
    modules, arrows = house
    loops, folder = folder_circles(modules, arrows)
    assert not loops, "import circle(s) between folders:\n" + circle_report(loops, arrows, folder)


@pytest.mark.parametrize("room", sorted(FORBIDDEN))
def test_the_floors_stay_in_order(house, room):
    _, arrows = house
    forbidden = FORBIDDEN[room]
    wrong = [f"{a.path}:{a.line} imports {a.target}" for a in arrows
             if (a.source == room or a.source.startswith(room + "."))
             and any(a.target == f or a.target.startswith(f + ".") for f in forbidden)]
    assert not wrong, f"{room} must not import {', '.join(forbidden)}:\n  " + "\n  ".join(wrong)


# ---- the checker itself finds what it must, on a planted tree ---------------------------

def _plant(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_a_circle_through_an_import_inside_a_function_is_found_and_named(tmp_path):
    _plant(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg.b import thing\n",
        "pkg/b.py": "def thing():\n    from pkg import c\n",
        "pkg/c.py": "from . import a\n",
        "pkg/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n"
                    "import pkg.c\n",
    })
    _, arrows = import_arrows(tmp_path)
    loops = file_circles(arrows)
    assert loops == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
    report = circle_report(loops, arrows)
    assert "pkg/b.py:2 imports pkg.c" in report and "pkg/c.py:1 imports pkg.a" in report


def test_a_type_checking_import_makes_no_circle(tmp_path):
    _plant(tmp_path, {
        "a.py": "import b\n",
        "b.py": "import typing\nif typing.TYPE_CHECKING:\n    import a\nelse:\n    import json\n",
    })
    _, arrows = import_arrows(tmp_path)
    assert [(x.source, x.target) for x in arrows] == [("a", "b")]
    assert not file_circles(arrows)


def test_two_sibling_folders_importing_each_other_are_a_circle_but_a_folder_on_its_own_floor_is_not(tmp_path):
    _plant(tmp_path, {
        "low/__init__.py": "",
        "low/base.py": "",
        "low/inner/__init__.py": "",
        "low/inner/use.py": "from low.base import x\n",  # leans on the floor it stands in: fine
        "low/top.py": "from low.inner import use\n",
        "high/__init__.py": "",
        "high/cmd.py": "import other.store\n",
        "other/__init__.py": "",
        "other/store.py": "from high import helpers\n",
        "high/helpers.py": "",
    })
    modules, arrows = import_arrows(tmp_path)
    assert not file_circles(arrows)
    loops, folder = folder_circles(modules, arrows)
    assert loops == [["high", "other", "high"]]
    assert "high/cmd.py:1 imports other.store" in circle_report(loops, arrows, folder)


# ---- one place for the repository's paths ------------------------------------------------

# Scripts run as files that import nothing of the project find the checkout themselves.
STANDALONE_SCRIPTS = {"benchmarks/ray_scaling.py"}


def test_the_repository_paths_are_defined_in_one_place():
    """methods/core/paths.py is where the checkout's folders and the cache are; no other module
    climbs from its own location to them (a sys.path line of a script run as a file aside)."""
    own = []
    for path in python_files(REPO_ROOT):
        name = str(path.relative_to(REPO_ROOT))
        if name.startswith("tests/") or name in STANDALONE_SCRIPTS or name == "methods/core/paths.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            # A file beside the module (Path(__file__).parent / ...) is its own; climbing up to the
            # checkout's folders (.parents[N]) is what paths.py is for.
            value = ast.unparse(node.value) if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value else ""
            if "__file__" in value and ".parents[" in value:
                own.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
            if isinstance(node, ast.FunctionDef) and node.name == "cache_root":
                own.append(f"{name}:{node.lineno}: def cache_root")
    assert not own, "paths worked out outside methods/core/paths.py:\n  " + "\n  ".join(own)
