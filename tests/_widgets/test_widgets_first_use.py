"""What a first-time user trips on (issue 23): panels closed mid-run, small screens, sample
layout, undo of on/off flags, repeated Runs, side-by-side points, wrong-side clicks, result
kinds, the landmark table, status texts."""

import numpy as np
import pytest
from widget_helpers import WAIT_MS
from widget_helpers import tiny as _tiny

from napari_geostyle._widgets.texture_widget import TextureTransferWidget
from napari_geostyle._widgets.warp_widget import GeometricWarpWidget


def _names(viewer) -> list[str]:
    return [layer.name for layer in viewer.layers]


def test_closing_the_texture_panel_stops_its_run_and_nothing_touches_the_closed_viewer(
    geo_viewer, qtbot
):
    widget = TextureTransferWidget(geo_viewer)
    dock = geo_viewer.window.add_dock_widget(widget)
    _tiny(widget, iterations=5000)
    run = widget.run()
    qtbot.waitUntil(lambda: run.steps_seen > 0, timeout=WAIT_MS)
    dock.destroyOnClose()  # the panel's x
    qtbot.waitUntil(lambda: run.done, timeout=WAIT_MS)
    assert run.cancelled and run.error is None and run.steps_seen < 5000
    assert widget.run_button.text() == "Run"  # the (detached) widget is idle again
    assert "closed" in widget.status_label.text()
    geo_viewer.close()
    qtbot.wait(100)
    assert _names(geo_viewer) == []  # no late preview re-created a layer


@pytest.mark.slow
def test_closing_the_warp_panel_drops_its_estimate(geo_viewer, qtbot):
    widget = GeometricWarpWidget(geo_viewer)
    dock = geo_viewer.window.add_dock_widget(widget)
    widget.model_combo.value = "affine"
    widget.run()
    worker = widget.worker
    finished = []
    worker.finished.connect(lambda: finished.append(True))
    dock.destroyOnClose()
    assert widget.worker is None and widget.run_button.text() == "Run"
    qtbot.waitUntil(lambda: bool(finished), timeout=WAIT_MS)
    qtbot.wait(50)
    assert "content warped" not in _names(geo_viewer)


@pytest.mark.slow
def test_three_docked_widgets_with_every_section_open_fit_a_900_px_screen(
    make_napari_viewer_proxy, qtbot
):
    from qtpy.QtWidgets import QScrollArea

    from napari_geostyle._sample_data import content_and_style
    from napari_geostyle._widgets.pipeline_widget import GeometricStyleTransferWidget

    viewer = make_napari_viewer_proxy(show=True)
    for data, kwargs, _kind in content_and_style():
        viewer.add_image(data, **kwargs)
    widgets = [
        GeometricWarpWidget(viewer),
        TextureTransferWidget(viewer),
        GeometricStyleTransferWidget(viewer),
    ]
    for widget in widgets:
        viewer.window.add_dock_widget(widget, area="right")
        for box in ("advanced_box", "landmarks_box", "files_box"):
            if hasattr(widget, box):
                getattr(widget, box).expand()
    window = widgets[0].window()
    window.resize(1600, 900)
    qtbot.wait(50)
    for widget in widgets:
        assert widget.minimumSizeHint().height() <= 250
    assert window.minimumSizeHint().height() <= 900
    assert window.height() <= 900
    for widget in widgets:  # Run and the status are reachable: scrolled to, they are shown
        area = widget.findChild(QScrollArea)
        for control in (widget.run_button, widget.status_label):
            area.ensureWidgetVisible(control)
            qtbot.wait(10)
            assert not control.visibleRegion().isEmpty(), (type(widget).__name__, control)


def _world_box(layer):
    """(low, high) world (row, col) corners of an image layer, its outer pixels' edges included."""
    low, high = (np.asarray(corner, float)[-2:] for corner in layer.extent.world)
    half = np.asarray(layer.scale, float)[-2:] / 2.0
    return low - half, high + half


def _overlap(first, second) -> bool:
    (low1, high1), (low2, high2) = _world_box(first), _world_box(second)
    return bool(np.all(low1 < high2) and np.all(low2 < high1))


