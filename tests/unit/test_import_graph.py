"""The import graph of ``dlplatform``, read from the source with ``ast`` (nothing is imported):
no module imports itself back through others (a cycle, even one hidden inside functions), and
serving imports nothing from training.

An edge goes from a module to each ``dlplatform`` module it imports, at module level or inside a
function (``if TYPE_CHECKING:`` blocks excepted: they never run). ``from pkg import name`` goes to
``pkg.name`` when that is a module, to the module a package's lazy ``_EXPORTS`` table loads
``name`` from, else to ``pkg`` itself. A parent package that Python runs on the way is not an
edge (each ``__init__`` is a node of its own).

An import inside a function is for keeping Ray, torch or another heavy library out of a light
command, and says so: a reason comment on its line, or on the line above the import or its block
of imports (``# ray: ...``, ``# torch: ...``, ``# heavy: pyarrow``; a tool's pragma such as
``# noqa`` alone is no reason). Those without one fail in the packages of ``GUARDED`` and are
listed for the rest. ``python tests/unit/test_import_graph.py`` prints the whole report: the
counts per package and every import without a reason.
"""

from __future__ import annotations

import ast
import io
import re
import sys
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "dlplatform"


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    in_function: bool

    def where(self) -> str:
        place = "in a function" if self.in_function else "module level"
        return f"{_path(self.source)}:{self.line} ({place})"


@dataclass(frozen=True)
class FunctionImport:
    module: str
    line: int
    text: str
    has_reason: bool


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _path(module: str) -> str:
    return str(modules()[module].relative_to(ROOT))


@cache
def _tree(module: str) -> ast.Module:
    return ast.parse(modules()[module].read_text(), filename=str(modules()[module]))


@cache
def _lazy_exports(package: str) -> dict[str, str]:
    """A package's ``_EXPORTS`` table (name -> module), empty when it has none."""
    if package not in modules() or modules()[package].name != "__init__.py":
        return {}
    for node in _tree(package).body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in targets):
            value = ast.literal_eval(node.value)  # type: ignore[union-attr]
            return {str(k): str(v) for k, v in value.items()}
    return {}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


@cache
def _imports(module: str) -> tuple[tuple[ast.Import | ast.ImportFrom, bool], ...]:
    """Every import statement of ``module`` that can run, and whether it is inside a function
    (imports are statements: only statement bodies are walked)."""
    found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []
    stack: list[tuple[ast.AST, bool]] = [(node, False) for node in _tree(module).body]
    while stack:
        node, in_function = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append((node, in_function))
            continue
        if isinstance(node, ast.If) and _is_type_checking(node):
            children = node.orelse  # the TYPE_CHECKING branch never runs
        else:
            children = [
                child
                for field in ("body", "orelse", "finalbody", "handlers", "cases")
                for child in getattr(node, field, ())
                if isinstance(child, ast.AST)
            ]
        inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        stack.extend((child, inner) for child in children)
    return tuple(sorted(found, key=lambda found_import: found_import[0].lineno))


