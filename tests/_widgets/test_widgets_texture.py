"""Texture Transfer and Geometric Style Transfer widgets: threaded runs, live layers, cancel."""

import numpy as np
import pytest
from widget_helpers import WAIT_MS
from widget_helpers import tiny as _tiny

from napari_geostyle._widgets.pipeline_widget import GeometricStyleTransferWidget
from napari_geostyle._widgets.texture_widget import TextureTransferWidget


def test_texture_run_makes_a_layer_with_provenance(geo_viewer, qtbot):
    widget = TextureTransferWidget(geo_viewer)
    qtbot.addWidget(widget)
    assert widget.content_combo.layer().name == "content"
    assert widget.style_rows[0].combo.layer().name == "style"
    _tiny(widget)
    run = widget.run()
    assert widget.run_button.text() == "Cancel"
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)
    assert run.error is None, run.error
    assert widget.run_button.text() == "Run"
    layer = geo_viewer.layers["content textured"]
    # the content's kind: uint8 RGB in, uint8 RGB out
    assert layer.data.dtype == np.uint8 and layer.data.shape == (32, 32, 3)
    assert layer.data.max() > layer.data.min()
    # placed over the 64 px content although computed at 32 px
    np.testing.assert_allclose(layer.scale, (2.0, 2.0))
    record = layer.metadata["geostyle"]
    assert record["stage"] == "texture" and record["complete"] is True
    assert record["inputs"] == {"content": "content", "texture_style": ["style"]}
    assert record["options"]["backbone"] == "random"
    assert record["backbone"] == "random"  # the network that ran, not just the option
    assert "seeded random VGG-19" in widget.status_label.text()


@pytest.mark.slow
def test_cancel_keeps_the_last_preview(geo_viewer, qtbot):
    widget = TextureTransferWidget(geo_viewer)
    qtbot.addWidget(widget)
    _tiny(widget, iterations=2000)
    run = widget.run()
    qtbot.waitUntil(lambda: "content textured" in geo_viewer.layers, timeout=WAIT_MS)
    # a click within the double-click interval of Run is the rest of a double click, not a
    # Cancel (see test_widgets_lifecycle): click once that interval is over
    from qtpy.QtWidgets import QApplication

    qtbot.wait(QApplication.doubleClickInterval() + 100)
    widget.run_or_cancel()  # the Run button reads "Cancel" while running
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)
    assert run.cancelled and run.error is None
    assert run.steps_seen < 2000
    record = geo_viewer.layers["content textured"].metadata["geostyle"]
    assert record["cancelled"] is True and record["complete"] is False
    assert widget.run_button.text() == "Run"
    assert "cancelled" in widget.status_label.text()


def test_bad_input_is_an_error_notification(make_napari_viewer_proxy, qtbot):
    from napari.utils.notifications import notification_manager

    viewer = make_napari_viewer_proxy()
    viewer.add_image(np.zeros((8, 8), np.float32), name="tiny")
    viewer.add_image(np.ones((64, 64), np.float32), name="style")
    widget = TextureTransferWidget(viewer)
    qtbot.addWidget(widget)
    widget.content_combo.set_layer("tiny")
    widget.style_rows[0].combo.set_layer("style")
    _tiny(widget)
    before = len(notification_manager.records)
    widget.run()
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)
    messages = [str(n.message) for n in notification_manager.records[before:]]
    assert any("8" in m and "GeoStyle texture" in m for m in messages), messages
    assert "tiny textured" not in viewer.layers


@pytest.mark.slow
def test_content_defaults_to_latest_warped_layer_and_styles_can_be_added(geo_viewer, qtbot):
    geo_viewer.add_image(
        np.zeros((64, 64)), name="content warped", metadata={"geostyle": {"stage": "warp"}}
    )
    geo_viewer.add_image(np.zeros((64, 64)), name="later")
    widget = TextureTransferWidget(geo_viewer)
    qtbot.addWidget(widget)
    assert widget.content_combo.layer().name == "content warped"
    widget.add_style_row("content")
    assert len(widget.style_rows) == 2
    assert widget.options()["preset"] == "fast"
    widget._remove_style_row(widget.style_rows[1])
    assert len(widget.style_rows) == 1


def test_backbone_state_is_reported(geo_viewer, qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("GEOSTYLE_VGG19_WEIGHTS", str(tmp_path / "missing.pth"))
    monkeypatch.setenv("GEOSTYLE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    widget = TextureTransferWidget(geo_viewer)
    qtbot.addWidget(widget)
    # without VGG-19 the installed ImageNet network runs; VGG-19 is offered as an upgrade
    assert "EfficientNet-Lite0" in widget.backbone_label.value
    assert not widget.fetch_button.native.isHidden()
    assert "Upgrade" in widget.fetch_button.text
    assert "efficientnet" in widget.backbone_combo.choices


@pytest.mark.slow
def test_geometric_style_transfer_widget_runs_both_stages(geo_viewer, qtbot):
    widget = GeometricStyleTransferWidget(geo_viewer)
    qtbot.addWidget(widget)
    _tiny(widget)
    widget.model_combo.value = "affine"
    run = widget.run()
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)
    assert run.error is None, run.error
    warped = geo_viewer.layers["content warped"]
    assert warped.data.shape == (64, 64, 3)
    result = geo_viewer.layers["content geostyle"]
    record = result.metadata["geostyle"]
    assert record["stage"] == "geometric style" and record["complete"] is True
    assert record["inputs"]["geometry_style"] == "style"
    assert record["transform"]["type"] == "affine"


@pytest.mark.slow
def test_cancel_stops_a_long_refinement_in_the_pipeline(geo_viewer, qtbot, monkeypatch):
    from napari_geostyle.core import estimate

    # a refinement far longer than the test: only Cancel can end it in time
    monkeypatch.setitem(estimate.REFINE, "affine_iterations", 100000)
    widget = GeometricStyleTransferWidget(geo_viewer)
    qtbot.addWidget(widget)
    _tiny(widget)
    widget.model_combo.value = "affine"
    widget.method_combo.value = "refine"
    run = widget.run()
    qtbot.waitUntil(lambda: run.monitor.stage == "refining", timeout=WAIT_MS)
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)
    assert run.cancelled and run.error is None
    assert run.monitor.done < 1000  # stopped at its next step, not run to the end
    assert widget.run_button.text() == "Run"
    assert not widget.status_label.text().startswith("failed")
    assert "content geostyle" not in geo_viewer.layers
