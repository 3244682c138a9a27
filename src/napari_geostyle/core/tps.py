"""The thin-plate spline in batched, differentiable torch: solve, evaluate, Jacobian.

``tps_solve``, ``tps_evaluate`` and ``tps_jacobian`` work in any coordinates, on ``(B, N, 2)``
tensors of any float dtype. The kernel is ``U(r) = r**2 * log(r)``, with ``U(0) = 0``.
``tps_evaluate_fast`` is the evaluation that warps use (no gradients, several times faster on
CPUs); ``check_batch_points`` is the shape check every batched point function here shares.

Built on it: the landmark ``TPSTransform`` in pixels (``transforms``) and the geometry network's
grid-param TPS in normalised ``(x, y)`` (``warp_params``). This module imports nothing from the
package, and torch only inside functions, so that importing it stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch


def check_batch_points(tensor, name: str, batch: int | None = None, count: int | None = None):
    """``ValueError`` unless ``tensor`` is ``(B, N, 2)``, with B == ``batch`` and N == ``count``
    when given (``name`` says which argument)."""
    if tensor.ndim != 3 or tensor.shape[-1] != 2:
        raise ValueError(f"{name} must have shape (B, N, 2); got {tuple(tensor.shape)}.")
    if batch is not None and tensor.shape[0] != batch:
        raise ValueError(f"{name} has batch size {tensor.shape[0]}; expected {batch}.")
    if count is not None and tensor.shape[1] != count:
        raise ValueError(f"{name} has {tensor.shape[1]} points; expected {count}.")


_CPU_KERNEL_CHUNK = (
    1 << 15
)  # points per pass on CPUs: keeps the (points x controls) temporaries in cache


def _tps_kernel(squared_distance: torch.Tensor) -> torch.Tensor:
    """``U(r) = r^2 log r = 0.5 * r^2 * log(r^2)``, with ``U(0) = 0`` and a zero gradient there."""
    import torch

    # The where() keeps log() away from 0 so that gradients stay finite at the control points.
    safe = torch.where(squared_distance > 0, squared_distance, torch.ones_like(squared_distance))
    return 0.5 * squared_distance * torch.log(safe)


def _squared_distances(points: torch.Tensor, control: torch.Tensor) -> torch.Tensor:
    """``(B, M, N)`` squared distances; differences (not the |a|^2+|b|^2-2ab trick) for accuracy."""
    difference = points[:, :, None, :] - control[:, None, :, :]
    return (difference * difference).sum(-1)


def tps_solve(control: torch.Tensor, values: torch.Tensor, regularization: float = 0.0):
    """Coefficients ``(B, N + 3, 2)`` of the thin-plate spline with ``f(control[i]) = values[i]``.

    ``control`` and ``values`` are ``(B, N, 2)`` tensors of any float dtype. Rows ``0..N-1`` of the
    result are the kernel weights ``w``, rows ``N..N+2`` the affine part ``(a0, a_x, a_y)``:
    ``f(p) = a0 + p_x a_x + p_y a_y + sum_i w_i U(|p - control_i|)`` with ``U(r) = r^2 log r``.
    ``regularization > 0`` adds ``regularization * I`` to the kernel block: the spline then
    smooths (it no longer passes exactly through the values). Differentiable in all inputs.
    """
    import torch

    check_batch_points(control, "control")
    check_batch_points(values, "values", control.shape[0], control.shape[1])
    if not control.is_floating_point():
        raise ValueError(f"control must be a float tensor; got {control.dtype}.")
    regularization = float(regularization)
    if not np.isfinite(regularization) or regularization < 0:
        raise ValueError(f"regularization must be finite and >= 0; got {regularization}.")
    batch, count, _ = control.shape
    if count < 3:
        raise ValueError(f"a thin-plate spline needs at least 3 control points; got {count}.")
    values = values.to(control.dtype)
    kernel = _tps_kernel(_squared_distances(control, control))
    if regularization > 0:
        kernel = kernel + regularization * torch.eye(
            count, dtype=control.dtype, device=control.device
        )
    ones = torch.ones(batch, count, 1, dtype=control.dtype, device=control.device)
    affine_basis = torch.cat([ones, control], dim=2)  # (B, N, 3)
    zeros = torch.zeros(batch, 3, 3, dtype=control.dtype, device=control.device)
    system = torch.cat(
        [
            torch.cat([kernel, affine_basis], dim=2),
            torch.cat([affine_basis.transpose(1, 2), zeros], dim=2),
        ],
        dim=1,
    )
    right = torch.cat([values, values.new_zeros(batch, 3, 2)], dim=1)
    return torch.linalg.solve(system, right)


def tps_evaluate(points: torch.Tensor, control: torch.Tensor, coefficients: torch.Tensor):
    """Evaluate the spline of ``tps_solve`` at ``points`` ``(B, M, 2)`` -> ``(B, M, 2)``."""
    check_batch_points(points, "points")
    check_batch_points(control, "control", points.shape[0])
    count = control.shape[1]
    if coefficients.shape != (points.shape[0], count + 3, 2):
        raise ValueError(
            f"coefficients must have shape (B, N + 3, 2) = {(points.shape[0], count + 3, 2)}; "
            f"got {tuple(coefficients.shape)}."
        )
    points = points.to(coefficients.dtype)
    control = control.to(coefficients.dtype)
    kernel = _tps_kernel(_squared_distances(points, control))  # (B, M, N)
    weights, affine = coefficients[:, :count], coefficients[:, count:]
    return affine[:, :1] + points @ affine[:, 1:] + kernel @ weights


def tps_evaluate_fast(points, control, coefficients):
    """``tps_evaluate`` for warps (no gradients): distances by ``|p|^2 + |c|^2 - 2 p.c`` and
    in-place passes, several times faster on CPUs (where it also works in cache-sized chunks).
    The control frame is O(1), so float32 stays accurate to about a thousandth of a pixel."""
    import torch

    count = control.shape[1]
    weights = coefficients[:, :count] * 0.5  # U = 0.5 d^2 log d^2: the 0.5 folded into w
    affine = coefficients[:, count:]
    control_squared = (control * control).sum(-1)[:, None, :]
    control_t = control.transpose(1, 2)
    chunk = _CPU_KERNEL_CHUNK if points.device.type == "cpu" else points.shape[1]
    parts = []
    for start in range(0, points.shape[1], max(1, chunk)):
        part = points[:, start : start + chunk]
        squared = torch.baddbmm(
            control_squared + (part * part).sum(-1, keepdim=True), part, control_t, alpha=-2.0
        )
        # the floor keeps log finite; tiny * log(tiny) is 0 in any float type, so U(0) = 0.
        squared.clamp_min_(torch.finfo(squared.dtype).tiny)
        kernel = torch.log(squared).mul_(squared)
        # affine part elementwise: a matmul with an inner size of 2 is slow on CPUs
        linear = affine[:, :1] + part[..., 0:1] * affine[:, 1:2] + part[..., 1:2] * affine[:, 2:3]
        parts.append(torch.baddbmm(linear, kernel, weights))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def tps_jacobian(points: torch.Tensor, control: torch.Tensor, coefficients: torch.Tensor):
    """Jacobian ``(B, M, 2, 2)`` of the spline at ``points``: ``J[..., k, j] = d f_k / d p_j``."""
    import torch

    check_batch_points(points, "points")
    points = points.to(coefficients.dtype)
    control = control.to(coefficients.dtype)
    count = control.shape[1]
    difference = points[:, :, None, :] - control[:, None, :, :]  # (B, M, N, 2)
    squared = (difference * difference).sum(-1)
    safe = torch.where(squared > 0, squared, torch.ones_like(squared))
    # grad U = (p - c) (log r^2 + 1), which tends to 0 at r = 0.
    factor = torch.where(squared > 0, torch.log(safe) + 1.0, torch.zeros_like(squared))
    gradient = difference * factor[..., None]  # (B, M, N, 2): dU_i / dp_j
    weights, affine = coefficients[:, :count], coefficients[:, count:]
    # J[b, m, k, j] = a[1 + j, k] + sum_i w[i, k] dU_i/dp_j
    radial = torch.einsum("bmnj,bnk->bmkj", gradient, weights)
    return radial + affine[:, 1:].transpose(1, 2)[:, None]
