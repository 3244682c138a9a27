"""Geometric Warp widget and its live control points (napari viewer + qtbot)."""

import json

import numpy as np
import pytest

from napari_geostyle._napari.layer_data import read_layer_image
from napari_geostyle._napari.live_warp import start_live_warp
from napari_geostyle._widgets.warp_widget import GeometricWarpWidget

WAIT_MS = 20000


def _shifted_tps_warp(viewer, layer_name="content", stack=None):
    """A live warp whose target grid is the control grid pushed right (a real landmark TPS)."""
    from napari_geostyle import fit_tps, warp_image

    layer = viewer.layers[layer_name]
    content = read_layer_image(layer, viewer)
    rows, cols = np.meshgrid(np.linspace(8, 56, 3), np.linspace(8, 56, 3), indexing="ij")
    control = np.stack([rows.ravel(), cols.ravel()], 1)
    target = control + [0.0, 3.0]
    transform = fit_tps(control, target)
    warped = warp_image(content.raw, transform)
    if stack is not None:
        warped = np.stack([warp_image(plane, transform) for plane in layer.data])
    return start_live_warp(
        viewer,
        layer,
        content,
        transform,
        warped,
        inputs={"content": layer_name},
        options={"model": "tps"},
        stack=stack,
    )


def _wait_idle(qtbot, thing):
    qtbot.waitUntil(lambda: not thing.busy, timeout=WAIT_MS)


def test_run_makes_warped_layer_and_paired_points_with_provenance(geo_viewer, qtbot):
    viewer = geo_viewer
    viewer.layers["content"].scale = (2.0, 2.0)
    viewer.layers["content"].translate = (5.0, -3.0)
    widget = GeometricWarpWidget(viewer)
    qtbot.addWidget(widget)
    assert widget.content_combo.layer().name == "content"
    assert widget.style_combo.layer().name == "style"
    widget.model_combo.value = "affine"
    widget.run()
    qtbot.waitUntil(lambda: widget.live is not None or widget.last_error, timeout=WAIT_MS)
    assert widget.last_error is None, widget.last_error
    _wait_idle(qtbot, widget)

    warped = viewer.layers["content warped"]
    control = viewer.layers["content control points"]
    target = viewer.layers["content target points"]
    assert warped.data.shape == viewer.layers["content"].data.shape
    np.testing.assert_allclose(warped.scale, (2.0, 2.0))
    # side by side (the default): the output right of the 128-unit-wide content, 10% apart
    np.testing.assert_allclose(warped.translate, (5.0, -3.0 + 128 * 1.1))
    record = warped.metadata["geostyle"]
    assert record["inputs"] == {"content": "content", "geometry_style": "style"}
    assert record["options"]["model"] == "affine"
    assert record["transform"]["type"] == "affine"  # the model chosen above, nothing else
    assert record["version"]
    assert len(control.data) == len(target.data) >= 3
    assert list(control.features["number"]) == list(range(1, len(control.data) + 1))
    # the target points are where the transform sends the control points
    from napari_geostyle import transform_from_dict

    transform = transform_from_dict(record["transform"])
    np.testing.assert_allclose(transform.map_points(control.data), target.data, atol=1e-3)


@pytest.mark.slow
def test_pickers_offer_only_image_layers_and_follow_the_layer_list(geo_viewer, qtbot):
    viewer = geo_viewer
    viewer.add_labels(np.zeros((8, 8), np.uint8), name="labels")
    viewer.add_shapes(name="shapes")
    widget = GeometricWarpWidget(viewer)
    qtbot.addWidget(widget)
    names = lambda combo: combo.names()
    assert names(widget.content_combo) == ["content", "style"]
    viewer.layers["style"].name = "renamed"
    assert "renamed" in names(widget.style_combo)
    viewer.add_image(np.ones((16, 16)), name="third")
    assert "third" in names(widget.content_combo)
    # choosing the style's layer as content moves the style to another layer
    widget.content_combo.set_layer("renamed")
    # compared by name: the proxy viewer hands out wrapped layers, so identity proves nothing
    assert widget.content_combo.layer().name == "renamed"
    assert widget.style_combo.layer() is not None
    assert widget.style_combo.layer().name != "renamed"
    viewer.layers.remove("third")
    assert "third" not in names(widget.content_combo)


