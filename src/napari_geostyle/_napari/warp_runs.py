"""The warp's runs in a viewer: reading the two layers, the estimate (blocking or in a napari
thread worker), taking over the previous live warp, and restoring a saved session.

The Geometric Warp widget and ``viewer_api.add_warp`` both call these, so a warp started from
either reads, estimates and shows the same way. Nothing here builds a widget.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .layer_data import (
    LayerImage,
    leading_shape,
    read_layer_image,
    resolve_image_layer,
    same_layer,
    slices_shape,
)
from .live_warp import LiveWarp, start_live_warp
from .runs import EstimateMonitor, estimate_and_warp, friendly_error


@dataclass
class WarpInputs:
    """The content and geometry-style layers of a warp and the images read from them."""

    content_layer: Any
    style_layer: Any
    content: LayerImage
    style: LayerImage

    @property
    def names(self) -> dict:
        """The layers' names as a live warp records them (``inputs``)."""
        return {"content": self.content_layer.name, "geometry_style": self.style_layer.name}


def read_warp_inputs(viewer, content, style, validate: bool = False) -> WarpInputs:
    """Resolve ``content`` and ``style`` (layers or names) and read their images.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer holding the layers.
    content, style : str or napari.layers.Image
        The content and geometry-style layers, or their names.
    validate : bool, default False
        Also check both images as the estimate will (a bad one fails here, before a worker).

    Returns
    -------
    WarpInputs
        The two layers and their images.

    Raises
    ------
    ValueError
        If a layer is not a non-empty Image layer of the viewer, or both are the same layer.
    """
    content_layer = resolve_image_layer(viewer, content, "content")
    style_layer = resolve_image_layer(viewer, style, "geometry style")
    if same_layer(content_layer, style_layer):
        raise ValueError("content and geometry style are the same layer; pick two different ones.")
    content_image = read_layer_image(content_layer, viewer)
    style_image = read_layer_image(style_layer, viewer)
    if validate:
        from ..core.images import validate_image

        validate_image(content_image.normalized, f"content layer {content_layer.name!r}")
        validate_image(style_image.normalized, f"geometry-style layer {style_layer.name!r}")
    return WarpInputs(content_layer, style_layer, content_image, style_image)


def estimate_warp_now(inputs: WarpInputs, model: str, method: str, device=None, hints=None):
    """Estimate and warp on this thread (blocks): returns ``(transform, warped)``."""
    steps = estimate_and_warp(inputs.content, inputs.style, model, method, device, hints=hints)
    try:
        while True:
            next(steps)
    except StopIteration as stop:
        return stop.value


class WarpEstimate:
    """An estimate and warp in a napari thread worker (``start()`` runs it).

    ``on_done(transform, warped)`` and ``on_failed(message, error)`` run on the main thread,
    unless the estimate was abandoned; ``on_finished()`` runs in every case. With
    ``all_slices`` and nD content every slice is warped (``stack``), with a progress bar.
    """

    def __init__(
        self,
        inputs: WarpInputs,
        model: str,
        method: str,
        device: str,
        all_slices: bool,
        on_done: Callable,
        on_failed: Callable,
        on_finished: Callable,
    ):
        from napari.qt.threading import create_worker

        self.inputs = inputs
        self.model = model
        self.method = method
        self.device = device
        self.stack = None
        progress: bool | dict = False
        content_layer = inputs.content_layer
        if all_slices and leading_shape(content_layer):
            content = inputs.content
            self.stack = (content_layer, content.level, content.plane_step)
            total = math.prod(int(n) for n in slices_shape(content_layer, content.level))
            progress = {"total": total, "desc": "GeoStyle: warping slices"}
        self.monitor = EstimateMonitor()
        self.abandoned = False
        self.worker = create_worker(
            estimate_and_warp,
            inputs.content,
            inputs.style,
            model,
            method,
            device,
            self.stack,
            self.monitor,
            _progress=progress,
            _start_thread=False,
            _ignore_errors=True,
        )
        self._on_done, self._on_failed = on_done, on_failed
        self.worker.returned.connect(self._returned)
        self.worker.errored.connect(self._errored)
        self.worker.finished.connect(lambda: on_finished())

    @property
    def options(self) -> dict:
        """The options a live warp records."""
        return {"model": self.model, "method": self.method, "device": self.device}

    def start(self) -> None:
        self.worker.start()

    def abandon(self) -> bool:
        """Drop the result (refine stops at its next step; the warp after the estimate is
        skipped). Returns whether the refinement was running."""
        refining = self.monitor.stage == "refining"
        self.abandoned = True
        self.monitor.cancel()
        self.worker.quit()
        return refining

    def _returned(self, result) -> None:
        if not self.abandoned:
            self._on_done(*result)

    def _errored(self, error) -> None:
        if not self.abandoned:
            self._on_failed(friendly_error(error, self.device), error)


def take_over_live_warp(
    viewer, previous: LiveWarp | None, content_layer, content: LayerImage, transform, warped,
    **kwargs: Any,
) -> tuple[LiveWarp, str]:  # fmt: skip
    """Show ``transform`` as a live warp that takes over ``previous``'s layers (updated in
    place: quicker than new ones). Returns the live warp and a line saying what ``previous``
    left behind ("" when nothing)."""
    retired, reuse = previous.hand_over() if previous is not None else ("", {})
    live = start_live_warp(
        viewer, content_layer, content, transform, warped, reuse=reuse, **kwargs
    )  # fmt: skip
    return live, retired


@dataclass
class RestoredSession:
    """A session file read back: its content layer (opened when needed), the fitted warp."""

    content_layer: Any
    content: LayerImage
    transform: Any
    warped: np.ndarray
    inputs: dict
    options: dict
    landmarks: tuple
    active: np.ndarray
    fit_model: str
    strength: float


def restore_session(viewer, path) -> RestoredSession:
    """Read a session file; the content layer is found by name, or opened from its recorded
    source. The landmarks are fitted and the content warped at the recorded strength.

    Raises
    ------
    ValueError
        If the file is not a session, or its content layer is neither open nor recorded.
    OSError
        If the file cannot be read.
    """
    from ..core.landmark_models import fit_landmarks
    from ..core.session import read_session
    from ..core.transforms import identity_transform, with_strength
    from ..core.warp import warp_image

    record = read_session(path)
    name = record["inputs"]["content"]
    if name not in [layer.name for layer in viewer.layers]:
        source = record.get("sources", {}).get("content")
        if not source:
            raise ValueError(
                f"the session's content layer {name!r} is not open and has no source "
                "file recorded; open it (with that name) first."
            )
        opened = viewer.open(source)
        opened[0].name = name
    content_layer = resolve_image_layer(viewer, name, "content")
    index = tuple(record.get("slice_index") or ()) or None
    content = read_layer_image(content_layer, viewer, slice_index=index)
    control, target = record["control_points"], record["target_points"]
    active = record["active"]
    model = record["fit_model"]
    if int(active.sum()) >= 3:
        fitted = fit_landmarks(control[active], target[active], model)
    else:
        fitted = identity_transform()
    warped = warp_image(content.raw, with_strength(fitted, record["strength"]))
    return RestoredSession(
        content_layer, content, fitted, warped, record["inputs"], record.get("options", {}),
        (control, target), active, model, record["strength"],
    )  # fmt: skip
