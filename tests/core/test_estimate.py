"""estimate_warp: shipped networks, output frame, folding, refinement, bad inputs.

astronaut and coffee are held out of the shipped models' training data.
"""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data

torch = pytest.importorskip("torch")

from napari_geostyle.core import estimate, estimate_network, geonet, warp_params
from napari_geostyle.core.images import (
    normalized_to_pixel,
    pixel_to_normalized,
    regular_grid_points,
)
from napari_geostyle.core.transforms import (
    AffineTransform,
    ComposedTransform,
    TPSTransform,
    affine_from_theta,
)
from napari_geostyle.core.warp import warp_image

# Shipped-model accuracy this suite relies on (held-out astronaut/coffee, a known affine of
# 10 deg, scale 0.9 and a small shift: the identity is ~8.8% off). Measured with the shipped
# GPU-trained models: network ~2.0% (affine and affine+tps), refine 0.1% / 0.3%, identity
# pair 2.7%. The network alone is held to its tolerance by the ``shipped_models`` test.
IDENTITY_TOLERANCE_PCT = 3.0
KNOWN_AFFINE_TOLERANCE_PCT = 1.0
NETWORK_KNOWN_AFFINE_TOLERANCE_PCT = 3.0


def _lattice_error_pct(tf, truth_rc, shape):
    lattice = regular_grid_points(shape, 20)
    predicted = tf.sample_points(lattice)
    return float(np.mean(np.linalg.norm(predicted - truth_rc, axis=1)) / max(shape) * 100)


@pytest.fixture(scope="module")
def coffee():
    return skimage.data.coffee()[::3, ::3]  # 134 x 200, not square


@pytest.fixture(scope="module")
def astronaut():
    return skimage.data.astronaut()[::4, ::4]  # 128 x 128


def test_identity_pair_gives_near_identity(coffee):
    tf = estimate.estimate_warp(coffee, coffee, model="affine+tps", device="cpu")
    assert isinstance(tf, ComposedTransform)
    lattice = regular_grid_points(coffee.shape, 20)
    assert _lattice_error_pct(tf, lattice, coffee.shape) < IDENTITY_TOLERANCE_PCT


def _known_affine_pair(image):
    angle = np.deg2rad(10.0)
    theta = np.array(
        [
            [0.9 * np.cos(angle), -0.9 * np.sin(angle), 0.08],
            [0.9 * np.sin(angle), 0.9 * np.cos(angle), -0.06],
        ]
    )
    tf = affine_from_theta(theta, image.shape, image.shape)
    style = warp_image(image, tf, padding="reflection")
    truth = tf.sample_points(regular_grid_points(image.shape, 20))
    return style, truth


def _identity_error_pct(truth, shape):
    lattice = regular_grid_points(shape, 20)
    return float(np.mean(np.linalg.norm(lattice - truth, axis=1)) / max(shape) * 100)


@pytest.mark.parametrize("model", ["affine", "affine+tps"])
@pytest.mark.slow
def test_known_affine_is_recovered_by_the_shipped_model_with_refine(astronaut, model):
    style, truth = _known_affine_pair(astronaut)
    network = estimate.estimate_warp(astronaut, style, model=model, device="cpu")
    refined = estimate.estimate_warp(astronaut, style, model=model, method="refine", device="cpu")
    identity_error = _identity_error_pct(truth, astronaut.shape)
    network_error = _lattice_error_pct(network, truth, astronaut.shape)
    refined_error = _lattice_error_pct(refined, truth, astronaut.shape)
    assert refined_error < KNOWN_AFFINE_TOLERANCE_PCT, (refined_error, identity_error)
    assert refined_error < identity_error / 3
    assert refined_error < network_error  # refinement lowers the error