@pytest.mark.slow
def test_moving_a_point_rewarps_and_undo_redo_restore(geo_viewer, qtbot):
    live = _shifted_tps_warp(geo_viewer)
    original = np.array(live.warped.data, dtype=float)
    moved = np.array(live.target_points.data)
    moved[4] += [6.0, -5.0]  # drag the centre target point
    live.target_points.data = moved
    _wait_idle(qtbot, live)
    edited = np.array(live.warped.data, dtype=float)
    assert np.abs(edited - original).max() > 20
    np.testing.assert_allclose(
        live.transform.map_points(live.content_points.data[4:5]), moved[4:5], atol=1e-3
    )
    assert live.undo()
    _wait_idle(qtbot, live)
    np.testing.assert_allclose(
        live.target_points.data, moved - [[6.0, -5.0]] * (np.arange(9) == 4)[:, None]
    )
    assert np.abs(np.asarray(live.warped.data, float) - original).max() <= 1
    assert live.redo()
    _wait_idle(qtbot, live)
    np.testing.assert_allclose(np.asarray(live.warped.data, float), edited, atol=1)
    assert not live.redo()


@pytest.mark.slow
def test_adding_and_deleting_points_keeps_pairs(geo_viewer, qtbot):
    live = _shifted_tps_warp(geo_viewer)
    live.content_points.add([[30.0, 20.0]])
    assert len(live.target_points.data) == 10
    # the new partner sits where the current warp puts the new point: nothing jumps
    np.testing.assert_allclose(live.target_points.data[-1], [30.0, 23.0], atol=0.05)
    assert list(live.target_points.features["number"]) == list(range(1, 11))
    live.target_points.remove([0, 1])
    assert len(live.content_points.data) == 8
    np.testing.assert_allclose(live.content_points.data[-1], [30.0, 20.0])
    live.content_points.remove(list(range(6)))
    assert len(live.target_points.data) == 2
    assert "add 1 more" in live.status
    _wait_idle(qtbot, live)
    live.undo()
    assert len(live.content_points.data) == len(live.target_points.data) == 8
    assert live.status == "8 point pairs"


@pytest.mark.slow
def test_preview_while_dragging_then_full_warp(make_napari_viewer_proxy, qtbot):
    viewer = make_napari_viewer_proxy()
    big = np.random.default_rng(0).random((240, 300)).astype(np.float32)
    viewer.add_image(big, name="content")
    live = _shifted_tps_warp(viewer)
    moved = np.array(live.target_points.data)
    moved[4] += [5.0, 5.0]
    with live.target_points.events.data.blocker():  # napari moves points this way mid-drag
        live.target_points.data = moved
    live.renderer.dragging = True
    live.renderer.preview()
    assert max(live.warped.data.shape) < 240  # a reduced-size preview ...
    assert live.warped.scale[0] > 1.0  # ... placed over the content
    live.target_points.events.data(value=moved, action="changed", data_indices=(4,))
    _wait_idle(qtbot, live)
    assert live.warped.data.shape == (240, 300)
    np.testing.assert_allclose(live.warped.scale, (1.0, 1.0))


@pytest.mark.slow
def test_bigwarp_csv_round_trip_and_exports(geo_viewer, qtbot, tmp_path):
    widget = GeometricWarpWidget(geo_viewer)
    qtbot.addWidget(widget)
    widget.live = _shifted_tps_warp(geo_viewer)
    live = widget.live
    control, target = np.array(live.content_points.data), np.array(live.target_points.data)
    csv_path = tmp_path / "landmarks.csv"
    widget.export_csv(str(csv_path))
    assert csv_path.read_text().count("\n") >= 9
    live.set_points(control[:5] + 1, target[:5])
    _wait_idle(qtbot, live)
    widget.import_csv(str(csv_path))
    _wait_idle(qtbot, live)
    np.testing.assert_allclose(live.content_points.data, control, atol=1e-6)
    np.testing.assert_allclose(live.target_points.data, target, atol=1e-6)

    json_path = tmp_path / "transform.json"
    widget.export_transform(str(json_path))
    from napari_geostyle import transform_from_dict

    restored = transform_from_dict(json.loads(json_path.read_text()))
    np.testing.assert_allclose(restored.map_points(control), target, atol=1e-3)

    npy_path = tmp_path / "field.npy"
    widget.export_displacement(str(npy_path))
    field = np.load(npy_path)
    assert field.shape == (64, 64, 2)
    # the output pixel at a target point samples the content at its control point
    r, c = target[4].round().astype(int)
    np.testing.assert_allclose(field[r, c] + [r, c], restored.sample_points([[r, c]])[0], atol=1e-4)

    widget.grid_check.value = True
    grid = geo_viewer.layers["content deformation grid"]
    assert grid.nshapes == 24
    widget.grid_check.value = False
    assert "content deformation grid" not in geo_viewer.layers


