"""Widget lifecycles: closing the viewer during a run, layer pickers following the layer list."""

import numpy as np
import pytest
from widget_helpers import WAIT_MS
from widget_helpers import tiny as _tiny

from napari_geostyle._widgets.pipeline_widget import GeometricStyleTransferWidget
from napari_geostyle._widgets.texture_widget import TextureTransferWidget
from napari_geostyle._widgets.warp_widget import GeometricWarpWidget


@pytest.mark.slow
def test_closing_the_viewer_during_a_texture_run_stops_it_quietly(geo_viewer, qtbot):
    widget = TextureTransferWidget(geo_viewer)
    geo_viewer.window.add_dock_widget(widget)
    _tiny(widget, iterations=5000)
    run = widget.run()
    worker = run.worker
    qtbot.waitUntil(lambda: run.steps_seen > 0, timeout=WAIT_MS)
    geo_viewer.close()
    # the worker stops long before its 5000 iterations, with no error in a Qt slot
    qtbot.waitUntil(lambda: run.done, timeout=WAIT_MS)
    assert run.cancelled and run.error is None
    assert run.steps_seen < 5000
    assert run._steps is None  # the core generator (and its tensors) is released
    assert not worker.is_running


@pytest.mark.slow
def test_closing_the_viewer_during_a_warp_run_is_quiet(geo_viewer, qtbot):
    widget = GeometricWarpWidget(geo_viewer)
    geo_viewer.window.add_dock_widget(widget)
    widget.model_combo.value = "affine"
    widget.run()
    worker = widget.worker
    finished = []
    worker.finished.connect(lambda: finished.append(True))
    geo_viewer.close()
    qtbot.waitUntil(lambda: bool(finished), timeout=WAIT_MS)
    qtbot.wait(50)
    assert "content warped" not in [layer.name for layer in geo_viewer.layers]


def test_pickers_docked_before_data_choose_distinct_sample_layers(make_napari_viewer_proxy, qtbot):
    from napari_geostyle._sample_data import content_and_style

    viewer = make_napari_viewer_proxy()
    warp = GeometricWarpWidget(viewer)
    texture = TextureTransferWidget(viewer)
    pipeline = GeometricStyleTransferWidget(viewer)
    for widget in (warp, texture, pipeline):
        qtbot.addWidget(widget)
    texture.run()  # nothing to run on yet
    assert texture.status_label.text().startswith("not started")
    for data, kwargs, _kind in content_and_style():  # what File > Open Sample adds
        viewer.add_image(data, **kwargs)
    assert warp.content_combo.layer().name == "content"
    assert warp.style_combo.layer().name == "geometry style"
    assert texture.content_combo.layer().name == "content"
    assert texture.style_rows[0].combo.layer().name == "texture style"
    assert pipeline.content_combo.layer().name == "content"
    assert pipeline.style_combo.layer().name == "geometry style"
    assert pipeline.texture_combo.layer().name == "texture style"
    assert texture.status_label.text() == ""  # the stale "not started" message is gone
    # removing the chosen style moves the picker to another layer, never onto the content
    viewer.layers.remove("geometry style")
    assert warp.style_combo.layer().name == "texture style"
    assert warp.content_combo.layer().name == "content"


@pytest.mark.slow
def test_a_quick_double_click_on_run_does_not_cancel(geo_viewer, qtbot):
    from qtpy.QtCore import Qt

    widget = TextureTransferWidget(geo_viewer)
    qtbot.addWidget(widget)
    widget.show()
    _tiny(widget, iterations=3000)
    qtbot.mouseClick(widget.run_button, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(widget.run_button, Qt.MouseButton.LeftButton)  # the second click
    run = widget.run_state
    assert widget.running and not run.cancelled
    assert widget.run_button.text() == "Cancel"
    from qtpy.QtWidgets import QApplication

    qtbot.wait(QApplication.doubleClickInterval() + 50)
    qtbot.mouseClick(widget.run_button, Qt.MouseButton.LeftButton)  # a real Cancel
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)
    assert run.cancelled
    # a preview may still arrive after the cancel was reported: the message must never claim a
    # kept preview that does not exist
    text = widget.status_label.text()
    if "kept" in text:
        assert run.output is not None
    else:
        assert "before a preview" in text


