"""Live landmark warp, round two: modes, removed layers, strength, fit models, table, sessions."""

import numpy as np
import pytest
from live_warp_helpers import start_tps_warp as _live

from napari_geostyle._napari.layer_data import read_layer_image
from napari_geostyle._widgets.warp_widget import GeometricWarpWidget, describe_warp

WAIT_MS = 20000


def _idle(qtbot, live):
    qtbot.waitUntil(lambda: not live.busy, timeout=WAIT_MS)


@pytest.mark.slow
def test_points_open_in_select_mode_with_the_target_active(geo_viewer):
    live = _live(geo_viewer)
    assert live.target_points.mode == "select" and live.content_points.mode == "select"
    assert geo_viewer.layers.selection.active.name == "content target points"
    # labels readable: not the points' own colour, offset from the point
    for layer in (live.content_points, live.target_points):
        label = np.asarray(layer.text.color.constant)[:3]
        face = np.asarray(layer.face_color[0])[:3]
        assert np.abs(label - face).max() > 0.5
        assert np.abs(np.asarray(layer.text.translation)).max() > 0


@pytest.mark.slow
def test_grid_is_drawn_over_the_output_and_never_becomes_active(geo_viewer, qtbot):
    widget = GeometricWarpWidget(geo_viewer)
    qtbot.addWidget(widget)
    widget.live = live = _live(geo_viewer)
    widget._update_enabled()
    widget.grid_check.value = True
    assert geo_viewer.layers.selection.active.name == "content target points"
    grid = geo_viewer.layers["content deformation grid"]
    names = [layer.name for layer in geo_viewer.layers]
    assert names.index("content deformation grid") < names.index("content control points")
    # output coordinates: the content grid's vertices moved by the warp (3 px right here)
    first_line = grid.data[0]
    np.testing.assert_allclose(first_line[:, 1].min(), 3.0, atol=0.2)
    assert live.status == "9 point pairs"


@pytest.mark.slow
def test_removing_the_warped_layer_then_editing_points_recreates_it(geo_viewer, qtbot):
    live = _live(geo_viewer)
    geo_viewer.layers.remove("content warped")
    moved = np.array(live.target_points.data)
    moved[4] += [4.0, 0.0]
    live.target_points.data = moved
    _idle(qtbot, live)
    qtbot.waitUntil(lambda: "content warped" in geo_viewer.layers, timeout=WAIT_MS)
    assert "re-created" in live.status
    names = [layer.name for layer in geo_viewer.layers]
    assert names.index("content warped") < names.index("content target points")


@pytest.mark.slow
def test_removing_a_points_layer_says_the_link_is_gone(geo_viewer, qtbot):
    widget = GeometricWarpWidget(geo_viewer)
    qtbot.addWidget(widget)
    widget._show_live(*_live_args(geo_viewer))
    geo_viewer.layers.remove("content control points")
    assert widget.live.closed
    assert "link" in widget.status_label.text() and "gone" in widget.status_label.text()


def _live_args(viewer):
    from napari_geostyle import fit_tps, warp_image

    layer = viewer.layers["content"]
    content = read_layer_image(layer, viewer)
    control = np.array([[10.0, 10.0], [10.0, 50.0], [50.0, 30.0], [30.0, 30.0]])
    transform = fit_tps(control, control + [2.0, 0.0])
    return (
        layer,
        content,
        transform,
        warp_image(content.raw, transform),
        {"content": "content"},
        {"model": "tps"},
    )


@pytest.mark.slow
def test_strength_slider_rewarps_live_and_is_recorded(geo_viewer, qtbot):
    widget = GeometricWarpWidget(geo_viewer)
    qtbot.addWidget(widget)
    live = widget._show_live(*_live_args(geo_viewer))
    content = np.asarray(geo_viewer.layers["content"].data, float)
    widget.strength_slider.value = 0.0
    _idle(qtbot, live)
    np.testing.assert_allclose(np.asarray(live.warped.data, float), content, atol=1)
    assert live.warped.metadata["geostyle"]["strength"] == 0.0
    widget.strength_slider.value = 0.5
    _idle(qtbot, live)
    assert live.warped.metadata["geostyle"]["strength"] == 0.5
    # half the 2 px shift: the control point lands half way
    np.testing.assert_allclose(live.transform.map_points([[30.0, 30.0]]), [[31.0, 30.0]], atol=1e-3)