@pytest.mark.slow
def test_stack_all_slices_warps_every_slice(make_napari_viewer_proxy, qtbot):
    viewer = make_napari_viewer_proxy()
    stack = np.random.default_rng(1).random((3, 64, 64)).astype(np.float32)
    layer = viewer.add_image(stack, name="content")
    live = _shifted_tps_warp(viewer, stack=(layer, 0, 1))
    assert live.warped.data.shape == (3, 64, 64)
    moved = np.array(live.target_points.data)
    moved[4] += [4.0, 0.0]
    live.target_points.data = moved
    _wait_idle(qtbot, live)
    from napari_geostyle import warp_image

    for index in range(3):
        np.testing.assert_allclose(
            live.warped.data[index], warp_image(stack[index], live.transform), atol=1e-5
        )


@pytest.mark.slow
def test_bad_choice_is_an_error_notification(geo_viewer, qtbot):
    from napari.utils.notifications import notification_manager

    geo_viewer.add_image(np.full((64, 64), np.nan, np.float32), name="broken")
    widget = GeometricWarpWidget(geo_viewer)
    qtbot.addWidget(widget)
    widget.content_combo.set_layer("broken")
    widget.style_combo.set_layer("style")
    before = len(notification_manager.records)
    widget.run()
    qtbot.waitUntil(lambda: len(notification_manager.records) > before, timeout=WAIT_MS)
    _wait_idle(qtbot, widget)
    message = str(notification_manager.records[-1].message)
    assert "NaN" in message
    assert widget.live is None


def _world_points(layer) -> np.ndarray:
    return np.array([layer.data_to_world(point) for point in layer.data])


def _inside(points, image_layer) -> bool:
    """Every point on the image (the outer pixels' edges included)."""
    low, high = np.asarray(image_layer.extent.world, float)[:, -2:]  # first / last pixel centres
    half = np.asarray(image_layer.scale, float)[-2:] / 2.0
    low, high = low - half, high + half
    return bool(np.all((points >= low - 1e-6) & (points <= high + 1e-6)))


@pytest.mark.slow
def test_side_by_side_puts_each_point_set_over_its_own_image(geo_viewer, qtbot):
    viewer = geo_viewer
    viewer.layers["content"].scale = (2.0, 2.0)
    viewer.layers["content"].translate = (5.0, -3.0)
    live = _shifted_tps_warp(viewer)
    content = viewer.layers["content"]
    assert live.side_by_side
    np.testing.assert_allclose(live.content_points.translate, (5.0, -3.0))
    for layer in (live.warped, live.target_points):
        np.testing.assert_allclose(layer.translate, (5.0, -3.0 + 128 * 1.1))
    control, target = _world_points(live.content_points), _world_points(live.target_points)
    assert _inside(control, content) and not _inside(control, live.warped)
    assert _inside(target, live.warped) and not _inside(target, content)
    transform = live.transform.to_dict()

    live.set_side_by_side(False)  # fused: the output over the content, as before
    for layer in (live.warped, live.target_points, live.content_points):
        np.testing.assert_allclose(layer.translate, (5.0, -3.0))
    assert _inside(_world_points(live.target_points), content)
    assert live.transform.to_dict() == transform  # only the view moved, not the landmarks
    live.set_side_by_side(True)
    np.testing.assert_allclose(live.target_points.translate, (5.0, -3.0 + 128 * 1.1))


