"""The package's import graph, read from the source with ``ast``: no circle, and a headless core.

Every ``import`` and ``from ... import`` counts, at module level and inside functions (an import
inside a function only hides a circle; it does not break it). Relative imports are resolved
against the importing module's package.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

PACKAGE = "napari_geostyle"
SOURCE = Path(__file__).resolve().parent.parent / "src"
#: what ``core`` may never import: it is numpy + torch only, headless
GUI_PACKAGES = ("napari", "qtpy", "magicgui", "superqt", "PyQt5", "PyQt6", "PySide2", "PySide6")


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package ``__init__``) for every module of the package."""
    found = {}
    for path in sorted((SOURCE / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SOURCE).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found[".".join(parts)] = (path, is_package)
    return found


def _imported_names(path: Path, module: str, is_package: bool):
    """``(dotted name, line)`` of everything ``module`` imports, anywhere in its source.

    ``from a import b`` yields ``a.b`` (b may be a submodule) and ``a``.
    """
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            yield source, node.lineno
            for alias in node.names:
                yield f"{source}.{alias.name}", node.lineno


def import_graph() -> dict[str, dict[str, int]]:
    """Module -> {package module it imports: line of the first such import}.

    Importing ``a.b.c`` is an edge to ``a.b.c`` (the deepest package module the name reaches),
    not to the packages above it, whose ``__init__`` runs too but imports nothing eagerly.
    """
    modules = _modules()
    graph = {}
    for module, (path, is_package) in modules.items():
        edges: dict[str, int] = {}
        for name, line in _imported_names(path, module, is_package):
            target = name
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != module:
                edges.setdefault(target, line)
        graph[module] = edges
    return graph


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One import circle as ``[a, b, ..., a]``, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_graph_sees_the_package():
    graph = import_graph()
    assert f"{PACKAGE}.core.transforms" in graph
    # a relative import inside a function counts
    assert f"{PACKAGE}.core.geonet_modules" in graph[f"{PACKAGE}.core.geonet"]
    assert f"{PACKAGE}.core.tps" in graph[f"{PACKAGE}.core.transforms"]


def test_find_cycle_reports_a_circle():
    graph = {"a": {"b": 1}, "b": {"c": 3}, "c": {"a": 5}, "d": {"a": 1}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": 1}, "b": {}}) is None


def test_no_import_circle():
    graph = import_graph()
    cycle = find_cycle(graph)
    if cycle:
        steps = [
            f"{source} -> {target} (line {graph[source][target]})"
            for source, target in itertools.pairwise(cycle)
        ]
        pytest.fail("import circle:\n  " + "\n  ".join(steps))


def test_core_imports_no_gui():
    offences = []
    for module, (path, is_package) in _modules().items():
        if not module.startswith(f"{PACKAGE}.core"):
            continue
        for name, line in _imported_names(path, module, is_package):
            if name.split(".")[0] in GUI_PACKAGES:
                offences.append(f"{module} imports {name} (line {line})")
    assert not offences, "core must stay headless:\n  " + "\n  ".join(sorted(set(offences)))


@pytest.mark.parametrize(
    ("module", "names", "home"),
    [
        ("core.transforms", ("tps_solve", "tps_evaluate", "tps_jacobian"), "core.tps"),
        (
            "core.transforms",
            (
                "tps_grid_params_to_grid",
                "tps_grid_params_sample_points",
                "tps_identity_params",
                "affine_sample_points",
            ),
            "core.warp_params",
        ),
        (
            "core.geonet",
            (
                "MODEL_KINDS",
                "TRUNKS",
                "TRUNK_CHOICES",
                "INPUT_SIZE",
                "FEATURE_STRIDE",
                "check_model_kind",
                "check_trunk",
                "parameter_count",
            ),
            "core.geonet_spec",
        ),
        ("core.warp_params", ("check_grid_size",), "core.geonet_spec"),
    ],
)
def test_moved_names_still_import_from_where_they_were(module, names, home):
    import importlib

    old = importlib.import_module(f"{PACKAGE}.{module}")
    new = importlib.import_module(f"{PACKAGE}.{home}")
    for name in names:
        assert getattr(old, name) is getattr(new, name), name


# what each layer may not import (docs/ARCHITECTURE.md): imports go down the house
LAYER_MAY_NOT_IMPORT = {
    "core": ("_napari", "_widgets", "cli", "viewer_api"),
    "_napari": ("_widgets", "cli", "viewer_api"),
    "viewer_api": ("_widgets", "cli"),
    "cli": ("_napari", "_widgets", "viewer_api"),
    "_widgets": ("cli",),
}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_layers_import_only_downwards():
    offences = []
    for module, (path, is_package) in _modules().items():
        banned = LAYER_MAY_NOT_IMPORT.get(_layer(module), ())
        for name, line in _imported_names(path, module, is_package):
            parts = name.split(".")
            if parts[0] == PACKAGE and len(parts) > 1 and parts[1] in banned:
                offences.append(f"{module} imports {name} (line {line})")
    assert not offences, "imports against the layers:\n  " + "\n  ".join(sorted(set(offences)))


def test_no_private_names_across_layers():
    offences = []
    for module, (path, is_package) in _modules().items():
        for name, line in _imported_names(path, module, is_package):
            parts = name.split(".")
            if parts[0] != PACKAGE or len(parts) < 3 or _layer(name) == _layer(module):
                continue
            if parts[-1].startswith("_") and not parts[-1].startswith("__"):
                offences.append(f"{module} imports {name} (line {line})")
    assert not offences, "private names used across layers:\n  " + "\n  ".join(
        sorted(set(offences))
    )


def test_torch_at_module_level_only_in_geonet_modules():
    allowed = {f"{PACKAGE}.core.geonet_modules"}
    offences = []
    for module, (path, _) in _modules().items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:  # module level only
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            if any(n.split(".")[0] == "torch" for n in names) and module not in allowed:
                offences.append(f"{module} (line {node.lineno})")
    assert not offences, "torch imported at module level:\n  " + "\n  ".join(offences)
