"""Transforms: torch TPS/affine maths and landmark transforms, checked against scikit-image."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from skimage.transform import AffineTransform as SkAffine
from skimage.transform import ThinPlateSplineTransform

from napari_geostyle.core import images
from napari_geostyle.core import transforms as T

SHAPE = (90, 120)


def jittered_grid(rng, shape=SHAPE, grid=3, jitter=6.0, margin=12.0):
    """Well-spread landmarks: a grid with random jitter (never colinear or duplicate)."""
    rows = np.linspace(margin, shape[0] - margin, grid)
    cols = np.linspace(margin, shape[1] - margin, grid)
    points = np.stack(np.meshgrid(rows, cols, indexing="ij"), -1).reshape(-1, 2)
    return points + rng.uniform(-jitter, jitter, points.shape)


def random_landmarks(seed, displacement=4.0, grid=3):
    """Random landmark pairs; displacements are small next to the spacing, so warps rarely fold."""
    rng = np.random.default_rng(seed)
    src = jittered_grid(rng, grid=grid, jitter=12.0 / grid)
    return src, src + rng.normal(0.0, displacement * 3.0 / grid, src.shape)


def skimage_estimate(transform_class, src, dst):
    """A scikit-image transform fitted to ``src -> dst`` (x, y): ``from_estimate`` where it
    exists (0.26+), else ``estimate`` (Python 3.10 gets at most scikit-image 0.25)."""
    if hasattr(transform_class, "from_estimate"):
        return transform_class.from_estimate(src, dst)
    transform = transform_class()
    assert transform.estimate(src, dst)
    return transform


def skimage_tps(from_rc, to_rc):
    """scikit-image's TPS from (row, col) pairs; it works in (x, y), so both ends are flipped.

    skimage solves in float32, so the pairs are scaled to O(1) (a TPS is unchanged by a uniform
    scale) to keep the oracle accurate.
    """
    scale = 100.0
    tps = skimage_estimate(
        ThinPlateSplineTransform, from_rc[:, ::-1] / scale, to_rc[:, ::-1] / scale
    )
    return lambda points_rc: tps(points_rc[:, ::-1] / scale)[:, ::-1] * scale


def inside_points(seed, count=400, shape=SHAPE):
    return np.random.default_rng(seed).uniform([0, 0], shape, (count, 2))


# =========================================================================== torch maths
def test_tps_solve_interpolates_and_matches_skimage():
    rng = np.random.default_rng(0)
    control = rng.uniform(-1, 1, (2, 7, 2))
    values = control + rng.normal(0, 0.1, control.shape)
    coefficients = T.tps_solve(torch.tensor(control), torch.tensor(values))
    assert coefficients.shape == (2, 10, 2)
    at_control = T.tps_evaluate(torch.tensor(control), torch.tensor(control), coefficients)
    np.testing.assert_allclose(at_control.numpy(), values, atol=1e-10)
    points = rng.uniform(-1, 1, (2, 50, 2))
    ours = T.tps_evaluate(torch.tensor(points), torch.tensor(control), coefficients).numpy()
    for batch in range(2):  # skimage's kernel is r^2 log r too; it solves in float32
        oracle = skimage_estimate(ThinPlateSplineTransform, control[batch], values[batch])
        np.testing.assert_allclose(ours[batch], oracle(points[batch]), atol=1e-4)


def test_tps_torch_is_differentiable_at_the_control_points():
    control = torch.tensor(
        [[[-0.5, -0.5], [0.5, -0.4], [0.0, 0.6], [0.3, 0.2]]], dtype=torch.float64
    )
    control.requires_grad_(True)
    values = (control.detach() * 1.1).requires_grad_(True)
    coefficients = T.tps_solve(control, values, regularization=0.01)
    out = T.tps_evaluate(control, control, coefficients)  # r = 0 on the kernel diagonal
    out.square().sum().backward()
    assert torch.isfinite(control.grad).all() and torch.isfinite(values.grad).all()
    assert control.grad.abs().sum() > 0


def test_tps_jacobian_matches_finite_differences():
    rng = np.random.default_rng(1)
    control = torch.tensor(rng.uniform(-1, 1, (1, 6, 2)))
    coefficients = T.tps_solve(control, control + torch.tensor(rng.normal(0, 0.1, (1, 6, 2))))
    points = torch.tensor(rng.uniform(-1, 1, (1, 20, 2)))
    jacobian = T.tps_jacobian(points, control, coefficients)
    step = 1e-6
    for axis in range(2):
        shifted = points.clone()
        shifted[..., axis] += step
        numeric = (
            T.tps_evaluate(shifted, control, coefficients)
            - T.tps_evaluate(points, control, coefficients)
        ) / step
        np.testing.assert_allclose(jacobian[..., :, axis].numpy(), numeric.numpy(), atol=1e-5)


def test_regularization_smooths_towards_the_affine_fit():
    rng = np.random.default_rng(2)
    control = torch.tensor(rng.uniform(-1, 1, (1, 8, 2)))
    values = control + torch.tensor(rng.normal(0, 0.2, (1, 8, 2)))
    exact = T.tps_evaluate(control, control, T.tps_solve(control, values))
    smooth = T.tps_evaluate(control, control, T.tps_solve(control, values, regularization=1e6))
    np.testing.assert_allclose(exact.numpy(), values.numpy(), atol=1e-10)
    design = np.hstack([np.ones((8, 1)), control[0].numpy()])
    affine, *_ = np.linalg.lstsq(design, values[0].numpy(), rcond=None)
    np.testing.assert_allclose(smooth[0].numpy(), design @ affine, atol=1e-4)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: T.tps_solve(torch.zeros(1, 5, 3), torch.zeros(1, 5, 2)), "shape"),
        (lambda: T.tps_solve(torch.zeros(1, 5, 2), torch.zeros(1, 4, 2)), "points"),
        (lambda: T.tps_solve(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2)), "at least 3"),
        (
            lambda: T.tps_solve(torch.rand(1, 4, 2), torch.rand(1, 4, 2), regularization=-1),
            "regularization",
        ),
    ],
)
def test_torch_functions_reject_bad_shapes(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# =========================================================================== landmark TPS
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_tps_matches_skimage_and_is_exact_at_landmarks(seed):
    src, dst = random_landmarks(seed, grid=3 + seed)
    tf = T.fit_tps(src, dst)
    assert T.min_jacobian_determinant(tf, SHAPE) > 0  # no fold, so the inverse is unique
    np.testing.assert_allclose(tf.map_points(src), dst, atol=1e-8)
    np.testing.assert_allclose(tf.sample_points(dst), src, atol=1e-8)
    points = inside_points(seed)
    np.testing.assert_allclose(tf.sample_points(points), skimage_tps(dst, src)(points), atol=0.05)
    # map_points inverts the sample map: skimage's sample spline takes its result back
    mapped = tf.map_points(points)
    np.testing.assert_allclose(skimage_tps(dst, src)(mapped), points, atol=0.05)
    np.testing.assert_allclose(tf.sample_points(mapped), points, atol=1e-6)


def test_tps_attributes_are_the_landmarks():
    src, dst = random_landmarks(4)
    tf = T.fit_tps(src, dst, regularization=0.5)
    np.testing.assert_array_equal(tf.output_points, dst)
    np.testing.assert_array_equal(tf.content_points, src)
    assert tf.regularization == 0.5


def test_tps_regularization_smooths_and_is_scale_free():
    src, dst = random_landmarks(5, displacement=6.0)
    exact = T.fit_tps(src, dst)
    smooth = T.fit_tps(src, dst, regularization=1.0)
    miss = np.abs(smooth.sample_points(dst) - src).max()
    assert miss > 0.1  # no longer passes through the landmarks
    # smoothing means less bending: the Jacobian varies less over the image
    grid = inside_points(6)
    spread = lambda tf: np.linalg.det(tf.sample_jacobian(grid)).std()
    assert spread(smooth) < spread(exact)
    # the same value smooths alike at any image size
    big = T.fit_tps(src * 10, dst * 10, regularization=1.0)
    np.testing.assert_allclose(
        big.sample_points(grid * 10), smooth.sample_points(grid) * 10, atol=1e-8
    )


def test_tps_map_points_with_many_points_and_empty():
    src, dst = random_landmarks(7)
    tf = T.fit_tps(src, dst)
    points = inside_points(8, count=5000)
    np.testing.assert_allclose(tf.sample_points(tf.map_points(points)), points, atol=1e-6)
    assert tf.map_points(np.zeros((0, 2))).shape == (0, 2)
    np.testing.assert_allclose(tf.map_points([3.0, 4.0]).shape, (1, 2))


def test_sample_points_torch_float32_matches_float64():
    src, dst = random_landmarks(9)
    tf = T.fit_tps(src, dst)
    points = inside_points(10)
    fast = tf.sample_points_torch(torch.tensor(points, dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(fast, tf.sample_points(points), atol=2e-3)


# =========================================================================== affine
def test_fit_affine_matches_skimage_least_squares():
    rng = np.random.default_rng(11)
    src = jittered_grid(rng)
    matrix = np.array([[1.1, 0.2, 5.0], [-0.15, 0.9, -3.0], [0, 0, 1]])
    dst = src @ matrix[:2, :2].T + matrix[:2, 2] + rng.normal(0, 0.5, src.shape)
    tf = T.fit_affine(src, dst)
    oracle = skimage_estimate(SkAffine, src[:, ::-1], dst[:, ::-1])
    points = inside_points(12)
    # skimage estimates by total least squares, ours is ordinary least squares: close, not equal
    np.testing.assert_allclose(tf.map_points(points), oracle(points[:, ::-1])[:, ::-1], atol=0.05)
    np.testing.assert_allclose(tf.sample_points(tf.map_points(points)), points, atol=1e-9)
    exact_dst = src @ matrix[:2, :2].T + matrix[:2, 2]
    exact = T.fit_affine(src, exact_dst)
    np.testing.assert_allclose(exact.matrix, matrix, atol=1e-10)
    oracle = skimage_estimate(SkAffine, src[:, ::-1], exact_dst[:, ::-1])
    np.testing.assert_allclose(
        exact.map_points(points), oracle(points[:, ::-1])[:, ::-1], atol=1e-8
    )


def test_affine_inverse_and_composition():
    rng = np.random.default_rng(13)
    affine = T.AffineTransform([[1.0, 0.1, 4.0], [0.05, 0.95, -2.0]])
    src, dst = random_landmarks(14)
    tps = T.fit_tps(src, dst)
    composed = affine.then(tps)
    points = inside_points(15)
    np.testing.assert_allclose(
        composed.map_points(points), tps.map_points(affine.map_points(points)), atol=1e-9
    )
    np.testing.assert_allclose(
        composed.sample_points(points), affine.sample_points(tps.sample_points(points)), atol=1e-9
    )
    np.testing.assert_allclose(
        composed.sample_points(composed.map_points(points)), points, atol=1e-6
    )
    # Jacobian by the chain rule equals finite differences
    jac = composed.sample_jacobian(points[:10])
    step = 1e-5
    for axis in range(2):
        shift = np.zeros(2)
        shift[axis] = step
        numeric = (
            composed.sample_points(points[:10] + shift)
            - composed.sample_points(points[:10] - shift)
        ) / (2 * step)
        np.testing.assert_allclose(jac[:, :, axis], numeric, atol=1e-6)
    np.testing.assert_allclose(
        affine.inverse().map_points(points), affine.sample_points(points), atol=1e-12
    )
    both = T.ComposedTransform([affine, T.AffineTransform(np.diag([2.0, 3.0, 1.0]))])
    np.testing.assert_allclose(
        both.inverse().map_points(both.map_points(points)), points, atol=1e-9
    )
    with pytest.raises(ValueError, match="only affine"):
        composed.inverse()
    assert rng is not None


def test_min_jacobian_determinant_flags_folds():
    identity = T.AffineTransform(np.eye(3))
    assert T.min_jacobian_determinant(identity, SHAPE) == pytest.approx(1.0)
    src, dst = random_landmarks(16, displacement=1.0)
    assert T.min_jacobian_determinant(T.fit_tps(src, dst), SHAPE) > 0.5
    folded = dst.copy()
    folded[[0, 4]] = folded[[4, 0]]  # swap two landmarks: the warp turns inside out between them
    assert T.min_jacobian_determinant(T.fit_tps(src, folded), SHAPE) < 0


# =================================================================== network parametrisations
def test_theta_conversions_match_affine_grid():
    theta = np.array([[1.1, 0.2, 0.1], [-0.1, 0.9, 0.05]])
    content_shape, output_shape = (40, 70), (30, 50)
    tf = T.affine_from_theta(theta, content_shape, output_shape)
    grid = F.affine_grid(
        torch.tensor(theta)[None], [1, 1, *output_shape], align_corners=images.ALIGN_CORNERS
    )
    sampled = images.pixel_to_normalized(
        tf.sample_points(images.pixel_grid(output_shape)), content_shape
    )
    np.testing.assert_allclose(sampled, grid[0].reshape(-1, 2).numpy(), atol=1e-12)
    np.testing.assert_allclose(
        T.theta_from_affine(tf, content_shape, output_shape), theta, atol=1e-12
    )


def test_grid_params_tps_is_the_network_tps_on_non_square_images():
    rng = np.random.default_rng(17)
    params = T.tps_identity_params(3) + rng.normal(0, 0.1, 18)
    content_shape, output_shape = (40, 70), (30, 50)
    tf = T.tps_from_grid_params(params, content_shape, output_shape)
    grid = T.tps_grid_params_to_grid(torch.tensor(params)[None], *output_shape)[0]
    sampled = images.pixel_to_normalized(
        tf.sample_points(images.pixel_grid(output_shape)), content_shape
    )
    np.testing.assert_allclose(sampled, grid.reshape(-1, 2).numpy(), atol=1e-12)
    np.testing.assert_allclose(tf.output_points, images.regular_grid_points(output_shape, 3))
    np.testing.assert_allclose(
        T.grid_params_from_tps(tf, content_shape, output_shape), params, atol=1e-12
    )
    with pytest.raises(ValueError, match="control grid"):
        T.grid_params_from_tps(T.fit_tps(*random_landmarks(18)), content_shape, output_shape)


# =========================================================================== property tests
spread_seeds = st.integers(min_value=0, max_value=2**31 - 1)


@settings(max_examples=25, deadline=None)
@given(
    seed=spread_seeds, regularization=st.sampled_from([0.0, 0.01, 3.0]), affine_first=st.booleans()
)
def test_to_dict_round_trip_is_exact(seed, regularization, affine_first):
    src, dst = random_landmarks(seed)
    tf = T.fit_tps(src, dst, regularization=regularization)
    if affine_first:
        rng = np.random.default_rng(seed)
        tf = T.AffineTransform(
            np.vstack([np.eye(2, 3) + rng.normal(0, 0.05, (2, 3)), [0, 0, 1]])
        ).then(tf)
    text = json.dumps(tf.to_dict())  # JSON-serialisable
    restored = T.transform_from_dict(json.loads(text))
    assert restored.to_dict() == tf.to_dict()
    points = inside_points(seed, count=50)
    np.testing.assert_array_equal(restored.sample_points(points), tf.sample_points(points))
    np.testing.assert_array_equal(restored.map_points(points), tf.map_points(points))


@settings(max_examples=25, deadline=None)
@given(
    values=st.lists(st.floats(-0.3, 0.3), min_size=6, max_size=6),
    content_shape=st.tuples(st.integers(8, 300), st.integers(8, 300)),
    output_shape=st.tuples(st.integers(8, 300), st.integers(8, 300)),
)
def test_theta_round_trip(values, content_shape, output_shape):
    theta = np.eye(2, 3) + np.reshape(values, (2, 3))
    if abs(np.linalg.det(theta[:, :2])) < 0.1:
        return
    tf = T.affine_from_theta(theta, content_shape, output_shape)
    np.testing.assert_allclose(
        T.theta_from_affine(tf, content_shape, output_shape), theta, atol=1e-10
    )
    back = T.affine_from_theta(
        T.theta_from_affine(tf, content_shape, output_shape), content_shape, output_shape
    )
    np.testing.assert_allclose(back.matrix, tf.matrix, rtol=1e-9, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(
    seed=spread_seeds,
    grid_size=st.sampled_from([2, 3, 4]),
    content_shape=st.tuples(st.integers(8, 300), st.integers(8, 300)),
    output_shape=st.tuples(st.integers(8, 300), st.integers(8, 300)),
)
def test_grid_params_round_trip(seed, grid_size, content_shape, output_shape):
    params = T.tps_identity_params(grid_size) + np.random.default_rng(seed).uniform(
        -0.15, 0.15, 2 * grid_size**2
    )
    tf = T.tps_from_grid_params(params, content_shape, output_shape, grid_size)
    np.testing.assert_allclose(
        T.grid_params_from_tps(tf, content_shape, output_shape, grid_size), params, atol=1e-12
    )
    restored = T.transform_from_dict(json.loads(json.dumps(tf.to_dict())))
    np.testing.assert_allclose(
        T.grid_params_from_tps(restored, content_shape, output_shape, grid_size), params, atol=1e-12
    )


@settings(max_examples=25, deadline=None)
@given(seed=spread_seeds, displacement=st.floats(0.0, 4.0))
def test_map_and_sample_are_inverse(seed, displacement):
    src, dst = random_landmarks(seed, displacement=displacement)
    tf = T.fit_tps(src, dst)
    assume(T.min_jacobian_determinant(tf, SHAPE) > 0.1)  # a folding warp has no unique inverse
    points = inside_points(seed, count=100)
    np.testing.assert_allclose(tf.sample_points(tf.map_points(points)), points, atol=1e-6)
    np.testing.assert_allclose(tf.map_points(tf.sample_points(points)), points, atol=1e-6)


# =========================================================================== bad input
GOOD = np.array([[10.0, 10.0], [10.0, 50.0], [60.0, 30.0], [40.0, 80.0]])


@pytest.mark.parametrize("fit", [T.fit_tps, T.fit_affine])
@pytest.mark.parametrize(
    "src, dst, message",
    [
        (GOOD[:2], GOOD[:2] + 1, "at least 3"),
        (GOOD, GOOD[:3], "points but"),
        (np.array([[0.0, 0], [1, 1], [2, 2], [3, 3]]), GOOD, "one line"),
        (GOOD, np.array([[0.0, 0], [1, 1], [2, 2], [3, 3]]), "one line"),
        (np.vstack([GOOD[:3], GOOD[:1]]), GOOD, "same position"),
        (GOOD, np.vstack([GOOD[1:], GOOD[1:2]]), "same position"),
        (GOOD, np.ones((4, 3)), "shape"),
        ("not points", GOOD, "numbers"),
    ],
)
def test_bad_landmarks_raise_clear_errors(fit, src, dst, message):
    with pytest.raises(ValueError, match=message):
        fit(src, dst)


@settings(max_examples=25, deadline=None)
@given(
    row=st.integers(0, 3),
    column=st.integers(0, 1),
    bad=st.sampled_from([np.nan, np.inf, -np.inf]),
    which=st.sampled_from(["src", "dst"]),
)
def test_non_finite_landmarks_raise(row, column, bad, which):
    src, dst = GOOD.copy(), GOOD + 2.0
    (src if which == "src" else dst)[row, column] = bad
    for fit in (T.fit_tps, T.fit_affine):
        with pytest.raises(ValueError, match="NaN or infinite"):
            fit(src, dst)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: T.AffineTransform(np.zeros((3, 3)) + np.eye(3) * [1, 0, 1]), "singular"),
        (lambda: T.AffineTransform(np.eye(2)), "3 x 3"),
        (lambda: T.AffineTransform([[1, 0, 0], [0, 1, 0], [0, 1, 1]]), "last row"),
        (lambda: T.fit_tps(GOOD, GOOD + 1, regularization=-1), "regularization"),
        (lambda: T.fit_tps(GOOD, GOOD + 1, regularization=np.nan), "regularization"),
        (lambda: T.transform_from_dict({"type": "spiral"}), "unknown transform type"),
        (lambda: T.transform_from_dict({"type": "tps"}), "malformed"),
        (lambda: T.transform_from_dict([1, 2]), "type"),
        (lambda: T.affine_from_theta(np.zeros((3, 3)), (10, 10), (10, 10)), "theta"),
        (lambda: T.tps_from_grid_params(np.zeros(17), (10, 10), (10, 10)), "18"),
        (lambda: T.tps_from_grid_params(np.full(18, np.nan), (10, 10), (10, 10)), "NaN"),
        (lambda: T.fit_tps(GOOD, GOOD).sample_points([[1.0, np.nan]]), "NaN"),
    ],
)
def test_bad_transform_input_raises(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# =========================================================================== hostile input
def _many_points(count, seed=0):
    return np.random.default_rng(seed).uniform(0, 5000, (count, 2))


def test_duplicates_among_many_landmarks_are_found_without_an_n_by_n_array():
    src = _many_points(100_000)
    src[77_777] = src[1234]  # an N x N x 2 distance array would need 160 GB here
    with pytest.raises(ValueError, match="1234 and 77777 are at the same position"):
        T.fit_affine(src, src + 1.0)


def test_several_landmarks_at_one_spot_name_a_real_pair():
    src = np.vstack([GOOD, GOOD[[2, 2, 2]]])
    with pytest.raises(ValueError, match=r"\b2 and (4|5|6) are at the same position"):
        T.fit_tps(src, src + 1.0)


def test_tps_landmark_count_is_capped_with_a_clear_error():
    src = _many_points(T.MAX_TPS_LANDMARKS + 1)
    with pytest.raises(ValueError, match=f"at most {T.MAX_TPS_LANDMARKS}"):
        T.fit_tps(src, src + 1.0)
    with pytest.raises(ValueError, match="at most"):
        T.TPSTransform(_many_points(200_000), _many_points(200_000, seed=1))
    assert isinstance(T.fit_affine(_many_points(200_000), _many_points(200_000)), T.Transform)


def test_deeply_nested_transform_dict_is_a_value_error():
    data = T.AffineTransform(np.eye(3)).to_dict()
    for _ in range(500):
        data = {"type": "composed", "transforms": [data]}
    with pytest.raises(ValueError, match="nested"):
        T.transform_from_dict(data)
    shallow = T.AffineTransform(np.eye(3)).to_dict()
    for _ in range(T.MAX_DICT_DEPTH):
        shallow = {"type": "composed", "transforms": [shallow]}
    assert isinstance(T.transform_from_dict(shallow), T.ComposedTransform)


@pytest.mark.parametrize("transform", [T.AffineTransform(np.eye(3)), T.fit_tps(GOOD, GOOD + 1)])
@pytest.mark.parametrize("method", ["map_points", "sample_points"])
def test_no_points_in_any_form_give_an_empty_result(transform, method):
    empty_list = getattr(transform, method)([])
    empty_array = getattr(transform, method)(np.empty((0, 2)))
    assert empty_list.shape == empty_array.shape == (0, 2)
