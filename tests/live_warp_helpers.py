"""A live warp to test on, shared by the glue and widget tests (importable as
``live_warp_helpers``: ``tests/`` is on sys.path, as for ``fuzzing``)."""

import numpy as np

from napari_geostyle._napari.layer_data import read_layer_image
from napari_geostyle._napari.live_warp import start_live_warp


def start_tps_warp(viewer, name="content", **kwargs):
    """A live TPS warp of layer ``name`` through nine landmarks moved 3 px right."""
    from napari_geostyle import fit_tps, warp_image

    layer = viewer.layers[name]
    content = read_layer_image(layer, viewer)
    rows, cols = np.meshgrid(np.linspace(8, 56, 3), np.linspace(8, 56, 3), indexing="ij")
    control = np.stack([rows.ravel(), cols.ravel()], 1)
    transform = fit_tps(control, control + [0.0, 3.0])
    return start_live_warp(
        viewer,
        layer,
        content,
        transform,
        warp_image(content.raw, transform),
        inputs={"content": name},
        options={"model": "tps"},
        **kwargs,
    )
