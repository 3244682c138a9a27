"""The geometry network's warp parameters (CNNGeometric's parametrisations) and their maths.

Everything here is in NORMALISED ``(x, y)`` coordinates (torch's ``align_corners=False``
convention, see ``images``) and works on batched torch tensors:

- an affine is ``theta`` ``(2, 3)`` of ``affine_grid``: output ``(x, y, 1)`` -> content ``(x, y)``;
- a TPS is ``2 K^2`` grid params ``[x_1..x_KK, y_1..y_KK]``: where in the content each control
  point of the regular K x K output grid (``images.regular_grid_xy`` order) samples from.

Both are SAMPLE maps (output point -> content point), and a warp by ``theta`` and ``tps`` samples
the content at ``theta(tps(p))`` (``sample_map``). This module is the one place for their
identities, evaluation, composition and fold measure; ``transforms`` turns them into landmark
transforms in pixels (``affine_from_theta``, ``tps_from_grid_params``). The TPS solver is in
``tps``; the model kinds and their sizes (``check_model_kind``, ``check_grid_size``) are in
``geonet_spec``.

torch is imported inside functions so that importing this module stays cheap.
"""

from __future__ import annotations

from . import images
from .geonet_spec import check_grid_size, check_model_kind
from .tps import check_batch_points, tps_evaluate, tps_jacobian, tps_solve


# --------------------------------------------------------------------------- identities, grids
def grid_params_to_xy(params, grid_size: int):
    """``(..., 2 K^2)`` grid params -> ``(..., K^2, 2)`` content ``(x, y)`` (numpy or torch)."""
    count = grid_size * grid_size
    return params.reshape(*params.shape[:-1], 2, count).swapaxes(-1, -2)


def xy_to_grid_params(points_xy):
    """``(..., K^2, 2)`` content ``(x, y)`` -> ``(..., 2 K^2)`` grid params (numpy or torch)."""
    return points_xy.swapaxes(-1, -2).reshape(*points_xy.shape[:-2], 2 * points_xy.shape[-2])


def tps_identity_params(grid_size: int = 3):
    """The ``2 K^2`` grid params of the identity (numpy float64): the regular grid itself."""
    return xy_to_grid_params(images.regular_grid_xy(check_grid_size(grid_size)))


def identity_theta(dtype=None, device=None):
    """theta ``(2, 3)`` of the identity."""
    import torch

    return torch.eye(2, 3, dtype=dtype, device=device)


def identity_params(kind: str, grid_size: int = 3, dtype=None, device=None):
    """Identity parameters of a network of ``kind`` ("affine": 6, "tps": 2 K^2) as ``(P,)``
    (float32 unless ``dtype`` says otherwise)."""
    import torch

    dtype = dtype or torch.float32
    if check_model_kind(kind) == "affine":
        return identity_theta(dtype, device).reshape(-1)
    return torch.as_tensor(tps_identity_params(grid_size), dtype=dtype, device=device)


def lattice_xy(size: int, device=None, dtype=None):
    """``(size^2, 2)`` tensor of the regular lattice spanning [-1, 1] (``images.regular_grid_xy``;
    float32 unless ``dtype`` says otherwise)."""
    import torch

    return torch.as_tensor(
        images.regular_grid_xy(size), dtype=dtype or torch.float32, device=device
    )


def output_centres(batch: int, height: int, width: int, dtype=None, device=None):
    """``(batch, H*W, 2)`` normalised centres of the pixels of an H x W output, row-major.

    They are exactly what ``affine_grid`` gives for the identity (``images.ALIGN_CORNERS``).
    """
    import torch.nn.functional as F

    identity = identity_theta(dtype, device)[None]
    centres = F.affine_grid(identity, [1, 1, height, width], align_corners=images.ALIGN_CORNERS)
    return centres.reshape(1, height * width, 2).expand(batch, -1, -1)


# --------------------------------------------------------------------------- evaluation
def affine_sample_points(theta, points_xy):
    """Apply ``theta`` ``(B, 2, 3)``, as ``affine_grid`` does: output ``(x, y, 1)`` -> content."""
    if theta.ndim != 3 or tuple(theta.shape[1:]) != (2, 3):
        raise ValueError(f"theta must have shape (B, 2, 3); got {tuple(theta.shape)}.")
    check_batch_points(points_xy, "points_xy", theta.shape[0])
    points_xy = points_xy.to(theta.dtype)
    return points_xy @ theta[:, :, :2].transpose(1, 2) + theta[:, None, :, 2]


def tps_spline(params, grid_size: int = 3):
    """``(control, coefficients)`` of the TPS of grid params ``params`` ``(B, 2 K^2)``, for
    ``tps.tps_evaluate`` / ``tps_jacobian`` (solve once, evaluate often)."""
    import torch

    grid_size = check_grid_size(grid_size)
    count = grid_size * grid_size
    if params.ndim != 2 or params.shape[1] != 2 * count:
        raise ValueError(
            f"TPS grid params must have shape (B, {2 * count}) for a {grid_size} x {grid_size} "
            f"grid; got {tuple(params.shape)}."
        )
    dtype = params.dtype if params.is_floating_point() else torch.float32
    control = lattice_xy(grid_size, params.device, dtype)[None].expand(params.shape[0], count, 2)
    values = grid_params_to_xy(params, grid_size).to(dtype)
    return control, tps_solve(control, values)


