"""Landmark fits by model (rigid, similarity, affine, TPS), residuals, and result kinds."""

import numpy as np
import pytest

from napari_geostyle.core.images import match_kind
from napari_geostyle.core.landmark_models import FIT_MODELS, fit_landmarks, landmark_residuals
from napari_geostyle.core.transforms import fit_rigid, fit_similarity


def _rotation(degrees):
    angle = np.deg2rad(degrees)
    return np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])


@pytest.fixture
def points():
    return np.random.default_rng(3).uniform(0, 80, (7, 2))


def test_fit_rigid_recovers_a_known_rotation_and_translation(points):
    rotation = _rotation(25.0)
    moved = points @ rotation.T + [4.0, -7.5]
    transform = fit_rigid(points, moved)
    np.testing.assert_allclose(transform.matrix[:2, :2], rotation, atol=1e-10)
    np.testing.assert_allclose(transform.matrix[:2, 2], [4.0, -7.5], atol=1e-9)
    # a scaled copy: a rigid fit keeps unit scale (least squares, no shrinking)
    scaled = fit_rigid(points, 2.0 * moved)
    assert np.isclose(abs(np.linalg.det(scaled.matrix[:2, :2])), 1.0)


def test_fit_similarity_recovers_scale_rotation_translation(points):
    rotation = _rotation(-40.0)
    moved = 1.6 * points @ rotation.T + [10.0, 2.0]
    transform = fit_similarity(points, moved)
    np.testing.assert_allclose(transform.matrix[:2, :2], 1.6 * rotation, atol=1e-10)
    np.testing.assert_allclose(transform.matrix[:2, 2], [10.0, 2.0], atol=1e-9)


def test_rigid_fit_never_mirrors(points):
    mirrored = points * [1.0, -1.0]
    transform = fit_rigid(points, mirrored)
    assert np.linalg.det(transform.matrix[:2, :2]) > 0


def test_residuals_point_at_the_misplaced_landmark(points):
    moved = points @ _rotation(10.0).T + [3.0, 3.0]
    moved[2] += [9.0, 0.0]  # one landmark placed wrongly
    for model in ("rigid", "similarity", "affine"):
        transform = fit_landmarks(points, moved, model)
        residuals = landmark_residuals(transform, points, moved)
        assert residuals.argmax() == 2, model
    tps = fit_landmarks(points, moved, "tps")
    assert landmark_residuals(tps, points, moved).max() < 1e-3
    assert set(FIT_MODELS) == {"rigid", "similarity", "affine", "tps"}
    with pytest.raises(ValueError, match="unknown landmark model"):
        fit_landmarks(points, moved, "projective")


def test_match_kind_keeps_gray_and_dtype():
    result = np.random.default_rng(0).random((8, 8, 3)).astype(np.float32)
    gray16 = np.zeros((8, 8), np.uint16)
    out = match_kind(result, gray16, value_range=(100, 4100))
    assert out.shape == (8, 8) and out.dtype == np.uint16
    assert 100 <= out.min() and out.max() <= 4100
    colour = match_kind(result, gray16, keep_color=True)
    assert colour.shape == (8, 8, 3) and colour.dtype == np.uint16
    rgb8 = match_kind(result, np.zeros((8, 8, 3), np.uint8))
    assert rgb8.shape == (8, 8, 3) and rgb8.dtype == np.uint8
    np.testing.assert_array_equal(rgb8, np.rint(result * 255).astype(np.uint8))
    floats = match_kind(result, np.zeros((8, 8), np.float64))
    assert floats.dtype == np.float32 and floats.ndim == 2


def test_session_file_round_trip_and_bad_files(tmp_path):
    from napari_geostyle.core.session import read_session, write_session

    path = write_session(
        tmp_path / "s.json",
        {
            "inputs": {"content": "content"},
            "control_points": [[1.0, 2.0], [3.0, 4.0]],
            "target_points": [[1.5, 2.0], [3.5, 4.0]],
            "active": [True, False],
            "fit_model": "similarity",
            "strength": 0.5,
        },
    )
    record = read_session(path)
    np.testing.assert_allclose(record["target_points"], [[1.5, 2.0], [3.5, 4.0]])
    assert record["active"].tolist() == [True, False] and record["fit_model"] == "similarity"
    (tmp_path / "other.json").write_text('{"points": []}')
    with pytest.raises(ValueError, match="not a GeoStyle session"):
        read_session(tmp_path / "other.json")
    write_session(
        tmp_path / "odd.json",
        {"inputs": {"content": "c"}, "control_points": [[1.0, 2.0]], "target_points": []},
    )
    with pytest.raises(ValueError, match="1 control points but 0 target"):
        read_session(tmp_path / "odd.json")