@pytest.mark.shipped_models  # the network alone is held to this only for the shipped weights
def test_known_affine_is_recovered_by_the_shipped_network(astronaut):
    style, truth = _known_affine_pair(astronaut)
    tf = estimate.estimate_warp(astronaut, style, model="affine", device="cpu")
    assert isinstance(tf, AffineTransform)
    error = _lattice_error_pct(tf, truth, astronaut.shape)
    identity_error = _identity_error_pct(truth, astronaut.shape)
    assert error < NETWORK_KNOWN_AFFINE_TOLERANCE_PCT, (error, identity_error)
    assert error < identity_error / 3


@pytest.mark.slow
def test_network_passes_compose_into_one_transform_per_stage(astronaut):
    style, truth = _known_affine_pair(astronaut)
    one = estimate.estimate_warp(astronaut, style, model="affine+tps", device="cpu", passes=1)
    three = estimate.estimate_warp(
        astronaut, style, model="affine+tps", device="cpu", passes={"affine": 3, "tps": 3}
    )
    for tf in (one, three):
        affine, tps = tf.transforms
        assert isinstance(affine, AffineTransform) and isinstance(tps, TPSTransform)
    # the later passes only add small residuals: the result stays near the one-pass estimate
    # and keeps the accuracy the one-pass estimate has on this pair
    lattice = regular_grid_points(astronaut.shape, 20)
    moved = np.linalg.norm(one.sample_points(lattice) - three.sample_points(lattice), axis=1)
    assert moved.mean() / max(astronaut.shape) * 100 < 3.0
    assert _lattice_error_pct(three, truth, astronaut.shape) < NETWORK_KNOWN_AFFINE_TOLERANCE_PCT


@pytest.mark.parametrize(
    "passes, message",
    [
        (0, "from 1 to 8"),
        (9, "from 1 to 8"),
        ("2", "from 1 to 8"),
        (True, "from 1 to 8"),
        ({"affine": 2, "homography": 1}, "'affine' and/or 'tps'"),
        ({"tps": 0}, "passes \\(tps\\)"),
    ],
)
def test_bad_passes_say_what_is_accepted(coffee, passes, message):
    with pytest.raises(ValueError, match=message):
        estimate.estimate_warp(coffee, coffee, device="cpu", passes=passes)


def test_hand_written_adam_steps_like_adam():
    variable = torch.tensor([3.0, -2.0])
    from napari_geostyle.core.optim import Adam

    adam = Adam(variable, lr=0.1)
    adam.step(torch.tensor([10.0, -0.001]))
    # Adam's first step moves every coordinate by lr against the sign of its gradient
    assert torch.allclose(variable, torch.tensor([2.9, -1.9]), atol=1e-4)
    for _ in range(300):
        adam.step(2 * variable)  # gradient of |v|^2
    assert float(variable.abs().max()) < 0.05


