"""The architecture's rules that code can check.

- Imports in ``src/usfad`` only point down: no import cycle between modules, and no module
  outside the command line (``cli.py``, ``commands/``) imports it. Read from the source with
  :mod:`ast` (lazy imports inside functions count too); an import of ``usfad`` itself (the
  package's public facade, e.g. ``from .. import __version__``) is not an edge.
- Every flow layer declares ``constant_logdet``.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest
import torch

import usfad
from usfad.flows import AdditiveCoupling, AffineCoupling, Conjugate, LULinear, Sequential, mlp
from usfad.flows.base import Bijection
from usfad.flows.coupling import _Coupling

#: composites that derive constant_logdet per instance, in __init__, from their parts
DERIVED = {Sequential, Conjugate}
#: bases that are not layers themselves (instantiating one must fail)
ABSTRACT = {_Coupling}


def _usfad_bijections() -> list[type[Bijection]]:
    """Every subclass of Bijection defined in usfad, after importing every usfad module."""
    for info in pkgutil.walk_packages(usfad.__path__, "usfad."):
        importlib.import_module(info.name)
    found, todo = [], [Bijection]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__.startswith("usfad.") and sub not in found:
                found.append(sub)
    return found


def _declarer(cls: type) -> type | None:
    """The nearest class in ``cls``'s MRO whose own dict sets constant_logdet."""
    return next((k for k in cls.__mro__ if "constant_logdet" in vars(k)), None)


def test_bijection_itself_has_no_default():
    assert _declarer(Bijection) is None and not hasattr(Bijection, "constant_logdet")


def test_every_usfad_layer_declares_constant_logdet():
    layers = _usfad_bijections()
    assert len(layers) >= 10 and LULinear in layers and AffineCoupling in layers
    undeclared = []
    for cls in layers:
        if cls in DERIVED | ABSTRACT:
            assert _declarer(cls) is None, f"{cls.__name__}: drop it from DERIVED/ABSTRACT, it declares a class value"
            continue
        owner = _declarer(cls)
        if owner is None or not isinstance(vars(owner)["constant_logdet"], bool):
            undeclared.append(f"{cls.__module__}.{cls.__qualname__}")
    assert not undeclared, f"layers without a class-level bool constant_logdet: {undeclared}"


def test_composites_derive_it_from_their_parts():
    usf = Conjugate(AdditiveCoupling(4, mlp((8,))), LULinear(4))
    affine = Conjugate(AffineCoupling(4, mlp((8,))), LULinear(4))
    assert "constant_logdet" in vars(usf) and usf.constant_logdet is True and affine.constant_logdet is False
    assert Sequential([usf, LULinear(4)]).constant_logdet is True
    assert Sequential([usf, affine]).constant_logdet is False


def test_an_abstract_base_cannot_be_instantiated():
    with pytest.raises(TypeError, match="_Coupling does not declare constant_logdet"):
        _Coupling(4, mlp((8,)))


def test_a_new_layer_that_does_not_declare_it_is_refused():
    class Undeclared(Bijection):
        def forward(self, x, context=None):
            return x, x.new_zeros(x.shape[0])

        def inverse(self, y, context=None):
            return y

    class Declared(Undeclared):
        constant_logdet = True

    class NotABool(Undeclared):
        constant_logdet = None

    with pytest.raises(TypeError, match="Undeclared does not declare constant_logdet"):
        Undeclared()
    with pytest.raises(TypeError, match="NotABool does not declare"):
        NotABool()
    y, logdet = Declared()(torch.ones(2, 3))
    assert logdet.shape == (2,) and Declared().constant_logdet is True


# --- imports point down -----------------------------------------------------------------

SRC = Path(__file__).resolve().parents[1] / "src" / "usfad"
#: the command-line layer: the second component of a module name
CLI = ("cli", "commands")


def _modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, a package by its ``__init__.py``."""
    mods = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _imports(name: str, mods: dict[str, Path]) -> set[str]:
    """The modules of ``mods`` that module ``name`` imports anywhere in its file."""
    path = mods[name]
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    root = next(iter(mods)).split(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            candidates = [target] + [f"{target}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in mods:  # an imported name: its module
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate not in (name, root):
                found.add(candidate)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def _layer_problems(root: Path) -> list[str]:
    mods = _modules(root)
    graph = {name: _imports(name, mods) for name in mods}
    cli = {name for name in mods if len(name.split(".")) > 1 and name.split(".")[1] in CLI}
    problems = ["cycle: " + " <-> ".join(c) for c in _cycles(graph)]
    problems += [
        f"library imports the command line: {name} -> {target}"
        for name, targets in sorted(graph.items())
        if name not in cli
        for target in sorted(targets & cli)
    ]
    return problems


def test_imports_in_usfad_point_down_no_cycles_and_no_library_module_imports_the_command_line():
    assert len(_modules(SRC)) > 40
    assert _layer_problems(SRC) == []


def test_the_layer_check_finds_a_cycle_and_an_upward_import(tmp_path):
    pkg = tmp_path / "pkg"
    for path, text in {
        "__init__.py": "from .a import x\n",
        "a.py": "from .b import y\nx = 1\n",
        "b.py": "def y():\n    from pkg.a import x\n    return x\n",
        "c.py": "import pkg.a\n",
        "sub/__init__.py": "",
        "sub/d.py": "from .. import commands\n",
        "sub/e.py": "from ..sub import d\nfrom .. import x\n",
        "commands/__init__.py": "",
        "commands/run.py": "from ..sub import d\nfrom ..a import x\n",
        "cli.py": "from .commands import run\n",
    }.items():
        (pkg / path).parent.mkdir(parents=True, exist_ok=True)
        (pkg / path).write_text(text)
    assert _imports("pkg.sub.e", _modules(pkg)) == {"pkg.sub", "pkg.sub.d"}  # `from .. import x`: the facade
    assert _layer_problems(pkg) == [
        "cycle: pkg.a <-> pkg.b",
        "library imports the command line: pkg.sub.d -> pkg.commands",
    ]


def test_the_readme_layout_lists_every_folder_and_module_in_layer_order():
    text = (SRC.parents[1] / "README.md").read_text(encoding="utf-8")
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    paths = [line.split()[0] for line in block.splitlines() if line.strip()]
    listed = [path.removeprefix("src/usfad/").rstrip("/").removesuffix(".py") for path in paths]
    mods = _modules(SRC)
    units = {name.split(".")[1] for name in mods if name.count(".") >= 1}
    assert sorted(listed) == sorted(units), "README's Layout must list every folder and top-level module once"
    rank = {unit: i for i, unit in enumerate(listed)}
    upward = sorted(
        f"{name} -> {target}"
        for name in mods
        if name.count(".") >= 1
        for target in _imports(name, mods)
        if rank[target.split(".")[1]] > rank[name.split(".")[1]]
    )
    assert upward == [], "imports of a layer listed later in README's Layout"