def test_cancel_before_any_preview_does_not_claim_one_is_kept(geo_viewer, qtbot):
    widget = TextureTransferWidget(geo_viewer)
    qtbot.addWidget(widget)
    _tiny(widget, iterations=3000)
    run = widget.run()
    widget.cancel()  # at once: the worker has not shown anything
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)
    assert run.output is None
    assert "kept" not in widget.status_label.text()
    assert "content textured" not in geo_viewer.layers


@pytest.mark.slow
def test_geometric_style_transfer_never_overwrites_user_layers(geo_viewer, qtbot):
    mine = np.full((64, 64), 7, np.uint8)
    geo_viewer.add_image(mine, name="content warped")  # e.g. edited by hand
    points = geo_viewer.add_points([[5.0, 5.0]], name="my points")
    widget = GeometricStyleTransferWidget(geo_viewer)
    qtbot.addWidget(widget)
    widget.content_combo.set_layer("content")
    widget.style_combo.set_layer("style")
    _tiny(widget)
    widget.model_combo.value = "affine"
    run = widget.run()
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)
    assert run.error is None, run.error
    np.testing.assert_array_equal(geo_viewer.layers["content warped"].data, mine)
    assert "geostyle" not in geo_viewer.layers["content warped"].metadata
    assert geo_viewer.layers["content warped [2]"].metadata["geostyle"]["stage"] == "warp"
    names = [layer.name for layer in geo_viewer.layers]
    # the new images sit under the points layer: they never hide landmarks
    assert names.index("content geostyle") < names.index("my points")
    assert names.index("content warped [2]") < names.index("my points")
    assert points.name == "my points"


@pytest.mark.slow
def test_texture_keeps_gray_uint16_content_gray_and_names_the_slice(
    make_napari_viewer_proxy, qtbot
):
    viewer = make_napari_viewer_proxy()
    rng = np.random.default_rng(0)
    stack = (rng.random((3, 64, 64)) * 4000 + 1000).astype(np.uint16)
    viewer.add_image(stack, name="cells", contrast_limits=(1000, 5000))
    viewer.add_image(rng.integers(0, 255, (64, 64, 3), np.uint8), name="texture style", rgb=True)
    viewer.dims.set_point(0, 2)
    widget = TextureTransferWidget(viewer)
    qtbot.addWidget(widget)
    _tiny(widget)
    run = widget.run()
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)
    assert run.error is None, run.error
    layer = viewer.layers["cells textured (slice 2)"]
    assert layer.data.dtype == np.uint16 and layer.data.ndim == 2
    assert 1000 <= layer.data.min() and layer.data.max() <= 5000
    np.testing.assert_allclose(layer.contrast_limits, (1000, 5000))
    # asking for colour (the style has colour) gives colour
    widget.color_output_check.value = True
    run = widget.run()
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)
    assert viewer.layers[run.output_name].data.shape[-1] == 3
    assert run.output_name == "cells textured (slice 2) [2]"


@pytest.mark.slow
def test_texture_widget_shows_progress_in_itself(geo_viewer, qtbot):
    widget = TextureTransferWidget(geo_viewer)
    qtbot.addWidget(widget)
    _tiny(widget, iterations=40)
    seen = []
    widget.progress_bar.valueChanged.connect(
        lambda value: seen.append(widget.progress_bar.format())
    )
    widget.run()
    assert not widget.progress_bar.isHidden()
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)
    assert any("level 1/1, iteration" in text for text in seen), seen
    assert widget.progress_bar.isHidden()
