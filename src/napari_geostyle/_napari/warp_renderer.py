"""A live warp's output: the warped Image layer, re-warped as the landmarks change.

- While a point is dragged a cheap preview (content at reduced size) is shown: the first move
  after a pause previews at once, in the move's own event (drawn in the same frame as the moved
  point), later moves at most every ``PREVIEW_GAP_MS``.
- When the drag ends the full warp runs in a napari thread worker (a newer edit supersedes a
  running one), its sample map evaluated exactly on a lattice and interpolated in between
  (``core.lattice.lattice_sample_map``: within ``LATTICE_TOLERANCE`` px, several times faster
  for a large image, and shared by every plane of a stack). Layers are only touched on the main
  thread. ``benchmarks/bench_interactive.py`` measures these paths in a real viewer.
- If the warped layer is removed, the next full warp re-creates it and the status says so.
- The deformation grid (a Shapes layer over the output) follows every full warp.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.fields import deformation_grid, warp_planes
from ..core.lattice import lattice_sample_map
from .layer_data import (
    iter_slices,
    layer_present,
    place_below_points,
    provenance,
    slices_shape,
    strided_points,
    unique_layer_name,
)
from .warp_frame import activate, place, present

if TYPE_CHECKING:  # pragma: no cover
    from napari.layers import Image, Shapes

MIN_PAIRS = 3  # a landmark fit needs three pairs
PREVIEW_SIDE = 192  # longest side of the image warped while a point is dragged
# least time between the starts of two drag previews: the first move after a pause previews at
# once, and the event loop keeps time to draw and to take the next mouse moves
PREVIEW_GAP_MS = 20

_PENDING = object()  # the drag previews' small source, not made yet


def warp_layer_planes(source, transform, device=None, stack=None):
    """Generator: warp ``source`` (2D), or with ``stack = (layer, level, stride)`` every plane
    of an nD layer (see :func:`napari_geostyle.core.fields.warp_planes`). The sample map is
    :func:`~napari_geostyle.core.lattice.lattice_sample_map`'s, made once and shared by every
    plane."""
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


class WarpRenderer:
    """The warped layer of ``live`` (a :class:`~napari_geostyle._napari.live_warp.LiveWarp`):
    drag previews, full warps in a worker, the deformation grid.

    Parameters
    ----------
    live : LiveWarp
        The warp shown: its content, transform, strength, fit model, device and landmarks.
    warped : numpy.ndarray
        The first warped image.
    name : str
        The warped layer's name.
    pairs : int
        The landmark pairs (recorded in the layer's provenance).
    display : dict
        The content's look (``warp_frame.display_like``).
    old : napari.layers.Image, optional
        A previous warp's layer, updated in place when it can show ``warped``.
    small : tuple, optional
        A previous warp's ``(content raw, drag previews' small copy)``: reused for the same
        content.
    """

    def __init__(
        self,
        live: Any,
        warped: np.ndarray,
        name: str,
        pairs: int,
        display: dict,
        old=None,
        small=None,
    ) -> None:
        from qtpy.QtCore import QTimer

        self.live = live
        self.viewer = live.viewer
        self.frame = live.frame
        self.display = display
        self.layer: Image = None  # set by add_layer below
        self.grid_layer: Shapes | None = None
        self.dragging = False
        self.worker = None
        self._generation = 0
        self._said_recreated = False
        self.add_layer(warped, name, pairs, old)
        self.preview_timer = QTimer()
        self.preview_timer.setSingleShot(True)
        self.preview_timer.timeout.connect(self.preview)
        self._last_preview = float("-inf")  # perf_counter() when the last preview started
        if small is not None and small[0] is self.live.content.raw:
            self._preview_small = small[1]  # the same content: its small copy too
        else:  # made in the next event-loop turn (tens of ms for a large image), not in the
            # Run's: a drag before then makes it at once
            self._preview_small = _PENDING
            QTimer.singleShot(0, self.small_source_now)

    # ----------------------------------------------------------------- the layer
    def add_layer(self, data, name: str, pairs: int, old=None) -> None:
        """Show ``data`` in ``old`` (a previous warp's layer) when it fits, else a new layer."""
        display = self.display
        if old is not None and old.rgb == self.frame.rgb and np.ndim(old.data) == np.ndim(data):
            old.data = data
            place(old, **self.frame.image_placement(data))
            old.metadata = {"geostyle": self.provenance(pairs)}
            if "contrast_limits" in display:  # gray: the content's look
                if tuple(old.contrast_limits) != tuple(display["contrast_limits"]):
                    old.contrast_limits = display["contrast_limits"]
                if old.colormap.name != display["colormap"]:
                    old.colormap = display["colormap"]
            if not old.visible:
                old.visible = True
            self.layer = old
            return
        self.layer = self.viewer.add_image(
            data,
            name=name,
            rgb=self.frame.rgb,
            metadata={"geostyle": self.provenance(pairs)},
            **self.frame.image_placement(data),
            **display,
        )

    def provenance(self, pairs: int) -> dict:
        """The warped layer's ``metadata["geostyle"]`` record."""
        live = self.live
        return provenance(
            "warp",
            live.inputs,
            live.options,
            live.transform,
            landmark_pairs=pairs,
            strength=live.strength,
            fit_model=live.fit_model,
            pixel_stride=live.content.stride,
            slice_index=list(live.content.slice_index),
            all_slices=live.stack is not None,
        )

    # ----------------------------------------------------------------- drag previews
    def small_source_now(self) -> None:
        """Make the drag previews' small copy of the content, if not made yet."""
        if self._preview_small is _PENDING:
            self._preview_small = self._small_source()

    @property
    def preview_small(self):
        """``(small copy, factor)`` of the content for drag previews, or None (full size)."""
        self.small_source_now()
        return self._preview_small

    def _small_source(self):
        from ..core.images import fit_longest_side

        if self.live.stack is not None:
            return None
        raw = self.live.content.raw
        height, width = raw.shape[:2]
        if max(height, width) <= PREVIEW_SIDE:
            return None  # small enough: previews are full warps on the main thread
        shape = fit_longest_side(raw.shape, PREVIEW_SIDE)
        return _shrink(raw, shape), max(height, width) / max(shape)

    def drag_started(self) -> None:
        """A point is being dragged: moves preview (``drag_callback``)."""
        self.dragging = True

    def drag_ended(self) -> None:
        """The drag ended (the layer's committed data event): no more previews."""
        self.dragging = False
        self.preview_timer.stop()

    def drag_callback(self, layer, event):
        """A Points layer's mouse-drag callback: previews while a point is dragged."""
        # napari runs a press's drag callbacks in list order. After the mode's own (which moves
        # the point), a preview in the same move event is drawn in one frame with the moved
        # point; before it, the preview waits for a timer, after the event (an extra redraw)
        callbacks = layer.mouse_drag_callbacks
        after_the_move = callbacks[-1] == self.drag_callback
        yield
        while event.type == "mouse_move":
            if self.dragging and not self.preview_timer.isActive():
                since_ms = (time.perf_counter() - self._last_preview) * 1e3
                if after_the_move and since_ms >= PREVIEW_GAP_MS:
                    self.preview()
                else:  # at most one preview per gap
                    self.preview_timer.start(int(max(0.0, PREVIEW_GAP_MS - since_ms)))
            yield
        if not after_the_move and self.drag_callback in callbacks:
            # a mode change put the mode's callback after ours: last again, for the next drag
            # (not at the press: napari is iterating the list then)
            callbacks.remove(self.drag_callback)
            callbacks.append(self.drag_callback)

    def preview(self) -> None:
        """Cheap warp of the points as they are now (called while a point is dragged)."""
        from ..core.landmark_models import fit_landmarks
        from ..core.transforms import with_strength
        from ..core.warp import warp_image

        live = self.live
        if live.closed or live.stack is not None or not layer_present(self.viewer, self.layer):
            return
        control, target = live.pairs()
        mask = live.active_pairs()
        control, target = control[mask], target[mask]
        if len(control) < MIN_PAIRS:
            return
        self.small_source_now()
        self._last_preview = time.perf_counter()
        try:
            with _one_torch_thread():
                if self._preview_small is None:
                    transform = with_strength(
                        fit_landmarks(control, target, live.fit_model), live.strength
                    )
                    warped = warp_image(live.content.raw, transform, device=live.device)
                else:
                    small, factor = self._preview_small
                    transform = fit_landmarks(
                        strided_points(control, factor),
                        strided_points(target, factor),
                        live.fit_model,
                    )
                    preview = warp_image(
                        small, with_strength(transform, live.strength), device=live.device
                    )
        except ValueError:
            return  # e.g. points dragged onto a line: the commit reports it
        if self._preview_small is None:
            self.layer.data = warped
            return
        self.layer.data = preview
        place(
            self.layer,
            self.frame.scale * factor,
            self.frame.output_translate() + self.frame.scale * (factor - 1) / 2.0,
        )

    # ----------------------------------------------------------------- full warps
    def start_full_warp(self) -> None:
        """Warp the content by ``live.transform`` in a worker; shown when it returns, unless
        a newer warp started meanwhile."""
        from napari.qt.threading import create_worker

        live = self.live
        self._generation += 1
        generation = self._generation
        transform = live.transform
        if self.worker is not None:
            self.worker.quit()  # a newer edit supersedes the running warp
        source = live.content.raw if live.stack is None else None
        progress: bool | dict[str, Any] = False
        if live.stack is not None:
            total = int(np.prod(slices_shape(live.stack[0], live.stack[1])))
            progress = {"total": total, "desc": "GeoStyle: warping slices"}
        worker = create_worker(
            warp_layer_planes,
            source,
            transform,
            live.device,
            live.stack,
            _progress=progress,
            _start_thread=False,
            _ignore_errors=True,
        )
        worker.returned.connect(lambda warped: self._show_full(warped, generation))
        worker.errored.connect(self._warp_failed)
        worker.finished.connect(lambda: self._worker_done(worker))
        self.worker = worker
        worker.start()

    def _worker_done(self, worker) -> None:
        if self.worker is worker:
            self.worker = None

    @property
    def busy(self) -> bool:
        """True while a full re-warp is running."""
        return self.worker is not None

    def _show_full(self, warped, generation) -> None:
        live = self.live
        if live.closed or generation != self._generation:
            return  # a later edit is being warped
        pairs = len(live.pairs()[0])
        if not layer_present(self.viewer, self.layer):
            # the user removed the warped layer: editing points brings it back, said aloud
            active = self.viewer.layers.selection.active
            name = unique_layer_name(self.viewer, self.layer.name)
            self.add_layer(warped, name, pairs)
            place_below_points(self.viewer, self.layer)
            if active is not None and layer_present(self.viewer, active):
                activate(self.viewer, active)
            live.set_status(
                f"{live.pair_status(pairs)}; the warped layer was re-created as {name!r}"
            )
            self._said_recreated = True
        else:
            self.layer.data = warped
            place(self.layer, **self.frame.image_placement(warped))
            self.layer.metadata = {"geostyle": self.provenance(pairs)}
            if self._said_recreated:  # news once, not for every change
                self._said_recreated = False
                live.set_status(live.pair_status(pairs))
        if self.grid_layer is not None:
            self._update_grid()

    def _warp_failed(self, error) -> None:
        from napari.utils.notifications import show_error

        self.live.set_status(f"warp failed: {error}")
        show_error(f"GeoStyle: re-warping failed: {error}")

    def stop(self) -> None:
        """Stop previews; a full warp still running is not shown."""
        self.preview_timer.stop()
        self._generation += 1
        if self.worker is not None:
            self.worker.quit()

    # ----------------------------------------------------------------- deformation grid
    def grid_lines(self, lines: int = 12, samples: int = 48) -> list[np.ndarray]:
        """Lines of a regular content grid carried into the output frame."""
        return deformation_grid(self.live.transform, self.live.content.shape, lines, samples)

    def show_grid(self, visible: bool = True) -> None:
        """Show (or hide) the warped grid as a Shapes layer over the output, never active."""
        live = self.live
        if not visible:
            self.remove_grid()
            return
        if self.grid_layer is None or self.grid_layer not in self.viewer.layers:
            active = self.viewer.layers.selection.active
            self.grid_layer = self.viewer.add_shapes(
                self.grid_lines(),
                shape_type="path",
                edge_color="orange",
                edge_width=max(1.0, min(live.content.shape) / 300.0),
                name=unique_layer_name(self.viewer, f"{live.content.name} deformation grid"),
                scale=self.frame.scale,
                translate=self.frame.output_translate(),
            )
            # just above the warped image, under the points
            place_below_points(self.viewer, self.grid_layer)
            if active is not None and layer_present(self.viewer, active):
                activate(self.viewer, active)
            else:
                activate(self.viewer, live.target_points)
        else:
            self._update_grid()

    def remove_grid(self) -> None:
        """Take the grid layer out of the viewer."""
        if present(self.viewer, self.grid_layer):
            self.viewer.layers.remove(self.grid_layer)
        self.grid_layer = None

    def _update_grid(self) -> None:
        grid = self.grid_layer
        if grid is not None and grid in self.viewer.layers:
            grid.data = self.grid_lines()
            grid.shape_type = "path"


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
