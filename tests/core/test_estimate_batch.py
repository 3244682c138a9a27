"""estimate_warps: many pairs, the networks batched, the same transforms as pair by pair."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data

torch = pytest.importorskip("torch")

import napari_geostyle
from napari_geostyle.core import estimate, warp_params
from napari_geostyle.core.images import regular_grid_points, rgb_tensor


@pytest.fixture(scope="module")
def pairs():
    """Three pairs of three different sizes and aspects (contents and styles differ)."""
    astronaut = skimage.data.astronaut()[::4, ::4]  # 128 x 128
    coffee = skimage.data.coffee()[::4, ::4]  # 100 x 150
    chelsea = skimage.data.chelsea()[::5, ::5]  # 60 x 90
    return [astronaut, coffee, chelsea], [coffee, chelsea[:, ::-1], astronaut]


def _sampled(tf, shape):
    return tf.sample_points(regular_grid_points(shape, 9))


# the search starts exercise the batched choice among starts (and, for "tps", the affine folded
# into the TPS); "identity" keeps the affine case short (its stage also runs in "affine+tps")
@pytest.mark.parametrize(
    "model, init",
    [
        ("affine", "identity"),
        pytest.param("tps", "search", marks=pytest.mark.slow),
        pytest.param("affine+tps", "search", marks=pytest.mark.slow),
    ],
)
def test_batched_warps_equal_pair_by_pair_for_pairs_of_different_sizes(pairs, model, init):
    contents, styles = pairs
    # batch_size 2: a full batch of two, then a batch of one
    batched = estimate.estimate_warps(
        contents, styles, model=model, device="cpu", init=init, batch_size=2
    )
    assert len(batched) == len(contents)
    for content, style, tf in zip(contents, styles, batched, strict=True):
        single = estimate.estimate_warp(content, style, model=model, device="cpu", init=init)
        assert type(tf) is type(single)
        # in the content's own pixels: the same map as the pair alone, to float rounding
        np.testing.assert_allclose(
            _sampled(tf, content.shape), _sampled(single, content.shape), atol=1e-3
        )


def test_batched_refinement_starts_and_ends_where_pair_by_pair_does(pairs):
    contents, styles = pairs
    tensors = [rgb_tensor(c) for c in contents], [rgb_tensor(s) for s in styles]
    options = estimate.GeometryOptions("affine", "refine", init="identity")
    batched = estimate.estimate_parameters_batch(*tensors, options, "cpu", refine_iterations=3)
    for content, style, params in zip(*tensors, batched, strict=True):
        single = estimate.estimate_parameters(content, style, options, "cpu", refine_iterations=3)
        assert params.start == single.start
        assert params.damped == single.damped
        # the refinement starts from the same network estimate; Adam's sign-like steps may
        # turn float rounding of that start into small differences of the end
        assert params.objective[0] == pytest.approx(single.objective[0], rel=1e-5)
        assert params.objective[1] < params.objective[0]
        assert params.objective[1] == pytest.approx(single.objective[1], rel=0.02)
        # each Adam step moves an element by at most about lr; both runs start at the same
        # estimate and part only where a gradient near zero changed sign, so their ends differ
        # by less than one run's whole travel (3 steps on each level of the objective)
        travel = estimate.refine_steps("affine", 3) * estimate.REFINE["affine_lr"]
        np.testing.assert_allclose(params.theta, single.theta, atol=travel)


def test_rows_are_damped_each_as_on_its_own():
    identity = warp_params.identity_params("tps")
    folded = identity.clone()
    folded[0], folded[2] = 1.0, -1.0  # top-left and top-right control points swapped in x
    mirrored = identity.clone()
    mirrored[:9] *= -10  # x mirrored and stretched: every damping but the identity folds
    rows = torch.stack([identity + 0.05, folded, mirrored])
    damped, factors = estimate.damp_folding_rows("tps", rows)
    assert factors[0] == 1.0 and factors[1] < 1.0 and factors[2] == 0.0
    for row, damped_row, factor in zip(rows, damped, factors, strict=True):
        alone, alone_factor = estimate.damp_folding("tps", row)
        assert torch.equal(damped_row, alone) and factor == alone_factor


def test_warp_parameters_say_what_was_estimated(pairs):
    contents, styles = pairs
    params = estimate.estimate_parameters(
        rgb_tensor(contents[0]),
        rgb_tensor(styles[0]),
        estimate.GeometryOptions("affine+tps", passes=2),
        device="cpu",
    )
    assert params.theta.shape == (2, 3) and params.tps.shape == (2 * 3 * 3,)
    assert params.theta.dtype == np.float64 and params.grid_size == 3
    assert params.start in estimate.START_NAMES and params.objective is None
    # two starts ran the networks ("identity" and "search"), two passes per stage each
    assert len(params.damped["affine"]) == 4 and len(params.damped["tps"]) == 4
    assert all(0.0 <= f <= 1.0 for f in params.damped["affine"] + params.damped["tps"])


def test_estimate_warps_is_public():
    assert napari_geostyle.estimate_warps is estimate.estimate_warps
    assert "estimate_warps" in napari_geostyle.__all__


@pytest.mark.parametrize(
    "contents, styles, kwargs, message",
    [
        ([np.zeros((64, 64))] * 2, [np.zeros((64, 64))] * 3, {}, "2 contents and 3 geometry"),
        ([], [], {}, "empty"),
        (np.zeros((64, 64)), np.zeros((64, 64)), {}, "sequence of images"),
        (5, [np.zeros((64, 64))], {}, "sequence of images"),
        ([np.zeros((64, 64))], [np.zeros((64, 64))], {"batch_size": 0}, "batch_size"),
        ([np.zeros((64, 64))], [np.zeros((64, 64))], {"batch_size": 2.5}, "batch_size"),
        ([np.zeros((64, 64))], [np.zeros((64, 64))], {"batch_size": True}, "batch_size"),
        ([np.zeros((64, 64))], [np.zeros((64, 64))], {"model": "homography"}, "affine, tps"),
        ([np.zeros((64, 64)), np.zeros((16, 64))], [np.zeros((64, 64))] * 2, {}, "contents\\[1\\]"),
        (
            [np.zeros((64, 64))] * 2,
            [np.zeros((64, 64)), np.full((64, 64), np.nan)],
            {},
            "geometry_styles\\[1\\]",
        ),
    ],
)
def test_bad_batches_say_what_is_wrong(contents, styles, kwargs, message):
    with pytest.raises(ValueError, match=message):
        estimate.estimate_warps(contents, styles, device="cpu", **kwargs)