@pytest.mark.slow
def test_widget_toggle_moves_the_output_layers_and_the_grid(geo_viewer, qtbot):
    widget = GeometricWarpWidget(geo_viewer)
    qtbot.addWidget(widget)
    assert widget.side_check.value
    live = widget.start_from_landmarks()
    widget.grid_check.value = True
    grid = geo_viewer.layers["content deformation grid"]
    for layer in (live.warped, live.target_points, grid):
        np.testing.assert_allclose(layer.translate, (0.0, 64 * 1.1))
    np.testing.assert_allclose(live.content_points.translate, (0.0, 0.0))
    active = geo_viewer.layers.selection.active
    assert active.name in (live.content_points.name, live.target_points.name)
    widget.side_check.value = False
    assert not live.side_by_side
    for layer in (live.warped, live.target_points, grid, live.content_points):
        np.testing.assert_allclose(layer.translate, (0.0, 0.0))
    assert geo_viewer.layers.selection.active.name == active.name  # the next click edits points
    # a new warp keeps the choice
    widget.start_from_landmarks()
    assert not widget.live.side_by_side
    np.testing.assert_allclose(widget.live.warped.translate, (0.0, 0.0))


@pytest.mark.slow
def test_network_tps_lattice_lies_on_the_output(geo_viewer, qtbot):
    widget = GeometricWarpWidget(geo_viewer)
    qtbot.addWidget(widget)
    widget.model_combo.value = "affine+tps"
    widget.run()
    qtbot.waitUntil(lambda: widget.live is not None or widget.last_error, timeout=WAIT_MS)
    assert widget.last_error is None, widget.last_error
    _wait_idle(qtbot, widget)
    target = _world_points(widget.live.target_points)
    # the network's knots, on the output's border included: over the output image, whole
    assert _inside(target, widget.live.warped)
    assert widget.live.target_points.size.min() >= 3.0


def _gated_estimates(monkeypatch):
    """Make every Run's estimate wait for its own gate (a ``threading.Event``, in the returned
    list, in Run order), as a long ``refine`` estimate would; then run the real estimate."""
    import threading
    import time

    from napari_geostyle._napari import warp_runs

    real = warp_runs.estimate_and_warp
    gates = []

    def gated(content, style, *args):
        gate = threading.Event()
        gates.append(gate)
        while not gate.is_set():  # one uninterruptible call, as estimate_warp is
            time.sleep(0.01)
        return (yield from real(content, style, *args))

    monkeypatch.setattr(warp_runs, "estimate_and_warp", gated)
    return gates


@pytest.mark.slow
def test_cancel_frees_the_widget_at_once_and_drops_the_abandoned_estimate(
    geo_viewer, qtbot, monkeypatch
):
    gates = _gated_estimates(monkeypatch)
    widget = GeometricWarpWidget(geo_viewer)
    qtbot.addWidget(widget)
    widget.model_combo.value = "affine"
    widget.run()
    abandoned = widget.worker
    assert widget.run_button.text() == "Cancel"
    # the status counts the seconds of a long estimate
    qtbot.waitUntil(
        lambda: widget.status_label.text().endswith("1 s (Cancel stops it)"), timeout=WAIT_MS
    )
    assert widget.status_label.text().startswith("estimating an affine warp (network)…")

    widget.cancel()
    # free at once, though the estimate itself is still running
    assert abandoned.is_running
    assert not widget.busy and widget.run_button.text() == "Run"
    assert widget.status_label.text().startswith("cancelled")

    widget.run()  # a new Run while the abandoned estimate goes on
    qtbot.waitUntil(lambda: len(gates) == 2, timeout=WAIT_MS)
    gates[0].set()
    qtbot.waitUntil(lambda: not abandoned.is_running, timeout=WAIT_MS)
    qtbot.wait(50)
    # the abandoned run left no layer and did not reset the running one's button
    assert "content warped" not in geo_viewer.layers
    assert widget.busy and widget.run_button.text() == "Cancel"

    gates[1].set()
    qtbot.waitUntil(lambda: widget.live is not None and not widget.busy, timeout=WAIT_MS)
    names = [layer.name for layer in geo_viewer.layers]
    assert names.count("content warped") == 1 and "content warped [2]" not in names
    assert widget.run_button.text() == "Run"