@pytest.mark.slow
def test_refine_does_not_import_torch_dynamo():
    """torch.optim's first step imports torch._dynamo -> triton, which segfaults a process that
    holds napari's OpenGL context (Xvfb / Mesa): the refinement must not touch it."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, skimage.data\n"
        "from napari_geostyle.core.estimate import estimate_warp\n"
        "a = skimage.data.astronaut()[::4, ::4]\n"
        "estimate_warp(a, a[:, ::-1], method='refine', device='cpu')\n"
        "print(sorted(m for m in ('torch._dynamo', 'triton') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_result_is_in_content_pixels_for_any_size(coffee):
    """The same pair at two resolutions gives the same warp in normalised coordinates."""
    style = skimage.data.astronaut()[::5, ::5]
    # init="identity": the coordinate handling alone; on this unrelated pair the global search
    # may settle on a different discrete candidate at each resolution
    big = estimate.estimate_warp(coffee, style, model="affine", device="cpu", init="identity")
    small_content = coffee[::2, ::2]
    small = estimate.estimate_warp(
        small_content, style, model="affine", device="cpu", init="identity"
    )
    probe = np.array([[0.0, 0.0], [0.5, -0.3], [-0.7, 0.9]])  # normalised (x, y)
    big_xy = pixel_to_normalized(
        big.sample_points(normalized_to_pixel(probe, coffee.shape)), coffee.shape
    )
    small_xy = pixel_to_normalized(
        small.sample_points(normalized_to_pixel(probe, small_content.shape)), small_content.shape
    )
    assert np.allclose(big_xy, small_xy, atol=0.06)


@pytest.mark.slow
def test_gray_rgba_uint16_and_float_inputs_are_accepted(coffee):
    ref = estimate.estimate_warp(coffee, coffee[::-1], model="affine", device="cpu")
    rgba = np.concatenate([coffee, np.full(coffee.shape[:2] + (1,), 255, np.uint8)], axis=2)
    same = estimate.estimate_warp(
        rgba, (coffee[::-1] / 255.0).astype(np.float32), model="affine", device="cpu"
    )
    assert np.allclose(ref.matrix, same.matrix, atol=1e-3)
    as16 = coffee.astype(np.uint16) * 257
    assert np.allclose(
        estimate.estimate_warp(as16, coffee[::-1], model="affine", device="cpu").matrix,
        ref.matrix,
        atol=1e-3,
    )
    gray = coffee.mean(axis=2)  # float, 0..255 range read as is: any float image is allowed
    tf = estimate.estimate_warp(gray / 255.0, coffee[::-1, :, 1], model="tps", device="cpu")
    assert isinstance(tf, TPSTransform)


@pytest.mark.slow
def test_affine_plus_tps_composes_affine_then_tps(coffee):
    tf = estimate.estimate_warp(coffee, skimage.data.astronaut()[::5, ::5], device="cpu")
    affine, tps = tf.transforms
    assert isinstance(affine, AffineTransform) and isinstance(tps, TPSTransform)
    points = regular_grid_points(coffee.shape, 5)
    assert np.allclose(tf.sample_points(points), affine.sample_points(tps.sample_points(points)))


def test_folding_predictions_are_damped():
    folded = torch.tensor([-1.0, 0.0, 0.0, 0.0, 1.0, 0.0])  # a mirror: determinant -1
    damped, factor = estimate.damp_folding("affine", folded)
    det = float(damped[0] * damped[4] - damped[1] * damped[3])
    assert factor < 1.0 and det > estimate.FOLD_MARGIN
    crossing = geonet.identity_parameters("tps").clone()
    crossing[0], crossing[2] = 1.0, -1.0  # top-left and top-right control points swapped in x
    damped, factor = estimate.damp_folding("tps", crossing)
    assert factor < 1.0
    assert float(warp_params.tps_min_determinant(damped[None], 3)) > estimate.FOLD_MARGIN
    fine = geonet.identity_parameters("tps") + 0.05
    assert estimate.damp_folding("tps", fine)[1] == 1.0


@pytest.mark.slow
def test_refine_never_ends_worse_than_the_network(astronaut):
    from napari_geostyle.core.images import rgb_tensor

    style, _ = _known_affine_pair(astronaut)
    info = estimate.estimate_parameters(
        rgb_tensor(astronaut),
        rgb_tensor(style),
        estimate.GeometryOptions("affine+tps", "refine"),
        "cpu",
        refine_iterations=8,
    )
    start, end = info.objective
    assert end <= start
    tf = estimate.estimate_warp(astronaut, style, model="affine", method="refine", device="cpu")
    assert isinstance(tf, AffineTransform)


@pytest.mark.parametrize(
    "content, kwargs, error, message",
    [
        (np.zeros((20, 64, 3)), {}, ValueError, "32"),
        (np.zeros((0, 64)), {}, ValueError, "empty"),
        (np.full((64, 64), np.nan), {}, ValueError, "NaN"),
        (np.zeros((64, 64, 3)), {"model": "homography"}, ValueError, "affine, tps, affine\\+tps"),
        (np.zeros((64, 64, 3)), {"method": "magic"}, ValueError, "network, refine"),
        (np.zeros((64, 64, 3)), {"trunk": "resnet"}, ValueError, "embedded, vgg19"),
        (
            np.zeros((64, 64, 3)),
            {"model": "affine", "checkpoint": "/nowhere/affine.pt"},
            FileNotFoundError,
            "/nowhere/affine.pt",
        ),
        (np.zeros((64, 64, 3)), {"checkpoint": "/nowhere/one.pt"}, ValueError, "two networks"),
        (
            np.zeros((64, 64, 3)),
            {"model": "affine", "trunk": "vgg19"},
            FileNotFoundError,
            "geonet_affine_vgg19.pt",
        ),
    ],
)
def test_bad_inputs_say_what_is_accepted(content, kwargs, error, message):
    with pytest.raises(error, match=message):
        estimate.estimate_warp(content, np.zeros((64, 64, 3)), device="cpu", **kwargs)


def test_bad_geometry_style_is_named():
    with pytest.raises(ValueError, match="geometry_style"):
        estimate.estimate_warp(np.zeros((64, 64)), np.zeros((16, 64)), device="cpu")


@pytest.mark.slow
def test_refine_reports_progress_and_stops_when_the_callback_raises(coffee):
    calls = []
    estimate.estimate_warp(coffee, coffee[:, ::-1], model="affine", method="refine",
                           device="cpu", progress=lambda *call: calls.append(call))  # fmt: skip
    done = [c[0] for c in calls]
    total = calls[0][1]
    assert total == 1 + estimate.refine_steps("affine", None)
    assert done == sorted(done) and all(c[1] == total for c in calls)
    assert calls[0][2] == "search and networks" and calls[-1] == (total, total, "done")
    assert sum(c[2] == "refining" for c in calls) == total - 2

    class Stop(Exception):
        pass

    seen = []

    def stop_after_three_steps(done, total, stage):
        seen.append(stage)
        if seen.count("refining") == 3:
            raise Stop

    with pytest.raises(Stop):
        estimate.estimate_warp(coffee, coffee[:, ::-1], model="affine", method="refine",
                               device="cpu", progress=stop_after_three_steps)  # fmt: skip
    assert seen.count("refining") == 3 and "done" not in seen


def test_tps_sample_grid_on_a_lattice_is_within_a_tenth_of_a_pixel_of_the_exact_map():
    """The estimate's warps (networks, judge, refinement) evaluate a TPS on a lattice and
    interpolate: what they sample must be where the exact map says, gradients included."""
    generator = torch.Generator().manual_seed(3)
    tps = warp_params.identity_params("tps", 3)[None] + 0.08 * torch.randn(
        2, 18, generator=generator
    )
    theta = torch.eye(2, 3)[None] + 0.05 * torch.randn(2, 2, 3, generator=generator)
    for height, width in ((240, 240), (240, 180)):
        exact = warp_params.sample_map(
            warp_params.output_centres(2, height, width), theta, tps, 3
        ).reshape(2, height, width, 2)
        grid = estimate_network.sample_grid(2, height, width, theta, tps, 3, None, "cpu")
        pixels = (grid - exact).abs() * torch.tensor([width / 2.0, height / 2.0])
        assert float(pixels.max()) < 0.1
    # small outputs, and maps without a TPS, are exact
    small = estimate_network.sample_grid(2, 60, 90, theta, tps, 3, None, "cpu")
    exact_small = warp_params.sample_map(warp_params.output_centres(2, 60, 90), theta, tps, 3)
    torch.testing.assert_close(small, exact_small.reshape(2, 60, 90, 2))
    variable = tps.clone().requires_grad_(True)
    grid = estimate_network.sample_grid(2, 240, 240, theta, variable, 3, None, "cpu")
    (gradient,) = torch.autograd.grad(grid.pow(2).sum(), variable)
    assert torch.isfinite(gradient).all() and float(gradient.abs().sum()) > 0
