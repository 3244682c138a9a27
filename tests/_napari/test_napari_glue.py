"""The napari glue without a widget: the live warp's parts (paired points, renderer, exports,
frame) and the texture runs, driven directly in a viewer."""

from __future__ import annotations

import json

import numpy as np
import pytest
from live_warp_helpers import start_tps_warp as _live

WAIT_MS = 20000


def _idle(qtbot, live):
    qtbot.waitUntil(lambda: not live.busy, timeout=WAIT_MS)


def _commit(layer, data, action, indices):
    """Set a Points layer's data as a user's edit does: the data, then the committed event."""
    with layer.events.data.blocker():
        layer.data = data
    layer.events.data(value=data, action=action, data_indices=indices)


def test_the_live_warp_is_composed_of_points_renderer_and_frame(geo_viewer):
    live = _live(geo_viewer)
    assert live.content_points is live.points.content
    assert live.target_points is live.points.target
    assert live.warped is live.renderer.layer
    assert live.side_by_side and live.frame.side_by_side
    # side by side: the output frame is right of the content, the content's own is unshifted
    np.testing.assert_allclose(live.content_points.translate, live.frame.translate)
    assert live.target_points.translate[-1] > live.frame.translate[-1] + 64
    np.testing.assert_allclose(live.warped.translate, live.target_points.translate)
    live.set_side_by_side(False)
    np.testing.assert_allclose(live.target_points.translate, live.content_points.translate)
    np.testing.assert_allclose(live.warped.translate, live.content_points.translate)


def test_adding_a_target_point_adds_its_partner_where_the_warp_puts_it(geo_viewer, qtbot):
    live = _live(geo_viewer, side_by_side=False)
    target = np.vstack([live.target_points.data, [[30.0, 40.0]]])
    _commit(live.target_points, target, "added", (9,))
    _idle(qtbot, live)
    control, target = live.pairs()
    assert len(control) == len(target) == 10
    # the partner sits where the current fit (3 px right) sends the new point back from
    np.testing.assert_allclose(control[-1], [30.0, 37.0], atol=1e-6)
    np.testing.assert_array_equal(live.content_points.features["number"], np.arange(1, 11))
    assert live.status == "10 point pairs"
    # deleting it deletes its partner
    _commit(live.target_points, np.array(live.target_points.data[:9]), "removed", (9,))
    _idle(qtbot, live)
    assert len(live.content_points.data) == len(live.target_points.data) == 9


def test_moving_a_point_refits_and_rewarps_and_undo_restores_it(geo_viewer, qtbot):
    live = _live(geo_viewer, side_by_side=False)
    before = np.array(live.warped.data)
    fitted = live.fitted
    moved = np.array(live.target_points.data)
    moved[4] += [0.0, 6.0]
    _commit(live.target_points, moved, "changed", (4,))
    assert live.fitted is not fitted  # re-fitted at once; the full warp runs in a worker
    np.testing.assert_allclose(live.transform.map_points([[32.0, 32.0]]), [[32.0, 41.0]])
    _idle(qtbot, live)
    qtbot.waitUntil(lambda: not np.array_equal(live.warped.data, before), timeout=WAIT_MS)
    assert live.can_undo and live.edited
    assert live.undo()
    _idle(qtbot, live)
    np.testing.assert_allclose(live.transform.map_points([[32.0, 32.0]]), [[32.0, 35.0]])
    assert live.redo() and not live.can_redo
    _idle(qtbot, live)


@pytest.mark.slow
def test_a_point_clicked_on_the_other_image_is_refused(geo_viewer, qtbot):
    live = _live(geo_viewer)  # side by side: the output is right of the content
    # a control point (content frame) placed over the output image, right of the content
    shift = live.frame.side_offset[-1] / live.frame.scale[-1]
    wrong = np.vstack([live.content_points.data, [[20.0, 20.0 + shift]]])
    _commit(live.content_points, wrong, "added", (9,))
    assert len(live.content_points.data) == len(live.target_points.data) == 9
    assert "not added" in live.status


@pytest.mark.slow
def test_too_few_active_pairs_say_how_many_more(geo_viewer, qtbot):
    live = _live(geo_viewer)
    control, target = live.pairs()
    assert not live.set_points(control[:2], target[:2])
    assert live.status.startswith("2 point pairs: add 1 more")
    assert live.set_points(control, target, active=[True] * 8 + [False])
    assert live.status == "9 point pairs (1 off)"
    _idle(qtbot, live)


@pytest.mark.slow
def test_exports_round_trip(geo_viewer, qtbot, tmp_path):
    from napari_geostyle.core.session import write_session
    from napari_geostyle.core.transforms import transform_from_dict

    live = _live(geo_viewer)
    control, target = live.pairs()
    csv = live.export_bigwarp_csv(tmp_path / "pairs.csv")
    live.set_points(control[:5], target[:5])
    _idle(qtbot, live)
    assert live.import_bigwarp_csv(csv)  # undoable, and the pairs are back
    _idle(qtbot, live)
    np.testing.assert_allclose(live.pairs()[0], control)
    np.testing.assert_allclose(live.pairs()[1], target)

    saved = live.export_transform_json(tmp_path / "transform.json")
    again = transform_from_dict(json.loads(saved.read_text()))
    np.testing.assert_allclose(again.map_points(control), live.transform.map_points(control))

    field_path = live.export_displacement_npy(tmp_path / "field")
    field = np.load(field_path)
    assert field_path.suffix == ".npy" and field.shape == (64, 64, 2)
    np.testing.assert_allclose(field[32, 32], [0.0, -3.0], atol=1e-4)  # pulled from 3 px left

    session = live.session()
    assert session["control_points"] == control.tolist() and session["fit_model"] == "tps"
    assert session["inputs"] == {"content": "content"} and session["pixel_stride"] == 1
    write_session(tmp_path / "session.json", session)
    assert json.loads((tmp_path / "session.json").read_text())["strength"] == 1.0