@pytest.mark.slow
def test_refine_shows_its_steps_and_cancel_stops_it(geo_viewer, qtbot, monkeypatch):
    from napari_geostyle.core import estimate

    # a refinement far longer than the test: only Cancel can end it in time
    monkeypatch.setitem(estimate.REFINE, "affine_iterations", 100000)
    widget = GeometricWarpWidget(geo_viewer)
    qtbot.addWidget(widget)
    widget.model_combo.value = "affine"
    widget.method_combo.value = "refine"
    widget.run()
    worker = widget.worker
    # the bar first shows "networks done" (step 1); wait for a refinement step
    qtbot.waitUntil(lambda: "refining" in widget.progress_bar.format(), timeout=WAIT_MS)
    assert not widget.progress_bar.isHidden()
    assert widget.progress_bar.maximum() == 1 + estimate.refine_steps("affine", None)
    assert 0 < widget.progress_bar.value() < widget.progress_bar.maximum()
    assert "refining" in widget.progress_bar.format()
    widget.cancel()
    assert widget.status_label.text() == "cancelled: the refinement stopped."
    assert not widget.busy and widget.progress_bar.isHidden()
    qtbot.waitUntil(lambda: not worker.is_running, timeout=WAIT_MS)  # stopped, not finished
    qtbot.wait(50)
    assert widget.live is None and "content warped" not in geo_viewer.layers
    assert widget.last_error is None


