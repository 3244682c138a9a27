"""What a live warp gives out: landmark CSVs, the transform, its displacement field, sessions,
and other layers warped by it.

Each function takes the live warp (:class:`~napari_geostyle._napari.live_warp.LiveWarp`) first
and reads only its public state (``pairs()``, ``transform``, ``content``, ...); ``LiveWarp``'s
methods of the same names call them. Files are written atomically (``core.media``), and
landmark files are in full-resolution pixels whatever the read's stride.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..core.fields import displacement_field
from .layer_data import (
    full_resolution_points,
    layer_present,
    place_below_points,
    provenance,
    slice_suffix,
    strided_points,
    unique_layer_name,
)
from .warp_frame import activate, display_like


def export_bigwarp_csv(live: Any, path: str | Path) -> Path:
    """Write the pairs as a BigWarp landmark CSV (moving = content, target = output).

    Parameters
    ----------
    live : LiveWarp
        The warp.
    path : str or Path
        The CSV file.

    Returns
    -------
    Path
        ``path``.
    """
    from ..core.landmarks import write_bigwarp_csv

    control, target = live.pairs()
    stride = live.content.stride
    write_bigwarp_csv(
        path, full_resolution_points(control, stride), full_resolution_points(target, stride)
    )
    return Path(path)


def import_bigwarp_csv(live: Any, path: str | Path) -> bool:
    """Replace the pairs with a BigWarp landmark CSV's (undoable).

    Parameters
    ----------
    live : LiveWarp
        The warp.
    path : str or Path
        The CSV file.

    Returns
    -------
    bool
        Whether the new pairs could be fitted.
    """
    from ..core.landmarks import read_bigwarp_csv

    control, target = read_bigwarp_csv(path)
    stride = live.content.stride
    return live.set_points(strided_points(control, stride), strided_points(target, stride))


def export_transform_json(live: Any, path: str | Path) -> Path:
    """Write the current transform (``to_dict()``) as JSON.

    Parameters
    ----------
    live : LiveWarp
        The warp.
    path : str or Path
        The JSON file.

    Returns
    -------
    Path
        The file written.
    """
    from ..core.media import write_user_file

    text = json.dumps(live.transform.to_dict(), indent=1)
    return write_user_file(path, text, "transform file")


def warp_displacement_field(live: Any) -> np.ndarray:
    """``(H, W, 2)`` float32: for each output pixel, content (row, col) minus its own.

    Parameters
    ----------
    live : LiveWarp
        The warp.

    Returns
    -------
    numpy.ndarray
        ``warped[p] = content[p + field[p]]``.
    """
    return displacement_field(live.transform, live.content.shape)


def export_displacement_npy(live: Any, path: str | Path) -> Path:
    """Write ``live.displacement_field()`` as ``.npy`` (the suffix added as ``np.save`` does).

    Parameters
    ----------
    live : LiveWarp
        The warp.
    path : str or Path
        The file.

    Returns
    -------
    Path
        The file written.
    """
    from ..core.media import write_user_file

    path = Path(path)
    if path.suffix != ".npy":
        path = path.with_name(path.name + ".npy")
    field = live.displacement_field()

    def write(temp: Path) -> None:
        with open(temp, "wb") as handle:
            np.save(handle, field)

    return write_user_file(path, write, "displacement field")


def apply_to(live: Any, layer, inverse: bool = False, output_shape=None):
    """Warp another Image or Labels layer (its shown slice, in the content's pixel frame) with
    the live warp's transform into a new layer over the output (labels: nearest neighbour,
    zeros outside); ``inverse``: back into the content's frame.

    Parameters
    ----------
    live : LiveWarp
        The warp.
    layer : napari.layers.Image or napari.layers.Labels
        The layer to warp.
    inverse : bool, default False
        Warp by the inverse transform (output -> content).
    output_shape : tuple of int, optional
        The result's ``(H, W)``; default: the content's.

    Returns
    -------
    napari.layers.Layer
        The new layer.
    """
    from napari.layers import Labels

    from ..core.warp import warp_image

    viewer, frame = live.viewer, live.frame
    labels = isinstance(layer, Labels)
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    rgb = bool(getattr(layer, "rgb", False))
    lead = np.ndim(data) - (3 if rgb else 2)
    index: tuple[int, ...] = ()
    if lead > 0:
        position = layer.world_to_data(viewer.dims.point)
        index = tuple(
            int(np.clip(np.round(position[axis]), 0, np.shape(data)[axis] - 1))
            for axis in range(lead)
        )
    plane = np.asarray(data[index] if index else data)
    stride = live.content.stride
    if stride > 1:
        plane = plane[::stride, ::stride]
    transform = live.inverse_transform() if inverse else live.transform
    shape = tuple(output_shape) if output_shape is not None else live.content.shape
    warped = warp_image(
        plane,
        transform,
        output_shape=shape,
        device=live.device,
        mode="nearest" if labels else "bilinear",
        padding="zeros" if labels else "border",
    )
    kind = "unwarped" if inverse else "warped"
    name = unique_layer_name(viewer, f"{layer.name} {kind}{slice_suffix(index)}")
    meta = {
        "geostyle": provenance(
            "apply transform",
            {"layer": layer.name, **live.inputs},
            {"inverse": inverse, "strength": live.strength, "fit_model": live.fit_model},
            transform,
        )
    }
    # the inverse lands in the content's frame, the forward transform in the output's
    translate = frame.translate if inverse else frame.output_translate()
    placement = {"scale": frame.scale, "translate": translate}
    active = viewer.layers.selection.active
    if labels:
        new = viewer.add_labels(warped, name=name, metadata=meta, **placement)
    else:
        new = viewer.add_image(
            warped, name=name, rgb=rgb, metadata=meta, **placement, **display_like(layer)
        )
    place_below_points(viewer, new)
    if active is not None and layer_present(viewer, active):
        activate(viewer, active)
    return new


def session_of(live: Any) -> dict:
    """Everything needed to rebuild the warp: layers' sources, landmarks, fit, options (what
    ``core.session.write_session`` saves).

    Parameters
    ----------
    live : LiveWarp
        The warp.

    Returns
    -------
    dict
        The session, JSON-ready.
    """
    control, target = live.pairs()
    return {
        "inputs": dict(live.inputs),
        "options": dict(live.options),
        "sources": layer_sources(live.viewer, live.inputs),
        "control_points": control.tolist(),
        "target_points": target.tolist(),
        "active": live.active_pairs().tolist(),
        "fit_model": live.fit_model,
        "strength": live.strength,
        "pixel_stride": live.content.stride,
        "slice_index": list(live.content.slice_index),
        "transform": live.transform.to_dict(),
    }


def layer_sources(viewer, inputs: dict) -> dict:
    """The file each input layer (``{role: layer name}``) was opened from, by role (None for a
    layer made in the session).

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer holding the layers.
    inputs : dict
        Layer names by role.

    Returns
    -------
    dict
        ``{role: path or None}`` for the roles whose layer is in the viewer.
    """
    sources = {}
    names = {layer.name: layer for layer in viewer.layers}
    for role, name in inputs.items():
        if isinstance(name, str) and name in names:
            path = getattr(names[name].source, "path", None)
            sources[role] = None if path is None else str(path)
    return sources