@pytest.mark.slow
def test_apply_to_warps_another_layer_over_the_output(geo_viewer, qtbot):
    live = _live(geo_viewer)
    labels = np.zeros((64, 64), np.int32)
    labels[20:40, 20:40] = 1
    layer = geo_viewer.add_labels(labels, name="mask")
    new = live.apply_to(layer)
    assert new.name == "mask warped" and new.data.dtype == labels.dtype
    np.testing.assert_allclose(new.translate, live.target_points.translate)
    # the mask moved 3 px right, nearest neighbour: labels stay labels
    assert set(np.unique(new.data)) == {0, 1}
    assert new.data[30, 42] == 1 and new.data[30, 21] == 0
    assert geo_viewer.layers.selection.active is not new  # a drag still moves a point


@pytest.mark.slow
def test_a_retired_unedited_warp_leaves_no_layer(geo_viewer, qtbot):
    live = _live(geo_viewer)
    live.show_grid(True)
    assert live.retire(replaced=True) == ""
    assert live.closed
    names = [layer.name for layer in geo_viewer.layers]
    assert names == ["content", "style"]


@pytest.mark.slow
def test_texture_run_finishes_into_a_layer(geo_viewer, qtbot):
    from napari_geostyle._napari.runs import texture_run

    done = []
    run = texture_run(
        geo_viewer,
        "content",
        "style",
        on_done=done.append,
        size=32,
        levels=1,
        iterations=2,
        backbone="random",
        device="cpu",
    )
    qtbot.waitUntil(lambda: bool(done), timeout=WAIT_MS)
    assert done == [run] and run.error is None
    layer = geo_viewer.layers["content textured"]
    assert run.output.name == layer.name and layer.data.shape == (32, 32, 3)  # RGB, as the content
    np.testing.assert_allclose(layer.scale, (2.0, 2.0))  # at size 32: laid over the 64 px content
    record = layer.metadata["geostyle"]
    assert record["complete"] is True and record["inputs"]["texture_style"] == ["style"]


def test_a_texture_run_checks_its_options_in_the_caller(geo_viewer):
    from napari_geostyle._napari.runs import texture_run
    from napari_geostyle._napari.stack_run import stack_texture_run

    with pytest.raises(ValueError):
        texture_run(geo_viewer, "content", "style", levels=0)
    with pytest.raises(ValueError, match="also a texture style"):
        texture_run(geo_viewer, "content", "content")
    with pytest.raises(ValueError, match="single 2D image"):
        stack_texture_run(geo_viewer, "content", "style")
    assert len(geo_viewer.layers) == 2


@pytest.mark.slow
def test_stack_texture_run_fills_every_frame(make_napari_viewer_proxy, qtbot):
    from napari_geostyle._napari.stack_run import stack_texture_run

    viewer = make_napari_viewer_proxy()
    rng = np.random.default_rng(0)
    viewer.add_image(rng.random((2, 32, 32)).astype(np.float32), name="stack")
    viewer.add_image(rng.random((32, 32)).astype(np.float32), name="style")
    done = []
    run = stack_texture_run(
        viewer,
        "stack",
        "style",
        on_done=done.append,
        size=32,
        levels=1,
        iterations=2,
        backbone="random",
        device="cpu",
    )
    qtbot.waitUntil(lambda: bool(done), timeout=WAIT_MS)
    assert run.error is None and run.frames_done == 2
    layer = viewer.layers["stack textured"]
    assert layer.data.shape == (2, 32, 32)
    record = layer.metadata["geostyle"]
    assert record["complete"] is True and record["options"]["all_frames"] is True


@pytest.mark.slow
def test_an_edited_warp_hands_its_layers_over_and_keeps_hidden_copies(geo_viewer, qtbot):
    live = _live(geo_viewer)
    control, target = live.pairs()
    live.set_points(control, target + [0.0, 1.0])  # an edit: the old landmarks are kept
    _idle(qtbot, live)
    note, reuse = live.hand_over()
    assert live.closed and "(old)" in note
    assert reuse["warped"] is live.warped and reuse["target"] is live.target_points
    # the hidden copies come one per event-loop turn
    qtbot.waitUntil(lambda: len(geo_viewer.layers) == 8, timeout=WAIT_MS)
    copies = [layer for layer in geo_viewer.layers if layer.name.endswith("(old)")]
    assert len(copies) == 3 and not any(layer.visible for layer in copies)
    # the next warp updates the handed-over layers in place: no new layer
    again = _live(geo_viewer, reuse=reuse)
    assert len(geo_viewer.layers) == 8
    assert again.target_points is reuse["target"] and again.warped is reuse["warped"]
    assert again.status == "9 point pairs"
