"""Sample data: a face photo, an ink drawing of a differently shaped head, and a texture style.

Made on the fly from images that scikit-image bundles, so nothing is downloaded and nothing
extra ships in the wheel:

- ``content``: the face of scikit-image's ``astronaut`` (Eileen Collins, NASA; public domain),
  rows 0-240, columns 100-340 of the 512 x 512 photo.
- ``geometry style``: the same face crop reshaped by a strong smooth warp (tilted by 14 degrees,
  12% taller, 22% narrower, and narrower still toward the chin), then drawn as a posterised ink
  drawing (made here; it carries the astronaut photo's public-domain status). The geometric
  warp gives the content this head's shape: tilted, long and narrow.
- ``texture style``: scikit-image's ``brick`` (from CC0Textures, CC0).

Because the drawing is the content under a known warp, :func:`style_sampling_map` gives, for
each pixel of the drawing, the content pixel it was drawn from: the exact answer a geometric
warp should find (the tests measure the shipped networks against it).
"""

from __future__ import annotations

import numpy as np

CROP = (slice(0, 240), slice(100, 340))  # the astronaut's face, rows and columns
HEAD_CENTRE = (105.0, 122.0)  # (row, col) in the crop: the warp turns and squeezes about it
HEAD_RADII = (95.0, 75.0)  # the head (hair to chin, ear to ear) as an ellipse, same frame
TILT_DEGREES = 14.0
TALLER = 1.12
NARROWER = 0.78
CHIN_NARROWING = 0.18  # extra narrowing at the chin (0 at the head's centre and above)
SAMPLE_GAP = 0.25  # space between the sample layers, a fraction of the content's size


def face_content() -> np.ndarray:
    """``(240, 240, 3)`` uint8: the face of scikit-image's ``astronaut``."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[CROP])


def style_sampling_map(shape=(240, 240)) -> np.ndarray:
    """``(H, W, 2)`` float64: for each pixel of the geometry style, the content ``(row, col)`` it
    was drawn from (the ground truth of the content -> style warp, in ``warp_image``'s sense:
    ``style ~ content[map]``)."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    offset = np.stack([rows - HEAD_CENTRE[0], cols - HEAD_CENTRE[1]], -1)
    angle = np.deg2rad(TILT_DEGREES)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    offset = offset @ rotation.T
    below_centre = np.clip(offset[..., 0] / HEAD_RADII[0], 0.0, 1.0)
    width = NARROWER * (1.0 - CHIN_NARROWING * below_centre**2)
    content_rows = offset[..., 0] / TALLER + HEAD_CENTRE[0]
    content_cols = offset[..., 1] / width + HEAD_CENTRE[1]
    return np.stack([content_rows, content_cols], -1)


def ink_drawing(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` uint8: ``image`` (RGB uint8) as four flat grey tones with dark ink outlines."""
    from scipy import ndimage
    from skimage import color, feature, filters

    gray = color.rgb2gray(image)
    tones = np.array([90, 150, 205, 250])[np.digitize(filters.gaussian(gray, 2.0),
                                                      [0.3, 0.55, 0.75])]  # fmt: skip
    outlines = feature.canny(gray, sigma=3.0, low_threshold=0.04, high_threshold=0.10)
    return np.where(ndimage.binary_dilation(outlines), 25, tones).astype(np.uint8)


def geometry_style() -> np.ndarray:
    """``(240, 240)`` uint8: the face crop under :func:`style_sampling_map`, as an ink drawing."""
    from scipy import ndimage

    content = face_content()
    where = style_sampling_map(content.shape[:2]).transpose(2, 0, 1)
    warped = np.stack(
        [ndimage.map_coordinates(content[..., channel].astype(float), where, order=1,
                                 mode="nearest") for channel in range(3)],
        -1,
    )  # fmt: skip
    return ink_drawing(np.clip(np.round(warped), 0, 255).astype(np.uint8))


def content_and_style():
    """Layer data tuples: ``content`` (a face photo), ``geometry style`` (an ink drawing of a
    tilted, longer, narrower head) and ``texture style`` (brick); see the module docstring for
    their sources and licences."""
    from skimage import data

    content, geometry, texture = face_content(), geometry_style(), data.brick()
    # Laid out so that none hides another: the geometry style left of the content, the texture
    # style under both, and the right of the content free for the warp's output (side by
    # side). The gaps leave room for control points that reach past an image's edge.
    height, width = content.shape[:2]
    gap = SAMPLE_GAP * max(height, width)
    style_left = -(geometry.shape[1] + gap)
    below = max(height, geometry.shape[0]) + gap
    _fit_view_once_added()
    return [
        (content, {"name": "content", "rgb": True}, "image"),
        (geometry, {"name": "geometry style", "colormap": "gray", "translate": (0.0, style_left)},
         "image"),
        (texture, {"name": "texture style", "colormap": "gray", "translate": (below, style_left)},
         "image"),
    ]  # fmt: skip


def _fit_view_once_added() -> None:
    """napari fits the view to the first layer a sample adds (the content alone): once the
    menu has added all three, fit it to all of them, so each sample is seen at once. Nothing
    happens without a viewer and a Qt application (scripts, tests)."""
    import weakref

    try:
        import napari
        from qtpy.QtCore import QTimer
        from qtpy.QtWidgets import QApplication
    except ImportError:  # pragma: no cover - napari is a dependency
        return
    viewer = napari.current_viewer()
    if viewer is None or QApplication.instance() is None:
        return
    viewer_ref = weakref.ref(viewer)

    def fit() -> None:
        shown = viewer_ref()
        if shown is not None and len(shown.layers):
            shown.reset_view()

    QTimer.singleShot(0, fit)
