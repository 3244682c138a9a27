"""The live warp's paired Points layers: their point numbers (``_napari/paired_points.py``)."""

from __future__ import annotations

import numpy as np

from napari_geostyle._napari.layer_data import read_layer_image
from napari_geostyle._napari.live_warp import start_live_warp
from napari_geostyle._napari.paired_points import MAX_NUMBERED_POINTS


def _grid(side: int) -> np.ndarray:
    rows, cols = np.meshgrid(np.linspace(4, 60, side), np.linspace(4, 60, side), indexing="ij")
    return np.stack([rows.ravel(), cols.ravel()], 1)


def test_numbers_are_drawn_for_a_few_pairs_and_hidden_for_a_dense_grid(geo_viewer, qtbot):
    from napari_geostyle import fit_tps, warp_image

    layer = geo_viewer.layers["content"]
    content = read_layer_image(layer, geo_viewer)
    few = _grid(3)
    transform = fit_tps(few, few + [0.0, 2.0])
    live = start_live_warp(geo_viewer, layer, content, transform,
                           warp_image(content.raw, transform), inputs={"content": "content"},
                           options={"model": "tps"})  # fmt: skip
    qtbot.waitUntil(lambda: not live.busy, timeout=20000)
    assert all(points.text.visible for points in live.points.layers)
    dense = _grid(9)  # a hinted estimate's 9 x 9 control grid: numbers would cover the image
    assert len(dense) > MAX_NUMBERED_POINTS
    live.set_points(dense, dense + [1.0, 0.0])
    qtbot.waitUntil(lambda: not live.busy, timeout=20000)
    assert not any(points.text.visible for points in live.points.layers)
    live.set_points(few, few + [0.0, 1.0])
    qtbot.waitUntil(lambda: not live.busy, timeout=20000)
    assert all(points.text.visible for points in live.points.layers)
