"""core.lattice: sample maps evaluated on a lattice of knots and interpolated bilinearly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_geostyle.core.images import pixel_grid
from napari_geostyle.core.lattice import (
    LATTICE_TOLERANCE,
    LatticeSampleMap,
    lattice_counts,
    lattice_sample_map,
    sample_lattice,
    upsample_lattice,
)
from napari_geostyle.core.transforms import AffineTransform, fit_tps


def _landmark_tps(size: int, displacement: float, seed: int = 0):
    """A TPS through a 3 x 3 lattice of landmarks moved by ``displacement * size`` px."""
    rng = np.random.default_rng(seed)
    knots = np.linspace(0.15 * size, 0.85 * size, 3)
    control = np.stack(np.meshgrid(knots, knots, indexing="ij"), -1).reshape(-1, 2)
    return fit_tps(control, control + rng.normal(0.0, displacement * size, control.shape))


def _affine() -> AffineTransform:
    return AffineTransform([[1.02, 0.05, 3.0], [-0.04, 0.97, -2.0], [0.0, 0.0, 1.0]])


def test_a_smooth_map_on_a_large_plane_is_read_from_the_lattice_within_tolerance():
    shape = (300, 280)
    transform = _landmark_tps(300, 0.01)
    fast = lattice_sample_map(transform, shape)
    assert isinstance(fast, LatticeSampleMap)
    pixels = pixel_grid(shape)
    error = np.linalg.norm(fast.sample_points(pixels) - transform.sample_points(pixels), axis=1)
    assert error.max() <= LATTICE_TOLERANCE
    assert fast.interpolation_error() <= LATTICE_TOLERANCE
    # everything but the sample map is the exact transform's
    np.testing.assert_array_equal(fast.map_points(pixels[:9]), transform.map_points(pixels[:9]))
    assert fast.to_dict() == transform.to_dict()


def test_small_planes_and_wiggly_maps_are_evaluated_exactly():
    transform = _landmark_tps(300, 0.01)
    assert lattice_sample_map(transform, (100, 100)) is transform
    wiggly = _landmark_tps(300, 0.25, seed=3)
    assert lattice_sample_map(wiggly, (300, 280)) is wiggly
    # the thresholds are arguments: a tiny plane may use the lattice too
    assert isinstance(lattice_sample_map(transform, (40, 40), min_pixels=0), LatticeSampleMap)


def test_an_affine_map_is_exact_on_the_lattice_everywhere():
    # bilinear interpolation reproduces an affine map: no error at any point, knots or not
    affine = _affine()
    lattice = LatticeSampleMap(affine, (37, 23), step=4)
    assert lattice.lattice.shape == (10, 7, 2)  # rows 0, 4, ..., 36; columns 0, 4, ..., 24
    points = np.random.default_rng(0).uniform([0, 0], [36, 22], (50, 2))
    np.testing.assert_allclose(
        lattice.sample_points(points), affine.sample_points(points), atol=1e-9
    )
    assert lattice.interpolation_error() == pytest.approx(0.0, abs=1e-9)


def test_sample_lattice_reads_knots_and_clamps_at_the_border():
    values = torch.arange(12, dtype=torch.float64).reshape(1, 1, 3, 4)  # knots 2 px apart
    knots = torch.tensor([[0.0, 0.0], [2.0, 4.0], [4.0, 6.0]], dtype=torch.float64)
    np.testing.assert_allclose(sample_lattice(values, knots, spacing=2.0)[:, 0], [0, 6, 11])
    between = torch.tensor([[1.0, 1.0]], dtype=torch.float64)  # the first cell's centre
    assert sample_lattice(values, between, spacing=2.0)[0, 0] == pytest.approx(2.5)
    outside = torch.tensor([[-5.0, 50.0]], dtype=torch.float64)
    assert sample_lattice(values, outside, spacing=2.0)[0, 0] == pytest.approx(3.0)


def test_upsample_lattice_spreads_knots_evenly_from_the_first_to_the_last_pixel():
    shape = (17, 10)
    rows, cols = lattice_counts(shape, 4)
    assert (rows, cols) == (5, 3)  # 16 / 4 + 1 knots down, 9 // 4 + 1 across
    # an affine function of the pixel position on knots spread evenly over 0..H-1, 0..W-1
    knot_rows = torch.linspace(0, shape[0] - 1, rows, dtype=torch.float64)
    knot_cols = torch.linspace(0, shape[1] - 1, cols, dtype=torch.float64)
    grid_r, grid_c = torch.meshgrid(knot_rows, knot_cols, indexing="ij")
    coarse = torch.stack([2 * grid_r + 1, grid_c - 3 * grid_r])[None].requires_grad_(True)
    fine = upsample_lattice(coarse, shape)
    assert fine.shape == (1, 2, *shape)
    pixel_r, pixel_c = torch.meshgrid(
        torch.arange(shape[0], dtype=torch.float64),
        torch.arange(shape[1], dtype=torch.float64),
        indexing="ij",
    )
    torch.testing.assert_close(fine[0, 0], 2 * pixel_r + 1)
    torch.testing.assert_close(fine[0, 1], pixel_c - 3 * pixel_r)
    fine.sum().backward()  # differentiable in the knots' values (estimate's refinement)
    assert torch.isfinite(coarse.grad).all() and coarse.grad.abs().sum() > 0


def test_a_map_that_is_not_finite_reports_nan_and_is_not_used():
    class Broken(AffineTransform):
        def sample_points(self, points):
            values = super().sample_points(points)
            values[0] = np.nan
            return values

    broken = Broken(np.eye(3))
    assert np.isnan(LatticeSampleMap(broken, (300, 300)).interpolation_error())
    assert lattice_sample_map(broken, (300, 300)) is broken
