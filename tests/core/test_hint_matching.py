"""Local feature matching around a hinted estimate (core/hint_matching.py)."""

import numpy as np
import pytest

from napari_geostyle.core import hint_matching
from napari_geostyle.core.hint_matching import (
    DisplacementField,
    FeatureMatcher,
    MatchSettings,
    match_field,
)
from napari_geostyle.core.hints import check_hints


def test_displacement_field_interpolates_and_damps_a_lone_outlier():
    rng = np.random.default_rng(0)
    points = rng.uniform(-0.8, 0.8, (40, 2))
    shift = np.tile([0.05, -0.02], (40, 1))
    exact = DisplacementField(points, shift, np.ones(40), sigma=0.4, ridge=1e-6)
    np.testing.assert_allclose(exact(points), shift, atol=1e-3)

    noisy = shift.copy()
    noisy[0] = [0.5, 0.5]  # one wild match among consistent ones
    smooth = DisplacementField(points, noisy, np.ones(40), sigma=0.2, ridge=1.0)
    assert np.linalg.norm(smooth(points[:1]) - shift[:1]) < 0.5 * np.linalg.norm(
        noisy[0] - shift[0]
    )


def _smooth_features(seed: int, channels: int = 16, size: int = 24):
    import torch
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, channels, 6, 6, generator=generator)
    features = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    return F.normalize(features, dim=1)[0]


def _hints(content_xy, style_xy, shape=(64, 64)):
    from napari_geostyle.core.images import normalized_to_pixel

    return check_hints(
        (normalized_to_pixel(content_xy, shape), normalized_to_pixel(style_xy, shape)), shape, shape
    )


def test_same_features_and_a_right_estimate_leave_the_warp_in_place():
    features = _smooth_features(1)
    hints = _hints(np.array([[-0.3, -0.2], [0.3, 0.1]]), np.array([[-0.3, -0.2], [0.3, 0.1]]))
    settings = MatchSettings()
    field = match_field(
        FeatureMatcher(features, features, settings), lambda xy: xy, hints, settings
    )
    grid = np.stack(np.meshgrid(np.linspace(-0.7, 0.7, 5), np.linspace(-0.7, 0.7, 5)), -1)
    assert np.abs(field(grid.reshape(-1, 2))).max() < 0.02


def test_matching_moves_a_shifted_estimate_towards_the_features():
    import torch

    features = _smooth_features(2, size=48)
    # the style is the content shifted by 0.08 in x; the estimate (identity) misses it, and one
    # hint far off in a corner holds its own place
    shifted = torch.roll(features, shifts=2, dims=2)  # 2 of 48 cells = 0.083 normalised
    hints = _hints(np.array([[-0.9, -0.9]]), np.array([[-0.9 + 0.083, -0.9]]))
    settings = MatchSettings()
    field = match_field(FeatureMatcher(features, shifted, settings), lambda xy: xy, hints, settings)
    moved = field(np.array([[0.0, 0.0], [0.3, -0.3], [-0.3, 0.4]]))
    assert np.all(moved[:, 0] > 0.04), moved  # most of the way to 0.083, not away from it
    assert np.all(np.abs(moved[:, 1]) < 0.03), moved


def test_known_matches_move_the_returned_warp_onto_them():
    """The field and the new TPS follow the matches they are given (how the ceiling analysis
    feeds true positions): matches 0.1 to the right of an identity estimate, and a hint that
    agrees, move the warp's interior 0.1 to the right."""
    import torch

    from napari_geostyle.core.images import normalized_to_pixel
    from napari_geostyle.core.transforms import ComposedTransform, fit_affine, fit_tps

    shape = (64, 64)
    hints = _hints(np.array([[0.0, 0.0]]), np.array([[0.1, 0.0]]), shape)

    def shifted_matches(content_xy, here, factor=1.0):
        return content_xy + [0.1, 0.0], np.ones(len(content_xy))

    corners = np.array([[0.0, 0.0], [0.0, 63.0], [63.0, 0.0], [63.0, 63.0]])
    identity = ComposedTransform([fit_affine(corners, corners), fit_tps(corners, corners)])
    unused = torch.zeros(1, 3, *shape)
    moved = hint_matching.match_around_hints(
        identity, unused, unused, hints, trunk=None, matcher=shifted_matches
    )
    probe_xy = np.array([[-0.4, -0.3], [0.2, 0.4], [0.3, -0.2]])
    probe = normalized_to_pixel(probe_xy, shape)
    expected = normalized_to_pixel(probe_xy + [0.1, 0.0], shape)
    np.testing.assert_allclose(moved.map_points(probe), expected, atol=0.05 * 32)


