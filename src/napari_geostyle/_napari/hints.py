"""Hint mode: the user clicks a point on the content, then the matching point on the geometry
style; each completed pair re-estimates the warp with the pairs as ``hints`` (in a worker).

Hints differ from the live warp's control points: a hint STEERS the estimate (the estimate is
run again, from the images, through the hints), a control point EDITS its result (the warp is
refitted to the points, the images are not looked at). The layers say so in their names.

``HintSession`` owns two Points layers, ``<content> hints`` and ``<style> hints``, in each image
layer's data pixels: numbered, one colour per pair. It keeps the pairs consistent (deleting a
hint deletes its partner), records an undo history, and calls ``on_change(content_points,
style_points)`` whenever the complete pairs change (added, dragged, deleted, undone).
``HintedWarp`` ties a session to a ``LiveWarp``: each change re-estimates in a napari thread
worker and replaces the live warp's landmarks with the new estimate's.
No numerics here: the estimate is ``core.estimate.estimate_warp`` with ``hints``.
"""

from __future__ import annotations

import contextlib

import numpy as np

# one colour per pair, cycled (colour-blind-safe Okabe-Ito)
PAIR_COLOURS = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")
LOW_CONFIDENCE_NOTE = "the shapes may not match: add a hint"


def _pair_colours(count: int) -> np.ndarray:
    from napari.utils.colormaps.standardize_color import transform_color

    return transform_color([PAIR_COLOURS[i % len(PAIR_COLOURS)] for i in range(count)])


class HintSession:
    """Paired hint Points layers on ``content_layer`` and ``style_layer`` (see the module)."""

    def __init__(self, viewer, content_layer, style_layer, on_change=None, hints=None):
        self.viewer = viewer
        self.on_change = on_change
        self._syncing = False
        self._history: list = []
        self.layers = []
        for image, role in ((content_layer, "content"), (style_layer, "style")):
            side = max(np.asarray(image.data).shape[:2])
            layer = viewer.add_points(
                np.empty((0, 2)),
                name=f"{image.name} hints",
                scale=image.scale[-2:],
                translate=image.translate[-2:],
                size=max(4.0, side / 40),
                border_color="white",
                text={"string": "hint {number}", "color": "white", "anchor": "upper_left"},
                features={"number": np.zeros(0, int)},
                metadata={"geostyle": {"role": f"{role} hints", "steers": "the estimate"}},
            )
            layer.mode = "add"
            layer.events.data.connect(self._on_data)
            self.layers.append(layer)
        self.content_hints, self.style_hints = self.layers
        self._last = (np.empty((0, 2)), np.empty((0, 2)))
        if hints is not None:  # the starting hints (a restored session): not an undoable change
            self.set_hints(*hints, record=False)

    # ----------------------------------------------------------------- state
    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """The complete pairs ``(content_points, style_points)``, layer data pixels."""
        content, style = (np.asarray(layer.data, float).reshape(-1, 2) for layer in self.layers)
        count = min(len(content), len(style))
        return content[:count].copy(), style[:count].copy()

    def to_dict(self) -> dict:
        content, style = self.pairs()
        return {"content_points": content.tolist(), "style_points": style.tolist()}

    def set_hints(self, content_points, style_points, record: bool = True) -> None:
        """Replace every hint (undoable when ``record``)."""
        content = np.asarray(content_points, float).reshape(-1, 2)
        style = np.asarray(style_points, float).reshape(-1, 2)
        with self._quiet():
            self.content_hints.data, self.style_hints.data = content, style
        self._restyle()
        self._changed(record)

    def undo(self) -> bool:
        """Back to the hints before the last change. False when there is none."""
        if not self._history:
            return False
        content, style = self._history.pop()
        with self._quiet():
            self.content_hints.data, self.style_hints.data = content, style
        self._restyle()
        self._changed(record=False)
        return True

    def delete(self, index: int) -> None:
        """Delete hint pair ``index`` (undoable)."""
        content, style = (np.asarray(layer.data, float).reshape(-1, 2) for layer in self.layers)
        self.set_hints(np.delete(content, index, 0), np.delete(style, index, 0))

    def export_bigwarp_csv(self, path):
        """The complete pairs as a BigWarp landmark CSV (moving = content, target = style)."""
        from ..core.landmarks import write_bigwarp_csv

        write_bigwarp_csv(path, *self.pairs())
        return path

    def close(self) -> None:
        for layer in self.layers:
            layer.events.data.disconnect(self._on_data)
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)

    # ----------------------------------------------------------------- events
    @contextlib.contextmanager
    def _quiet(self):
        """Layer changes made here are the session's own: no event handling."""
        self._syncing = True
        try:
            yield
        finally:
            self._syncing = False

    def _on_data(self, event=None) -> None:
        if self._syncing:
            return
        action = str(getattr(event, "action", "changed"))
        if action in ("adding", "removing", "changing"):
            return
        layer = getattr(event, "source", None)
        if action == "removed" and layer in self.layers:
            self._remove_partners(layer)
        self._restyle()
        self._changed(record=True)

    def _remove_partners(self, layer) -> None:
        """A hint deleted on one side takes its partner on the other (same index)."""
        other = self.layers[1 - self.layers.index(layer)]
        before = self._last[self.layers.index(layer)]
        now = np.asarray(layer.data, float).reshape(-1, 2)
        gone = [i for i in range(len(before)) if not np.any(np.all(now == before[i], 1))]
        partner = np.asarray(other.data, float).reshape(-1, 2)
        gone = [i for i in gone if i < len(partner)]
        if gone:
            with self._quiet():
                other.data = np.delete(partner, gone, 0)

    def _restyle(self) -> None:
        with self._quiet():
            for layer in self.layers:
                count = len(layer.data)
                layer.features = {"number": np.arange(1, count + 1)}
                if count:
                    layer.face_color = _pair_colours(count)
                layer.refresh_text()

    def _changed(self, record: bool) -> None:
        pairs = self.pairs()
        last_pairs = tuple(a[: min(len(self._last[0]), len(self._last[1]))] for a in self._last)
        same = all(
            a.shape == b.shape and np.allclose(a, b) for a, b in zip(pairs, last_pairs, strict=True)
        )
        if record and not (
            len(self._last[0]) == len(self.content_hints.data)
            and len(self._last[1]) == len(self.style_hints.data)
            and same
        ):
            self._history.append(tuple(a.copy() for a in self._last))
        self._last = tuple(
            np.asarray(layer.data, float).reshape(-1, 2).copy() for layer in self.layers
        )
        if not same and self.on_change is not None:
            self.on_change(*pairs)


