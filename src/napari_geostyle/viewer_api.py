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
live wiring, as the widgets (both use ``napari_geostyle._widgets``' shared modules).
"""

from __future__ import annotations

from ._widgets._layer_data import read_layer_image, resolve_image_layer, same_layer
from ._widgets._live_points import LiveWarp, start_live_warp
from ._widgets._runs import StyleRun, estimate_and_warp, start_style_run
from .core.estimate import check_options

__all__ = ["LiveWarp", "add_warp", "start_geometric_style_transfer", "start_texture_transfer"]

def _two_layers(viewer, content, style, style_role):
    content_layer = resolve_image_layer(viewer, content, "content")
    style_layer = resolve_image_layer(viewer, style, style_role)
    if same_layer(content_layer, style_layer):
        raise ValueError(f"content and {style_role} are the same layer; pick two different ones.")
    return content_layer, style_layer


def add_warp(viewer, content, style, model: str = "affine+tps", method: str = "network",
             device=None, strength: float = 1.0) -> LiveWarp:
    """Warp ``content`` to the geometry of ``style`` and show it live (blocks until warped).

    Returns a :class:`LiveWarp` with ``.warped`` (Image layer ``<content> warped``),
    ``.content_points`` / ``.target_points`` (editable, paired landmark Points layers),
    ``.transform``, ``.undo()``, ``.redo()``, ``.set_points(...)`` and the exports.
    For nD content the slice the viewer shows is warped. ``strength`` (0..1) doses the warp
    (``LiveWarp.set_strength`` changes it later).
    """
    from .core.transforms import check_strength, with_strength
    from .core.warp import warp_image

    check_options(model, method, "embedded")
    strength = check_strength(strength)
    content_layer, style_layer = _two_layers(viewer, content, style, "geometry style")
    content_image = read_layer_image(content_layer, viewer)
    style_image = read_layer_image(style_layer, viewer)
    steps = estimate_and_warp(content_image, style_image, model, method, device)
    try:
        while True:
            next(steps)
    except StopIteration as stop:
        transform, warped = stop.value
    if strength != 1.0:
        warped = warp_image(content_image.raw, with_strength(transform, strength), device=device)
    return start_live_warp(
        viewer,
        content_layer,
        content_image,
        transform,
        warped,
        inputs={"content": content_layer.name, "geometry_style": style_layer.name},
        options={"model": model, "method": method, "device": device or "auto",
                 "strength": strength},
        device=device,
        strength=strength,
    )


def start_texture_transfer(viewer, content, style, **options):
    """Start a texture transfer of ``style``'s texture onto ``content`` in a napari worker.

    ``style`` may be one layer or a list of layers (weights via ``style_weights``); ``options``
    are those of :func:`napari_geostyle.iter_texture_transfer`. Returns the started worker; the
    image (updated live from previews) lands in the layer ``<content> textured``.
    """
    return _texture_run(viewer, content, style, **options).worker


def _result_kind(content_layer, content_image, style_layers, color_output: bool) -> dict:
    """How a texture result is shown: in the content's kind (gray stays gray, integers keep
    their dtype and the contrast range the user saw), colour only when asked and a style has
    colour."""
    value_range = None if content_layer.rgb else tuple(content_layer.contrast_limits)
    return {
        "content_like": content_image.raw,
        "value_range": value_range,
        "keep_color": bool(color_output) and any(layer.rgb for layer in style_layers),
        "slice_index": content_image.slice_index,
    }


def _texture_run(viewer, content, style, on_done=None, on_progress=None, reuse=False,
                 color_output=False, **options) -> StyleRun:
    from .core.texture import iter_texture_transfer

    content_layer = resolve_image_layer(viewer, content, "content")
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    if not styles:
        raise ValueError("give at least one texture-style layer.")
    style_layers = [resolve_image_layer(viewer, s, "texture style") for s in styles]
    if any(same_layer(layer, content_layer) for layer in style_layers):
        raise ValueError("the content layer is also a texture style; pick a different style layer.")
    content_image = read_layer_image(content_layer, viewer)
    style_images = [read_layer_image(layer, viewer).normalized for layer in style_layers]
    texture_input = style_images[0] if len(style_images) == 1 else style_images
    # Built here, not in the worker, so a bad option is a ValueError for the caller; the
    # generator does no work until the worker's first next().
    steps = iter_texture_transfer(content_image.normalized, texture_input, **options)

    return start_style_run(
        viewer,
        steps,
        content_layer=content_layer,
        output_name=f"{content_layer.name} textured",
        stage="texture",
        inputs={"content": content_layer.name, "texture_style": [s.name for s in style_layers]},
        options=options,
        reference_shape=content_image.shape,
        stride=content_image.stride,
        device=options.get("device"),
        on_done=on_done,
        on_progress=on_progress,
        reuse=reuse,
        **_result_kind(content_layer, content_image, style_layers, color_output),
    )


def start_geometric_style_transfer(viewer, content, style, geometry_style=None,
                                   texture_style=None, **options):
    """Start both stages (warp to the geometry style, then texture) in a napari worker.

    ``geometry_style`` / ``texture_style`` default to ``style``. The warped image appears as
    ``<content> warped`` when the first stage ends; the result (live previews) as
    ``<content> geostyle``. Results never replace existing layers (``reuse=True`` updates
    layers of those names instead). Returns the started worker.
    """
    return _pipeline_run(viewer, content, style, geometry_style, texture_style, **options).worker


def _pipeline_run(viewer, content, style, geometry_style=None, texture_style=None,
                  on_done=None, on_progress=None, reuse=False, color_output=False,
                  **options) -> StyleRun:
    from .core.pipeline import iter_geometric_style_transfer

    content_layer = resolve_image_layer(viewer, content, "content")
    roles = {
        "geometry_style": geometry_style if geometry_style is not None else style,
        "texture_style": texture_style if texture_style is not None else style,
    }
    layers = {}
    for role, given in roles.items():
        layers[role] = resolve_image_layer(viewer, given, role.replace("_", " "))
        if same_layer(layers[role], content_layer):
            raise ValueError(f"the content layer is also the {role.replace('_', ' ')}; pick another.")
    content_image = read_layer_image(content_layer, viewer)
    geometry_image = read_layer_image(layers["geometry_style"], viewer).normalized
    texture_image = read_layer_image(layers["texture_style"], viewer).normalized

    # Built here so that bad options (model, method, texture) are a ValueError for the caller.
    steps = iter_geometric_style_transfer(
        content_image.normalized,
        geometry_style=geometry_image,
        texture_style=texture_image,
        **options,
    )

    return start_style_run(
        viewer,
        steps,
        content_layer=content_layer,
        output_name=f"{content_layer.name} geostyle",
        stage="geometric style",
        inputs={"content": content_layer.name, **{k: v.name for k, v in layers.items()}},
        options=options,
        reference_shape=content_image.shape,
        stride=content_image.stride,
        device=options.get("device"),
        on_done=on_done,
        on_progress=on_progress,
        reuse=reuse,
        **_result_kind(content_layer, content_image, [layers["texture_style"]], color_output),
    )
