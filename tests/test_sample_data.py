"""The 'content + style' sample: three named image layers, also through napari's sample menu."""

import numpy as np

from napari_geostyle._sample_data import content_and_style


def test_sample_is_three_named_image_layer_tuples():
    layers = content_and_style()
    names = [meta["name"] for _, meta, _ in layers]
    assert names == ["content", "geometry style", "texture style"]
    assert all(kind == "image" for _, _, kind in layers)
    content, geometry, texture = (data for data, _, _ in layers)
    assert content.ndim == 3 and content.shape[2] == 3 and content.dtype == np.uint8
    assert geometry.ndim == 2 and set(np.unique(geometry)) == {0, 255}
    assert texture.ndim == 2 and texture.std() > 10


def test_sample_opens_in_napari(make_napari_viewer_proxy):
    viewer = make_napari_viewer_proxy()
    viewer.open_sample("napari-geostyle", "content_style")
    assert [layer.name for layer in viewer.layers] == ["content", "geometry style", "texture style"]
    assert viewer.layers["content"].rgb
