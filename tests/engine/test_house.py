"""Issue 12: the house rules, enforced -- a science-only core without import cycles, public-API conventions
(scanpy-style: data first, options keyword-only, ``Literal`` modes, numpydoc ``Returns``), lifelines-style
fitters, and strict-JSON model cards."""

from __future__ import annotations

import ast
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

import blue_core as bc

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "blue_core"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: Path, modules: set[str]) -> set[str]:
    """blue_core modules imported by ``path`` at run time (function-level imports included; imports under
    ``if TYPE_CHECKING:`` are annotations only and left out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    own = _module_name(path)
    package = own if path.name == "__init__.py" else own.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            submodules = {f"{target}.{alias.name}" for alias in node.names} & modules
            if submodules:  # ``from . import genes`` imports the submodule (and runs the package __init__ first)
                found |= submodules - {own}
            elif target in modules and target != own:
                found.add(target)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in modules and alias.name != own}
    return found


def _import_graph(folder: Path = CORE) -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in folder.rglob("*.py")}
    return {name: _runtime_imports(path, set(paths)) for name, path in paths.items()}


def _bench_graph() -> dict[str, set[str]]:
    """bench scripts import each other by bare name (``sys.path`` holds ``bench/``)."""
    names = {p.stem: p for p in (REPO / "bench").glob("*.py")}
    graph = {}
    for name, path in names.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level and n.module in names}
        found |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names if a.name in names}
        graph[name] = found - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(trail[trail.index(dep):] + [dep] if dep in trail else [node, dep])
            elif dep not in state:
                visit(dep, trail + [dep])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return cycles


def test_no_import_cycles_inside_blue_core():
    graph = _import_graph()
    # submodules never import the package itself (its __init__ imports them: that would be a circle)
    into_package = sorted(m for m, deps in graph.items() if m != "blue_core" and "blue_core" in deps)
    assert not into_package, f"modules importing the blue_core package: {into_package}"
    graph = {m: deps - {"blue_core"} for m, deps in graph.items() if m != "blue_core"}
    assert not _cycles(graph), f"import cycles: {_cycles(graph)}"


def test_no_import_cycles_in_the_app_package_or_the_benches():
    """Issue 23.8/23.9: function-level imports count too (``cache`` <-> ``state`` was a circle through them, and
    ``selection`` <-> ``validate`` in bench/)."""
    app = {m: deps - {"blue_studio"} for m, deps in _import_graph(REPO / "blue_studio").items() if m != "blue_studio"}
    assert not _cycles(app), f"import cycles in blue_studio: {_cycles(app)}"
    bench = _bench_graph()
    assert not _cycles(bench), f"import cycles in bench/: {_cycles(bench)}"
    assert _cycles({"a": {"b"}, "b": {"a"}})  # the checker sees one


def test_the_library_never_locates_files_from_its_own_install_location():
    """Issue 23.8: no blue_core module climbs out of its package (``Path(__file__).parents[...]`` found the checkout:
    data and recipes then resolved only inside a git clone). Package data next to a module (``.parent``) is fine."""
    offenders = [str(p.relative_to(REPO)) for p in CORE.rglob("*.py") if "parents[" in p.read_text(encoding="utf-8")]
    assert not offenders, offenders


def test_recipe_paths_are_relative_to_the_recipe_file(tmp_path, monkeypatch):
    from blue_core.engine.recipe_data import data_root, read_recipe

    monkeypatch.delenv("BLUE_SHARED_DATA", raising=False)
    folder = tmp_path / "recipes" / "mine"
    folder.mkdir(parents=True)
    (folder / "recipe.toml").write_text((REPO / "pretrained" / "pbmc" / "recipe.toml").read_text(encoding="utf-8"))
    recipe = read_recipe(folder / "recipe.toml")
    assert data_root(recipe) == (folder / recipe["data_root"]).resolve()
    monkeypatch.chdir(tmp_path)
    assert data_root({"data_root": "data"}) == (tmp_path / "data").resolve()


def test_the_checker_sees_a_planted_cycle(tmp_path):
    (tmp_path / "pkg").mkdir()
    a, b = tmp_path / "pkg" / "a.py", tmp_path / "pkg" / "b.py"
    a.write_text("def f():\n    from .b import g\n")
    b.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import f\nfrom .a import f\n")
    mods = {"pkg.a", "pkg.b"}
    global REPO
    saved, REPO = REPO, tmp_path
    try:
        assert _runtime_imports(a, mods) == {"pkg.b"} and _runtime_imports(b, mods) == {"pkg.a"}
        b.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import f\n")
        assert _runtime_imports(b, mods) == set()  # annotation-only imports are not edges
    finally:
        REPO = saved


def test_blue_core_imports_neither_streamlit_nor_the_app():
    code = ("import sys, blue_core, blue_core.plotting, blue_core.analysis.clinical, blue_core.analysis.tables, blue_core.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('streamlit', 'blue_studio')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"
    for path in CORE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "import streamlit" not in text and "blue_studio" not in text.replace("``blue_studio``", ""), path


def _public_functions():
    """Every function a public module exports (issue 23.7: not only the package's top-level names)."""
    import importlib
    import pkgutil

    seen = set()
    for name in bc.__all__:
        obj = getattr(bc, name)
        if inspect.isfunction(obj):
            seen.add(obj)
            yield name, obj
    for info in pkgutil.walk_packages(bc.__path__, prefix="blue_core."):
        if info.name.rsplit(".", 1)[1].startswith("_"):
            continue
        module = importlib.import_module(info.name)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.isfunction(obj) and obj not in seen:
                seen.add(obj)
                yield f"{info.name.removeprefix('blue_core.')}.{name}", obj


@pytest.mark.parametrize("name, func", list(_public_functions()))
def test_public_functions_follow_the_api_conventions(name, func):
    sig = inspect.signature(func)
    params = [p for p in sig.parameters.values() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    assert len(positional) <= 2, f"{name}: options after the data must be keyword-only ({[p.name for p in positional]})"
    unannotated = [p.name for p in params if p.annotation is inspect.Parameter.empty]
    assert not unannotated and sig.return_annotation is not inspect.Signature.empty, f"{name}: type hints missing"
    doc = inspect.getdoc(func) or ""
    assert doc, f"{name}: no docstring"
    if sig.return_annotation not in (None, "None"):
        section = "Yields\n------" if inspect.isgeneratorfunction(inspect.unwrap(func)) else "Returns\n-------"
        assert section in doc, f"{name}: numpydoc {section.splitlines()[0]} section missing"
    for p in params:
        if p.name in {"method", "mode", "features", "kind", "how", "normalize"}:
            assert "Literal" in str(p.annotation), f"{name}({p.name}=...): a mode is a Literal"


@pytest.mark.parametrize("cls", [bc.SubtypeClustering, bc.SurvivalAnalysis])
def test_fitters_are_lifelines_style(cls):
    fit = inspect.signature(cls.fit)
    assert str(fit.return_annotation) in (cls.__name__, f"'{cls.__name__}'"), "fit returns self"
    plots = [m for m in dir(cls) if m.startswith("plot_")]
    assert plots, f"{cls.__name__} has no plot_* method"
    for method in plots:  # every figure is drawn in blue_core.plotting; the fitter only delegates
        assert "from ..plotting import" in inspect.getsource(getattr(cls, method)), method


def test_every_shipped_card_is_strict_json():
    def refuse(constant: str) -> None:
        raise ValueError(f"bare {constant} in a card")

    cards = sorted((REPO / "pretrained").glob("*/model.json"))
    assert cards
    for card in cards:
        json.loads(card.read_text(encoding="utf-8"), parse_constant=refuse)


def _docstring_summary(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return " ".join(doc.split("\n\n")[0].split())


def test_the_package_docstring_lists_every_public_module_as_it_describes_itself():
    """Issue 23.7: the module list is generated from ``_MODULES``, which must equal the modules on disk (it listed
    ``ui``, long gone, and left out 17) and their own docstring summaries -- the groups (``io``, ``engine``,
    ``analysis``) and each of their modules included."""
    on_disk = {}
    for group in GROUPS:
        on_disk[group] = _docstring_summary(CORE / group / "__init__.py")
        on_disk |= {f"{group}.{p.stem}": _docstring_summary(p) for p in sorted((CORE / group).glob("*.py"))
                    if not p.name.startswith("_")}
    on_disk |= {p.stem: _docstring_summary(p) for p in CORE.glob("*.py") if not p.name.startswith("_")}
    on_disk["cli"] = _docstring_summary(CORE / "cli" / "__init__.py")
    assert bc._MODULES == on_disk
    assert {p.name for p in CORE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()} == set(GROUPS) | {"cli"}
    for name in on_disk:
        assert f"\n{name:<22} " in bc.__doc__, name


#: The grouped core (issue 23.7): files in and out, the engine, what a result means.
GROUPS = ("io", "engine", "analysis")


def _long_functions(path: Path, limit: int) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [f"{path.relative_to(REPO)}:{n.name} ({n.end_lineno - n.lineno + 1} lines)" for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > limit]


def test_no_core_module_over_600_lines_and_no_function_over_120():
    """Issue 23 must-show: rooms a newcomer can read (io.py was 1,072 lines, ``simulate`` 233)."""
    long_modules = [f"{p.relative_to(REPO)} ({n} lines)" for p in sorted(CORE.rglob("*.py"))
                    if (n := len(p.read_text(encoding="utf-8").splitlines())) > 600]
    assert not long_modules, long_modules
    long_functions = [f for p in sorted(CORE.rglob("*.py")) for f in _long_functions(p, 120)]
    assert not long_functions, long_functions


def test_the_length_checker_sees_a_long_function(tmp_path):
    path = tmp_path / "long.py"
    path.write_text("def f():\n" + "    x = 1\n" * 130)
    global REPO
    saved, REPO = REPO, tmp_path
    try:
        assert _long_functions(path, 120) == ["long.py:f (131 lines)"]
    finally:
        REPO = saved


def test_every_public_top_level_definition_is_exported():
    """Issue 23.7: each module's public functions and classes are in its ``__all__``, and ``__all__`` names only
    what the module defines or imports."""
    import importlib

    for path in sorted(CORE.rglob("*.py")):
        if path.name.startswith("_") and path.name != "__init__.py" or path == CORE / "__init__.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        public = [n.name for n in tree.body
                  if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and not n.name.startswith("_")]
        module = importlib.import_module(_module_name(path))
        exported = getattr(module, "__all__", None)
        assert exported is not None, f"{path.name}: no __all__"
        assert not set(public) - set(exported), f"{path.name}: not exported {sorted(set(public) - set(exported))}"
        assert all(hasattr(module, n) for n in exported), f"{path.name}: __all__ names a missing object"


def test_no_core_module_reaches_into_another_modules_private_names():
    """Issue 23.8: a rule shared by two modules is public in its one home (``io.check_finite``,
    ``io.convert_units``, ``simulation.check_reference`` were imported as private helpers)."""
    offenders = []
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level and node.module:
                offenders += [f"{path.name}: {node.module}.{a.name}" for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__")]
    # the package-private helper modules (_types, _version) are meant to be shared
    offenders = [o for o in offenders if not o.split(": ")[1].startswith(("_types.", "_version."))]
    assert not offenders, offenders
