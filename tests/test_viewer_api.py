"""napari_geostyle.viewer_api: the console / notebook interface to the live layers."""

import numpy as np
import pytest

from napari_geostyle import viewer_api

WAIT_MS = 60000


def _wait_finished(qtbot, worker):
    """Wait until the run's result handlers (main thread) are done."""
    qtbot.waitUntil(lambda: worker.geostyle_run.done, timeout=WAIT_MS)


@pytest.mark.slow
def test_add_warp_returns_the_live_layers(geo_viewer, qtbot):
    live = viewer_api.add_warp(geo_viewer, "content", geo_viewer.layers["style"], model="affine")
    assert live.warped.name == "content warped" and live.warped in geo_viewer.layers
    assert live.content_points.name == "content control points"
    assert live.target_points.name == "content target points"
    assert len(live.content_points.data) == len(live.target_points.data) >= 3
    assert live.warped.metadata["geostyle"]["options"]["model"] == "affine"
    # the same live wiring as the widget: editing a target point re-warps
    before = np.array(live.warped.data, float)
    moved = np.array(live.target_points.data)
    moved[0] += [5.0, 5.0]
    live.target_points.data = moved
    qtbot.waitUntil(lambda: not live.busy, timeout=WAIT_MS)
    assert not np.array_equal(np.asarray(live.warped.data, float), before)


def test_wrong_layer_choices_are_clear_value_errors(geo_viewer):
    geo_viewer.add_labels(np.zeros((64, 64), np.uint8), name="labels")
    with pytest.raises(ValueError, match="no layer named 'nope'.*content"):
        viewer_api.add_warp(geo_viewer, "nope", "style")
    with pytest.raises(ValueError, match="Labels layer"):
        viewer_api.add_warp(geo_viewer, "content", "labels")
    with pytest.raises(ValueError, match="same layer"):
        viewer_api.add_warp(geo_viewer, "content", "content")
    with pytest.raises(ValueError, match="model must be one of"):
        viewer_api.add_warp(geo_viewer, "content", "style", model="spline")
    with pytest.raises(ValueError, match="texture style"):
        viewer_api.start_texture_transfer(geo_viewer, "content", "labels")
    # bad options fail in the caller, not later in the worker as a notification
    with pytest.raises(ValueError, match="levels"):
        viewer_api.start_texture_transfer(geo_viewer, "content", "style", levels=0)
    with pytest.raises(ValueError, match="style_weights"):
        viewer_api.start_geometric_style_transfer(
            geo_viewer, "content", "style", style_weights=[1, 2]
        )


def test_start_texture_transfer_result_lands_in_a_layer(geo_viewer, qtbot):
    worker = viewer_api.start_texture_transfer(
        geo_viewer,
        geo_viewer.layers["content"],
        "style",
        size=32,
        levels=1,
        iterations=2,
        backbone="random",
        device="cpu",
    )
    _wait_finished(qtbot, worker)
    layer = geo_viewer.layers["content textured"]
    assert layer.metadata["geostyle"]["complete"] is True
    assert layer.metadata["geostyle"]["options"]["iterations"] == 2


@pytest.mark.slow
def test_start_geometric_style_transfer_makes_warped_and_result_layers(geo_viewer, qtbot):
    worker = viewer_api.start_geometric_style_transfer(
        geo_viewer,
        "content",
        "style",
        model="affine",
        size=32,
        levels=1,
        iterations=2,
        backbone="random",
        device="cpu",
    )
    _wait_finished(qtbot, worker)
    assert "content warped" in geo_viewer.layers
    record = geo_viewer.layers["content geostyle"].metadata["geostyle"]
    assert record["inputs"]["texture_style"] == "style" and record["complete"] is True


def test_opening_a_widget_binds_geostyle_in_the_console(geo_viewer, qtbot, monkeypatch):
    import napari

    from napari_geostyle._widgets.warp_widget import GeometricWarpWidget

    pushed = []
    original = napari.Viewer.update_console

    def recording_update_console(self, variables):
        pushed.append(variables)
        return original(self, variables)

    monkeypatch.setattr(napari.Viewer, "update_console", recording_update_console)
    widget = GeometricWarpWidget(geo_viewer)
    qtbot.addWidget(widget)
    assert pushed and pushed[-1]["geostyle"] is viewer_api


def test_layers_are_read_as_the_user_sees_them(make_napari_viewer_proxy):
    from napari.utils.notifications import notification_manager

    from napari_geostyle._napari.layer_data import read_layer_image

    viewer = make_napari_viewer_proxy()
    gray = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    layer = viewer.add_image(gray, contrast_limits=(1000, 2000))
    image = read_layer_image(layer, viewer)
    assert image.raw.dtype == np.uint16  # what a warp transforms
    assert image.normalized[0, 0] == 0.0 and image.normalized[-1, -1] == 1.0
    np.testing.assert_allclose(image.normalized[23, 28], (23 * 64 + 28 - 1000) / 1000, atol=1e-6)

    before = len(notification_manager.records)
    levels = [
        np.zeros((256, 256), np.float32),
        np.zeros((128, 128), np.float32),
        np.zeros((64, 64), np.float32),
    ]
    pyramid = viewer.add_image(levels, multiscale=True, contrast_limits=(0, 1))
    image = read_layer_image(pyramid, viewer, max_pixels=128 * 128)
    assert image.shape == (128, 128) and image.level == 1 and image.stride == 2
    assert "level 1" in str(notification_manager.records[-1].message)

    big = viewer.add_image(np.zeros((300, 200), np.float32))
    image = read_layer_image(big, viewer, max_pixels=100 * 100)
    assert image.stride == 3 and image.shape == (100, 67)
    assert len(notification_manager.records) >= before + 2

    stack = viewer.add_image(np.stack([np.full((32, 32), i, np.float32) for i in range(4)]))
    viewer.dims.set_current_step(0, 2)
    image = read_layer_image(stack, viewer)
    assert image.slice_index == (2,) and image.raw.max() == 2