def test_fit_model_residuals_and_table(geo_viewer, qtbot):
    from napari_geostyle._widgets.landmark_table import LandmarkTable

    widget = GeometricWarpWidget(geo_viewer)
    qtbot.addWidget(widget)
    live = widget._show_live(*_live_args(geo_viewer))
    target = np.array(live.target_points.data)
    target[3] += [0.0, 6.0]  # one pair off the common shift
    live.target_points.data = target
    _idle(qtbot, live)
    widget.fit_combo.value = "rigid"
    _idle(qtbot, live)
    assert live.fit_model == "rigid" and "rigid fit" in live.status
    residuals = live.residuals()
    assert residuals.argmax() == 3 and residuals[3] > 2
    table = LandmarkTable(geo_viewer, live)
    qtbot.addWidget(table)
    assert table.table.rowCount() == 4
    assert float(table.table.item(3, 5).text()) == round(residuals[3], 2)
    # switching the outlier off: the rigid fit of the rest is exact
    from qtpy.QtCore import Qt

    table.table.item(3, 0).setCheckState(Qt.CheckState.Unchecked)
    _idle(qtbot, live)
    assert not live.active_pairs()[3]
    assert live.residuals()[:3].max() < 1e-6
    table.table.selectRow(0)
    table.jump_to(table.selected_rows())
    camera = getattr(getattr(geo_viewer, "scene", None), "camera", None) or geo_viewer.camera
    np.testing.assert_allclose(
        camera.center[-2:], live.target_points.data_to_world(live.target_points.data[0]), atol=1e-6
    )
    table.delete_selected()
    _idle(qtbot, live)
    assert table.table.rowCount() == 3 and len(live.content_points.data) == 3
    assert live.active_pairs().tolist() == [True, True, False]


@pytest.mark.slow
def test_apply_to_labels_uses_nearest_and_makes_a_new_layer(geo_viewer, qtbot):
    widget = GeometricWarpWidget(geo_viewer)
    qtbot.addWidget(widget)
    widget._show_live(*_live_args(geo_viewer))
    labels = np.zeros((64, 64), np.int32)
    labels[20:40, 20:40] = 7
    labels[5:10, 5:10] = 3
    geo_viewer.add_labels(labels, name="cells")
    widget._refresh_apply_choices()
    widget.apply_combo.value = "cells"
    new = widget.apply_to_layer()
    assert new.name == "cells warped" and new.data.dtype == np.int32
    assert set(np.unique(new.data)) <= {0, 3, 7}
    np.testing.assert_array_equal(new.data[22:42, 20:40], 7)  # moved down by 2 px
    assert new.data[21, 30] == 0 and new.data[42, 30] == 0
    back = widget.apply_to_layer(new, inverse=True)  # the inverse moves it back up
    assert back.name == "cells warped unwarped"
    np.testing.assert_array_equal(back.data[20:40, 21:39], 7)
    assert back.data[40, 30] == 0


@pytest.mark.slow
def test_session_round_trip(geo_viewer, qtbot, tmp_path):
    widget = GeometricWarpWidget(geo_viewer)
    qtbot.addWidget(widget)
    live = widget._show_live(*_live_args(geo_viewer))
    widget.fit_combo.value = "affine"
    widget.strength_slider.value = 0.8
    _idle(qtbot, live)
    live.set_pair_active(1, False)
    _idle(qtbot, live)
    path = tmp_path / "session.json"
    widget.save_session(str(path))
    control, target = live.pairs()
    other = GeometricWarpWidget(geo_viewer)
    qtbot.addWidget(other)
    restored = other.load_session(str(path))
    _idle(qtbot, restored)
    np.testing.assert_allclose(restored.pairs()[0], control)
    np.testing.assert_allclose(restored.pairs()[1], target)
    assert restored.fit_model == "affine" and restored.strength == 0.8
    assert restored.active_pairs().tolist() == [True, False, True, True]
    np.testing.assert_allclose(
        restored.transform.map_points(control), live.transform.map_points(control), atol=1e-6
    )


@pytest.mark.slow
def test_start_from_landmarks_alternates_content_and_output_clicks(geo_viewer, qtbot):
    widget = GeometricWarpWidget(geo_viewer)
    qtbot.addWidget(widget)
    live = widget.start_from_landmarks()
    assert len(live.content_points.data) == 0
    pairs = [
        ([10.0, 10.0], [12.0, 10.0]),
        ([10.0, 50.0], [12.0, 50.0]),
        ([50.0, 30.0], [52.0, 30.0]),
    ]
    for content_point, output_point in pairs:
        assert geo_viewer.layers.selection.active.name == "content control points"
        assert live.content_points.mode == "add"
        live.content_points.add([content_point])
        assert geo_viewer.layers.selection.active.name == "content target points"
        assert "output" in live.status
        live.target_points.add([output_point])
    _idle(qtbot, live)
    np.testing.assert_allclose(live.transform.map_points([[30.0, 30.0]]), [[32.0, 30.0]], atol=1e-6)


def test_wording_uses_the_right_article():
    assert describe_warp("affine+tps") == "an affine+TPS warp"
    assert describe_warp("tps") == "a TPS warp"
    assert describe_warp("affine") == "an affine warp"
