"""The live landmark warp: a warped Image layer and two paired Points layers kept in sync.

One module used by both the Geometric Warp widget and ``viewer_api.add_warp``, so a warp made
from the console behaves exactly like one made from the GUI:

- ``<content> control points`` (on the content) and ``<content> target points`` (in the output
  frame) are paired by index and labelled with their number. A landmark TPS sends control
  point i to target point i (``fit_tps(control, target)``).
- Adding a point in either layer adds its partner where the current warp puts it (so nothing
  jumps); deleting one deletes its partner; dragging re-fits the TPS.
- While a point is dragged a cheap preview (content at reduced size) is shown: the first move
  after a pause previews at once, in the move's own event (drawn in the same frame as the moved
  point), later moves at most every ``PREVIEW_GAP_MS``. When the drag
  ends (the layer's ``CHANGED`` data event) the full warp runs in a napari thread worker, its
  sample map evaluated exactly on a lattice and interpolated in between (``lattice_sample_map``:
  within ``LATTICE_TOLERANCE`` px, several times faster for a large image, and shared by every
  plane of a stack). Layers are only touched on the main thread.
  ``benchmarks/bench_interactive.py`` measures these paths in a real viewer.
- Point edits have an undo/redo history (``undo()``/``redo()``, Ctrl+Z / Ctrl+Shift+Z on the
  Points layers).
- The points layers open in select mode with the target points active, so a drag moves a point
  (not the camera). ``fit_model`` (rigid, similarity, affine, tps) chooses the landmark fit;
  ``strength`` (0..1) doses the shown warp; a pair whose ``active`` feature is off is left out.
- Side by side (default): the output (warped image, target points, deformation grid) sits to
  the right of the content, so each point set is drawn over its own image: control points over
  the content, target points over the output. ``set_side_by_side(False)`` fuses them (the
  output over the content). The network TPS lattice lies on the output's border (the network's
  own knots): the points are drawn whole and the view is reset to include them, so they can be
  grabbed.
- Results go to new layers (never over a layer the user has). If the warped layer is removed,
  the next edit re-creates it; if a points layer is removed, the link is gone and ``status`` says
  so. A new warp in the widget takes over the previous warp's layers (``hand_over``, ``reuse``:
  updated in place, a second Run draws no new layers); an edited previous warp is kept in
  hidden, greyed copies named "... (old)".
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.fields import deformation_grid, displacement_field, warp_planes
from ..core.landmark_history import LandmarkHistory
from ..core.landmark_models import landmarks_of
from ..core.transforms import Transform
from .layer_data import (
    LayerImage,
    full_resolution_points,
    iter_slices,
    layer_present,
    place_below_points,
    provenance,
    slice_suffix,
    slices_shape,
    spatial_scale_translate,
    strided_points,
    unique_layer_name,
)

if TYPE_CHECKING:  # pragma: no cover
    import napari
    from numpy.typing import ArrayLike

MIN_PAIRS = 3
LABEL_COLOR = "white"  # point numbers: readable over the yellow / cyan points and most images
PREVIEW_SIDE = 192  # longest side of the image warped while a point is dragged
# least time between the starts of two drag previews: the first move after a pause previews at
# once, and the event loop keeps time to draw and to take the next mouse moves
PREVIEW_GAP_MS = 20
# full warps: the sample map is evaluated exactly every LATTICE_STEP output pixels and
# interpolated bilinearly in between when the result stays within LATTICE_TOLERANCE pixels of
# the exact map (checked at every lattice cell's centre, where bilinear interpolation errs most)
LATTICE_STEP = 4
LATTICE_TOLERANCE = 0.1
LATTICE_MIN_PIXELS = 256 * 256  # smaller planes: the exact map is cheap enough
SIDE_GAP = 0.1  # side by side: gap between content and output, a fraction of the width

_COMMITTED = ("added", "changed", "removed")
_PENDING = object()  # the drag previews' small source, not made yet
_FEATURE_DEFAULTS = {"number": 0, "active": True}  # a new point's pair is switched on


class LatticeSampleMap(Transform):
    """``transform``'s sample map evaluated exactly on a lattice every ``step`` output pixels of
    an ``output_shape`` frame, and interpolated bilinearly in between.

    What ``warp_image`` needs (``sample_points_torch``) for a fraction ``1 / step**2`` of the
    exact evaluations: a TPS evaluates a logarithm per landmark per pixel, the lattice reads
    four values. ``map_points``, ``sample_jacobian`` and ``to_dict`` are the exact transform's.
    Build it with :func:`lattice_sample_map`, which checks the interpolation's error.
    """

    def __init__(self, transform, output_shape, step: int = LATTICE_STEP):
        height, width = (int(n) for n in output_shape)
        self.exact = transform
        self.step = int(step)
        # lattice rows / columns 0, step, ... up to the first one at or past the last pixel
        rows = np.arange(0, height - 1 + self.step, self.step, dtype=float)
        cols = np.arange(0, width - 1 + self.step, self.step, dtype=float)
        knots = np.stack(np.meshgrid(rows, cols, indexing="ij"), -1).reshape(-1, 2)
        self.lattice = transform.sample_points(knots).reshape(len(rows), len(cols), 2)
        self.kernel_size = 4  # bilinear taps per pixel (sizes warp_image's tiles)
        self._tensors = {}

    def interpolation_error(self) -> float:
        """Largest distance (pixels) between the interpolated and the exact map at the centres
        of the lattice cells (NaN for a map that is not finite)."""
        lattice = self.lattice
        centres = (lattice[:-1, :-1] + lattice[1:, :-1] + lattice[:-1, 1:] + lattice[1:, 1:]) / 4
        rows = (np.arange(lattice.shape[0] - 1) + 0.5) * self.step
        cols = (np.arange(lattice.shape[1] - 1) + 0.5) * self.step
        points = np.stack(np.meshgrid(rows, cols, indexing="ij"), -1).reshape(-1, 2)
        if len(points) == 0:
            return 0.0
        exact = self.exact.sample_points(points)
        error = np.linalg.norm(exact - centres.reshape(-1, 2), axis=1)
        return float(error.max()) if np.all(np.isfinite(error)) else float("nan")

    def sample_points_torch(self, points_rc):
        import torch
        import torch.nn.functional as F

        key = (points_rc.dtype, points_rc.device)
        if key not in self._tensors:
            self._tensors[key] = torch.as_tensor(
                self.lattice.transpose(2, 0, 1)[None].copy(),
                dtype=points_rc.dtype,
                device=points_rc.device,
            )
        lattice = self._tensors[key]
        height, width = lattice.shape[-2:]
        # grid_sample's (x, y) in -1..1 with align_corners: -1 and 1 are the first and last knots
        grid = torch.stack(
            [points_rc[:, 1] * (2.0 / (self.step * max(width - 1, 1))) - 1.0,
             points_rc[:, 0] * (2.0 / (self.step * max(height - 1, 1))) - 1.0], -1,
        )  # fmt: skip
        sampled = F.grid_sample(lattice, grid[None, None], mode="bilinear",
                                padding_mode="border", align_corners=True)  # fmt: skip
        return sampled[0, :, 0].T

    def sample_points(self, points) -> np.ndarray:
        import torch

        points = np.ascontiguousarray(self._points(points), np.float64)
        return self.sample_points_torch(torch.from_numpy(points)).numpy()

    def map_points(self, points) -> np.ndarray:
        return self.exact.map_points(points)

    def sample_jacobian(self, points) -> np.ndarray:
        return self.exact.sample_jacobian(points)

    def to_dict(self) -> dict:
        return self.exact.to_dict()


def lattice_sample_map(transform, output_shape):
    """What a full warp of an ``output_shape`` plane evaluates: a :class:`LatticeSampleMap`
    when the plane is large and the lattice is within ``LATTICE_TOLERANCE`` px of the exact
    map, else ``transform`` itself (small planes, or a map too wiggly for the lattice)."""
    height, width = (int(n) for n in output_shape[:2])
    if height * width < LATTICE_MIN_PIXELS:
        return transform
    lattice = LatticeSampleMap(transform, (height, width))
    error = lattice.interpolation_error()
    return lattice if error <= LATTICE_TOLERANCE else transform  # NaN: the exact path says why


def warp_layer_planes(source, transform, device=None, stack=None):
    """Generator: warp ``source`` (2D), or with ``stack = (layer, level, stride)`` every plane
    of an nD layer (see :func:`napari_geostyle.core.fields.warp_planes`). The sample map is
    :func:`lattice_sample_map`'s, made once and shared by every plane."""
    if stack is None:
        sample_map = lattice_sample_map(transform, np.shape(source)[:2])
        return (yield from warp_planes(source, sample_map, device))
    layer, level, stride = stack
    planes = iter_slices(layer, level, stride)
    first = next(planes, None)
    if first is not None:
        transform = lattice_sample_map(transform, np.shape(first[1])[:2])
        planes = itertools.chain([first], planes)
    return (
        yield from warp_planes(
            None,
            transform,
            device,
            planes=planes,
            lead_shape=slices_shape(layer, level),
        )
    )


