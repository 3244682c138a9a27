"""Where a live warp's layers sit in the world: the content's frame and the output's frame.

The output frame (warped image, target points, deformation grid) lies on the content or, side
by side, right of it with a gap, so that each point set is drawn over its own image. A strided
read of the content (``LayerImage.stride``) scales both frames, so every layer lines up with the
content layer at full resolution.
"""

from __future__ import annotations

import numpy as np

from .layer_data import layer_present, spatial_scale_translate

SIDE_GAP = 0.1  # side by side: gap between content and output, a fraction of the width


class WarpFrame:
    """The content's and the output's placement (scale, translate) for a live warp.

    Parameters
    ----------
    content_layer : napari.layers.Image
        The content's layer: its scale and translate place every layer of the warp.
    content_shape : tuple of int
        ``(H, W)`` of the content as read (maybe strided).
    stride : int
        The read's pixel stride.
    control, target : numpy.ndarray
        The first landmarks, ``(N, 2)`` ``(row, col)``: the side-by-side gap leaves room for
        points past the images' edges.
    side_by_side : bool
        Output right of the content, rather than over it.
    """

    def __init__(
        self,
        content_layer,
        content_shape: tuple[int, int],
        stride: int,
        control: np.ndarray,
        target: np.ndarray,
        side_by_side: bool,
    ) -> None:
        self.content_shape = tuple(int(n) for n in content_shape[:2])
        self.rgb = bool(content_layer.rgb)
        scale, translate = spatial_scale_translate(content_layer)
        self.scale = scale * stride
        # a strided pixel p sits at full-resolution (p + 0.5) * stride - 0.5
        self.translate = translate + scale * (stride - 1) / 2.0
        self.lead_scale = np.asarray(content_layer.scale, float)[:-2]
        self.lead_translate = np.asarray(content_layer.translate, float)[:-2]
        self.side_by_side = bool(side_by_side)
        self.point_size = max(3.0, min(self.content_shape) / 40.0)
        # the output's shift (world units) when side by side: one content width and a gap
        self.side_offset = np.array([0.0, self._side_gap_offset(control, target)])

    def _side_gap_offset(self, control: np.ndarray, target: np.ndarray) -> float:
        """The output's column shift, side by side: the content's width and a gap of at least
        ``SIDE_GAP`` of it, wide enough that control points past the content's right edge and
        target points past the output's left edge (a network TPS's knots) stay nearer their
        own image than the other, a point's width apart: each set over its own image."""
        width = self.content_shape[1]
        radius = self.point_size / 2.0
        reach_right = reach_left = 0.0
        if len(control):
            reach_right = max(0.0, float(np.max(control[:, -1])) + radius - (width - 0.5))
        if len(target):
            reach_left = max(0.0, -0.5 - (float(np.min(target[:, -1])) - radius))
        gap = max(SIDE_GAP * width, 2.0 * max(reach_right, reach_left) + self.point_size)
        return float((width + gap) * self.scale[1])

    def output_translate(self) -> np.ndarray:
        """Where the output frame's pixel (0, 0) sits: on the content, or right of it."""
        return self.translate + (self.side_offset if self.side_by_side else 0.0)

    def image_placement(self, data) -> dict:
        """``scale`` and ``translate`` of an output image ``data`` (2D, or with the content
        layer's leading axes)."""
        lead = np.ndim(data) - (3 if self.rgb else 2)
        translate = self.output_translate()
        if lead > 0 and len(self.lead_scale) == lead:
            return {
                "scale": np.concatenate([self.lead_scale, self.scale]),
                "translate": np.concatenate([self.lead_translate, translate]),
            }
        return {"scale": self.scale, "translate": translate}

    def switch_side_by_side(self, on: bool) -> np.ndarray | None:
        """Switch side by side ``on`` or off; the shift to add to the output layers' translate
        (``None`` when nothing changes)."""
        on = bool(on)
        if on == self.side_by_side:
            return None
        self.side_by_side = on
        return self.side_offset if on else -self.side_offset

    def on_the_other_image(self, points: np.ndarray, on_content: bool) -> np.ndarray:
        """Side by side, which of ``points`` (``(N, 2)`` in a points layer's own pixel frame:
        the content's, ``on_content``, else the output's) lie over the other image."""
        shift = self.side_offset[-1] / self.scale[-1]  # output frame -> content frame, px
        other = points[:, 1] - shift if on_content else points[:, 1] + shift
        height, width = self.content_shape
        return (
            (points[:, 0] >= -0.5) & (points[:, 0] <= height - 0.5)
            & (other >= -0.5) & (other <= width - 0.5)
        )  # fmt: skip


def display_like(layer) -> dict:
    """The look of a gray layer (contrast limits, colormap) for a layer shown like it."""
    if layer.rgb:
        return {}
    return {"contrast_limits": tuple(layer.contrast_limits), "colormap": layer.colormap.name}


def place(layer, scale, translate) -> None:
    """Set a layer's scale and translate where they change (each set redraws the layer)."""
    for key, value in (("scale", scale), ("translate", translate)):
        current = np.asarray(getattr(layer, key), float)
        value = np.asarray(value, float)
        if current.shape != value.shape or not np.allclose(current, value, rtol=0, atol=1e-9):
            setattr(layer, key, value)


def activate(viewer, layer) -> None:
    """Make ``layer`` the active one, in select mode for points (a drag moves a point)."""
    from napari.layers import Points

    if layer_present(viewer, layer):
        if isinstance(layer, Points):
            layer.mode = "select"
        viewer.layers.selection.active = layer


def present(viewer, layer) -> bool:
    """Whether ``layer`` is set and still in ``viewer``."""
    return layer is not None and layer_present(viewer, layer)
