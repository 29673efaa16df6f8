"""The shape of the code base: modules of one concept, no import cycle, nothing outside.

A newcomer reads the architecture from the tree; these checks keep it readable.
"""

import ast
import os
import re

ROOT = os.path.join(os.path.dirname(__file__), "..")
PACKAGES = ("shdd", "locdiff")


def _modules() -> dict[str, str]:
    """``{dotted name: path}`` of every module of the packages."""
    out = {}
    for package in PACKAGES:
        for root, _, names in os.walk(os.path.join(ROOT, package)):
            for name in names:
                if name.endswith(".py"):
                    path = os.path.join(root, name)
                    dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                    out[dotted.removesuffix(".__init__")] = path
    return out


def _imports(path: str, modules) -> set[str]:
    """The project modules that ``path`` imports, at any depth (lazy imports too)."""
    found = set()
    with open(path) as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.module in modules:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in modules else node.module)
    return found


def test_no_module_is_over_400_lines():
    long = {}
    for name, path in _modules().items():
        with open(path) as f:
            n = sum(1 for _ in f)
        if n > 400:
            long[name] = n
    assert not long, long


def test_no_import_cycle():
    modules = _modules()
    graph = {m: _imports(p, modules) - {m} for m, p in modules.items()}
    cycles, state, stack = [], {}, []

    def visit(u):
        state[u] = "open"
        stack.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == "open":
                cycles.append(stack[stack.index(v) :] + [v])
            elif v not in state:
                visit(v)
        stack.pop()
        state[u] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, [" -> ".join(c) for c in cycles]


def test_nothing_reads_outside_the_repository():
    """A user's clone has nothing beside it: no file of the project names the folder that
    sits beside the checkout on the developers' machines."""
    sibling = "shared"
    pattern = re.compile(rf"\.\./{sibling}|\"\.\.\", \"\.\.\", \"{sibling}\"|'{sibling}', 'data'")
    hits = []
    for top in (*PACKAGES, "experiments", "tests", "notebooks", "benchmarks", "docs"):
        for root, _, names in os.walk(os.path.join(ROOT, top)):
            if "cache" in root.split(os.sep) or "results" in root.split(os.sep):
                continue
            for name in names:
                if name.endswith((".py", ".ipynb", ".md")) and name != "test_layout.py":
                    path = os.path.join(root, name)
                    with open(path, encoding="utf-8") as f:
                        if pattern.search(f.read()):
                            hits.append(os.path.relpath(path, ROOT))
    for name in ("README.md", "Makefile", "pyproject.toml"):
        with open(os.path.join(ROOT, name), encoding="utf-8") as f:
            if pattern.search(f.read()):
                hits.append(name)
    assert not hits, hits