class LiveWarp:
    """A landmark warp shown in a viewer: ``warped``, ``content_points``, ``target_points``.

    ``transform`` is the current content -> output transform; ``status`` a one-line state
    ("12 point pairs", "2 point pairs: add 1 more", ...). ``on_status`` (optional) is called with
    it; ``on_changed`` after each re-warp.

    Built by ``start_live_warp`` (the widget's and ``viewer_api.add_warp``'s way in).

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer the layers go to.
    content_layer : napari.layers.Image
        The content's layer (its name, scale and translate place the new layers).
    content : LayerImage
        The content image read from the layer (maybe strided).
    transform : Transform
        The landmark fit at full strength, content -> output.
    warped : numpy.ndarray
        The content warped by ``transform`` at ``strength``.
    inputs : dict
        The input layers' names, recorded in the layers' metadata.
    options : dict
        The run's options, recorded in the layers' metadata.
    stack : tuple, optional
        ``(layer, level, plane_step)`` when every plane is warped.
    device : str, optional
        Where re-warps run; ``None``: the best available.
    on_status : callable, optional
        Called with each new ``status`` line.
    strength : float, default 1.0
        0..1, the dose of the shown warp.
    fit_model : str, default "tps"
        The model the landmarks are fitted with.
    landmarks : tuple of array_like, optional
        ``(control, target)`` ``(N, 2)`` ``(row, col)`` points; default: ``transform``'s own.
    side_by_side : bool, default True
        Show the output beside the content rather than on it.
    active : array_like, optional
        The pairs' on/off flags (``transform`` fits the "on" ones).
    reuse : dict, optional
        A previous warp's layers (``{"warped", "content", "target"}``: ``hand_over``), updated
        in place rather than new ones added.

    Raises
    ------
    ValueError
        If ``strength`` is not a number in 0..1.
    """

    def __init__(
        self,
        viewer: napari.Viewer,
        content_layer: napari.layers.Image,
        content: LayerImage,
        transform: Transform,
        warped: np.ndarray,
        *,
        inputs: dict,
        options: dict,
        stack: tuple | None = None,
        device: str | None = None,
        on_status: Callable[[str], object] | None = None,
        strength: float = 1.0,
        fit_model: str = "tps",
        landmarks: tuple[ArrayLike, ArrayLike] | None = None,
        side_by_side: bool = True,
        active: ArrayLike | None = None,
        reuse: Mapping[str, Any] | None = None,
    ) -> None:
        from qtpy.QtCore import QTimer

        from ..core.transforms import check_strength, with_strength

        self.viewer = viewer
        self.content = content
        self.fitted = transform  # the landmark fit at full strength
        self.strength = check_strength(strength)
        self.transform = with_strength(transform, self.strength)  # what the warp shows
        self.fit_model = fit_model
        self.device = device
        self.inputs = dict(inputs)
        self.options = dict(options)
        self.stack = stack  # (layer, level, plane_step) when every plane is warped
        self.on_status = on_status
        self.status = ""
        self.closed = False
        self._syncing = False
        self._dragging = False
        self._generation = 0
        self._worker = None
        self._history = LandmarkHistory()
        self._grid_layer = None
        self._alternate = False  # clicks add pairs point by point: content, then output

        name = content_layer.name
        self._rgb = bool(content_layer.rgb)
        scale, translate = spatial_scale_translate(content_layer)
        self._scale = scale * content.stride
        # a strided pixel p sits at full-resolution (p + 0.5) * stride - 0.5
        self._translate = translate + scale * (content.stride - 1) / 2.0
        self._lead_scale = np.asarray(content_layer.scale, float)[:-2]
        self._lead_translate = np.asarray(content_layer.translate, float)[:-2]
        self.side_by_side = bool(side_by_side)

        if landmarks is None:
            control, target = landmarks_of(transform, content.shape)
        else:
            control, target = (np.asarray(p, float).reshape(-1, 2) for p in landmarks)
        self._point_size = max(3.0, min(content.shape) / 40.0)
        # the output's shift (world units) when side by side: one content width and a gap
        self._side_offset = np.array([0.0, self._side_gap_offset(control, target)])
        self._display = self._display_like(content_layer)
        self.warped = None
        # a previous warp's layers ({"warped", "content", "target"}: ``hand_over``) are updated
        # in place rather than new ones added: a second Run draws no new layers
        self._reuse = dict(reuse or {})
        self._add_warped(warped, self._name_for("warped", f"{name} warped"), len(control))
        self.content_points = self._points_layer(
            self._name_for("content", f"{name} control points"),
            control,
            "yellow",
            self._translate,
            role="content",
        )
        self.target_points = self._points_layer(
            self._name_for("target", f"{name} target points"),
            target,
            "cyan",
            self._output_translate(),
            role="target",
        )
        reused_small, self._reuse = self._reuse.get("preview_small"), {}
        if active is not None:  # the pairs' on/off flags (``transform`` fits the "on" ones)
            self._write_active(active)
        self._push_history()
        self._activate(self.target_points)
        viewer.layers.events.removed.connect(self._on_layer_removed)

        self._preview_timer = QTimer()
        self._preview_timer.setSingleShot(True)
        self._preview_timer.timeout.connect(self._preview)
        self._last_preview = float("-inf")  # perf_counter() when the last preview started
        if reused_small is not None and reused_small[0] is content.raw:
            self._preview_small = reused_small[1]  # the same content: its small copy too
        else:  # made in the next event-loop turn (tens of ms for a large image), not in the
            # Run's: a drag before then makes it at once
            self._preview_small = _PENDING
            QTimer.singleShot(0, self._small_source_now)

        # one handler per layer: events carry the bare layer, which may differ from the
        # (proxied) layer objects the viewer handed back, so identity is not compared
        self._handlers = {
            "content": lambda event: self._on_data(event, self.content_points),
            "target": lambda event: self._on_data(event, self.target_points),
        }
        self.content_points.events.data.connect(self._handlers["content"])
        self.target_points.events.data.connect(self._handlers["target"])
        for layer in (self.content_points, self.target_points):
            layer.mouse_drag_callbacks.append(self._drag_callback)
            layer.bind_key("Control-Z", lambda _layer: self.undo(), overwrite=True)
            layer.bind_key("Control-Shift-Z", lambda _layer: self.redo(), overwrite=True)
        self._set_status(f"{len(control)} point pairs")
        if self.side_by_side:
            viewer.reset_view()  # both images, and the lattice on the output's border, in view

    # ----------------------------------------------------------------- layers
    def _name_for(self, role: str, base: str) -> str:
        """``base``, kept by the reused layer of ``role`` that has it, else a free name (a
        reused layer of another name, e.g. another content's, is not reused)."""
        old = self._reuse.get(role)
        if old is not None and old.name == base and layer_present(self.viewer, old):
            return base
        self._reuse.pop(role, None)
        return unique_layer_name(self.viewer, base)

    def _add_warped(self, data, name: str, pairs: int) -> None:
        old = self._reuse.pop("warped", None)
        if old is not None and old.rgb == self._rgb and np.ndim(old.data) == np.ndim(data):
            old.data = data
            _place(old, **self._image_placement(data))
            old.metadata = {"geostyle": self._provenance(pairs)}
            if "contrast_limits" in self._display:  # gray: the content's look
                if tuple(old.contrast_limits) != tuple(self._display["contrast_limits"]):
                    old.contrast_limits = self._display["contrast_limits"]
                if old.colormap.name != self._display["colormap"]:
                    old.colormap = self._display["colormap"]
            if not old.visible:
                old.visible = True
            self.warped = old
            return
        self.warped = self.viewer.add_image(
            data,
            name=name,
            rgb=self._rgb,
            metadata={"geostyle": self._provenance(pairs)},
            **self._image_placement(data),
            **self._display,
        )

    def _activate(self, layer) -> None:
        """Make ``layer`` the active one, in select mode (a drag moves a point)."""
        from napari.layers import Points

        if layer_present(self.viewer, layer):
            if isinstance(layer, Points):
                layer.mode = "select"
            self.viewer.layers.selection.active = layer

    def _on_layer_removed(self, event) -> None:
        if self.closed:
            return
        removed = getattr(event, "value", None)
        for role, layer in (("control", self.content_points), ("target", self.target_points)):
            if removed is not None and (removed is layer or removed is _unwrap(layer)):
                self.close()
                self._set_status(
                    f"the {role} points layer was removed: the link to the warp is gone. "
                    "Run the warp again to edit landmarks."
                )
                return

    def _side_gap_offset(self, control, target) -> float:
        """The output's column shift, side by side: the content's width and a gap of at least
        ``SIDE_GAP`` of it, wide enough that control points past the content's right edge and
        target points past the output's left edge (a network TPS's knots) stay nearer their
        own image than the other, a point's width apart: each set over its own image."""
        width = self.content.shape[1]
        radius = self._point_size / 2.0
        reach_right = reach_left = 0.0
        if len(control):
            reach_right = max(0.0, float(np.max(control[:, -1])) + radius - (width - 0.5))
        if len(target):
            reach_left = max(0.0, -0.5 - (float(np.min(target[:, -1])) - radius))
        gap = max(SIDE_GAP * width, 2.0 * max(reach_right, reach_left) + self._point_size)
        return float((width + gap) * self._scale[1])

    def _output_translate(self) -> np.ndarray:
        """Where the output frame's pixel (0, 0) sits: on the content, or right of it."""
        return self._translate + (self._side_offset if self.side_by_side else 0.0)

    def _image_placement(self, data) -> dict:
        lead = np.ndim(data) - (3 if self._rgb else 2)
        translate = self._output_translate()
        if lead > 0 and len(self._lead_scale) == lead:
            return {
                "scale": np.concatenate([self._lead_scale, self._scale]),
                "translate": np.concatenate([self._lead_translate, translate]),
            }
        return {"scale": self._scale, "translate": translate}

    def output_layers(self) -> list:
        """The layers drawn in the output frame that are still in the viewer."""
        layers = (self.warped, self.target_points, self._grid_layer)
        return [layer for layer in layers if layer_present(self.viewer, layer)]

    def set_side_by_side(self, on: bool = True) -> None:
        """Output right of the content (each point set over its own image), or fused over it."""
        on = bool(on)
        if on == self.side_by_side:
            return
        shift = self._side_offset if on else -self._side_offset
        self.side_by_side = on
        for layer in self.output_layers():
            translate = np.asarray(layer.translate, float).copy()
            translate[-2:] += shift
            layer.translate = translate
        self.viewer.reset_view()

    @staticmethod
    def _display_like(layer) -> dict:
        if layer.rgb:
            return {}
        return {"contrast_limits": tuple(layer.contrast_limits), "colormap": layer.colormap.name}

    def _points_layer(self, name, data, color, translate, role=None):
        data = np.asarray(data, float).reshape(-1, 2)
        numbers = np.arange(1, len(data) + 1)
        size = self._point_size
        # labels in white, larger than the default and offset up-right of their point: readable
        # next to the yellow / cyan points rather than drawn over them in the same colour
        kwargs = {
            "name": name,
            "scale": self._scale,
            "translate": translate,
            "size": size,
            "face_color": color,
            "border_color": "black",
            "border_width": 0.15,
            "features": {"number": numbers, "active": np.ones(len(data), bool)},
            "feature_defaults": _FEATURE_DEFAULTS,
            "text": {
                "string": "{number}",
                "color": LABEL_COLOR,
                "anchor": "lower_left",
                "size": 12,
                "translation": [-0.6 * size, 0.6 * size],
            },
        }
        old = self._reuse.pop(role, None)
        if old is None:
            layer = self.viewer.add_points(data, **kwargs)
        else:  # a previous warp's: its points and numbers replaced, its look kept (each
            # property set redraws the layer: only what changes is set)
            layer = old
            layer.selected_data = set()
            layer.data = data
            layer.features = kwargs["features"]
            layer.feature_defaults = _FEATURE_DEFAULTS
            _place(layer, kwargs["scale"], kwargs["translate"])
            layer.refresh_text()
            if not layer.visible:
                layer.visible = True
        layer.mode = "select"
        return layer

    def _relabel(self) -> None:
        for layer in (self.content_points, self.target_points):
            count = len(layer.data)
            active = np.ones(count, bool)
            if "active" in layer.features and len(layer.features) == count:
                active = np.asarray(layer.features["active"], bool)
            layer.features = {"number": np.arange(1, count + 1), "active": active}
            layer.feature_defaults = _FEATURE_DEFAULTS  # setting features resets them
            layer.refresh_text()

    def _provenance(self, pairs: int) -> dict:
        return provenance(
            "warp",
            self.inputs,
            self.options,
            self.transform,
            landmark_pairs=pairs,
            strength=self.strength,
            fit_model=self.fit_model,
            pixel_stride=self.content.stride,
            slice_index=list(self.content.slice_index),
            all_slices=self.stack is not None,
        )

    # ----------------------------------------------------------------- point events
    def _on_data(self, event, edited) -> None:
        if self._syncing or self.closed:
            return
        action = str(getattr(event, "action", "changed"))
        if action == "changing":
            self._dragging = True
            return
        if action not in _COMMITTED:
            return
        self._dragging = False
        self._preview_timer.stop()
        indices = getattr(event, "data_indices", ())
        if action == "added" and self._refuse_wrong_image(edited, indices):
            return
        if self._alternate and action == "added" and self._alternate_step(edited):
            return
        self._pair_partner(edited, action, getattr(event, "data_indices", ()))
        if action != "changed":  # a move keeps every point's number
            self._relabel()
        self._push_history()
        if self.refit(full=True) and self._alternate:
            self._set_status(f"{self.status}; click the next point on the content")

    def _refuse_wrong_image(self, edited, indices) -> bool:
        """Side by side, a point added on the other image (a content point clicked on the
        output, or an output point on the content) is taken out again, and the status and a
        notification say where to click. True when it was refused."""
        from napari.utils.notifications import show_warning

        if not self.side_by_side or not len(edited.data):
            return False
        count = len(edited.data)
        added = [int(i) for i in indices if 0 <= int(i) < count] or [count - 1]
        on_content = edited is self.content_points
        shift = self._side_offset[-1] / self._scale[-1]  # output frame -> content frame, px
        points = np.asarray(edited.data, float)[added][:, -2:]
        # where the other image is, in the edited layer's own pixel frame
        other = points[:, 1] - shift if on_content else points[:, 1] + shift
        height, width = self.content.shape
        inside = (
            (points[:, 0] >= -0.5) & (points[:, 0] <= height - 0.5)
            & (other >= -0.5) & (other <= width - 0.5)
        )  # fmt: skip
        if not inside.any():
            return False
        with self._syncing_on():
            edited.remove([added[i] for i in np.flatnonzero(inside)])
        mine, theirs = ("content", "output") if on_content else ("output", "content")
        text = (
            f"that click was on the {theirs} image, not the {mine}: {mine} points go on the "
            f"{mine} ({'left' if on_content else 'right'}); the point was not added."
        )
        self._set_status(text)
        show_warning(f"GeoStyle: {text}")
        return True

    def alternate_pairs(self, on: bool = True) -> None:
        """Add pairs by clicking, as affinder does: a point on the content, then where it lands
        in the output, and so on (the layer to click next is made active in add mode)."""
        self._alternate = bool(on)
        if on:
            self._click_next(self.content_points, "click a point on the content")

    def _click_next(self, layer, hint: str) -> None:
        if layer_present(self.viewer, layer):
            self.viewer.layers.selection.active = layer
            layer.mode = "add"
        pairs = len(self.pairs()[0])
        self._set_status(f"{pairs} point pairs: {hint}.")

    def _alternate_step(self, edited) -> bool:
        """One click of alternate mode; True when it waits for the partner point."""
        content, target = len(self.content_points.data), len(self.target_points.data)
        if content == target:
            self._click_next(self.content_points, "click a point on the content")
            return False  # the pair is complete: re-fit below
        partner = self.target_points if content > target else self.content_points
        where = "the output" if partner is self.target_points else "the content"
        self._relabel()
        self._click_next(partner, f"now click where it is in {where}")
        return True

    def _drag_callback(self, layer, event):
        # napari runs a press's drag callbacks in list order. After the mode's own (which moves
        # the point), a preview in the same move event is drawn in one frame with the moved
        # point; before it, the preview waits for a timer, after the event (an extra redraw)
        callbacks = layer.mouse_drag_callbacks
        after_the_move = callbacks[-1] == self._drag_callback
        yield
        while event.type == "mouse_move":
            if self._dragging and not self._preview_timer.isActive():
                since_ms = (time.perf_counter() - self._last_preview) * 1e3
                if after_the_move and since_ms >= PREVIEW_GAP_MS:
                    self._preview()
                else:  # at most one preview per gap
                    self._preview_timer.start(int(max(0.0, PREVIEW_GAP_MS - since_ms)))
            yield
        if not after_the_move and self._drag_callback in callbacks:
            # a mode change put the mode's callback after ours: last again, for the next drag
            # (not at the press: napari is iterating the list then)
            callbacks.remove(self._drag_callback)
            callbacks.append(self._drag_callback)

    def _pair_partner(self, edited, action, indices) -> None:
        """Keep both layers the same length: add partners where the warp puts them, drop deleted."""
        partner = self.target_points if edited is self.content_points else self.content_points
        count, partner_count = len(edited.data), len(partner.data)
        if count == partner_count:
            return
        with self._syncing_on():
            if count > partner_count:
                new = np.asarray(edited.data[partner_count:], float)[:, -2:]
                if edited is self.content_points:
                    mapped = self.fitted.map_points(new)
                else:
                    mapped = self.fitted.sample_points(new)
                partner.add(mapped)
                partner.selected_data = set()
            else:
                removed = [int(i) for i in indices if 0 <= int(i) < partner_count]
                if action != "removed" or len(removed) != partner_count - count:
                    removed = list(range(count, partner_count))
                partner.remove(removed)

    def _syncing_on(self):
        controller = self

        class _Sync:
            def __enter__(self):
                controller._syncing = True

            def __exit__(self, *exc):
                controller._syncing = False

        return _Sync()

    # ----------------------------------------------------------------- fitting and warping
    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Current ``(control, target)`` landmark pairs (content / output pixel (row, col))."""
        control = np.asarray(self.content_points.data, float)[:, -2:]
        target = np.asarray(self.target_points.data, float)[:, -2:]
        count = min(len(control), len(target))
        return control[:count], target[:count]

    def active_pairs(self) -> np.ndarray:
        """Boolean mask of the pairs switched on (both points' ``active`` feature)."""
        count = len(self.pairs()[0])
        mask = np.ones(count, bool)
        for layer in (self.content_points, self.target_points):
            if "active" in layer.features and len(layer.features) >= count:
                mask &= np.asarray(layer.features["active"], bool)[:count]
        return mask

    def set_pair_active(self, index: int, active: bool, record: bool = True) -> bool:
        """Switch pair ``index`` on or off (off: left out of the fit) and re-warp; undoable."""
        mask = self.active_pairs()
        mask[index] = bool(active)
        self._write_active(mask)
        if record:
            self._push_history()
        return self.refit(full=True)

    def _write_active(self, mask) -> None:
        """Set both points layers' ``active`` feature to ``mask`` (one flag per pair)."""
        for layer in (self.content_points, self.target_points):
            values = np.ones(len(layer.data), bool)
            count = min(len(values), len(mask))
            values[:count] = np.asarray(mask, bool)[:count]
            features = layer.features.copy()
            features["active"] = values
            layer.features = features
            layer.feature_defaults = _FEATURE_DEFAULTS

    def _fit(self, control, target, model=None):
        """The landmark fit through the active pairs, or None with the reason in ``status``."""
        from ..core.landmark_models import fit_landmarks

        mask = self.active_pairs()
        control, target = control[mask], target[mask]
        if len(control) < MIN_PAIRS:
            missing = MIN_PAIRS - len(control)
            self._set_status(
                f"{len(control)} point pairs: add {missing} more (a warp needs {MIN_PAIRS})."
            )
            return None
        try:
            return fit_landmarks(control, target, model or self.fit_model)
        except ValueError as error:
            self._set_status(f"cannot fit the warp: {error}")
            return None

    def _pair_status(self, count: int) -> str:
        text = f"{count} point pairs"
        off = int((~self.active_pairs()).sum())
        if off:
            text += f" ({off} off)"
        if self.fit_model != "tps":
            text += f", {self.fit_model} fit"
        return text

    def refit(self, full: bool = True) -> bool:
        """Re-fit from the layers' points; re-warp (full or preview). False if it cannot."""
        from ..core.transforms import with_strength

        control, target = self.pairs()
        transform = self._fit(control, target)
        if transform is None:
            return False
        self.fitted = transform
        self.transform = with_strength(transform, self.strength)
        self._set_status(self._pair_status(len(control)))
        if full:
            self._start_full_warp()
        return True

    def set_strength(self, strength: float) -> None:
        """Dose the shown warp from none (0) to the landmarks' full fit (1), and re-warp."""
        from ..core.transforms import check_strength, with_strength

        self.strength = check_strength(strength)
        if self.closed:
            return
        self.transform = with_strength(self.fitted, self.strength)
        self._start_full_warp()

    def set_fit_model(self, model: str) -> bool:
        """Fit the landmarks with ``model`` (rigid, similarity, affine, tps) from now on."""
        from ..core.landmark_models import FIT_MODELS

        if model not in FIT_MODELS:
            raise ValueError(f"unknown landmark model {model!r}; choose one of {list(FIT_MODELS)}.")
        self.fit_model = model
        if self.closed:
            return False
        return self.refit(full=True)

    def residuals(self) -> np.ndarray:
        """Per pair, how far (output pixels) the current fit puts its control point from its
        target (0 under TPS; under rigid/similarity/affine a large one flags a misplaced pair)."""
        from ..core.landmark_models import landmark_residuals

        control, target = self.pairs()
        return landmark_residuals(self.fitted, control, target)

    def _small_source_now(self) -> None:
        if self._preview_small is _PENDING:
            self._preview_small = self._small_source()

    def _small_source(self):
        from ..core.images import fit_longest_side

        if self.stack is not None:
            return None
        raw = self.content.raw
        height, width = raw.shape[:2]
        if max(height, width) <= PREVIEW_SIDE:
            return None  # small enough: previews are full warps on the main thread
        shape = fit_longest_side(raw.shape, PREVIEW_SIDE)
        return _shrink(raw, shape), max(height, width) / max(shape)

    def _preview(self) -> None:
        """Cheap warp of the points as they are now (called while a point is dragged)."""
        from ..core.landmark_models import fit_landmarks
        from ..core.transforms import with_strength
        from ..core.warp import warp_image

        if self.closed or self.stack is not None or not layer_present(self.viewer, self.warped):
            return
        control, target = self.pairs()
        mask = self.active_pairs()
        control, target = control[mask], target[mask]
        if len(control) < MIN_PAIRS:
            return
        self._small_source_now()
        self._last_preview = time.perf_counter()
        try:
            with _one_torch_thread():
                if self._preview_small is None:
                    transform = with_strength(
                        fit_landmarks(control, target, self.fit_model), self.strength
                    )
                    warped = warp_image(self.content.raw, transform, device=self.device)
                else:
                    small, factor = self._preview_small
                    transform = fit_landmarks(
                        strided_points(control, factor),
                        strided_points(target, factor),
                        self.fit_model,
                    )
                    preview = warp_image(
                        small, with_strength(transform, self.strength), device=self.device
                    )
        except ValueError:
            return  # e.g. points dragged onto a line: the commit reports it
        if self._preview_small is None:
            self.warped.data = warped
            return
        self.warped.data = preview
        _place(
            self.warped,
            self._scale * factor,
            self._output_translate() + self._scale * (factor - 1) / 2.0,
        )

    def _start_full_warp(self) -> None:
        from napari.qt.threading import create_worker

        self._generation += 1
        generation = self._generation
        transform = self.transform
        if self._worker is not None:
            self._worker.quit()  # a newer edit supersedes the running warp
        source = self.content.raw if self.stack is None else None
        progress = False
        if self.stack is not None:
            total = int(np.prod(slices_shape(self.stack[0], self.stack[1])))
            progress = {"total": total, "desc": "GeoStyle: warping slices"}
        worker = create_worker(
            warp_layer_planes,
            source,
            transform,
            self.device,
            self.stack,
            _progress=progress,
            _start_thread=False,
            _ignore_errors=True,
        )
        worker.returned.connect(lambda warped: self._show_full(warped, transform, generation))
        worker.errored.connect(self._warp_failed)
        worker.finished.connect(lambda: self._worker_done(worker))
        self._worker = worker
        worker.start()

    def _worker_done(self, worker) -> None:
        if self._worker is worker:
            self._worker = None

    @property
    def busy(self) -> bool:
        """True while a full re-warp is running."""
        return self._worker is not None

    def _show_full(self, warped, transform, generation) -> None:
        if self.closed or generation != self._generation:
            return  # a later edit is being warped
        pairs = len(self.pairs()[0])
        if not layer_present(self.viewer, self.warped):
            # the user removed the warped layer: editing points brings it back, said aloud
            active = self.viewer.layers.selection.active
            name = unique_layer_name(self.viewer, self.warped.name)
            self._add_warped(warped, name, pairs)
            place_below_points(self.viewer, self.warped)
            if active is not None and layer_present(self.viewer, active):
                self._activate(active)
            self._set_status(
                f"{self._pair_status(pairs)}; the warped layer was re-created as {name!r}"
            )
            self._said_recreated = True
        else:
            self.warped.data = warped
            _place(self.warped, **self._image_placement(warped))
            self.warped.metadata = {"geostyle": self._provenance(pairs)}
            if getattr(self, "_said_recreated", False):  # news once, not for every change
                self._said_recreated = False
                self._set_status(self._pair_status(pairs))
        if self._grid_layer is not None:
            self._update_grid()

    def _warp_failed(self, error) -> None:
        from napari.utils.notifications import show_error

        self._set_status(f"warp failed: {error}")
        show_error(f"GeoStyle: re-warping failed: {error}")

    def _set_status(self, text: str) -> None:
        self.status = text
        if self.on_status is not None:
            self.on_status(text)

    # ----------------------------------------------------------------- history
    def _push_history(self) -> None:
        self._history.push(
            self.content_points.data, self.target_points.data, active=self.active_pairs()
        )

    @property
    def can_undo(self) -> bool:
        return self._history.can_undo

    @property
    def can_redo(self) -> bool:
        return self._history.can_redo

    def undo(self) -> bool:
        """Restore the points before the last edit (and re-warp). False if there is none."""
        state = self._history.undo()
        if state is None:
            return False
        self._restore(state)
        return True

    def redo(self) -> bool:
        """Re-apply an undone edit. False if there is none."""
        state = self._history.redo()
        if state is None:
            return False
        self._restore(state)
        return True

    def _restore(self, state) -> None:
        control, target = state
        self.set_points(control, target, record=False, active=self._history.current_active)

    def set_points(self, control, target, record: bool = True, active=None) -> bool:
        """Replace all landmark pairs (content / output pixel (row, col)) and re-warp.
        ``active``: the pairs' on/off flags (default: all on)."""
        from ..core.images import validate_points

        control = validate_points(control, "control points")
        target = validate_points(target, "target points")
        if len(control) != len(target):
            raise ValueError(
                f"{len(control)} control points but {len(target)} target points; pairs need "
                "one of each."
            )
        with self._syncing_on():
            for layer, data in ((self.content_points, control), (self.target_points, target)):
                layer.selected_data = set()
                layer.data = data
        self._relabel()
        self._write_active(np.ones(len(control), bool) if active is None else active)
        if record:
            self._push_history()
        return self.refit(full=True)

    # ----------------------------------------------------------------- import / export
    def export_bigwarp_csv(self, path) -> Path:
        """Write the pairs as a BigWarp landmark CSV (moving = content, target = output)."""
        from ..core.landmarks import write_bigwarp_csv

        control, target = self.pairs()
        stride = self.content.stride
        write_bigwarp_csv(
            path, full_resolution_points(control, stride), full_resolution_points(target, stride)
        )
        return Path(path)

    def import_bigwarp_csv(self, path) -> bool:
        """Replace the pairs with a BigWarp landmark CSV's (undoable)."""
        from ..core.landmarks import read_bigwarp_csv

        control, target = read_bigwarp_csv(path)
        stride = self.content.stride
        return self.set_points(strided_points(control, stride), strided_points(target, stride))

    def export_transform_json(self, path) -> Path:
        """Write the current transform (``to_dict()``) as JSON."""
        from ..core.media import write_user_file

        text = json.dumps(self.transform.to_dict(), indent=1)
        return write_user_file(path, text, "transform file")

    def displacement_field(self) -> np.ndarray:
        """``(H, W, 2)`` float32: for each output pixel, content (row, col) minus its own (row, col).

        ``warped[p] = content[p + field[p]]``: where the warp pulls each output pixel from.
        """
        return displacement_field(self.transform, self.content.shape)

    def export_displacement_npy(self, path) -> Path:
        """Write ``displacement_field()`` as ``.npy`` (the suffix added as ``np.save`` does)."""
        from ..core.media import write_user_file

        path = Path(path)
        if path.suffix != ".npy":
            path = path.with_name(path.name + ".npy")
        field = self.displacement_field()

        def write(temp: Path) -> None:
            with open(temp, "wb") as handle:
                np.save(handle, field)

        return write_user_file(path, write, "displacement field")

    # ----------------------------------------------------------------- other layers, sessions
    def inverse_transform(self):
        """Output -> content: the landmarks fitted with their roles swapped (exact for the
        linear fits, the matching TPS otherwise), at the same strength."""
        from ..core.landmark_models import fit_landmarks
        from ..core.transforms import with_strength

        control, target = self.pairs()
        mask = self.active_pairs()
        return with_strength(
            fit_landmarks(target[mask], control[mask], self.fit_model), self.strength
        )

    def apply_to(self, layer, inverse: bool = False, output_shape=None):
        """Warp another Image or Labels layer (its shown slice, in the content's pixel frame)
        with the current transform into a new layer over the output (labels: nearest
        neighbour, zeros outside)."""
        from napari.layers import Labels

        from ..core.warp import warp_image

        labels = isinstance(layer, Labels)
        data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
        rgb = bool(getattr(layer, "rgb", False))
        lead = np.ndim(data) - (3 if rgb else 2)
        index = ()
        if lead > 0:
            position = layer.world_to_data(self.viewer.dims.point)
            index = tuple(
                int(np.clip(np.round(position[axis]), 0, np.shape(data)[axis] - 1))
                for axis in range(lead)
            )
        plane = np.asarray(data[index] if index else data)
        if self.content.stride > 1:
            plane = plane[:: self.content.stride, :: self.content.stride]
        transform = self.inverse_transform() if inverse else self.transform
        shape = tuple(output_shape) if output_shape is not None else self.content.shape
        warped = warp_image(
            plane,
            transform,
            output_shape=shape,
            device=self.device,
            mode="nearest" if labels else "bilinear",
            padding="zeros" if labels else "border",
        )
        kind = "unwarped" if inverse else "warped"
        name = unique_layer_name(self.viewer, f"{layer.name} {kind}{slice_suffix(index)}")
        meta = {
            "geostyle": provenance(
                "apply transform",
                {"layer": layer.name, **self.inputs},
                {"inverse": inverse, "strength": self.strength, "fit_model": self.fit_model},
                transform,
            )
        }
        # the inverse lands in the content's frame, the forward transform in the output's
        translate = self._translate if inverse else self._output_translate()
        placement = {"scale": self._scale, "translate": translate}
        active = self.viewer.layers.selection.active
        if labels:
            new = self.viewer.add_labels(warped, name=name, metadata=meta, **placement)
        else:
            new = self.viewer.add_image(
                warped,
                name=name,
                rgb=rgb,
                metadata=meta,
                **placement,
                **self._display_like(layer),
            )
        place_below_points(self.viewer, new)
        if active is not None and layer_present(self.viewer, active):
            self._activate(active)
        return new

    def session(self) -> dict:
        """Everything needed to rebuild this warp: layers' sources, landmarks, fit, options."""
        control, target = self.pairs()
        return {
            "inputs": dict(self.inputs),
            "options": dict(self.options),
            "sources": self._sources(),
            "control_points": control.tolist(),
            "target_points": target.tolist(),
            "active": self.active_pairs().tolist(),
            "fit_model": self.fit_model,
            "strength": self.strength,
            "pixel_stride": self.content.stride,
            "slice_index": list(self.content.slice_index),
            "transform": self.transform.to_dict(),
        }

    def _sources(self) -> dict:
        sources = {}
        names = {layer.name: layer for layer in self.viewer.layers}
        for role, name in self.inputs.items():
            if isinstance(name, str) and name in names:
                path = getattr(names[name].source, "path", None)
                sources[role] = None if path is None else str(path)
        return sources

    # ----------------------------------------------------------------- deformation grid
    def grid_lines(self, lines: int = 12, samples: int = 48) -> list[np.ndarray]:
        """Lines of a regular content grid carried into the output frame (drawn over the
        warped image: where the warp moves each part of the content)."""
        return deformation_grid(self.transform, self.content.shape, lines, samples)

    def show_grid(self, visible: bool = True) -> None:
        """Show (or hide) a Shapes layer over the output: the content's regular grid, warped.
        The grid never becomes the active layer (the next drag must still move a point)."""
        if not visible:
            if self._grid_layer is not None and self._grid_layer in self.viewer.layers:
                self.viewer.layers.remove(self._grid_layer)
            self._grid_layer = None
            return
        if self._grid_layer is None or self._grid_layer not in self.viewer.layers:
            active = self.viewer.layers.selection.active
            self._grid_layer = self.viewer.add_shapes(
                self.grid_lines(),
                shape_type="path",
                edge_color="orange",
                edge_width=max(1.0, min(self.content.shape) / 300.0),
                name=unique_layer_name(self.viewer, f"{self.content.name} deformation grid"),
                scale=self._scale,
                translate=self._output_translate(),
            )
            # just above the warped image, under the points
            place_below_points(self.viewer, self._grid_layer)
            if active is not None and layer_present(self.viewer, active):
                self._activate(active)
            else:
                self._activate(self.target_points)
        else:
            self._update_grid()

    def _update_grid(self) -> None:
        if self._grid_layer in self.viewer.layers:
            self._grid_layer.data = self.grid_lines()
            self._grid_layer.shape_type = "path"

    # ----------------------------------------------------------------- teardown
    @property
    def edited(self) -> bool:
        """Whether the user changed the landmarks (points or on/off flags) since the start."""
        return len(self._history) > 1

    def retire(self, replaced: bool = True) -> str:
        """Stop this warp and make plain that its layers no longer follow edits.

        ``replaced`` (a new warp takes its place): unedited, its layers are removed (the new
        warp's take their names); edited, nothing is lost: its points, greyed, and its warped
        image are hidden and renamed "... (old)". Not ``replaced`` (its panel closed): the
        points are retired the same way and the warped image stays as it is. Returns a line
        for the status ("" when nothing is left behind).
        """
        self.close()
        points = [self.content_points, self.target_points]
        if self._present(self._grid_layer):
            self.viewer.layers.remove(self._grid_layer)
        if replaced and not self.edited:
            for layer in (*points, self.warped):
                if self._present(layer):
                    self.viewer.layers.remove(layer)
            return ""
        kept = [*points, self.warped] if replaced else points
        names = []
        for layer in kept:
            if not self._present(layer):
                continue
            if layer is not self.warped:
                layer.face_color = layer.current_face_color = "gray"
            layer.name = unique_layer_name(self.viewer, f"{layer.name} (old)")
            layer.visible = False
            names.append(layer.name)
        if not names:
            return ""
        which = "the previous warp's edited landmarks" if replaced else "the landmarks"
        return f"{which} no longer follow edits: kept, hidden, as {', '.join(map(repr, names))}."

    def hand_over(self) -> tuple[str, dict]:
        """Retire this warp for a new one that takes over its layers (``reuse``): returns a
        line for the status ("" when nothing is left behind) and the layers by role (and the
        drag previews' small copy of the content, ``"preview_small"``). Edited,
        nothing is lost: hidden, greyed copies named "... (old)" keep its landmarks and its
        warped image. They are made from what the layers hold now, one per event-loop turn
        after this one (each new layer costs napari a fifth of a second, even hidden): the
        Run that takes over the layers stalls the viewer no longer than it must."""
        from qtpy.QtCore import QTimer

        self.close()
        if self._present(self._grid_layer):
            self.viewer.layers.remove(self._grid_layer)
        roles = (("warped", self.warped), ("content", self.content_points),
                 ("target", self.target_points))  # fmt: skip
        layers = {role: layer for role, layer in roles if self._present(layer)}
        self._small_source_now()
        reuse = {**layers, "preview_small": (self.content.raw, self._preview_small)}
        if not self.edited or not layers:
            return "", reuse
        copies = [self._hidden_copy(layer) for layer in layers.values()]
        names = ", ".join(repr(name) for name, _ in copies)

        def make_next() -> None:
            if not any(layer_present(self.viewer, layer) for layer in layers.values()):
                return  # the viewer was closed (or cleared) meanwhile: touch nothing
            name, make = copies.pop(0)
            make(unique_layer_name(self.viewer, name))
            if copies:
                QTimer.singleShot(0, make_next)

        QTimer.singleShot(0, make_next)
        note = f"the previous warp's edited landmarks no longer follow edits: kept, hidden, as {names}."
        return note, reuse

    def _hidden_copy(self, layer):
        """``(name, make)``: ``make(name)`` adds a hidden copy of ``layer`` as it is now (points
        greyed, with their numbers), named "... (old)"."""
        from napari.layers import Points

        common = {
            "scale": np.asarray(layer.scale, float),
            "translate": np.asarray(layer.translate, float),
            "metadata": dict(layer.metadata),
            "visible": False,
        }
        name = unique_layer_name(self.viewer, f"{layer.name} (old)")
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
            return name, lambda free: self.viewer.add_points(data, name=free, **points, **common)
        look = {"rgb": layer.rgb, **self._display_like(layer)}
        return name, lambda free: self.viewer.add_image(data, name=free, **look, **common)

    def _present(self, layer) -> bool:
        return layer is not None and layer_present(self.viewer, layer)

    def close(self) -> None:
        """Stop reacting to point edits (the layers stay)."""
        if self.closed:
            return
        self.closed = True
        self._preview_timer.stop()
        self._generation += 1  # a warp still running is not shown
        if self._worker is not None:
            self._worker.quit()
        try:
            self.viewer.layers.events.removed.disconnect(self._on_layer_removed)
        except (ValueError, RuntimeError, TypeError):
            pass
        for key, layer in (("content", self.content_points), ("target", self.target_points)):
            try:
                layer.events.data.disconnect(self._handlers[key])
                layer.mouse_drag_callbacks.remove(self._drag_callback)
            except (ValueError, RuntimeError):
                pass


def start_live_warp(viewer, content_layer, content: LayerImage, transform, warped, **kwargs):
    """Build the live layers for ``transform``: what the widget and ``viewer_api`` both call."""
    return LiveWarp(viewer, content_layer, content, transform, warped, **kwargs)


def _unwrap(layer):
    return getattr(layer, "__wrapped__", layer)


@contextlib.contextmanager
def _one_torch_thread():
    """Torch on one thread for a drag preview (main thread). A preview is small, and a parallel
    region waits for its slowest thread: on a busy 2-core machine (a full warp in a worker, the
    canvas's software rasteriser, other programs) single previews took up to 0.8 s instead of
    10-20 ms. The setting is torch's global one: restored at once."""
    import torch

    threads = torch.get_num_threads()
    if threads > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if threads > 1:
            torch.set_num_threads(threads)


def _place(layer, scale, translate) -> None:
    """Set a layer's scale and translate where they change (each set redraws the layer)."""
    for key, value in (("scale", scale), ("translate", translate)):
        current = np.asarray(getattr(layer, key), float)
        value = np.asarray(value, float)
        if current.shape != value.shape or not np.allclose(current, value, rtol=0, atol=1e-9):
            setattr(layer, key, value)


def _shrink(image: np.ndarray, shape) -> np.ndarray:
    """``image`` resized to ``shape`` (H, W) with antialiasing, in its own dtype (the drag
    preview's source: a torch resize, tens of times faster than scikit-image's Gaussian one)."""
    import torch

    from ..core.images import resize_tensor

    planes = image if image.ndim == 3 else image[..., None]
    tensor = torch.from_numpy(np.ascontiguousarray(planes.transpose(2, 0, 1), np.float32))
    small = resize_tensor(tensor[None], shape)[0].permute(1, 2, 0).numpy()
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        small = np.clip(np.rint(small), info.min, info.max)
    elif image.dtype == bool:
        small = small >= 0.5
    small = small.astype(image.dtype)
    return small if image.ndim == 3 else small[..., 0]
