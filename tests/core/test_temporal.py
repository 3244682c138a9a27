"""Smoothing over time (core/temporal.py): series, transforms, jitter; per-frame stack runs."""

import numpy as np
import pytest

import napari_geostyle as gs
from napari_geostyle.core import temporal
from napari_geostyle.core.transforms import (
    AffineTransform,
    ComposedTransform,
    TPSTransform,
    tps_from_grid_params,
    tps_identity_params,
)

SHAPE = (48, 64)
PROBES = np.array([[3.0, 5.0], [20.5, 31.0], [40.0, 12.0], [47.0, 63.0]])


def _warp(shift, bend=0.0):
    """Affine (scale + a translation ``shift``) then a TPS on the 3 x 3 control grid."""
    affine = AffineTransform([[1.05, 0.02, shift[0]], [-0.03, 0.95, shift[1]], [0, 0, 1]])
    params = tps_identity_params(3).copy()
    params[4] += bend  # the centre control point's x
    return ComposedTransform([affine, tps_from_grid_params(params, SHAPE, SHAPE)])


@pytest.mark.parametrize("kernel", temporal.KERNELS)
def test_constant_sequence_stays_constant(kernel):
    values = np.tile([[1.5, -2.0, 7.0]], (9, 1))
    assert np.allclose(temporal.smooth_series(values, 5, kernel), values, rtol=0, atol=1e-12)
    warps = temporal.smooth_transforms([_warp((2.0, -1.0), 0.1)] * 7, 5, kernel)
    assert all(isinstance(w, ComposedTransform) for w in warps)
    assert [type(p) for p in warps[3].transforms] == [AffineTransform, TPSTransform]
    reference = _warp((2.0, -1.0), 0.1).sample_points(PROBES)  # off the control grid too
    for warp in warps:
        assert np.allclose(warp.sample_points(PROBES), reference, rtol=0, atol=1e-9)


@pytest.mark.parametrize("kernel", temporal.KERNELS)
def test_jitter_shrinks_by_the_expected_factor(kernel):
    noise = np.random.default_rng(1).normal(0.0, 1.0, (40000, 2))
    smoothed = temporal.smooth_series(noise, 5, kernel)[10:-10]
    gain = temporal.noise_gain(5, kernel)
    # the property itself: smoothing is linear, so the gain is the norm of its impulse response
    impulse = np.zeros(21)
    impulse[10] = 1.0
    response = temporal.smooth_series(impulse, 5, kernel)
    assert np.sqrt((response**2).sum()) == pytest.approx(gain, rel=1e-9)
    # and on noise, 40000 draws: the ratio's spread is about 0.5 %; 3 % is six times that
    assert smoothed.std() / noise.std() == pytest.approx(gain, rel=0.03)
    if kernel == "box":
        assert gain == pytest.approx(1 / np.sqrt(5))
    assert gain < 0.6  # a window of 5 halves the jitter or better
    assert temporal.noise_gain(1, kernel) == 1.0  # a window of one frame leaves it alone


@pytest.mark.parametrize("kernel", temporal.KERNELS)
def test_linear_drift_is_kept_in_the_middle(kernel):
    t = np.arange(20.0)
    values = np.stack([3.0 + 0.7 * t, -2.0 * t], axis=1)
    smoothed = temporal.smooth_series(values, 7, kernel)
    assert np.allclose(smoothed[3:-3], values[3:-3], rtol=0, atol=1e-9)
    # a moving subject with jittered estimates: the drift survives, the jitter does not
    rng = np.random.default_rng(2)
    jitter = rng.normal(0.0, 1.5, (20, 2))
    warps = [_warp(1.5 * ti + j) for ti, j in zip(t, jitter)]
    smooth = temporal.smooth_transforms(warps, 7, kernel)
    matrices = np.stack([w.transforms[0].matrix[:2, 2] for w in smooth])
    expected = temporal.smooth_series(1.5 * t[:, None] + jitter, 7, kernel)
    assert np.allclose(matrices, expected, rtol=0, atol=1e-9)
    # 0.06-0.16 of the raw jitter over 200 noise seeds (either kernel): 0.5 is far from both
    assert temporal.lattice_jitter(smooth, SHAPE) < 0.5 * temporal.lattice_jitter(warps, SHAPE)
    steady = [_warp((1.5 * ti, 0.0)) for ti in t]
    assert temporal.lattice_jitter(steady, SHAPE) == pytest.approx(0.0, abs=1e-9)
    assert temporal.lattice_jitter(
        temporal.smooth_transforms(steady, 7, kernel)[3:-3], SHAPE
    ) == pytest.approx(0.0, abs=1e-9)