def _absolute(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module if modules()[module].name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    known = modules()
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name in known:
                yield alias.name
        return
    base = _absolute(module, node)
    if base not in known:
        return
    for alias in node.names:
        name = f"{base}.{alias.name}"
        if name in known:
            yield name
        elif alias.name in _lazy_exports(base):
            yield _lazy_exports(base)[alias.name]
        else:
            yield base


@cache
def edges() -> tuple[Edge, ...]:
    found: list[Edge] = []
    for module in modules():
        for node, in_function in _imports(module):
            for target in _targets(module, node):
                if target != module:
                    found.append(Edge(module, target, node.lineno, in_function))
    return tuple(found)


def _graph() -> dict[str, dict[str, Edge]]:
    graph: dict[str, dict[str, Edge]] = {m: {} for m in modules()}
    for edge in edges():
        known = graph[edge.source].get(edge.target)
        if known is None or (known.in_function and not edge.in_function):
            graph[edge.source][edge.target] = edge  # a module-level edge says the most
    return graph


def _components(graph: dict[str, dict[str, Edge]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
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
                members: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    members.append(member)
                    if member == node:
                        break
                if len(members) > 1:
                    found.append(sorted(members))
    return found


def _shortest_cycle(graph: dict[str, dict[str, Edge]], members: list[str]) -> list[Edge]:
    """One shortest cycle through the first module of a component, as its edges."""
    inside = set(members)
    start = members[0]
    previous: dict[str, Edge] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for target, edge in sorted(graph[node].items()):
                if target not in inside:
                    continue
                if target == start:
                    path = [edge]
                    while path[0].source != start:
                        path.insert(0, previous[path[0].source])
                    return path
                if target not in previous:
                    previous[target] = edge
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle through {start}")


def cycles() -> list[str]:
    """Each import cycle, described module by module with the line that imports the next."""
    graph = _graph()
    described = []
    for members in _components(graph):
        path = _shortest_cycle(graph, members)
        steps = "\n".join(f"    {e.source} -> {e.target}   [{e.where()}]" for e in path)
        described.append(f"cycle of {len(path)} modules:\n{steps}")
        if len(members) > len(path):  # the other imports that tie the same knot
            shown = set(path)
            rest = [
                f"    {e.source} -> {e.target}   [{e.where()}]"
                for m in members
                for e in graph[m].values()
                if e.target in members and e not in shown
            ]
            described[-1] += f"\n  the same knot ({len(members)} modules) also holds:\n"
            described[-1] += "\n".join(rest)
    return described


def serve_imports_train() -> list[str]:
    return [
        f"{e.source} -> {e.target}   [{e.where()}]"
        for e in edges()
        if _within(e.source, "dlplatform.serve") and _within(e.target, "dlplatform.train")
    ]


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(f"{package}.")


GUARDED = (
    "dlplatform.api",
    "dlplatform.cli",
    "dlplatform.client",
    "dlplatform.data",
    "dlplatform.lab",
    "dlplatform.metadata",
    "dlplatform.models",
    "dlplatform.serve",
    "dlplatform.workflows",
)
"""Packages where every import inside a function must give its reason (the test fails)."""
_PRAGMA = re.compile(
    r"(noqa(: ?[A-Z]+[0-9]+(, ?[A-Z]+[0-9]+)*)?|type: ?ignore(\[[^]]*\])?|fmt: ?\w+)"
)


def _comment_reasons(source: str) -> dict[int, bool]:
    """Line -> whether its comment says something (a tool's pragma alone says nothing)."""
    return {
        token.start[0]: bool(_PRAGMA.sub("", token.string.lstrip("#")).strip(" \t:,()"))
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    }


def function_imports() -> list[FunctionImport]:
    """Every import statement inside a function, and whether a comment gives its reason."""
    found: list[FunctionImport] = []
    for module in modules():
        lines = modules()[module].read_text().splitlines()
        reasons = _comment_reasons(modules()[module].read_text())
        import_lines = {
            n
            for node, _ in _imports(module)
            for n in range(node.lineno, (node.end_lineno or node.lineno) + 1)
        }
        for node, in_function in _imports(module):
            if not in_function:
                continue
            end = node.end_lineno or node.lineno
            own = any(reasons.get(n, False) for n in range(node.lineno, end + 1))
            above = node.lineno - 1
            # the comment above a block of imports covers it (isort's blank lines included)
            while above in import_lines or (
                not lines[above - 1].strip() and above - 1 in import_lines
            ):
                above -= 1
            has_reason = own or (
                lines[above - 1].strip().startswith("#") and reasons.get(above, False)
            )
            text = lines[node.lineno - 1].strip()
            found.append(FunctionImport(module, node.lineno, text, has_reason))
    return found


def _package(module: str) -> str:
    """``dlplatform.serve.service`` -> ``dlplatform.serve``; a module at the root is its own."""
    parts = module.split(".")
    if len(parts) == 2 and modules()[module].name != "__init__.py":
        return module
    return ".".join(parts[:2])


def report() -> str:
    imports = function_imports()
    bare = [i for i in imports if not i.has_reason]
    found_cycles = cycles()
    lines = [
        f"modules: {len(modules())}, import edges: {len(edges())}",
        f"import cycles: {len(found_cycles)}",
        *found_cycles,
        f"dlplatform.serve importing dlplatform.train: {len(serve_imports_train())}",
        *(f"    {s}" for s in serve_imports_train()),
        f"imports inside functions: {len(imports)}, without a reason comment: {len(bare)}",
        *(f"    {_path(i.module)}:{i.line}: {i.text}" for i in bare),
        "imports inside functions per package (without a reason; * guarded):",
        *_per_package(imports),
    ]
    return "\n".join(lines)


def _per_package(imports: list[FunctionImport]) -> list[str]:
    counts: dict[str, list[int]] = {}
    for i in imports:
        count = counts.setdefault(_package(i.module), [0, 0])
        count[0] += 1
        count[1] += not i.has_reason
    return [
        f"  {'*' if package in GUARDED else ' '} {package}: {n} ({bare})"
        for package, (n, bare) in sorted(counts.items(), key=lambda kv: (-kv[1][0], kv[0]))
    ]


def test_the_graph_sees_every_module_and_its_imports() -> None:
    # the walk itself: a module that the graph missed would hide its cycles
    assert {"dlplatform", "dlplatform.serve.service", "dlplatform.train.scheduler"} <= set(
        modules()
    )
    assert any(e.source == "dlplatform.cli.system" and e.in_function for e in edges())
    assert any(e.target == "dlplatform._lazy" and not e.in_function for e in edges())


def test_no_import_cycle_between_modules() -> None:
    found = cycles()
    assert not found, (
        f"{len(found)} import cycle(s) in dlplatform/ (an import inside a function counts: it "
        "only hides the circle). Break each one by moving what both sides need into a module "
        "that both import:\n" + "\n".join(found)
    )


def test_serving_imports_nothing_from_training() -> None:
    found = serve_imports_train()
    assert not found, (
        "dlplatform.serve must not import dlplatform.train (models, registry and prediction "
        "live in dlplatform.models):\n" + "\n".join(found)
    )


def test_function_level_imports_are_reported() -> None:
    imports = function_imports()
    assert imports, "the walk finds imports inside functions (Ray and torch are loaded so)"
    print(report())  # pytest -s, or `python tests/unit/test_import_graph.py`, shows it


def test_function_level_imports_in_guarded_packages_give_their_reason() -> None:
    bare = [
        f"    {_path(i.module)}:{i.line}: {i.text}"
        for i in function_imports()
        if not i.has_reason and any(_within(i.module, p) for p in GUARDED)
    ]
    assert not bare, (
        f"{len(bare)} import(s) inside functions without a reason. Move each to the top of its "
        "module, unless that would load Ray, torch or another heavy library in a light command "
        "(then say so in a comment: `# ray: ...`, `# torch: ...`, `# heavy: pyarrow`), or "
        "would make a cycle (then break the cycle instead):\n" + "\n".join(bare)
    )


def test_a_reason_is_a_comment_that_says_something() -> None:
    # the check itself: a tool's pragma alone is no reason, words after it are
    source = (
        "import a  # ray: only on the cluster\n"
        "import b  # noqa: F401\n"
        "import c  # type: ignore[import-untyped]\n"
        "import d  # noqa: F401  (its import sets the loggers' levels)\n"
        "x = '#'\n"
    )
    assert _comment_reasons(source) == {1: True, 2: False, 3: False, 4: True}


if __name__ == "__main__":
    print(report())
    sys.exit(0)


def test_every_package_says_what_it_holds_and_what_it_may_import() -> None:
    """A newcomer reads a package's docstring first: it names what the package holds and which
    other parts of the platform it may import."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "dlplatform"
    silent = []
    for init in sorted(root.rglob("__init__.py")):
        if "docs_static" in init.parts or "static" in init.parts:
            continue
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        if len(doc) < 40 or "import" not in doc:
            silent.append(str(init.relative_to(root.parent)))
    assert not silent, f"packages without a docstring saying what they may import: {silent}"
