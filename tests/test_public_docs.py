"""The public API's docstrings: numpydoc sections that match the signatures, and their examples.

Every public name of ``napari_geostyle`` (its lazy ``__all__``) and of
``napari_geostyle.viewer_api`` documents its parameters in a "Parameters" section whose names
are the signature's, in order (``*args`` / ``**options`` as ``*args`` / ``**options`` entries,
private ``_name`` parameters left out), and a function says what it gives back in "Returns" or
"Yields". The doctests of the modules with examples run here too, so a plain ``pytest`` runs them.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import re

import pytest

import napari_geostyle

try:
    from numpydoc.docscrape import NumpyDocString
except ImportError:  # pragma: no cover - numpydoc is in the testing extra
    NumpyDocString = None

#: modules whose docstrings carry examples (cheap ones: numpy and the CPU)
DOCTEST_MODULES = ("napari_geostyle.core.transforms",)


def _public() -> list[tuple[str, object]]:
    from napari_geostyle import viewer_api

    names = [
        (f"napari_geostyle.{name}", getattr(napari_geostyle, name))
        for name in napari_geostyle.__all__
        if name != "__version__"
    ]
    names += [(f"viewer_api.{name}", getattr(viewer_api, name)) for name in viewer_api.__all__]
    return [(label, obj) for label, obj in names if inspect.isfunction(obj) or inspect.isclass(obj)]


PUBLIC = _public()


def _sections_fallback(doc: str) -> dict[str, list[str]]:
    """Section name -> its entry names, for numpydoc-style sections (no numpydoc installed)."""
    lines = inspect.cleandoc(doc).splitlines()
    sections: dict[str, list[str]] = {}
    current = None
    for index, line in enumerate(lines):
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if line.strip() and re.fullmatch(r"-{3,}", following.strip() or "x"):
            current = sections.setdefault(line.strip(), [])
        elif current is not None and line and not line[0].isspace() and not set(line) <= {"-"}:
            current.append(line.split(" : ")[0].strip())
    return sections


def _sections(doc: str) -> dict[str, list[str]]:
    if NumpyDocString is None:
        return _sections_fallback(doc)
    parsed = NumpyDocString(doc)
    sections = {}
    for name in ("Parameters", "Returns", "Yields", "Raises"):
        entries = parsed[name]
        if entries:
            sections[name] = [entry.name or entry.type for entry in entries]
    return sections


def _signature_names(obj) -> list[str]:
    names = []
    for parameter in inspect.signature(obj).parameters.values():
        if parameter.name.startswith("_"):
            continue
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            names.append(f"*{parameter.name}")
        elif parameter.kind is inspect.Parameter.VAR_KEYWORD:
            names.append(f"**{parameter.name}")
        else:
            names.append(parameter.name)
    return names


def _documented_names(entries: list[str]) -> list[str]:
    """Entry names, ``"a, b : int"`` (one entry for several parameters) split into its names."""
    return [name.strip() for entry in entries for name in entry.split(",") if name.strip()]


def test_public_api_is_listed():
    labels = {label for label, _ in PUBLIC}
    assert "napari_geostyle.fit_tps" in labels
    assert "viewer_api.add_warp" in labels
    assert len(PUBLIC) == len(napari_geostyle.__all__) - 1 + 5


@pytest.mark.parametrize(("label", "obj"), PUBLIC, ids=[label for label, _ in PUBLIC])
def test_numpydoc_sections_match_the_signature(label, obj):
    doc = inspect.getdoc(obj)
    assert doc, f"{label} has no docstring"
    sections = _sections(doc)
    expected = _signature_names(obj)
    if expected:
        assert "Parameters" in sections, f"{label}: no Parameters section"
        documented = _documented_names(sections["Parameters"])
        assert documented == expected, f"{label}: documented {documented}, signature {expected}"
    if inspect.isfunction(obj):
        assert "Returns" in sections or "Yields" in sections, f"{label}: no Returns / Yields"


@pytest.mark.parametrize(("label", "obj"), PUBLIC, ids=[label for label, _ in PUBLIC])
def test_public_signatures_are_annotated(label, obj):
    signature = inspect.signature(obj.__init__ if inspect.isclass(obj) else obj)
    missing = [
        name
        for name, parameter in signature.parameters.items()
        if name != "self" and parameter.annotation is inspect.Parameter.empty
    ]
    assert not missing, f"{label}: parameters without annotations: {missing}"
    if inspect.isfunction(obj) or not _is_dataclass(obj):
        assert signature.return_annotation is not inspect.Signature.empty, f"{label}: no return"


def _is_dataclass(obj) -> bool:
    import dataclasses

    return dataclasses.is_dataclass(obj)


@pytest.mark.parametrize("module_name", DOCTEST_MODULES)
def test_docstring_examples(module_name):
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0, f"{module_name} has no examples"
    assert result.failed == 0
