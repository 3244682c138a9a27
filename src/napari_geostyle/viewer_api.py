"""Scripting GeoStyle in a napari viewer (napari console, notebooks).

Opening any GeoStyle widget binds this module as ``geostyle`` in the napari console::

    w = geostyle.add_warp(viewer, "content", "geometry style")      # live, editable warp
    w.warped, w.content_points, w.target_points                      # the layers it made
    worker = geostyle.start_texture_transfer(viewer, w.warped, "texture style", size=256)
    worker = geostyle.start_geometric_style_transfer(viewer, "content", "style")

The workers returned have ``worker.geostyle_run`` (``.done``, ``.output``, ``.error``,
``.cancel()``) for scripts that wait on the result.

Layers are given as layer objects or names; anything but a non-empty Image layer is a
``ValueError`` that lists the usable layers. These functions make the same layers, with the same
live wiring, as the widgets: both call the controllers in ``napari_geostyle._napari``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from ._napari.layer_data import read_layer_image, resolve_image_layer
from ._napari.live_warp import LiveWarp, start_live_warp
from ._napari.runs import pipeline_run, texture_run
from ._napari.warp_runs import estimate_warp_now, read_warp_inputs
from .core.geometry_options import GeometryOptions

if TYPE_CHECKING:  # pragma: no cover
    import napari
    from napari.qt.threading import GeneratorWorker
    from numpy.typing import ArrayLike

    from ._napari.hints import HintedWarp
    from .core.hints import Hints

    # a layer object, or the name of one in the viewer
    LayerRef: TypeAlias = "str | napari.layers.Image"

__all__ = [
    "LiveWarp",
    "add_warp",
    "start_geometric_style_transfer",
    "start_hint_mode",
    "start_texture_transfer",
]


def add_warp(
    viewer: napari.Viewer,
    content: LayerRef,
    style: LayerRef,
    model: str = "affine+tps",
    method: str = "network",
    device: str | None = None,
    strength: float = 1.0,
    hints: tuple[ArrayLike, ArrayLike] | None = None,
) -> LiveWarp:
    """Warp ``content`` to the geometry of ``style`` and show it live (blocks until warped).

    For nD content the slice the viewer shows is warped. The layer's metadata records the hints
    and the estimate's ``confidence`` (0..1; low: the shapes may not match, add a hint).

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer holding the layers.
    content : str or napari.layers.Image
        The content layer, or its name.
    style : str or napari.layers.Image
        The geometry style layer, or its name (not the content's).
    model : {"affine", "tps", "affine+tps"}, default "affine+tps"
        As :func:`napari_geostyle.estimate_warp`.
    method : {"network", "refine"}, default "network"
        As :func:`napari_geostyle.estimate_warp`.
    device : str, optional
        ``None``/``"auto"`` picks cuda > mps > cpu.
    strength : float, default 1.0
        0..1, doses the warp (``LiveWarp.set_strength`` changes it later).
    hints : tuple of array_like, optional
        ``(content_points, style_points)``, (K, 2) ``(row, col)`` pixels of each layer's image,
        points that correspond: they pin the estimate's pose and the warp honours them
        (``napari_geostyle.estimate_warp``).

    Returns
    -------
    LiveWarp
        With ``.warped`` (Image layer ``<content> warped``), ``.content_points`` /
        ``.target_points`` (editable, paired landmark Points layers), ``.transform``,
        ``.undo()``, ``.redo()``, ``.set_points(...)`` and the exports.

    Raises
    ------
    ValueError
        If a layer is not a non-empty Image layer of the viewer, both are the same layer, or
        ``model``, ``method``, ``strength`` or the hints are invalid.
    """
    from .core.transforms import with_strength
    from .core.warp import warp_image

    strength = GeometryOptions(model=model, method=method, strength=strength).strength
    inputs = read_warp_inputs(viewer, content, style)
    content_layer, content_image, style_image = inputs.content_layer, inputs.content, inputs.style
    checked: Hints | None = None
    if hints is not None:  # bad hints fail here, before any work
        from ._napari.layer_data import strided_points
        from .core.hints import check_hints
        from .core.images import validate_points

        given = hints
        try:
            content_points, style_points = hints
        except (TypeError, ValueError):
            pass  # check_hints says what is wrong
        else:  # layer pixels -> the pixels of the (maybe strided) images read for the estimate
            given = (
                strided_points(validate_points(content_points, "content hints"),
                               content_image.stride),
                strided_points(validate_points(style_points, "style hints"), style_image.stride),
            )  # fmt: skip
        checked = check_hints(
            given, content_image.normalized.shape[:2], style_image.normalized.shape[:2]
        )
    transform, warped = estimate_warp_now(inputs, model, method, device, hints=checked)
    if strength != 1.0:
        warped = warp_image(content_image.raw, with_strength(transform, strength), device=device)
    return start_live_warp(
        viewer,
        content_layer,
        content_image,
        transform,
        warped,
        inputs=inputs.names,
        options={
            "model": model,
            "method": method,
            "device": device or "auto",
            "strength": strength,
            "confidence": getattr(transform, "confidence", None),
            **({} if checked is None else {"hints": checked.to_dict()}),
        },
        device=device,
        strength=strength,
    )


def start_hint_mode(
    viewer: napari.Viewer,
    live: LiveWarp,
    style: LayerRef,
    content: LayerRef | None = None,
    on_status: Callable[[str], object] | None = None,
    hints: tuple[ArrayLike, ArrayLike] | None = None,
) -> HintedWarp:
    """Hint mode on a live warp (``add_warp``'s): click a point on the content, then the same
    place on ``style``; each completed pair re-estimates ``live`` from the images with the
    pairs as hints (in a worker). Hints steer the estimate; ``live``'s control points edit its
    result.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer holding the layers.
    live : LiveWarp
        The live warp (``add_warp``'s) to re-estimate.
    style : str or napari.layers.Image
        The geometry style layer, or its name.
    content : str or napari.layers.Image, optional
        The content layer (default: the one ``live`` was made from, by name).
    on_status : callable, optional
        Called with each new status line.
    hints : tuple of array_like, optional
        ``(content_points, style_points)``, layer data pixels: hints ``live`` was already
        estimated with (a restored session). They are shown, not estimated again.

    Returns
    -------
    HintedWarp
        ``.session`` (``.content_hints`` / ``.style_hints`` layers, ``.undo()``,
        ``.delete(i)``, ``.export_bigwarp_csv(path)``), ``.status`` (the confidence, and "the
        shapes may not match: add a hint" when it is low).

    Raises
    ------
    ValueError
        If a layer is not a non-empty Image layer of the viewer.
    """
    from ._napari.hints import HintedWarp

    content_layer = resolve_image_layer(
        viewer, content if content is not None else live.inputs["content"], "content"
    )
    style_layer = resolve_image_layer(viewer, style, "geometry style")
    options = live.options
    return HintedWarp(
        viewer, live, content_layer, style_layer, live.content,
        read_layer_image(style_layer, viewer), options.get("model", "affine+tps"),
        options.get("method", "network"), live.device, on_status, hints,
    )  # fmt: skip


def start_texture_transfer(
    viewer: napari.Viewer,
    content: LayerRef,
    style: LayerRef | Sequence[LayerRef],
    **options: Any,
) -> GeneratorWorker:
    """Start a texture transfer of ``style``'s texture onto ``content`` in a napari worker.

    The image (updated live from previews) lands in the layer ``<content> textured``.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer holding the layers.
    content : str or napari.layers.Image
        The content layer, or its name.
    style : str, napari.layers.Image or list of them
        One layer or a list of layers (weights via ``style_weights``).
    **options
        Those of :func:`napari_geostyle.iter_texture_transfer`.

    Returns
    -------
    napari.qt.threading.GeneratorWorker
        The started worker; ``worker.geostyle_run`` has ``.done``, ``.output``, ``.error``,
        ``.cancel()``.

    Raises
    ------
    ValueError
        If a layer is not a non-empty Image layer of the viewer, or an option is invalid.
    """
    return texture_run(viewer, content, style, **options).worker


def start_geometric_style_transfer(
    viewer: napari.Viewer,
    content: LayerRef,
    style: LayerRef | None,
    geometry_style: LayerRef | None = None,
    texture_style: LayerRef | Sequence[LayerRef] | None = None,
    **options: Any,
) -> GeneratorWorker:
    """Start both stages (warp to the geometry style, then texture) in a napari worker.

    The warped image appears as ``<content> warped`` when the first stage ends; the result
    (live previews) as ``<content> geostyle``. Results never replace existing layers
    (``reuse=True`` updates layers of those names instead).

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer holding the layers.
    content : str or napari.layers.Image
        The content layer, or its name.
    style : str or napari.layers.Image
        The style layer for both stages, or its name.
    geometry_style : str or napari.layers.Image, optional
        The geometry style layer; default ``style``.
    texture_style : str, napari.layers.Image or list of them, optional
        The texture style layer(s); default ``style``.
    **options
        ``reuse`` and the keyword options of
        :func:`napari_geostyle.iter_geometric_style_transfer`.

    Returns
    -------
    napari.qt.threading.GeneratorWorker
        The started worker; ``worker.geostyle_run`` has ``.done``, ``.output``, ``.error``,
        ``.cancel()``.

    Raises
    ------
    ValueError
        If a layer is not a non-empty Image layer of the viewer, or an option is invalid.
    """
    return pipeline_run(viewer, content, style, geometry_style, texture_style, **options).worker
