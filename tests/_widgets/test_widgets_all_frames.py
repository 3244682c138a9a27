""" "All frames" mode of the Texture Transfer and Geometric Style Transfer widgets on a tiny stack."""

import numpy as np
import pytest
from widget_helpers import WAIT_MS
from widget_helpers import tiny as _tiny

from napari_geostyle._widgets.pipeline_widget import GeometricStyleTransferWidget
from napari_geostyle._widgets.texture_widget import TextureTransferWidget


def _stack(content_image) -> np.ndarray:
    """Three RGB frames: the content shifted a little more each time."""
    return np.stack([np.roll(content_image, 3 * t, axis=1) for t in range(3)])


def test_checkbox_is_offered_only_for_a_stack(geo_viewer, content_image, qtbot):
    widget = TextureTransferWidget(geo_viewer)
    qtbot.addWidget(widget)
    assert widget.content_combo.layer().name == "content"
    assert widget.all_frames_check.native.isHidden()  # a 2D RGB image has no frames
    widget.all_frames_check.value = True
    assert not widget.all_frames()
    geo_viewer.add_image(_stack(content_image), name="film", rgb=True)
    widget.content_combo.set_layer("film")
    assert not widget.all_frames_check.native.isHidden() and widget.all_frames()


def test_texture_all_frames_fills_a_stack_layer(geo_viewer, content_image, qtbot):
    film = geo_viewer.add_image(
        _stack(content_image),
        name="film",
        rgb=True,
        scale=(2.0, 1.0, 1.0),
        translate=(5.0, 0.0, 0.0),
    )
    widget = TextureTransferWidget(geo_viewer)
    qtbot.addWidget(widget)
    widget.content_combo.set_layer(film)
    widget.style_rows[0].combo.set_layer("style")
    _tiny(widget)
    widget.all_frames_check.value = True
    shown, show = [], widget._show_progress

    def progress(done, total, text):
        shown.append(text)
        show(done, total, text)

    widget._show_progress = progress
    run = widget.run()
    assert widget.run_button.text() == "Cancel"
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)
    assert run.error is None, run.error
    layer = geo_viewer.layers["film textured"]
    # one layer for the stack, the content's kind (uint8 RGB), every frame filled in
    assert layer.data.shape == (3, 32, 32, 3) and layer.data.dtype == np.uint8
    assert all(layer.data[t].max() > layer.data[t].min() for t in range(3))
    assert not np.array_equal(layer.data[0], layer.data[2])
    # the frame axis keeps the content's placement; the 32 px result covers the 64 px content
    np.testing.assert_allclose(layer.scale, (2.0, 2.0, 2.0))
    np.testing.assert_allclose(layer.translate, (5.0, 0.5, 0.5))
    record = layer.metadata["geostyle"]
    assert record["complete"] is True and record["frames"] == record["frames_done"] == 3
    assert record["options"]["all_frames"] is True
    assert shown[0].startswith("frame 1/3") and shown[-1].startswith("frame 3/3"), shown
    assert widget.status_label.text() == "done: 'film textured'"


@pytest.mark.slow
def test_cancel_keeps_the_finished_frames(geo_viewer, content_image, qtbot):
    film = geo_viewer.add_image(_stack(content_image), name="film", rgb=True)
    widget = TextureTransferWidget(geo_viewer)
    qtbot.addWidget(widget)
    widget.content_combo.set_layer(film)
    _tiny(widget, iterations=2000)
    widget.all_frames_check.value = True
    run = widget.run()
    qtbot.waitUntil(lambda: "film textured" in geo_viewer.layers, timeout=WAIT_MS)
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)
    assert run.cancelled and run.error is None and run.frames_done == 0
    record = geo_viewer.layers["film textured"].metadata["geostyle"]
    assert record["complete"] is False and record["cancelled"] is True
    assert "0 of 3 frames" in widget.status_label.text()


@pytest.mark.slow
def test_pipeline_all_frames_uses_one_geometry(geo_viewer, content_image, style_image, qtbot):
    geo_viewer.add_image(_stack(content_image), name="film", rgb=True)
    widget = GeometricStyleTransferWidget(geo_viewer)
    qtbot.addWidget(widget)
    widget.content_combo.set_layer("film")
    widget.style_combo.set_layer("style")
    widget.model_combo.value = "affine"
    _tiny(widget)
    widget.all_frames_check.value = True
    run = widget.run()
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)
    assert run.error is None, run.error
    layer = geo_viewer.layers["film geostyle"]
    assert layer.data.shape == (3, 32, 32, 3)
    record = layer.metadata["geostyle"]
    assert record["transform"]["type"] == "affine"
    assert record["options"]["model"] == "affine" and record["complete"] is True
