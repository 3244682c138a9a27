"""The end of a live warp: its layers retired, or handed over to the warp that replaces it.

A new warp in the widget takes over the previous warp's layers (``hand_over``; the new
``LiveWarp`` gets them as ``reuse`` and updates them in place, so a second Run draws no new
layers). Nothing the user edited is lost: an edited warp's landmarks (greyed) and warped image
are kept in hidden copies named "... (old)". Each function takes the live warp
(:class:`~napari_geostyle._napari.live_warp.LiveWarp`) first; its methods of the same names call
them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .layer_data import layer_present, unique_layer_name
from .paired_points import LABEL_COLOR
from .warp_frame import display_like, present


def retire(live: Any, replaced: bool = True) -> str:
    """Stop ``live`` and make plain that its layers no longer follow edits.

    Parameters
    ----------
    live : LiveWarp
        The warp.
    replaced : bool, default True
        A new warp takes its place: unedited, its layers are removed (the new warp's take their
        names); edited, its points, greyed, and its warped image are hidden and renamed
        "... (old)". Not replaced (its panel closed): the points are retired the same way and
        the warped image stays as it is.

    Returns
    -------
    str
        A line for the status ("" when nothing is left behind).
    """
    viewer = live.viewer
    live.close()
    points = [live.content_points, live.target_points]
    live.renderer.remove_grid()
    if replaced and not live.edited:
        for layer in (*points, live.warped):
            if present(viewer, layer):
                viewer.layers.remove(layer)
        return ""
    kept = [*points, live.warped] if replaced else points
    names = []
    for layer in kept:
        if not present(viewer, layer):
            continue
        if layer is not live.warped:
            layer.face_color = layer.current_face_color = "gray"
        layer.name = unique_layer_name(viewer, f"{layer.name} (old)")
        layer.visible = False
        names.append(layer.name)
    if not names:
        return ""
    which = "the previous warp's edited landmarks" if replaced else "the landmarks"
    return f"{which} no longer follow edits: kept, hidden, as {', '.join(map(repr, names))}."


def hand_over(live: Any) -> tuple[str, dict]:
    """Retire ``live`` for a new warp that takes over its layers (``reuse``).

    Edited, nothing is lost: hidden, greyed copies named "... (old)" keep its landmarks and its
    warped image. They are made from what the layers hold now, one per event-loop turn after
    this one (each new layer costs napari a fifth of a second, even hidden): the Run that takes
    over the layers stalls the viewer no longer than it must.

    Parameters
    ----------
    live : LiveWarp
        The warp.

    Returns
    -------
    tuple of (str, dict)
        A line for the status ("" when nothing is left behind), and the layers by role
        (``"warped"``, ``"content"``, ``"target"``) with the drag previews' small copy of the
        content (``"preview_small"``).
    """
    from qtpy.QtCore import QTimer

    viewer = live.viewer
    live.close()
    live.renderer.remove_grid()
    roles = (("warped", live.warped), ("content", live.content_points),
             ("target", live.target_points))  # fmt: skip
    layers = {role: layer for role, layer in roles if present(viewer, layer)}
    reuse = {**layers, "preview_small": (live.content.raw, live.renderer.preview_small)}
    if not live.edited or not layers:
        return "", reuse
    copies = [hidden_copy(viewer, layer) for layer in layers.values()]
    names = ", ".join(repr(name) for name, _ in copies)

    def make_next() -> None:
        if not any(layer_present(viewer, layer) for layer in layers.values()):
            return  # the viewer was closed (or cleared) meanwhile: touch nothing
        name, make = copies.pop(0)
        make(unique_layer_name(viewer, name))
        if copies:
            QTimer.singleShot(0, make_next)

    QTimer.singleShot(0, make_next)
    note = f"the previous warp's edited landmarks no longer follow edits: kept, hidden, as {names}."
    return note, reuse


def hidden_copy(viewer, layer) -> tuple:
    """``(name, make)``: ``make(name)`` adds a hidden copy of ``layer`` as it is now (points
    greyed, with their numbers), named "... (old)".

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer the copy goes to.
    layer : napari.layers.Points or napari.layers.Image
        The layer copied.

    Returns
    -------
    tuple
        The copy's name and the function that adds it under a given name.
    """
    from napari.layers import Points

    common = {
        "scale": np.asarray(layer.scale, float),
        "translate": np.asarray(layer.translate, float),
        "metadata": dict(layer.metadata),
        "visible": False,
    }
    name = unique_layer_name(viewer, f"{layer.name} (old)")
    data = np.array(layer.data) if isinstance(layer, Points) else layer.data
    if isinstance(layer, Points):
        label = {"string": "{number}", "color": LABEL_COLOR, "anchor": "lower_left", "size": 12}
        points = {
            "features": layer.features.copy(),
            "size": np.array(layer.size, float),
            "face_color": "gray",
            "border_color": "black",
            "text": label,
        }
        return name, lambda free: viewer.add_points(data, name=free, **points, **common)
    look = {"rgb": layer.rgb, **display_like(layer)}
    return name, lambda free: viewer.add_image(data, name=free, **look, **common)