def tps_grid_params_sample_points(params, points_xy, grid_size: int = 3, spline=None):
    """Map normalised OUTPUT points ``(B, M, 2)`` to CONTENT points with grid params
    ``(B, 2 K^2)``. ``spline``: ``tps_spline(params, grid_size)`` when already computed."""
    control, coefficients = spline or tps_spline(params, grid_size)
    return tps_evaluate(points_xy, control, coefficients)


def sample_map(points_xy, theta=None, tps=None, grid_size: int = 3, spline=None):
    """``theta(tps(p))`` for normalised output points ``(B, M, 2)``; None is the identity.

    ``theta``: ``(B, 2, 3)`` or ``(B, 6)``, or one ``(2, 3)`` / ``(6,)`` when B is 1; ``tps``:
    ``(B, 2 K^2)``, or one ``(2 K^2,)`` when B is 1; ``spline``: ``tps_spline`` of it.
    """
    if tps is not None:
        points_xy = tps_grid_params_sample_points(
            tps.reshape(-1, tps.shape[-1]), points_xy, grid_size, spline
        )
    if theta is not None:
        points_xy = affine_sample_points(theta.reshape(-1, 2, 3), points_xy)
    return points_xy


def sample_points(kind: str, params, points_xy, grid_size: int = 3):
    """Apply a network's ``params`` of ``kind`` ("affine": (B, 6) or (B, 2, 3); "tps":
    (B, 2 K^2)) to normalised output points ``(B, M, 2)``."""
    if kind == "affine":
        return sample_map(points_xy, theta=params)
    return sample_map(points_xy, tps=params, grid_size=grid_size)


def tps_grid_params_to_grid(params, height: int, width: int, grid_size: int = 3):
    """``grid_sample`` grid ``(B, H, W, 2)`` (normalised content ``(x, y)``) for an output H x W.

    Output pixel centres follow ``images.ALIGN_CORNERS``; use the grid with the same setting.
    """
    import torch

    height, width = images.validate_shape((height, width), "grid size (height, width)")
    spline = tps_spline(params, grid_size)
    batch = params.shape[0]
    dtype = params.dtype if params.is_floating_point() else torch.float32
    centres = output_centres(batch, height, width, dtype, params.device)
    return tps_grid_params_sample_points(params, centres, grid_size, spline).reshape(
        batch, height, width, 2
    )


# --------------------------------------------------------------------------- composition
def compose_thetas(outer, inner):
    """theta of the sample map ``p -> outer(inner(p))``: ``(..., 2, 3)`` from two such."""
    import torch

    linear = outer[..., :2] @ inner[..., :2]
    shift = (outer[..., :2] @ inner[..., 2:]).squeeze(-1) + outer[..., 2]
    return torch.cat([linear, shift[..., None]], -1)


def fold_affine_into_tps(theta, tps, grid_size: int = 3):
    """Grid params ``(2 K^2,)`` of ``p -> theta(tps(p))``: a TPS is linear in its control values,
    so an affine applied after it is the same TPS with the affine applied to those values."""
    moved = grid_params_to_xy(tps, grid_size) @ theta[:, :2].T + theta[:, 2]
    return xy_to_grid_params(moved)


def _tps_basis(points, grid_size: int):
    """(M, K^2) matrix B: a grid-param TPS evaluated at ``points`` (M, 2) is ``B @ values``.

    A TPS through fixed control points is linear in the values it takes there.
    """
    import torch

    count = grid_size * grid_size
    unit = torch.eye(count, dtype=points.dtype, device=points.device)
    params = torch.cat([unit, torch.zeros_like(unit)], 1)  # value e_b in x, 0 in y
    sampled = tps_grid_params_sample_points(params, points[None].expand(count, -1, 2), grid_size)
    return sampled[..., 0].T


def compose_tps(outer, inner, grid_size: int = 3, lattice_size: int = 20):
    """Grid params of the TPS closest (least squares on a lattice) to ``outer(inner(p))``.

    Two TPS do not compose into one exactly; on small, smooth residuals the least-squares fit
    differs from the composition by a small fraction of a percent.
    """
    import torch

    lattice = lattice_xy(lattice_size, outer.device, torch.float64)
    inner_points = sample_map(lattice[None], tps=inner.double(), grid_size=grid_size)
    target = sample_map(inner_points, tps=outer.double(), grid_size=grid_size)[0]
    fitted = torch.linalg.lstsq(_tps_basis(lattice, grid_size), target).solution  # (K^2, 2)
    return xy_to_grid_params(fitted).to(outer.dtype)


# --------------------------------------------------------------------------- folds
def theta_determinant(theta):
    """Determinant of each theta's linear part (its area ratio), ``(B,)`` from ``(B, 2, 3)``."""
    return theta[:, 0, 0] * theta[:, 1, 1] - theta[:, 0, 1] * theta[:, 1, 0]


def tps_min_determinant(params, grid_size: int = 3, samples: int = 24, spline=None):
    """Smallest Jacobian determinant of grid-param TPS sample maps ``(B, 2 K^2)`` over a
    ``samples`` x ``samples`` lattice of the output, ``(B,)`` (<= 0: the warp folds there)."""
    control, coefficients = spline or tps_spline(params, grid_size)
    points = lattice_xy(samples, params.device, params.dtype)
    jac = tps_jacobian(points[None].expand(params.shape[0], -1, 2), control, coefficients)
    det = jac[..., 0, 0] * jac[..., 1, 1] - jac[..., 0, 1] * jac[..., 1, 0]
    return det.amin(1)