class HintedWarp:
    """A ``HintSession`` whose every change re-estimates ``live`` (a ``LiveWarp``) in a worker.

    ``content``, ``style``: the ``LayerImage`` s the estimate reads; ``model``, ``method``,
    ``device``: the estimate's. ``status`` says what the last estimate found (its confidence,
    and "the shapes may not match: add a hint" when it is low); ``estimates`` counts them.
    """

    def __init__(self, viewer, live, content_layer, style_layer, content, style, model,
                 method="network", device=None, on_status=None, hints=None):  # fmt: skip
        self.live, self.content, self.style = live, content, style
        self.model, self.method, self.device = model, method, device
        self.on_status = on_status
        self.estimates = 0
        self.status = ""
        self.worker = None
        self._pending = None
        # ``hints``: the pairs ``live`` was already estimated with (a restored session): shown,
        # not estimated again; the next change re-estimates
        self.session = HintSession(viewer, content_layer, style_layer, None, hints)
        self.session.on_change = self._estimate

    @property
    def busy(self) -> bool:
        return self.worker is not None

    def _estimate(self, content_points, style_points) -> None:
        if not len(content_points):
            return
        if self.worker is not None:  # the newest hints run when this estimate ends
            self._pending = (content_points, style_points)
            return
        from napari.qt.threading import create_worker

        from .layer_data import strided_points
        from .runs import estimate_and_warp

        hints = (
            strided_points(content_points, self.content.stride),
            strided_points(style_points, self.style.stride),
        )
        steps = estimate_and_warp(self.content, self.style, self.model, self.method, self.device,
                                  hints=hints)  # fmt: skip

        def run():
            try:
                while True:
                    next(steps)
            except StopIteration as stop:
                return stop.value

        self.worker = create_worker(run, _start_thread=False)
        self.worker.returned.connect(self._show)
        self.worker.errored.connect(self._failed)
        self.worker.finished.connect(self._next)
        self._set_status("re-estimating with the hints...")
        self.worker.start()

    def _show(self, result) -> None:
        from ..core.confidence import LOW_CONFIDENCE
        from ..core.landmark_models import landmarks_of

        transform, _warped = result
        self.estimates += 1
        control, target = landmarks_of(transform, self.content.raw.shape[:2])
        self.live.options["hints"] = self.session.to_dict()
        confidence = getattr(transform, "confidence", None)
        self.live.options["confidence"] = confidence
        self.live.set_points(control, target)
        note = ""
        if confidence is not None:
            note = f"confidence {confidence:.2f}"
            if confidence < LOW_CONFIDENCE:
                note += f": {LOW_CONFIDENCE_NOTE}"
        self._set_status(note)

    def _failed(self, error) -> None:
        from .runs import friendly_error

        self._set_status(f"hints not used: {friendly_error(error, self.device)}")

    def _next(self) -> None:
        self.worker = None
        pending, self._pending = self._pending, None
        if pending is not None:
            self._estimate(*pending)

    def _set_status(self, text: str) -> None:
        self.status = text
        if self.on_status is not None:
            self.on_status(text)

    def close(self) -> None:
        self.session.close()
