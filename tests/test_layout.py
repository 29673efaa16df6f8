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


def test_no_function_is_over_80_lines():
    long = {}
    for name, path in _modules().items():
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 80:
                    long[f"{name}.{node.name}"] = n
    assert not long, long


def _readme_layout() -> dict[str, set[str]]:
    """``{package path: modules it lists}`` from the README's layout block: each
    ``locdiff/`` line names its modules before the first colon (parentheses aside)."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    block = text.split("## Layout", 1)[1].split("```")[1]
    entries, current = {}, None
    for line in block.splitlines():
        top = re.match(r"^(locdiff/)\s+(.*)", line)
        sub = re.match(r"^  (\w+)/\s+(.*)", line)
        if top or sub:
            current = "locdiff" if top else f"locdiff/{sub.group(1)}"
            entries[current] = (top or sub).group(2)
        elif line.startswith(" " * 21) and current:
            entries[current] += " " + line.strip()
        else:
            current = None
    out = {}
    for package, text in entries.items():
        listed = re.sub(r"\([^)]*\)", "", text).split(":", 1)[0]
        out[package] = {w.strip() for w in listed.split(",") if w.strip()}
    return out


def _package_modules(directory: str) -> set[str]:
    names = os.listdir(os.path.join(ROOT, directory))
    return {n[:-3] for n in names if n.endswith(".py") and n != "__init__.py"}


def test_the_readme_layout_is_the_tree():
    """Every subpackage of ``locdiff/`` is in the README's layout, with exactly its
    modules; the top line lists the top-level modules."""
    listed = _readme_layout()
    subpackages = {
        f"locdiff/{n}"
        for n in os.listdir(os.path.join(ROOT, "locdiff"))
        if os.path.isfile(os.path.join(ROOT, "locdiff", n, "__init__.py"))
    }
    assert set(listed) - {"locdiff", "locdiff/resources"} == subpackages
    for package in subpackages | {"locdiff"}:
        assert listed[package] == _package_modules(package), package


def test_the_tests_mirror_the_packages():
    """``tests/locdiff/<sub>/test_<name>.py`` tests the module ``locdiff/<sub>/<name>.py``
    (or the subpackage ``<sub>`` itself); every subpackage has its test folder."""
    stray = []
    for package in (
        "locdiff",
        *(f"locdiff/{p}" for p in os.listdir(os.path.join(ROOT, "locdiff"))),
    ):
        if not os.path.isfile(os.path.join(ROOT, package, "__init__.py")):
            continue
        tests = os.path.join(ROOT, "tests", package)
        if package != "locdiff/resources" and not os.path.isdir(tests):
            stray.append(f"no tests/{package}")
            continue
        allowed = _package_modules(package) | {os.path.basename(package)}
        for name in os.listdir(tests):
            if name.startswith("test_") and name.endswith(".py"):
                if name[5:-3] not in allowed:
                    stray.append(f"tests/{package}/{name}")
    assert not stray, stray