@pytest.mark.slow
def test_sample_layers_do_not_hide_each_other(make_napari_viewer_proxy, qtbot):
    from itertools import combinations

    from napari_geostyle._sample_data import content_and_style

    viewer = make_napari_viewer_proxy()
    for data, kwargs, _kind in content_and_style():
        viewer.add_image(data, **kwargs)
    for first, second in combinations(viewer.layers, 2):
        assert not _overlap(first, second), (first.name, second.name)
    # opened from the menu, the first view shows all three (napari fits the first one alone)
    viewer.layers.clear()
    viewer.open_sample("napari-geostyle", "content_style")
    qtbot.wait(50)
    low = np.min([_world_box(layer)[0] for layer in viewer.layers], axis=0)
    high = np.max([_world_box(layer)[1] for layer in viewer.layers], axis=0)
    np.testing.assert_allclose(viewer.camera.center[-2:], (low + high) / 2, atol=1.0)
    # the right of the content stays free for the warp's output (side by side)
    low, high = _world_box(viewer.layers["content"])
    for layer in viewer.layers:
        other_low, other_high = _world_box(layer)
        assert layer.name == "content" or other_high[1] <= low[1] or other_low[0] >= high[0]


def _wait_idle(qtbot, thing):
    qtbot.waitUntil(lambda: not thing.busy, timeout=WAIT_MS)


@pytest.mark.slow
def test_undo_after_deleting_a_table_row_restores_the_on_off_flags(geo_viewer, qtbot):
    widget = GeometricWarpWidget(geo_viewer)
    qtbot.addWidget(widget)
    live = widget.start_from_landmarks()
    rows, cols = np.meshgrid([10.0, 30.0, 50.0], [12.0, 32.0, 52.0], indexing="ij")
    control = np.stack([rows.ravel(), cols.ravel()], 1)[:6]
    live.set_points(control, control + [1.0, 2.0])
    table = widget.show_landmark_table()
    live.set_pair_active(4, False)  # pair 5 off
    _wait_idle(qtbot, live)
    table.table.selectRow(3)  # delete pair 4
    table.delete_selected()
    _wait_idle(qtbot, live)
    assert live.active_pairs().tolist() == [True, True, True, False, True]
    assert widget.live.undo()
    _wait_idle(qtbot, live)
    assert live.active_pairs().tolist() == [True, True, True, True, False, True]
    np.testing.assert_allclose(live.pairs()[0], control)
    assert live.undo()  # before pair 5 was switched off
    assert live.active_pairs().all()
    assert live.redo() and live.active_pairs().tolist() == [True] * 4 + [False, True]


def _visible_points(viewer) -> list[str]:
    from napari.layers import Points

    return [layer.name for layer in viewer.layers if isinstance(layer, Points) and layer.visible]


@pytest.mark.slow
def test_a_second_run_leaves_no_live_looking_dead_layers(geo_viewer, qtbot, monkeypatch):
    from napari.utils import notifications

    said = []
    monkeypatch.setattr(notifications, "show_info", said.append)
    widget = GeometricWarpWidget(geo_viewer)
    qtbot.addWidget(widget)
    control = np.array([[10.0, 10.0], [10.0, 50.0], [50.0, 30.0]])
    first = widget.start_from_landmarks()
    first.set_points(control, control + 2.0, record=False)  # as a Run gives them: unedited
    second = widget.start_from_landmarks()  # unedited: replaced, names reused
    assert first.closed
    assert sorted(_names(geo_viewer)) == sorted(
        ["content", "style", "content warped", "content control points", "content target points"]
    )
    second.set_points(control, control + 3.0)  # an edit
    _wait_idle(qtbot, second)
    third = widget.start_from_landmarks()
    # the hidden copies come in the next event-loop turns
    qtbot.waitUntil(lambda: "content target points (old)" in _names(geo_viewer), timeout=WAIT_MS)
    names = _names(geo_viewer)
    # the edited pair is kept, hidden, greyed and named "(old)"; only the live pair is shown
    for name in ("content control points (old)", "content target points (old)",
                 "content warped (old)"):  # fmt: skip
        assert name in names and not geo_viewer.layers[name].visible
    old = geo_viewer.layers["content control points (old)"]
    np.testing.assert_allclose(old.data, control)
    assert np.allclose(old.face_color[:, :3], old.face_color[0, 0])  # grey
    assert _visible_points(geo_viewer) == [third.content_points.name, third.target_points.name]
    assert third.warped.visible
    # the live pair took over the previous layers (updated in place), under their names
    assert third.content_points.name == "content control points"
    assert len([name for name in names if not name.endswith("(old)")]) == 5
    assert len(said) == 1 and "content control points (old)" in said[0]


def _world_points(layer) -> np.ndarray:
    return np.asarray([layer.data_to_world(p) for p in layer.data])[:, -2:]


