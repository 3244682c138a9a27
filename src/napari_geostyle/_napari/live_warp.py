"""The live landmark warp: a warped Image layer and two paired Points layers kept in sync.

One module used by both the Geometric Warp widget and ``viewer_api.add_warp``, so a warp made
from the console behaves exactly like one made from the GUI. :class:`LiveWarp` holds the fit
(``fit_model``: rigid, similarity, affine, tps; ``strength`` 0..1 doses the shown warp) and
composes the parts, each in its own module:

- ``paired_points.PairedPoints``: the two numbered Points layers (control points on the
  content, target points in the output frame), paired by index: adding, moving and deleting
  points, on/off flags, undo / redo.
- ``warp_renderer.WarpRenderer``: the warped Image layer: drag previews (throttled), full warps
  in a worker on a checked lattice of the sample map, the deformation grid.
- ``warp_exports``: BigWarp CSVs, the transform as JSON, the displacement field, sessions, other
  layers warped by the transform.
- ``warp_handover``: the end of a warp: its layers retired, or taken over by the next warp.
- ``warp_frame.WarpFrame``: where the layers sit. Side by side (default) the output (warped
  image, target points, grid) sits right of the content, so each point set is drawn over its
  own image; ``set_side_by_side(False)`` fuses them. The network TPS lattice lies on the
  output's border (the network's own knots): the points are drawn whole and the view is reset
  to include them, so they can be grabbed.

The points layers open in select mode with the target points active, so a drag moves a point
(not the camera). Results go to new layers (never over a layer the user has). If the warped
layer is removed, the next edit re-creates it; if a points layer is removed, the link is gone
and ``status`` says so. A new warp in the widget takes over the previous warp's layers
(``hand_over``, ``reuse``: updated in place, a second Run draws no new layers); an edited
previous warp is kept in hidden, greyed copies named "... (old)".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.landmark_models import landmarks_of
from ..core.lattice import (
    LATTICE_MIN_PIXELS,
    LATTICE_STEP,
    LATTICE_TOLERANCE,
    LatticeSampleMap,
    lattice_sample_map,
)
from ..core.transforms import Transform
from . import warp_exports, warp_handover
from .layer_data import LayerImage, layer_present, unique_layer_name
from .paired_points import LABEL_COLOR, PairedPoints
from .warp_frame import SIDE_GAP, WarpFrame, activate, display_like
from .warp_renderer import (
    MIN_PAIRS,
    PREVIEW_GAP_MS,
    PREVIEW_SIDE,
    WarpRenderer,
    warp_layer_planes,
)

if TYPE_CHECKING:  # pragma: no cover
    import napari
    from numpy.typing import ArrayLike

# importable from here as before the split
__all__ = [
    "LABEL_COLOR",
    "LATTICE_MIN_PIXELS",
    "LATTICE_STEP",
    "LATTICE_TOLERANCE",
    "MIN_PAIRS",
    "PREVIEW_GAP_MS",
    "PREVIEW_SIDE",
    "SIDE_GAP",
    "LatticeSampleMap",
    "LiveWarp",
    "lattice_sample_map",
    "start_live_warp",
    "warp_layer_planes",
]


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

        if landmarks is None:
            control, target = landmarks_of(transform, content.shape)
        else:
            control, target = (np.asarray(p, float).reshape(-1, 2) for p in landmarks)
        self.frame = WarpFrame(
            content_layer, content.shape, content.stride, control, target, side_by_side
        )
        # a previous warp's layers ({"warped", "content", "target"}: ``hand_over``) are updated
        # in place rather than new ones added: a second Run draws no new layers
        reuse = dict(reuse or {})

        def name_for(role: str, base: str) -> str:
            """``base``, kept by the reused layer of ``role`` that has it, else a free name (a
            reused layer of another name, e.g. another content's, is not reused)."""
            old = reuse.get(role)
            if old is not None and old.name == base and layer_present(viewer, old):
                return base
            reuse.pop(role, None)
            return unique_layer_name(viewer, base)

        name = content_layer.name
        warped_name = name_for("warped", f"{name} warped")
        self.renderer = WarpRenderer(
            self,
            warped,
            warped_name,
            len(control),
            display_like(content_layer),
            old=reuse.pop("warped", None),
            small=reuse.get("preview_small"),
        )
        self.points = PairedPoints(self, control, target, name_for, name, reuse)
        if active is not None:  # the pairs' on/off flags (``transform`` fits the "on" ones)
            self.points.write_active(active)
        self.points.push_history()
        activate(viewer, self.target_points)
        viewer.layers.events.removed.connect(self._on_layer_removed)
        self.points.connect(self.renderer.drag_callback)
        self.set_status(f"{len(control)} point pairs")
        if self.side_by_side:
            viewer.reset_view()  # both images, and the lattice on the output's border, in view

    # ----------------------------------------------------------------- the parts' layers
    @property
    def warped(self):
        """The warped Image layer."""
        return self.renderer.layer

    @property
    def content_points(self):
        """The control points' layer (on the content)."""
        return self.points.content

    @property
    def target_points(self):
        """The target points' layer (in the output frame)."""
        return self.points.target

    @property
    def side_by_side(self) -> bool:
        """Whether the output sits right of the content (else over it)."""
        return self.frame.side_by_side

    @property
    def busy(self) -> bool:
        """True while a full re-warp is running."""
        return self.renderer.busy

    def output_layers(self) -> list:
        """The layers drawn in the output frame that are still in the viewer."""
        layers = (self.warped, self.target_points, self.renderer.grid_layer)
        return [layer for layer in layers if layer_present(self.viewer, layer)]

    def set_side_by_side(self, on: bool = True) -> None:
        """Output right of the content (each point set over its own image), or fused over it."""
        shift = self.frame.switch_side_by_side(on)
        if shift is None:
            return
        for layer in self.output_layers():
            translate = np.asarray(layer.translate, float).copy()
            translate[-2:] += shift
            layer.translate = translate
        self.viewer.reset_view()

    def _on_layer_removed(self, event) -> None:
        if self.closed:
            return
        removed = getattr(event, "value", None)
        for role, layer in (("control", self.content_points), ("target", self.target_points)):
            if removed is not None and (removed is layer or removed is _unwrap(layer)):
                self.close()
                self.set_status(
                    f"the {role} points layer was removed: the link to the warp is gone. "
                    "Run the warp again to edit landmarks."
                )
                return

    def set_status(self, text: str) -> None:
        """Set ``status`` and tell ``on_status``."""
        self.status = text
        if self.on_status is not None:
            self.on_status(text)

    # ----------------------------------------------------------------- landmarks
    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Current ``(control, target)`` landmark pairs (content / output pixel (row, col))."""
        return self.points.pairs()

    def active_pairs(self) -> np.ndarray:
        """Boolean mask of the pairs switched on (both points' ``active`` feature)."""
        return self.points.active_pairs()

    def set_pair_active(self, index: int, active: bool, record: bool = True) -> bool:
        """Switch pair ``index`` on or off (off: left out of the fit) and re-warp; undoable."""
        mask = self.active_pairs()
        mask[index] = bool(active)
        self.points.write_active(mask)
        if record:
            self.points.push_history()
        return self.refit(full=True)

    def set_points(
        self,
        control: ArrayLike,
        target: ArrayLike,
        record: bool = True,
        active: ArrayLike | None = None,
    ) -> bool:
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
        self.points.replace(control, target, active)
        if record:
            self.points.push_history()
        return self.refit(full=True)

    def alternate_pairs(self, on: bool = True) -> None:
        """Add pairs by clicking, as affinder does: a point on the content, then where it lands
        in the output, and so on (the layer to click next is made active in add mode)."""
        self.points.alternate_pairs(on)

    @property
    def can_undo(self) -> bool:
        return self.points.history.can_undo

    @property
    def can_redo(self) -> bool:
        return self.points.history.can_redo

    def undo(self) -> bool:
        """Restore the points before the last edit (and re-warp). False if there is none."""
        return self.points.undo()

    def redo(self) -> bool:
        """Re-apply an undone edit. False if there is none."""
        return self.points.redo()

    @property
    def edited(self) -> bool:
        """Whether the user changed the landmarks (points or on/off flags) since the start."""
        return len(self.points.history) > 1

    # ----------------------------------------------------------------- fitting
    def _fit(self, control, target, model=None):
        """The landmark fit through the active pairs, or None with the reason in ``status``."""
        from ..core.landmark_models import fit_landmarks

        mask = self.active_pairs()
        control, target = control[mask], target[mask]
        if len(control) < MIN_PAIRS:
            missing = MIN_PAIRS - len(control)
            self.set_status(
                f"{len(control)} point pairs: add {missing} more (a warp needs {MIN_PAIRS})."
            )
            return None
        try:
            return fit_landmarks(control, target, model or self.fit_model)
        except ValueError as error:
            self.set_status(f"cannot fit the warp: {error}")
            return None

    def pair_status(self, count: int) -> str:
        """The status line for ``count`` pairs: how many are off, and a fit other than TPS."""
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
        self.set_status(self.pair_status(len(control)))
        if full:
            self.renderer.start_full_warp()
        return True

    def set_strength(self, strength: float) -> None:
        """Dose the shown warp from none (0) to the landmarks' full fit (1), and re-warp."""
        from ..core.transforms import check_strength, with_strength

        self.strength = check_strength(strength)
        if self.closed:
            return
        self.transform = with_strength(self.fitted, self.strength)
        self.renderer.start_full_warp()

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

    def inverse_transform(self) -> Transform:
        """Output -> content: the landmarks fitted with their roles swapped (exact for the
        linear fits, the matching TPS otherwise), at the same strength."""
        from ..core.landmark_models import fit_landmarks
        from ..core.transforms import with_strength

        control, target = self.pairs()
        mask = self.active_pairs()
        return with_strength(
            fit_landmarks(target[mask], control[mask], self.fit_model), self.strength
        )

    # ----------------------------------------------------------------- exports (warp_exports)
    def export_bigwarp_csv(self, path: str | Path) -> Path:
        """Write the pairs as a BigWarp landmark CSV (moving = content, target = output)."""
        return warp_exports.export_bigwarp_csv(self, path)

    def import_bigwarp_csv(self, path: str | Path) -> bool:
        """Replace the pairs with a BigWarp landmark CSV's (undoable)."""
        return warp_exports.import_bigwarp_csv(self, path)

    def export_transform_json(self, path: str | Path) -> Path:
        """Write the current transform (``to_dict()``) as JSON."""
        return warp_exports.export_transform_json(self, path)

    def displacement_field(self) -> np.ndarray:
        """``(H, W, 2)`` float32: for each output pixel, content (row, col) minus its own (row, col).

        ``warped[p] = content[p + field[p]]``: where the warp pulls each output pixel from.
        """
        return warp_exports.warp_displacement_field(self)

    def export_displacement_npy(self, path: str | Path) -> Path:
        """Write ``displacement_field()`` as ``.npy`` (the suffix added as ``np.save`` does)."""
        return warp_exports.export_displacement_npy(self, path)

    def apply_to(
        self,
        layer: napari.layers.Layer,
        inverse: bool = False,
        output_shape: tuple[int, int] | None = None,
    ) -> napari.layers.Layer:
        """Warp another Image or Labels layer (its shown slice, in the content's pixel frame)
        with the current transform into a new layer over the output (labels: nearest
        neighbour, zeros outside)."""
        return warp_exports.apply_to(self, layer, inverse, output_shape)

    def session(self) -> dict:
        """Everything needed to rebuild this warp: layers' sources, landmarks, fit, options."""
        return warp_exports.session_of(self)

    # ----------------------------------------------------------------- deformation grid
    def grid_lines(self, lines: int = 12, samples: int = 48) -> list[np.ndarray]:
        """Lines of a regular content grid carried into the output frame (drawn over the
        warped image: where the warp moves each part of the content)."""
        return self.renderer.grid_lines(lines, samples)

    def show_grid(self, visible: bool = True) -> None:
        """Show (or hide) a Shapes layer over the output: the content's regular grid, warped.
        The grid never becomes the active layer (the next drag must still move a point)."""
        self.renderer.show_grid(visible)

    # ----------------------------------------------------------------- teardown
    def retire(self, replaced: bool = True) -> str:
        """Stop this warp and make plain that its layers no longer follow edits
        (``warp_handover.retire``); returns a line for the status."""
        return warp_handover.retire(self, replaced)

    def hand_over(self) -> tuple[str, dict]:
        """Retire this warp for a new one that takes over its layers (``reuse``;
        ``warp_handover.hand_over``); returns a status line and the layers by role."""
        return warp_handover.hand_over(self)

    def close(self) -> None:
        """Stop reacting to point edits (the layers stay)."""
        if self.closed:
            return
        self.closed = True
        self.renderer.stop()  # a warp still running is not shown
        try:
            self.viewer.layers.events.removed.disconnect(self._on_layer_removed)
        except (ValueError, RuntimeError, TypeError):
            pass
        self.points.disconnect(self.renderer.drag_callback)


def start_live_warp(viewer, content_layer, content: LayerImage, transform, warped, **kwargs):
    """Build the live layers for ``transform``: what the widget and ``viewer_api`` both call."""
    return LiveWarp(viewer, content_layer, content, transform, warped, **kwargs)


def _unwrap(layer):
    return getattr(layer, "__wrapped__", layer)
