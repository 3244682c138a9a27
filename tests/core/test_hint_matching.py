"""Local feature matching around a hinted estimate (core/hint_matching.py)."""

import numpy as np
import pytest

from napari_geostyle.core import hint_matching
from napari_geostyle.core.hint_matching import DisplacementField, MatchSettings, match_field
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
    field = match_field(features, features, lambda xy: xy, hints, MatchSettings())
    grid = np.stack(np.meshgrid(np.linspace(-0.7, 0.7, 5), np.linspace(-0.7, 0.7, 5)), -1)
    assert np.abs(field(grid.reshape(-1, 2))).max() < 0.02


def test_matching_moves_a_shifted_estimate_towards_the_features():
    import torch

    features = _smooth_features(2, size=48)
    # the style is the content shifted by 0.08 in x; the estimate (identity) misses it, and one
    # hint far off in a corner holds its own place
    shifted = torch.roll(features, shifts=2, dims=2)  # 2 of 48 cells = 0.083 normalised
    hints = _hints(np.array([[-0.9, -0.9]]), np.array([[-0.9 + 0.083, -0.9]]))
    field = match_field(features, shifted, lambda xy: xy, hints, MatchSettings())
    moved = field(np.array([[0.0, 0.0], [0.3, -0.3], [-0.3, 0.4]]))
    assert np.all(moved[:, 0] > 0.04), moved  # most of the way to 0.083, not away from it
    assert np.all(np.abs(moved[:, 1]) < 0.03), moved


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
