"""The 'content + style' sample: three named image layers (also through napari's sample menu),
and a geometry style whose shape the shipped networks visibly give the content."""

import numpy as np
import pytest

from napari_geostyle._sample_data import (
    HEAD_CENTRE,
    HEAD_RADII,
    content_and_style,
    style_sampling_map,
)


def _head_pixels(shape):
    """Style pixels (row, col) whose ground-truth content pixel lies on the head, and that
    content pixel."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    style_points = np.stack([rows.ravel(), cols.ravel()], 1).astype(float)
    content_points = style_sampling_map(shape).reshape(-1, 2)
    on_head = (((content_points - HEAD_CENTRE) / HEAD_RADII) ** 2).sum(1) < 1.0
    return style_points[on_head], content_points[on_head]


def test_sample_is_three_named_image_layer_tuples():
    layers = content_and_style()
    names = [meta["name"] for _, meta, _ in layers]
    assert names == ["content", "geometry style", "texture style"]
    assert all(kind == "image" for _, _, kind in layers)
    content, geometry, texture = (data for data, _, _ in layers)
    assert content.shape == (240, 240, 3) and content.dtype == np.uint8
    assert content.std() > 30  # a photo, not a flat image
    # an ink drawing: dark outlines over a few flat grey tones
    assert geometry.shape == (240, 240) and geometry.dtype == np.uint8
    values, counts = np.unique(geometry, return_counts=True)
    assert len(values) <= 5 and values.min() < 50 and values.max() > 200
    assert 0.02 < counts[values.argmin()] / geometry.size < 0.3
    assert texture.ndim == 2 and texture.std() > 10
    np.testing.assert_array_equal(content_and_style()[1][0], geometry)  # the same every time


def test_the_style_has_a_visibly_different_head_shape():
    style_points, content_points = _head_pixels((240, 240))
    moved = np.linalg.norm(content_points - style_points, axis=1)
    assert len(moved) > 0.3 * 240 * 240  # the head fills a good part of the drawing
    assert moved.mean() > 10.0  # pixels: plainly visible at 240 px


@pytest.mark.shipped_models
def test_the_shipped_networks_give_the_content_the_style_shape():
    from napari_geostyle import estimate_warp

    (content, _, _), (geometry, _, _), _ = content_and_style()
    transform = estimate_warp(content, geometry, device="cpu")  # the demo's defaults
    style_points, content_points = _head_pixels(geometry.shape)
    before = np.linalg.norm(style_points - content_points, axis=1).mean()  # no warp
    after = np.linalg.norm(transform.sample_points(style_points) - content_points, axis=1).mean()
    # measured: 15.4 px -> 5.5 px (1 torch thread) or 6.0 px (2); affine: 2.7 px, refine: 1.4-1.6
    assert after < 0.5 * before, (before, after)


@pytest.mark.slow
def test_sample_opens_in_napari(make_napari_viewer_proxy):
    viewer = make_napari_viewer_proxy()
    viewer.open_sample("napari-geostyle", "content_style")
    assert [layer.name for layer in viewer.layers] == ["content", "geometry style", "texture style"]
    assert viewer.layers["content"].rgb