def _stretched_matches(content_xy, here, factor=1.0):
    """Every content point matches 1.2x farther from the centre along x (an affine)."""
    return content_xy * [1.2, 1.0], np.ones(len(content_xy))


def test_refit_pose_finds_the_affine_the_matches_agree_on():
    hints = _hints(np.array([[-0.3, -0.2], [0.3, 0.1]]), np.array([[-0.36, -0.2], [0.36, 0.1]]))
    settings = MatchSettings()
    correction = hint_matching.refit_pose(_stretched_matches, lambda xy: xy, hints, settings)
    np.testing.assert_allclose(correction, np.diag([1.2, 1.0, 1.0]), atol=1e-6)


def test_a_confident_estimate_keeps_its_pose_and_a_doubtful_one_takes_the_matches():
    """Two hints and matches that stretch the content 1.2x: an estimate with confidence 0 takes
    the stretch as its pose (far corners right), one with confidence 1 is left to the smooth
    field, which moves it less there."""
    import torch

    from napari_geostyle.core.images import normalized_to_pixel
    from napari_geostyle.core.transforms import ComposedTransform, fit_affine, fit_tps

    shape = (64, 64)
    hints = _hints(np.array([[-0.3, 0.0], [0.3, 0.0]]), np.array([[-0.36, 0.0], [0.36, 0.0]]))
    corners = np.array([[0.0, 0.0], [0.0, 63.0], [63.0, 0.0], [63.0, 63.0]])
    identity = ComposedTransform([fit_affine(corners, corners), fit_tps(corners, corners)])
    unused = torch.zeros(1, 3, *shape)
    probe_xy = np.array([[-0.75, -0.6], [0.75, 0.6], [0.7, -0.7]])
    truth = normalized_to_pixel(probe_xy * [1.2, 1.0], shape)

    def error(confidence):
        moved = hint_matching.match_around_hints(
            identity, unused, unused, hints, None, matcher=_stretched_matches,
            confidence=confidence,
        )  # fmt: skip
        return np.abs(moved.map_points(normalized_to_pixel(probe_xy, shape)) - truth).max()

    assert error(0.0) < 0.5 < error(1.0), (error(0.0), error(1.0))


@pytest.fixture
def imagenet_trunk():
    trunk = hint_matching.matching_trunk("cpu")
    if trunk is None:
        pytest.skip("the ImageNet EfficientNet-Lite0 weights are not installed")
    return trunk


def _bent_pair():
    """A photo and the same photo bent by a smooth non-affine warp, with the warp's truth."""
    from skimage import data, transform

    from napari_geostyle.core.transforms import fit_tps
    from napari_geostyle.core.warp import warp_image

    content = (transform.resize(data.astronaut()[20:260, 120:360], (128, 128)) * 255).astype(
        np.uint8
    )
    side = np.linspace(8, 119, 4)
    grid = np.stack(np.meshgrid(side, side, indexing="ij"), -1).reshape(-1, 2)
    rng = np.random.default_rng(3)
    bent = grid + rng.uniform(-7, 7, grid.shape)
    truth = fit_tps(grid, bent)  # content -> style pixels
    style = warp_image(content, truth, device="cpu")
    return content, style, truth


def test_hinted_estimate_with_local_matching_lands_closer_to_a_known_bend(
    imagenet_trunk, monkeypatch
):
    from napari_geostyle import estimate_warp

    content, style, truth = _bent_pair()
    clicks = np.array([[40.0, 45.0], [42.0, 85.0], [90.0, 64.0]])
    hints = (clicks, truth.map_points(clicks))
    side = np.linspace(20, 108, 6)
    probe = np.stack(np.meshgrid(side, side, indexing="ij"), -1).reshape(-1, 2)

    def error(**options):
        tf = estimate_warp(content, style, model="affine+tps", hints=hints, device="cpu")
        return np.linalg.norm(tf.map_points(probe) - truth.map_points(probe), axis=1).mean()

    matched = error()
    monkeypatch.setattr(hint_matching, "matching_trunk", lambda device=None: None)
    unmatched = error()
    assert matched < unmatched, (matched, unmatched)


def test_hints_stay_exact_after_matching(imagenet_trunk):
    from napari_geostyle import estimate_warp

    content, style, truth = _bent_pair()
    clicks = np.array([[40.0, 45.0], [42.0, 85.0], [90.0, 64.0]])
    targets = truth.map_points(clicks)
    tf = estimate_warp(content, style, model="tps", hints=(clicks, targets), device="cpu")
    np.testing.assert_allclose(tf.map_points(clicks), targets, atol=0.5)