def test_missing_frames_are_skipped_not_read():
    values = np.full((8, 2), 2.0)
    values[3] = 1e9  # a failed estimate: marked invalid, never read
    valid = np.ones(8, bool)
    valid[3] = False
    assert np.allclose(temporal.smooth_series(values, 5, valid=valid), 2.0)
    warps = [_warp((float(i), 0.0)) for i in range(6)]
    warps[2] = None
    smooth = temporal.smooth_transforms(warps, 3, "box")
    assert np.allclose(smooth[2].transforms[0].matrix[0, 2], (1.0 + 3.0) / 2)
    assert np.allclose(smooth[1].transforms[0].matrix[0, 2], (0.0 + 1.0) / 2)
    alone = temporal.smooth_transforms([None, None, _warp((0.0, 0.0)), None, None], 3)
    assert [w is None for w in alone] == [True, False, False, False, True]
    with pytest.raises(ValueError, match="no frame"):
        temporal.smooth_transforms([None, None], 3)


def test_mixed_forms_are_smoothed_on_a_lattice():
    warps = [AffineTransform(np.eye(3)), _warp((1.0, 1.0)), AffineTransform(np.eye(3))]
    with pytest.raises(ValueError, match="frame shape"):
        temporal.smooth_transforms(warps, 3)
    smooth = temporal.smooth_transforms(warps, 1, shape=SHAPE)
    assert all(isinstance(w, TPSTransform) for w in smooth)
    lattice = smooth[1].output_points  # a window of 1: each frame exact on the lattice
    assert np.allclose(smooth[1].sample_points(lattice), warps[1].sample_points(lattice))


@pytest.mark.parametrize("window", [0, 4, -1, 2.0, True, "5"])
def test_bad_windows(window):
    with pytest.raises(ValueError, match="odd whole number"):
        temporal.smoothing_weights(window)


def test_options_and_windows():
    with pytest.raises(ValueError, match="kernel"):
        temporal.smoothing_weights(3, "median")
    with pytest.raises(ValueError, match="coherent"):
        temporal.per_frame_options(True, 5, "gaussian", coherent=False)
    assert temporal.per_frame_options(False, 5, "box", coherent=False) is None
    assert list(temporal.window_range(0, 10, 5)) == [0, 1, 2]
    assert list(temporal.window_range(9, 10, 5)) == [7, 8, 9]


def _scene(t: int) -> np.ndarray:
    rows, cols = np.mgrid[0:48, 0:48]
    image = np.zeros((48, 48, 3), np.uint8)
    image[..., 2] = (40 + 2 * rows).astype(np.uint8)
    image[(rows - 24) ** 2 + (cols - 10 - 3 * t) ** 2 < 64] = (230, 80, 40)
    image[(abs(rows - 10 - t) < 5) & (abs(cols - 36) < 5)] = (40, 200, 90)
    return image


@pytest.mark.slow
def test_stack_run_per_frame_geometry_is_the_smoothed_estimates():
    frames = np.stack([_scene(2 * t) for t in range(4)])
    style = _scene(3)[:, ::-1].copy()
    options = {"model": "affine", "device": "cpu"}
    steps = list(
        gs.iter_stack_transfer(
            frames,
            None,
            style,
            geometry_per_frame=True,
            smooth_frames=3,
            smooth_kernel="box",
            **options,
        )
    )
    assert [s.frame for s in steps] == list(range(4)) and steps[-1].done
    estimates = [gs.estimate_warp(frame, style, **options) for frame in frames]
    expected = temporal.smooth_transforms(estimates, 3, "box")
    for step, want in zip(steps, expected):
        assert np.allclose(step.transform.matrix, want.matrix, rtol=0, atol=1e-6)
        assert np.array_equal(
            step.image, gs.warp_image(frames[step.frame], step.transform, device="cpu")
        )
    with pytest.raises(ValueError, match="coherent"):
        gs.iter_stack_transfer(frames, None, style, coherent=False, geometry_per_frame=True)
