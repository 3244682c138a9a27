"""The batch's typed task outcomes and their one conversion to manifest entries (no Dask run)."""

import dataclasses
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from napari_geostyle.core import media
from napari_geostyle.core.batch import records, tasks
from napari_geostyle.core.batch.outcomes import GeometryOutcome, ImageOutcome, SequenceOutcome
from napari_geostyle.core.transforms import AffineTransform

ITEM_KEYS = ["output", "kind", "source", "frame", "status", "key", "geometry_style",
             "texture_style", "transform", "timings", "device", "worker", "error",
             "models_loaded", "finished"]  # fmt: skip
SHIFT = AffineTransform([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0], [0.0, 0.0, 1.0]]).to_dict()


def _plan(tmp_path: Path) -> SimpleNamespace:
    """What the records read of a plan."""
    return SimpleNamespace(
        folder=tmp_path,
        item_styles={"a.png": ("geometry0", None), "clip_frames/clip_000001.png": (None, None)},
        described={"geometry0": "style.png"},
        keys={"a.png": "key-a", "clip_frames/clip_000001.png": "key-f", "clip.mp4": "key-clip"},
    )


def _image(**changes) -> ImageOutcome:
    done = ImageOutcome(output="a.png", status="done", data=b"png", error=None,
                        transform=SHIFT, estimated=None, confidence=None, geometry_batch=None,
                        timings={"total": 1.0}, device="cpu", worker=None, models_loaded=0)  # fmt: skip
    return dataclasses.replace(done, **changes)


def test_an_image_entry_has_the_manifest_keys_in_order_and_optional_ones_only_when_known(
    tmp_path,
):
    plan = _plan(tmp_path)
    item = media.InputItem(output="a.png", source="in/a.png", digest="d")
    entry = records._item_entry(plan, item, _image())
    assert list(entry) == ITEM_KEYS
    assert entry["geometry_style"] == "style.png" and entry["texture_style"] is None
    assert entry["transform"] == SHIFT and entry["key"] == "key-a"
    full = records._item_entry(
        plan, item, _image(geometry_batch=4, estimated=SHIFT, confidence=0.75)
    )
    assert list(full) == [*ITEM_KEYS, "geometry_batch", "estimated_transform", "confidence"]
    assert (full["geometry_batch"], full["estimated_transform"], full["confidence"]) == (
        4, SHIFT, 0.75
    )  # fmt: skip
    result = records._as_result(plan, {**entry, "status": "skipped"})
    assert (result.output, result.status, result.path) == ("a.png", "skipped", tmp_path / "a.png")


def test_a_sequence_entry_names_audio_and_fps_only_for_a_written_video(tmp_path):
    plan = _plan(tmp_path)
    clip = media.InputSequence(output="clip.mp4", source="in/clip.mp4", kind="video", fps=None)
    keys = ["output", "kind", "source", "frame", "status", "key", "transform", "error", "frames"]
    failed = SequenceOutcome("clip.mp4", "failed", "1 frame(s) failed", 3, {"total": 0.1})
    entry = records._sequence_entry(plan, clip, failed)
    assert list(entry) == [*keys, "timings"]
    assert (entry["status"], entry["error"], entry["frames"]) == ("failed", "1 frame(s) failed", 3)
    written = SequenceOutcome("clip.mp4", "done", None, 3, {"total": 0.1}, "no audio", None)
    entry = records._sequence_entry(plan, clip, written)
    assert list(entry) == [*keys, "audio", "fps", "timings"]  # an fps of None is still named
    assert (entry["audio"], entry["fps"], entry["key"]) == ("no audio", None, "key-clip")
    assert records._not_done_entry("a.png", "item", "key-a", "disk full") == {
        "output": "a.png", "kind": "item", "status": "failed", "key": "key-a",
        "error": "not done: disk full",
    }  # fmt: skip


def test_outcomes_are_frozen_and_cross_processes():
    for outcome in (
        GeometryOutcome("a.png", SHIFT, seconds=0.5, batch=2, confidence=0.9),
        _image(),
        SequenceOutcome("s.tif", "done", None, 2, {"total": 0.0}),
    ):
        assert pickle.loads(pickle.dumps(outcome)) == outcome
        with pytest.raises(dataclasses.FrozenInstanceError):
            outcome.status = "x"  # type: ignore[misc]


def test_a_chunk_reference_and_a_known_estimate_resolve_to_their_outcome():
    chunk = [GeometryOutcome("a.png", SHIFT), GeometryOutcome("b.png", None, "ValueError: x")]
    assert tasks._resolve({"chunk": chunk, "position": 1}) is chunk[1]
    assert tasks._resolve(chunk[0]) is chunk[0]


def test_smoothing_keeps_the_own_estimate_and_its_chunk_cost():
    settings = {"per_frame": {"smooth_frames": 3, "smooth_kernel": "box"}}
    window = [GeometryOutcome(f"f{i}.png", SHIFT, seconds=0.5, batch=3) for i in range(3)]
    smoothed = tasks._task_smooth(1, window, settings, (16, 16))
    assert (smoothed.output, smoothed.error, smoothed.seconds, smoothed.batch) == (
        "f1.png", None, 0.5, 3
    )  # fmt: skip
    assert smoothed.estimated == SHIFT
    np.testing.assert_allclose(smoothed.transform["matrix"], SHIFT["matrix"], atol=1e-9)
    window[1] = GeometryOutcome("f1.png", None, "ValueError: too small", seconds=0.5, batch=3)
    failed = tasks._task_smooth(1, window, settings, (16, 16))
    assert (failed.transform, failed.error, failed.batch) == (None, "ValueError: too small", 3)


def test_an_image_task_warps_with_its_chunk_outcome_and_reports_a_failed_previous_frame():
    image = (np.arange(16 * 16 * 3) % 251).astype(np.uint8).reshape(16, 16, 3)
    item = media.InputItem(output="a.png", source="array 0", digest="d", stored=image)
    settings = {"device": "cpu"}
    estimate = GeometryOutcome("a.png", SHIFT, seconds=0.25, batch=4, confidence=0.8)
    outcome = tasks._task_item(item, None, None, settings, {"chunk": [estimate], "position": 0})
    assert isinstance(outcome, ImageOutcome)
    assert (outcome.status, outcome.error, outcome.device) == ("done", None, "cpu")
    assert (outcome.geometry_batch, outcome.confidence, outcome.timings["geometry"]) == (
        4, 0.8, 0.25
    )  # fmt: skip
    assert outcome.transform == SHIFT and outcome.estimated is None
    assert media.decode_image(outcome.data, "a.png").shape == image.shape
    # the sequence's reference frame's estimate: not this frame's own, so no geometry cost
    reference = GeometryOutcome("b.png", SHIFT, seconds=0.25, batch=4, confidence=0.8)
    borrowed = tasks._task_item(item, None, None, settings, {"chunk": [reference], "position": 0})
    assert borrowed.geometry_batch is None and "geometry" not in borrowed.timings
    assert borrowed.confidence == 0.8
    previous = _image(output="b.png", status="failed", data=None, error="ValueError: boom")
    failed = tasks._task_item(item, None, None, settings, None, previous)
    assert (failed.status, failed.data) == ("failed", None)
    assert failed.error == "ValueError: the previous frame failed (ValueError: boom)"
