"""The package's import rules, read from the source with ``ast`` (nothing is imported to check them):
the engine and the Korean helpers import no front end (app, serve, cli); kolyric's modules import
each other without a circle; and the app paints its first screen before torch is imported."""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.first_paint import first_paint

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "kolyric"
FRONT_ENDS = ("kolyric.app", "kolyric.serve", "kolyric.cli")
ENGINE = ("kolyric.engine", "kolyric.korean")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules(package: Path) -> dict[str, Path]:
    """Every module under ``package`` (a folder with __init__.py), by dotted name; data folders
    such as the shipped models hold no .py files and drop out."""
    return {module_name(p, package.parent): p for p in sorted(package.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(body: list[ast.stmt], *, lazy: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements run by ``body``. Without ``lazy``: only those that run when the module is
    imported (module and class level, inside if/try/with), leaving out function bodies, which run
    later, and ``if TYPE_CHECKING:`` blocks, which never run. With ``lazy``: every import written."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            if lazy:
                yield from _import_nodes(node.body, lazy=lazy)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            if lazy:
                yield from _import_nodes(node.body, lazy=lazy)
            yield from _import_nodes(node.orelse, lazy=lazy)
        else:
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    yield from _import_nodes(children, lazy=lazy)


def imports_of(name: str, path: Path, known: set[str], *, lazy: bool = False) -> set[str]:
    """The modules of ``known`` that module ``name`` (at ``path``) imports: ``from a import b``
    counts as importing ``a.b`` when that is a module, else ``a``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _import_nodes(tree.body, lazy=lazy):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        for target in targets:
            while target and target not in known:  # `import a.b.c` of a name inside a module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(package: Path, *, lazy: bool = False) -> dict[str, set[str]]:
    modules = package_modules(package)
    known = set(modules)
    return {name: imports_of(name, path, known, lazy=lazy) for name, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups)


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


# -- the rules -------------------------------------------------------------------------------------
def test_the_engine_imports_no_front_end():
    """Anywhere in the file, lazy imports and TYPE_CHECKING blocks included: the engine is the
    layer the app, the server and the CLI all build on, so it cannot know about any of them."""
    graph = import_graph(PACKAGE, lazy=True)
    engine = [name for name in graph if _within(name, ENGINE)]
    assert len(engine) > 10, engine  # the walk found the engine at all
    wrong = {name: sorted(t for t in graph[name] if _within(t, FRONT_ENDS)) for name in engine}
    assert not {name: t for name, t in wrong.items() if t}, "engine modules importing a front end"


def test_no_import_circles_among_kolyric_modules():
    """Import-time imports only: a function-level import runs after every module has loaded,
    so it is how a late dependency is allowed, and it closes no circle."""
    graph = import_graph(PACKAGE)
    assert sum(map(len, graph.values())) > 50  # the walk saw the package's imports
    assert circles(graph) == []


def test_the_app_paints_before_torch_is_imported(tiny_model_dir, tmp_path):
    """The app started on a real (tiny) model, its load begun at mount: torch is still not in
    ``sys.modules`` when the first screen is drawn, and it is once the model has loaded (so the
    check sees an import when there is one)."""
    env = {
        **os.environ,
        "KOLYRIC_CONFIG_DIR": str(tmp_path / "c"),
        "KOLYRIC_DATA_DIR": str(tmp_path / "d"),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    setup = f"from kolyric.app.app import KolyricApp\napp = KolyricApp(model={str(tiny_model_dir)!r})"
    paint = first_paint(setup, env, wait_for_model=True)
    assert not paint.torch_at_paint, "torch was imported before the app's first paint"
    assert paint.model_loaded and paint.torch_at_end, "the tiny model never loaded, so the check proved nothing"


# -- the checker itself finds what it looks for ----------------------------------------------------
def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / next(iter(files)).split("/")[0]


def test_the_checker_sees_circles_and_skips_lazy_and_type_only_imports(tmp_path):
    pkg = _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg import b\n",
            "pkg/b.py": "from . import c\n",
            "pkg/c.py": "try:\n    import pkg.a as a\nexcept ImportError:\n    a = None\n",
            "pkg/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.e import E\n",
            "pkg/e.py": "from pkg.d import x\n\ndef f():\n    from pkg.d import y\n",
            "pkg/sub/__init__.py": "from ..a import thing\n",
        },
    )
    graph = import_graph(pkg)
    assert graph["pkg.sub"] == {"pkg.a"} and graph["pkg.c"] == {"pkg.a"}
    assert circles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]  # d <-> e is type-only on one side
    lazy = import_graph(pkg, lazy=True)
    assert lazy["pkg.d"] == {"pkg.e"} and circles(lazy) == [["pkg.a", "pkg.b", "pkg.c"], ["pkg.d", "pkg.e"]]


@pytest.mark.parametrize(
    "source",
    [
        "from kolyric.app.app import KolyricApp",
        "import kolyric.serve.api",
        "def f():\n    from kolyric.cli import main",
    ],
)
def test_the_checker_sees_an_engine_module_importing_a_front_end(tmp_path, source):
    pkg = _write(
        tmp_path,
        {
            "kolyric/__init__.py": "",
            "kolyric/engine/__init__.py": "",
            "kolyric/engine/x.py": source + "\n",
            "kolyric/app/__init__.py": "",
            "kolyric/app/app.py": "",
            "kolyric/serve/__init__.py": "",
            "kolyric/serve/api.py": "",
            "kolyric/cli/__init__.py": "",
        },
    )
    targets = import_graph(pkg, lazy=True)["kolyric.engine.x"]
    assert targets and all(_within(t, FRONT_ENDS) for t in targets)