def _on(points, layer) -> np.ndarray:
    low, high = _world_box(layer)
    return np.all((points >= low) & (points <= high), axis=1)


def test_side_by_side_control_points_past_the_content_stay_off_the_output(geo_viewer):
    from napari_geostyle import fit_tps, warp_image
    from napari_geostyle._napari.layer_data import read_layer_image
    from napari_geostyle._napari.live_warp import start_live_warp

    layer = geo_viewer.layers["content"]
    content = read_layer_image(layer, geo_viewer)
    # like the network's TPS knots: content points up to 20 px past the 64 px content's right
    # edge (its gap was 6.4 px), output points up to 6 px left of the output
    control = np.array([[5.0, 84.0], [32.0, 70.0], [60.0, 80.0], [32.0, -10.0], [5.0, 30.0]])
    target = np.array([[5.0, 60.0], [32.0, 50.0], [60.0, 63.0], [32.0, -6.0], [5.0, 30.0]])
    transform = fit_tps(control, target)
    live = start_live_warp(
        geo_viewer,
        layer,
        content,
        transform,
        warp_image(content.raw, transform),
        inputs={"content": "content"},
        options={"model": "tps"},
        landmarks=(control, target),
    )
    control_world, target_world = (
        _world_points(live.content_points),
        _world_points(live.target_points),
    )
    assert not _on(control_world, live.warped).any()
    assert not _on(target_world, layer).any()
    # every control point is nearer the content than the output, every target the other way
    content_right = _world_box(layer)[1][1]
    output_left = _world_box(live.warped)[0][1]
    middle = (content_right + output_left) / 2
    assert (control_world[:, 1] < middle).all() and (target_world[:, 1] > middle).all()


def test_a_content_click_on_the_output_image_is_refused_with_a_message(geo_viewer, qtbot):
    widget = GeometricWarpWidget(geo_viewer)
    qtbot.addWidget(widget)
    live = widget.start_from_landmarks()
    offset = live.warped.translate[-1] - live.content_points.translate[-1]
    live.content_points.add([[30.0, offset + 20.0]])  # a content click, on the output image
    assert len(live.content_points.data) == 0 and len(live.target_points.data) == 0
    assert "output image" in widget.status_label.text()
    assert geo_viewer.layers.selection.active.name == live.content_points.name  # still its turn
    live.content_points.add([[30.0, 20.0]])  # on the content: taken
    assert len(live.content_points.data) == 1
    live.target_points.add([[30.0, 20.0 - offset]])  # an output click on the content: refused
    assert len(live.target_points.data) == 0 and "content image" in widget.status_label.text()
    live.target_points.add([[30.0, 22.0]])
    assert len(live.content_points.data) == len(live.target_points.data) == 1


def _texture(viewer, qtbot, content_name):
    widget = TextureTransferWidget(viewer)
    qtbot.addWidget(widget)
    widget.content_combo.set_layer(content_name)
    widget.style_rows[0].combo.set_layer("style")
    _tiny(widget)
    run = widget.run()
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)
    assert run.error is None, run.error
    return viewer.layers[run.output_name]


@pytest.mark.slow
def test_texture_result_keeps_rgba_alpha_and_the_float_range(geo_viewer, content_image, qtbot):
    alpha = np.zeros((64, 64, 1), np.uint8)
    alpha[:, :32] = 255  # the left half opaque, the right half transparent
    geo_viewer.add_image(np.concatenate([content_image, alpha], -1), name="rgba", rgb=True)
    result = _texture(geo_viewer, qtbot, "rgba")
    assert result.rgb and result.data.shape == (32, 32, 4) and result.data.dtype == np.uint8
    assert (result.data[:, :14, 3] == 255).all() and (result.data[:, 18:, 3] == 0).all()

    ramp = np.linspace(-500.0, 2050.0, 64 * 64, dtype=np.float32).reshape(64, 64)
    geo_viewer.add_image(ramp, name="float")
    result = _texture(geo_viewer, qtbot, "float")
    assert result.data.dtype == np.float32 and result.data.ndim == 2
    assert -500.0 <= result.data.min() and result.data.max() <= 2050.0
    assert result.data.max() - result.data.min() > 100.0  # in the content's range, not 0..1
    np.testing.assert_allclose(result.contrast_limits, (-500.0, 2050.0))