@pytest.mark.slow
def test_a_quick_second_click_on_run_is_not_a_cancel(geo_viewer, qtbot, monkeypatch):
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication

    gates = _gated_estimates(monkeypatch)
    widget = GeometricWarpWidget(geo_viewer)
    qtbot.addWidget(widget)
    widget.show()
    widget.model_combo.value = "affine"
    qtbot.mouseClick(widget.run_button, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(widget.run_button, Qt.MouseButton.LeftButton)  # a double click's second
    worker = widget.worker
    assert worker is not None and widget.run_button.text() == "Cancel"
    qtbot.wait(QApplication.doubleClickInterval() + 50)
    qtbot.mouseClick(widget.run_button, Qt.MouseButton.LeftButton)  # a real Cancel
    assert widget.worker is None and widget.status_label.text().startswith("cancelled")
    gates[0].set()
    qtbot.waitUntil(lambda: not worker.is_running, timeout=WAIT_MS)
    assert widget.live is None


def _landmark_tps(size, displacement, seed=0):
    from napari_geostyle import fit_tps

    rng = np.random.default_rng(seed)
    knots = np.linspace(0.15 * size, 0.85 * size, 3)
    control = np.stack(np.meshgrid(knots, knots, indexing="ij"), -1).reshape(-1, 2)
    return fit_tps(control, control + rng.normal(0.0, displacement * size, control.shape))


def test_full_warps_interpolate_an_exact_lattice_of_the_sample_map_within_tolerance():
    from napari_geostyle import warp_image
    from napari_geostyle._napari.live_warp import (
        LATTICE_TOLERANCE,
        LatticeSampleMap,
        lattice_sample_map,
    )
    from napari_geostyle.core.images import pixel_grid

    shape = (400, 360)
    transform = _landmark_tps(400, 0.01)  # landmarks moved by 4 px: a typical edit
    fast = lattice_sample_map(transform, shape)
    assert isinstance(fast, LatticeSampleMap)
    pixels = pixel_grid(shape)
    error = np.linalg.norm(fast.sample_points(pixels) - transform.sample_points(pixels), axis=1)
    assert error.max() <= LATTICE_TOLERANCE
    image = np.random.default_rng(1).integers(0, 256, shape + (3,), dtype=np.uint8)
    image = np.cumsum(np.cumsum(image, 0), 1) % 256  # smooth-ish ramps: sub-pixel shifts stay small
    difference = warp_image(image, fast).astype(int) - warp_image(image, transform).astype(int)
    assert np.abs(difference).mean() < 1.0
    assert fast.to_dict() == transform.to_dict()  # provenance records the exact transform
    # small planes, and maps too wiggly for the lattice, are evaluated exactly
    assert lattice_sample_map(transform, (120, 120)) is transform
    wiggly = _landmark_tps(400, 0.25, seed=3)
    assert lattice_sample_map(wiggly, shape) is wiggly


def test_a_stack_warp_evaluates_the_exact_map_once_for_all_planes(make_napari_viewer_proxy):
    from napari_geostyle import warp_image
    from napari_geostyle._napari.live_warp import warp_layer_planes
    from napari_geostyle.core.transforms import Transform

    class Counting(Transform):
        def __init__(self, inner):
            self.inner, self.kernel_size, self.calls = inner, inner.kernel_size, []

        def sample_points(self, points):
            self.calls.append(len(points))
            return self.inner.sample_points(points)

        def sample_points_torch(self, points_rc):
            self.calls.append(len(points_rc))
            return self.inner.sample_points_torch(points_rc)

    viewer = make_napari_viewer_proxy()
    stack = np.random.default_rng(0).random((3, 300, 300)).astype(np.float32)
    layer = viewer.add_image(stack, name="stack")
    transform = _landmark_tps(300, 0.02)
    counting = Counting(transform)
    steps = warp_layer_planes(None, counting, stack=(layer, 0, 1))
    try:
        while True:
            next(steps)
    except StopIteration as stop:
        warped = stop.value
    assert warped.shape == stack.shape
    # the lattice and its check: a small fraction of one plane's pixels, for all three planes
    assert sum(counting.calls) < 0.2 * 300 * 300
    for index in range(3):
        exact = warp_image(stack[index], transform)
        assert np.abs(warped[index] - exact).max() < 0.05


@pytest.mark.slow
def test_the_first_drag_move_previews_at_once_and_later_ones_are_throttled(
    make_napari_viewer_proxy, qtbot, monkeypatch
):
    from types import SimpleNamespace

    from napari_geostyle._napari import warp_renderer

    gap_ms = 5000  # long enough that this busy test machine cannot outlast it
    monkeypatch.setattr(warp_renderer, "PREVIEW_GAP_MS", gap_ms)
    viewer = make_napari_viewer_proxy()
    big = np.random.default_rng(0).integers(0, 256, (240, 300), dtype=np.uint8)
    viewer.add_image(big, name="content")
    live = _shifted_tps_warp(viewer)
    event = SimpleNamespace(type="mouse_press")
    drag = live.renderer.drag_callback(live.target_points, event)
    next(drag)  # the press
    live.renderer.dragging = True  # napari's CHANGING event at the first move
    event.type = "mouse_move"
    # ours runs after napari's own drag callback (which moves the point): the preview is made
    # in this move's event, to be drawn in one frame with the moved point
    assert live.target_points.mouse_drag_callbacks[-1] == live.renderer.drag_callback
    next(drag)
    assert live.warped.data.shape != (240, 300) and not live.renderer.preview_timer.isActive()
    assert live.warped.data.dtype == np.uint8  # the preview keeps the content's kind
    next(drag)  # the next move, at once: waits out the rest of the gap
    assert live.renderer.preview_timer.isActive()
    assert 0 < live.renderer.preview_timer.interval() <= gap_ms
    live.renderer.preview_timer.stop()


@pytest.mark.slow
def test_a_drag_callback_behind_napari_s_previews_after_the_move_and_moves_last(
    make_napari_viewer_proxy, qtbot
):
    from types import SimpleNamespace

    viewer = make_napari_viewer_proxy()
    viewer.add_image(
        np.random.default_rng(0).integers(0, 256, (240, 300), np.uint8), name="content"
    )
    live = _shifted_tps_warp(viewer)
    layer = live.target_points
    layer.mode = "pan_zoom"
    layer.mode = "select"  # napari appends the mode's drag callback again: now after ours
    assert layer.mouse_drag_callbacks[-1] != live.renderer.drag_callback
    event = SimpleNamespace(type="mouse_press")
    drag = live.renderer.drag_callback(layer, event)
    next(drag)
    live.renderer.dragging = True
    event.type = "mouse_move"
    next(drag)  # the point is not moved yet: preview after this event
    assert live.renderer.preview_timer.isActive() and live.renderer.preview_timer.interval() == 0
    qtbot.waitUntil(lambda: live.warped.data.shape != (240, 300), timeout=WAIT_MS)
    event.type = "mouse_release"
    with pytest.raises(StopIteration):
        next(drag)
    # last again for the next drag, and only once in the list
    assert layer.mouse_drag_callbacks[-1] == live.renderer.drag_callback
    assert layer.mouse_drag_callbacks.count(live.renderer.drag_callback) == 1


@pytest.mark.slow
def test_a_drag_preview_runs_torch_on_one_thread_and_restores_the_setting(
    make_napari_viewer_proxy, monkeypatch
):
    import torch

    from napari_geostyle.core import warp

    viewer = make_napari_viewer_proxy()
    viewer.add_image(np.random.default_rng(0).random((240, 300)).astype(np.float32), name="content")
    live = _shifted_tps_warp(viewer)
    seen = []
    real = warp.warp_image

    def recording(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(warp, "warp_image", recording)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        live.renderer.preview()
        assert seen == [1]  # a small warp on the main thread: no waiting on a second thread
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert max(live.warped.data.shape) < 240  # the preview was made and shown
