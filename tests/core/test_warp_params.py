"""The network's warp parameters: identities, sample maps, composition, folds (warp_params)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_geostyle.core import images
from napari_geostyle.core import transforms as T
from napari_geostyle.core import warp_params as W


def random_tps(seed, grid_size=3, spread=0.1, dtype=torch.float64):
    rng = np.random.default_rng(seed)
    params = W.tps_identity_params(grid_size) + rng.normal(0, spread, 2 * grid_size**2)
    return torch.tensor(params, dtype=dtype)


def random_points(seed, count=200, batch=1, dtype=torch.float64):
    return torch.tensor(np.random.default_rng(seed).uniform(-1, 1, (batch, count, 2)), dtype=dtype)


THETA_A = torch.tensor([[1.1, 0.2, 0.1], [-0.1, 0.9, 0.05]], dtype=torch.float64)
THETA_B = torch.tensor([[0.95, -0.1, 0.02], [0.05, 1.05, -0.1]], dtype=torch.float64)


# --------------------------------------------------------------------------- identities, grids
def test_grid_params_are_all_x_then_all_y_in_grid_order():
    np.testing.assert_allclose(W.tps_identity_params(2), [-1, 1, -1, 1, -1, -1, 1, 1])
    xy = np.random.default_rng(0).normal(size=(4, 9, 2))
    params = W.xy_to_grid_params(xy)
    np.testing.assert_array_equal(params[:, :9], xy[..., 0])
    np.testing.assert_array_equal(params[:, 9:], xy[..., 1])
    np.testing.assert_array_equal(W.grid_params_to_xy(params, 3), xy)
    as_tensor = W.grid_params_to_xy(torch.tensor(params), 3)
    np.testing.assert_array_equal(as_tensor.numpy(), xy)


@pytest.mark.parametrize("grid_size", [2, 3, 4])
def test_identity_params_map_points_to_themselves(grid_size):
    points = random_points(1, batch=2, dtype=torch.float32)
    for kind in ("affine", "tps"):
        identity = W.identity_params(kind, grid_size)
        assert identity.dtype == torch.float32
        assert identity.shape == ((6,) if kind == "affine" else (2 * grid_size**2,))
        mapped = W.sample_points(kind, identity[None].expand(2, -1), points, grid_size)
        torch.testing.assert_close(mapped, points, atol=1e-5, rtol=0)
    assert W.sample_map(points) is points  # no parameters: the identity


def test_output_centres_are_the_identity_affine_grid_and_the_pixel_centres():
    centres = W.output_centres(3, 5, 7, dtype=torch.float64)
    assert centres.shape == (3, 35, 2)
    identity = F.affine_grid(
        torch.eye(2, 3, dtype=torch.float64)[None].expand(3, 2, 3),
        [3, 1, 5, 7],
        align_corners=images.ALIGN_CORNERS,
    )
    np.testing.assert_array_equal(centres.numpy(), identity.reshape(3, 35, 2).numpy())
    pixel_centres = images.pixel_to_normalized(images.pixel_grid((5, 7)), (5, 7))
    np.testing.assert_allclose(centres[0].numpy(), pixel_centres, atol=1e-12)


def test_identity_grid_params_give_the_identity_sampling_grid():
    params = W.identity_params("tps", 3)[None]
    grid = W.tps_grid_params_to_grid(params, 5, 7)
    identity = F.affine_grid(
        W.identity_theta()[None], [1, 1, 5, 7], align_corners=images.ALIGN_CORNERS
    )
    np.testing.assert_allclose(grid.numpy(), identity.numpy(), atol=1e-6)


# --------------------------------------------------------------------------- evaluation
def test_grid_params_grid_and_sample_points_agree_and_are_differentiable():
    params = random_tps(3)[None].requires_grad_(True)
    grid = W.tps_grid_params_to_grid(params, 6, 4)
    points = W.tps_grid_params_sample_points(params, W.output_centres(1, 6, 4, torch.float64))
    np.testing.assert_allclose(
        grid.detach().reshape(1, -1, 2).numpy(), points.detach().numpy(), atol=1e-12
    )
    grid.sum().backward()
    assert torch.isfinite(params.grad).all()
    # control point i of the output grid samples exactly content position i
    control = W.lattice_xy(3, dtype=torch.float64)[None]
    at_control = W.tps_grid_params_sample_points(params.detach(), control)
    np.testing.assert_allclose(
        W.xy_to_grid_params(at_control).numpy(), params.detach().numpy(), atol=1e-12
    )
    # a spline solved once gives the same map
    spline = W.tps_spline(params.detach(), 3)
    np.testing.assert_array_equal(
        W.tps_grid_params_sample_points(params.detach(), control, 3, spline).numpy(),
        at_control.numpy(),
    )


def test_affine_sample_points_matches_affine_grid():
    theta = torch.stack([THETA_A, THETA_B]).float()
    grid = F.affine_grid(theta, [2, 1, 4, 5], align_corners=images.ALIGN_CORNERS)
    points = W.affine_sample_points(theta, W.output_centres(2, 4, 5))
    np.testing.assert_allclose(points.numpy(), grid.reshape(2, -1, 2).numpy(), atol=1e-6)


@pytest.mark.parametrize("shape", [(48, 80), (90, 60)])
def test_sample_map_is_the_landmark_transform_of_estimate_warp(shape):
    """theta(tps(p)) in normalised units is the ``ComposedTransform([affine, tps])`` that
    ``estimate_warp`` builds from the same parameters, in pixels."""
    tps = random_tps(4)
    affine = T.affine_from_theta(THETA_A.numpy(), shape, shape)
    landmark_tps = T.tps_from_grid_params(tps.numpy(), shape, shape)
    pixels = np.random.default_rng(5).uniform([0, 0], shape, (100, 2))
    normalised = torch.tensor(images.pixel_to_normalized(pixels, shape))[None]
    expected = T.ComposedTransform([affine, landmark_tps]).sample_points(pixels)
    mapped = W.sample_map(normalised, THETA_A, tps)[0].numpy()
    np.testing.assert_allclose(images.normalized_to_pixel(mapped, shape), expected, atol=1e-9)
    only_tps = W.sample_map(normalised, tps=tps[None])[0].numpy()
    np.testing.assert_allclose(
        images.normalized_to_pixel(only_tps, shape), landmark_tps.sample_points(pixels), atol=1e-9
    )


# --------------------------------------------------------------------------- composition
def test_composed_thetas_apply_inner_then_outer_batched_or_not():
    points = random_points(6)
    composed = W.compose_thetas(THETA_A, THETA_B)
    assert composed.shape == (2, 3)
    twice = W.sample_map(W.sample_map(points, THETA_B), THETA_A)
    torch.testing.assert_close(W.sample_map(points, composed), twice, atol=1e-12, rtol=0)
    batched = W.compose_thetas(torch.stack([THETA_A, THETA_B]), torch.stack([THETA_B, THETA_A]))
    torch.testing.assert_close(batched[0], composed)
    torch.testing.assert_close(batched[1], W.compose_thetas(THETA_B, THETA_A))


def test_a_theta_composed_with_its_inverse_is_the_identity():
    shape = (40, 70)
    inverse = T.theta_from_affine(
        T.affine_from_theta(THETA_A.numpy(), shape, shape).inverse(), shape, shape
    )
    inverse = torch.tensor(inverse)
    identity = W.identity_theta(torch.float64)
    torch.testing.assert_close(W.compose_thetas(THETA_A, inverse), identity, atol=1e-12, rtol=0)
    torch.testing.assert_close(W.compose_thetas(inverse, THETA_A), identity, atol=1e-12, rtol=0)


def test_tps_residuals_compose_into_the_closest_single_tps():
    outer, inner = random_tps(7, spread=0.05).float(), random_tps(8, spread=0.05).float()
    composed = W.compose_tps(outer, inner, 3)
    assert composed.dtype == torch.float32 and composed.shape == (18,)
    points = random_points(9, 300, dtype=torch.float32)
    both = W.sample_map(W.sample_map(points, tps=inner), tps=outer)
    single = W.sample_map(points, tps=composed)
    assert float((single - both).norm(dim=-1).mean()) < 0.005  # normalised units (side = 2)
    # with the identity on either side the composition is the other TPS itself
    identity = W.identity_params("tps")
    torch.testing.assert_close(W.compose_tps(identity, inner), inner, atol=1e-5, rtol=0)
    torch.testing.assert_close(W.compose_tps(outer, identity), outer, atol=1e-5, rtol=0)


def test_an_affine_after_a_tps_folds_into_one_tps():
    tps = random_tps(10)
    folded = W.fold_affine_into_tps(THETA_A, tps, 3)
    points = random_points(11, 50)
    torch.testing.assert_close(
        W.sample_map(points, THETA_A, tps), W.sample_map(points, tps=folded), atol=1e-10, rtol=0
    )


# --------------------------------------------------------------------------- folds
def test_determinants_flag_folds():
    thetas = torch.stack([THETA_A, -THETA_B])
    np.testing.assert_allclose(
        W.theta_determinant(thetas).numpy(),
        [np.linalg.det(THETA_A[:, :2]), np.linalg.det(-THETA_B[:, :2])],
    )
    identity = W.identity_params("tps", dtype=torch.float64)
    crossing = identity.clone()
    crossing[0], crossing[2] = 1.0, -1.0  # top-left and top-right control points swapped in x
    det = W.tps_min_determinant(torch.stack([identity, crossing]), 3)
    assert float(det[0]) == pytest.approx(1.0, abs=1e-9) and float(det[1]) < 0
    # a TPS that is an affine has that affine's determinant everywhere
    scaled = W.fold_affine_into_tps(THETA_A, identity, 3)
    assert float(W.tps_min_determinant(scaled[None], 3)[0]) == pytest.approx(
        float(np.linalg.det(THETA_A[:, :2])), abs=1e-9
    )


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: W.tps_grid_params_to_grid(torch.zeros(1, 17), 4, 4), "18"),
        (lambda: W.tps_spline(torch.zeros(18), 3), r"\(B, 18\)"),
        (lambda: W.affine_sample_points(torch.zeros(1, 3, 3), torch.zeros(1, 4, 2)), "theta"),
        (lambda: W.affine_sample_points(torch.zeros(2, 2, 3), torch.zeros(1, 4, 2)), "batch"),
        (lambda: W.tps_identity_params(1), "grid_size"),
        (lambda: W.check_grid_size(2.5), "grid_size"),
        (lambda: W.identity_params("homography"), "affine, tps"),
    ],
)
def test_bad_inputs_are_value_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