@pytest.mark.slow
def test_the_docked_landmark_table_shows_every_column_whole(make_napari_viewer_proxy, qtbot):
    viewer = make_napari_viewer_proxy(show=True)
    viewer.add_image(np.zeros((300, 300), np.uint8), name="content")
    viewer.add_image(np.zeros((300, 300), np.uint8), name="style")
    widget = GeometricWarpWidget(viewer)
    viewer.window.add_dock_widget(widget, area="right")
    live = widget.start_from_landmarks()
    control = np.array([[10.0, 10.0], [10.0, 250.0], [250.0, 130.0], [-123.25, 299.5]])
    live.set_points(control, control + [1.5, -140.0])
    _wait_idle(qtbot, live)
    table = widget.show_landmark_table()
    widget.window().resize(1600, 900)
    qtbot.wait(50)
    grid = table.table
    assert grid.rowCount() == 4
    for column in range(grid.columnCount()):  # every column whole within the visible area
        right = grid.columnViewportPosition(column) + grid.columnWidth(column)
        assert grid.columnViewportPosition(column) >= 0 and right <= grid.viewport().width()
        assert grid.columnWidth(column) >= grid.sizeHintForColumn(column)
    assert grid.horizontalScrollBar().maximum() == 0


@pytest.mark.slow
def test_the_levels_spin_says_how_many_levels_run(geo_viewer, qtbot):
    import re

    widget = TextureTransferWidget(geo_viewer)
    qtbot.addWidget(widget)
    _tiny(widget)
    widget.levels_spin.value = 4  # 4 asked, at 32 px fewer run
    run = widget.run()
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)
    assert run.error is None, run.error
    shown = int(re.search(r"level \d+/(\d+)", widget.progress_bar.format()).group(1))
    assert shown < 4 and f"({shown} run here)" in widget.levels_spin.native.suffix()
    widget.size_spin.value = 4096
    assert widget.levels_spin.native.suffix() == ""  # all four run at this size


def test_warp_input_errors_show_in_the_status(make_napari_viewer_proxy, qtbot):
    viewer = make_napari_viewer_proxy()
    viewer.add_image(np.zeros((32, 32), np.uint8), name="only")
    widget = GeometricWarpWidget(viewer)
    qtbot.addWidget(widget)
    # one image: the second picker asks for another instead of showing the same one
    assert widget.content_combo.layer().name == "only"
    assert widget.style_combo.layer() is None
    assert widget.style_combo.current_choice == "(open a second image)"
    widget.run()
    assert widget.status_label.text().startswith("not started: geometry style is missing")
    viewer.add_image(np.ones((32, 32), np.uint8), name="second")
    assert widget.style_combo.layer().name == "second"
    assert "(open a second image)" not in widget.style_combo.names()
    assert not widget.status_label.text().startswith("not started")


@pytest.mark.slow
def test_a_recreated_layer_status_goes_at_the_next_change(geo_viewer, qtbot):
    widget = GeometricWarpWidget(geo_viewer)
    qtbot.addWidget(widget)
    live = widget.start_from_landmarks()
    control = np.array([[10.0, 10.0], [10.0, 50.0], [50.0, 30.0]])
    live.set_points(control, control + 2.0)
    _wait_idle(qtbot, live)
    geo_viewer.layers.remove(live.warped.name)
    live.set_points(control, control + 3.0)
    _wait_idle(qtbot, live)
    assert "re-created" in widget.status_label.text()
    widget.strength_slider.value = 0.5
    _wait_idle(qtbot, live)
    assert "re-created" not in widget.status_label.text()


@pytest.mark.slow
def test_style_transfer_outputs_sit_beside_the_content_clear_of_a_live_warp(geo_viewer, qtbot):
    from napari_geostyle._widgets.pipeline_widget import GeometricStyleTransferWidget

    warp = GeometricWarpWidget(geo_viewer)
    qtbot.addWidget(warp)
    live = warp.start_from_landmarks()
    control = np.array([[10.0, 10.0], [10.0, 50.0], [50.0, 30.0]])
    live.set_points(control, control + 2.0)
    _wait_idle(qtbot, live)
    widget = GeometricStyleTransferWidget(geo_viewer)
    qtbot.addWidget(widget)
    _tiny(widget)
    widget.content_combo.set_layer("content")
    widget.style_combo.set_layer("style")
    widget.model_combo.value = "affine"
    run = widget.run()
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)
    assert run.error is None, run.error
    content = geo_viewer.layers["content"]
    for layer in (run.warped, run.output):
        assert _world_box(layer)[0][1] > _world_box(content)[1][1]  # right of the content
        for other in (live.warped, content):
            assert not _overlap(layer, other)
        assert not _on(_world_points(live.target_points), layer).any()
        assert not _on(_world_points(live.content_points), layer).any()
