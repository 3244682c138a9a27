"""A live warp's landmarks: two numbered Points layers paired by index and kept in sync.

- ``<content> control points`` (on the content) and ``<content> target points`` (in the output
  frame) are paired by index and labelled with their number. A landmark fit sends control point
  i to target point i.
- Adding a point in either layer adds its partner where the current warp puts it (so nothing
  jumps); deleting one deletes its partner; a committed move asks the warp to re-fit.
- Side by side, a point clicked on the other image is taken out again, and the status says
  where to click. ``alternate_pairs`` adds pairs point by point, as affinder does.
- A pair whose ``active`` feature is off is left out of the fit.
- Every edit is recorded for undo / redo (Ctrl+Z / Ctrl+Shift+Z on the Points layers).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..core.landmark_history import LandmarkHistory
from .layer_data import layer_present
from .warp_frame import place

LABEL_COLOR = "white"  # point numbers: readable over the yellow / cyan points and most images
FEATURE_DEFAULTS = {"number": 0, "active": True}  # a new point's pair is switched on
_COMMITTED = ("added", "changed", "removed")


# more pairs than this (a dense TPS grid, e.g. a hinted estimate's) are drawn without their
# numbers, which would cover the image; the layer controls' "display text" shows them again
MAX_NUMBERED_POINTS = 30


class PairedPoints:
    """The control and target Points layers of ``live`` (a
    :class:`~napari_geostyle._napari.live_warp.LiveWarp`), paired by index.

    Parameters
    ----------
    live : LiveWarp
        The warp the points drive: its viewer, frame, fitted transform (where a new point's
        partner goes), status, ``refit`` and renderer (drag previews).
    control, target : numpy.ndarray
        ``(N, 2)`` ``(row, col)`` first landmarks: content and output pixels.
    name_for : callable
        ``name_for(role, base)``: the layer name for role ``"content"`` / ``"target"``.
    content_name : str
        The content layer's name (the layers are named after it).
    reuse : dict
        A previous warp's Points layers by role, updated in place rather than new ones added.
    """

    def __init__(
        self,
        live: Any,
        control: np.ndarray,
        target: np.ndarray,
        name_for: Callable[[str, str], str],
        content_name: str,
        reuse: dict,
    ) -> None:
        self.live = live
        self.viewer = live.viewer
        self.frame = live.frame
        self.syncing = False
        self.alternate = False  # clicks add pairs point by point: content, then output
        self.history = LandmarkHistory()
        self.content = self._points_layer(
            name_for("content", f"{content_name} control points"),
            control,
            "yellow",
            self.frame.translate,
            reuse.pop("content", None),
        )
        self.target = self._points_layer(
            name_for("target", f"{content_name} target points"),
            target,
            "cyan",
            self.frame.output_translate(),
            reuse.pop("target", None),
        )
        # one handler per layer: events carry the bare layer, which may differ from the
        # (proxied) layer objects the viewer handed back, so identity is not compared
        self._handlers = {
            "content": lambda event: self.on_data(event, self.content),
            "target": lambda event: self.on_data(event, self.target),
        }

    def _points_layer(self, name, data, color, translate, old=None):
        data = np.asarray(data, float).reshape(-1, 2)
        numbers = np.arange(1, len(data) + 1)
        size = self.frame.point_size
        # labels in white, larger than the default and offset up-right of their point: readable
        # next to the yellow / cyan points rather than drawn over them in the same colour
        kwargs = {
            "name": name,
            "scale": self.frame.scale,
            "translate": translate,
            "size": size,
            "face_color": color,
            "border_color": "black",
            "border_width": 0.15,
            "features": {"number": numbers, "active": np.ones(len(data), bool)},
            "feature_defaults": FEATURE_DEFAULTS,
            "text": {
                "string": "{number}",
                "color": LABEL_COLOR,
                "anchor": "lower_left",
                "size": 12,
                "translation": [-0.6 * size, 0.6 * size],
            },
        }
        if old is None:
            layer = self.viewer.add_points(data, **kwargs)
        else:  # a previous warp's: its points and numbers replaced, its look kept (each
            # property set redraws the layer: only what changes is set)
            layer = old
            layer.selected_data = set()
            layer.data = data
            layer.features = kwargs["features"]
            layer.feature_defaults = FEATURE_DEFAULTS
            place(layer, kwargs["scale"], kwargs["translate"])
            layer.refresh_text()
            if not layer.visible:
                layer.visible = True
        layer.text.visible = len(data) <= MAX_NUMBERED_POINTS
        layer.mode = "select"
        return layer

    @property
    def layers(self) -> tuple:
        """``(content, target)`` Points layers."""
        return self.content, self.target

    def connect(self, drag_callback: Callable) -> None:
        """React to the layers' edits; ``drag_callback`` previews drags; undo keys bound."""
        self.content.events.data.connect(self._handlers["content"])
        self.target.events.data.connect(self._handlers["target"])
        for layer in self.layers:
            layer.mouse_drag_callbacks.append(drag_callback)
            layer.bind_key("Control-Z", lambda _layer: self.live.undo(), overwrite=True)
            layer.bind_key("Control-Shift-Z", lambda _layer: self.live.redo(), overwrite=True)

    def disconnect(self, drag_callback: Callable) -> None:
        """Stop reacting to the layers' edits (the layers stay)."""
        for key, layer in (("content", self.content), ("target", self.target)):
            try:
                layer.events.data.disconnect(self._handlers[key])
                layer.mouse_drag_callbacks.remove(drag_callback)
            except (ValueError, RuntimeError):
                pass

    @contextlib.contextmanager
    def syncing_on(self) -> Iterator[None]:
        """Edits made inside are the pairing's own: their events are ignored."""
        self.syncing = True
        try:
            yield
        finally:
            self.syncing = False

    # ----------------------------------------------------------------- pairs and flags
    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Current ``(control, target)`` landmark pairs (content / output pixel (row, col))."""
        control = np.asarray(self.content.data, float)[:, -2:]
        target = np.asarray(self.target.data, float)[:, -2:]
        count = min(len(control), len(target))
        return control[:count], target[:count]

    def active_pairs(self) -> np.ndarray:
        """Boolean mask of the pairs switched on (both points' ``active`` feature)."""
        count = len(self.pairs()[0])
        mask = np.ones(count, bool)
        for layer in self.layers:
            if "active" in layer.features and len(layer.features) >= count:
                mask &= np.asarray(layer.features["active"], bool)[:count]
        return mask

    def write_active(self, mask) -> None:
        """Set both points layers' ``active`` feature to ``mask`` (one flag per pair)."""
        for layer in self.layers:
            values = np.ones(len(layer.data), bool)
            count = min(len(values), len(mask))
            values[:count] = np.asarray(mask, bool)[:count]
            features = layer.features.copy()
            features["active"] = values
            layer.features = features
            layer.feature_defaults = FEATURE_DEFAULTS

    def relabel(self) -> None:
        """Number both layers' points 1..N again (their flags kept)."""
        for layer in self.layers:
            count = len(layer.data)
            active = np.ones(count, bool)
            if "active" in layer.features and len(layer.features) == count:
                active = np.asarray(layer.features["active"], bool)
            layer.features = {"number": np.arange(1, count + 1), "active": active}
            layer.feature_defaults = FEATURE_DEFAULTS  # setting features resets them
            layer.text.visible = count <= MAX_NUMBERED_POINTS
            layer.refresh_text()

    def replace(self, control: np.ndarray, target: np.ndarray, active=None) -> None:
        """Put ``control`` / ``target`` in the layers, numbered, with ``active`` flags (default:
        all on); no event of theirs re-fits."""
        with self.syncing_on():
            for layer, data in ((self.content, control), (self.target, target)):
                layer.selected_data = set()
                layer.data = data
        self.relabel()
        self.write_active(np.ones(len(control), bool) if active is None else active)

    # ----------------------------------------------------------------- history
    def push_history(self) -> None:
        """Record the points and flags as they are now."""
        self.history.push(self.content.data, self.target.data, active=self.active_pairs())

    def undo(self) -> bool:
        """Restore the points before the last edit (and re-warp). False if there is none."""
        return self._restore(self.history.undo())

    def redo(self) -> bool:
        """Re-apply an undone edit. False if there is none."""
        return self._restore(self.history.redo())

    def _restore(self, state) -> bool:
        if state is None:
            return False
        control, target = state
        self.live.set_points(control, target, record=False, active=self.history.current_active)
        return True

    # ----------------------------------------------------------------- point events
    def on_data(self, event, edited) -> None:
        """A data event of ``edited`` (either layer): pair the edit, record it, re-fit."""
        live = self.live
        if self.syncing or live.closed:
            return
        action = str(getattr(event, "action", "changed"))
        if action == "changing":
            live.renderer.drag_started()
            return
        if action not in _COMMITTED:
            return
        live.renderer.drag_ended()
        indices = getattr(event, "data_indices", ())
        if action == "added" and self._refuse_wrong_image(edited, indices):
            return
        if self.alternate and action == "added" and self._alternate_step():
            return
        self._pair_partner(edited, action, indices)
        if action != "changed":  # a move keeps every point's number
            self.relabel()
        self.push_history()
        if live.refit(full=True) and self.alternate:
            live.set_status(f"{live.status}; click the next point on the content")

    def _refuse_wrong_image(self, edited, indices) -> bool:
        """Side by side, a point added on the other image (a content point clicked on the
        output, or an output point on the content) is taken out again, and the status and a
        notification say where to click. True when it was refused."""
        from napari.utils.notifications import show_warning

        if not self.frame.side_by_side or not len(edited.data):
            return False
        count = len(edited.data)
        added = [int(i) for i in indices if 0 <= int(i) < count] or [count - 1]
        on_content = edited is self.content
        points = np.asarray(edited.data, float)[added][:, -2:]
        inside = self.frame.on_the_other_image(points, on_content)
        if not inside.any():
            return False
        with self.syncing_on():
            edited.remove([added[i] for i in np.flatnonzero(inside)])
        mine, theirs = ("content", "output") if on_content else ("output", "content")
        text = (
            f"that click was on the {theirs} image, not the {mine}: {mine} points go on the "
            f"{mine} ({'left' if on_content else 'right'}); the point was not added."
        )
        self.live.set_status(text)
        show_warning(f"GeoStyle: {text}")
        return True

    def alternate_pairs(self, on: bool = True) -> None:
        """Add pairs by clicking: a point on the content, then where it lands in the output,
        and so on (the layer to click next is made active in add mode)."""
        self.alternate = bool(on)
        if on:
            self._click_next(self.content, "click a point on the content")

    def _click_next(self, layer, hint: str) -> None:
        if layer_present(self.viewer, layer):
            self.viewer.layers.selection.active = layer
            layer.mode = "add"
        pairs = len(self.pairs()[0])
        self.live.set_status(f"{pairs} point pairs: {hint}.")

    def _alternate_step(self) -> bool:
        """One click of alternate mode; True when it waits for the partner point."""
        content, target = len(self.content.data), len(self.target.data)
        if content == target:
            self._click_next(self.content, "click a point on the content")
            return False  # the pair is complete: re-fit
        partner = self.target if content > target else self.content
        where = "the output" if partner is self.target else "the content"
        self.relabel()
        self._click_next(partner, f"now click where it is in {where}")
        return True

    def _pair_partner(self, edited, action, indices) -> None:
        """Keep both layers the same length: add partners where the warp puts them, drop deleted."""
        partner = self.target if edited is self.content else self.content
        count, partner_count = len(edited.data), len(partner.data)
        if count == partner_count:
            return
        with self.syncing_on():
            if count > partner_count:
                new = np.asarray(edited.data[partner_count:], float)[:, -2:]
                if edited is self.content:
                    mapped = self.live.fitted.map_points(new)
                else:
                    mapped = self.live.fitted.sample_points(new)
                partner.add(mapped)
                partner.selected_data = set()
            else:
                removed = [int(i) for i in indices if 0 <= int(i) < partner_count]
                if action != "removed" or len(removed) != partner_count - count:
                    removed = list(range(count, partner_count))
                partner.remove(removed)
