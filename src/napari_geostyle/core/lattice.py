"""Sample maps evaluated exactly on a coarse lattice and interpolated bilinearly in between.

A warp evaluates its sample map at every output pixel; a thin-plate spline costs a logarithm per
landmark per pixel. A smooth map is as well served by its exact values every few pixels and
bilinear interpolation between them, for a fraction of the evaluations. Two layouts of the
lattice's knots are used:

- **Every ``step`` pixels from pixel 0** (:class:`LatticeSampleMap`, the live warp's full-size
  warps): knots at rows and columns ``0, step, 2 step, ...`` up to the first at or past the last
  pixel, read at any point with :func:`sample_lattice`. :func:`lattice_sample_map` checks the
  interpolation's error at the lattice cells' centres and falls back to the exact map.
- **Spread evenly from the first to the last pixel** (``core.estimate``'s warps by network
  parameters, which stay differentiable): :func:`lattice_counts` knots per axis, whose values
  :func:`upsample_lattice` interpolates to every pixel of the output.

Both interpolate with ``align_corners=True``: the first and last knots are the first and last
samples, and the values on a lattice channel-first ``(B, D, rows, cols)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .transforms import Transform

if TYPE_CHECKING:  # pragma: no cover
    import torch

LATTICE_STEP = 4  # output pixels between knots
# the largest distance (px) between the interpolated and the exact map a full warp accepts,
# checked at every lattice cell's centre, where bilinear interpolation errs most
LATTICE_TOLERANCE = 0.1
LATTICE_MIN_PIXELS = 256 * 256  # smaller planes: the exact map is cheap enough


def lattice_counts(shape: tuple[int, int], step: int) -> tuple[int, int]:
    """Knots per axis of a lattice spread evenly from the first to the last pixel of an
    ``(H, W)`` output, at most ``step`` pixels apart: ``((H - 1) // step + 1, (W - 1) // step
    + 1)``.

    Parameters
    ----------
    shape : tuple of int
        The output's ``(H, W)``.
    step : int
        The knots' largest spacing in pixels.

    Returns
    -------
    tuple of int
        ``(rows, cols)``.
    """
    height, width = (int(n) for n in shape[:2])
    return (height - 1) // int(step) + 1, (width - 1) // int(step) + 1


def upsample_lattice(lattice, shape: tuple[int, int]):
    """Bilinear interpolation of a lattice spread evenly over an output to its every pixel.

    Parameters
    ----------
    lattice : torch.Tensor
        ``(B, D, rows, cols)`` values at knots spread evenly from the output's first to its last
        pixel centre (``lattice_counts``).
    shape : tuple of int
        The output's ``(H, W)``.

    Returns
    -------
    torch.Tensor
        ``(B, D, H, W)``; differentiable in ``lattice``.
    """
    import torch.nn.functional as F

    # align_corners=True: fine pixel i sits at lattice position i (n - 1) / (N - 1), which is
    # where the lattice's nodes, spread evenly from the first to the last centre, put it
    return F.interpolate(lattice, size=tuple(shape[:2]), mode="bilinear", align_corners=True)


def sample_lattice(lattice, points_rc, spacing: float = 1.0):
    """Bilinear interpolation of a lattice whose knots are ``spacing`` pixels apart from pixel
    ``(0, 0)``, at any points; outside it, the border's values.

    Parameters
    ----------
    lattice : torch.Tensor
        ``(1, D, rows, cols)`` values at pixels ``(i * spacing, j * spacing)``.
    points_rc : torch.Tensor
        ``(N, 2)`` pixel ``(row, col)`` to read at, in ``lattice``'s dtype and device.
    spacing : float, default 1.0
        Pixels between neighbouring knots.

    Returns
    -------
    torch.Tensor
        ``(N, D)``.
    """
    import torch
    import torch.nn.functional as F

    height, width = lattice.shape[-2:]
    # grid_sample's (x, y) in -1..1 with align_corners: -1 and 1 are the first and last knots
    grid = torch.stack(
        [points_rc[:, 1] * (2.0 / (spacing * max(width - 1, 1))) - 1.0,
         points_rc[:, 0] * (2.0 / (spacing * max(height - 1, 1))) - 1.0], -1,
    )  # fmt: skip
    sampled = F.grid_sample(lattice, grid[None, None], mode="bilinear",
                            padding_mode="border", align_corners=True)  # fmt: skip
    return sampled[0, :, 0].T


class LatticeSampleMap(Transform):
    """``transform``'s sample map evaluated exactly on a lattice every ``step`` output pixels of
    an ``output_shape`` frame, and interpolated bilinearly in between.

    What ``warp_image`` needs (``sample_points_torch``) for a fraction ``1 / step**2`` of the
    exact evaluations: a TPS evaluates a logarithm per landmark per pixel, the lattice reads
    four values. ``map_points``, ``sample_jacobian`` and ``to_dict`` are the exact transform's.
    Build it with :func:`lattice_sample_map`, which checks the interpolation's error.

    Parameters
    ----------
    transform : Transform
        The exact map.
    output_shape : tuple of int
        ``(H, W)`` of the output the lattice covers.
    step : int, default LATTICE_STEP
        Output pixels between knots.
    """

    def __init__(self, transform: Transform, output_shape, step: int = LATTICE_STEP) -> None:
        height, width = (int(n) for n in output_shape)
        self.exact = transform
        self.step = int(step)
        # lattice rows / columns 0, step, ... up to the first one at or past the last pixel
        rows = np.arange(0, height - 1 + self.step, self.step, dtype=float)
        cols = np.arange(0, width - 1 + self.step, self.step, dtype=float)
        knots = np.stack(np.meshgrid(rows, cols, indexing="ij"), -1).reshape(-1, 2)
        self.lattice = transform.sample_points(knots).reshape(len(rows), len(cols), 2)
        self.kernel_size = 4  # bilinear taps per pixel (sizes warp_image's tiles)
        self._tensors: dict[tuple, torch.Tensor] = {}  # the lattice per (dtype, device)

    def interpolation_error(self) -> float:
        """Largest distance (pixels) between the interpolated and the exact map at the centres
        of the lattice cells (NaN for a map that is not finite).

        Returns
        -------
        float
            The error in pixels.
        """
        lattice = self.lattice
        centres = (lattice[:-1, :-1] + lattice[1:, :-1] + lattice[:-1, 1:] + lattice[1:, 1:]) / 4
        rows = (np.arange(lattice.shape[0] - 1) + 0.5) * self.step
        cols = (np.arange(lattice.shape[1] - 1) + 0.5) * self.step
        points = np.stack(np.meshgrid(rows, cols, indexing="ij"), -1).reshape(-1, 2)
        if len(points) == 0:
            return 0.0
        exact = self.exact.sample_points(points)
        error = np.linalg.norm(exact - centres.reshape(-1, 2), axis=1)
        return float(error.max()) if np.all(np.isfinite(error)) else float("nan")

    def sample_points_torch(self, points_rc):
        import torch

        key = (points_rc.dtype, points_rc.device)
        if key not in self._tensors:
            self._tensors[key] = torch.as_tensor(
                self.lattice.transpose(2, 0, 1)[None].copy(),
                dtype=points_rc.dtype,
                device=points_rc.device,
            )
        return sample_lattice(self._tensors[key], points_rc, self.step)

    def sample_points(self, points) -> np.ndarray:
        import torch

        points = np.ascontiguousarray(self._points(points), np.float64)
        return self.sample_points_torch(torch.from_numpy(points)).numpy()

    def map_points(self, points) -> np.ndarray:
        return self.exact.map_points(points)

    def sample_jacobian(self, points) -> np.ndarray:
        return self.exact.sample_jacobian(points)

    def to_dict(self) -> dict:
        return self.exact.to_dict()


def lattice_sample_map(
    transform: Transform,
    output_shape,
    step: int = LATTICE_STEP,
    tolerance: float = LATTICE_TOLERANCE,
    min_pixels: int = LATTICE_MIN_PIXELS,
) -> Transform:
    """What a full warp of an ``output_shape`` plane evaluates: a :class:`LatticeSampleMap`
    when the plane is large and the lattice is close to the exact map, else ``transform``.

    Parameters
    ----------
    transform : Transform
        The exact map.
    output_shape : tuple of int
        The plane's ``(H, W, ...)``.
    step : int, default LATTICE_STEP
        Output pixels between knots.
    tolerance : float, default LATTICE_TOLERANCE
        The largest interpolation error (pixels) accepted.
    min_pixels : int, default LATTICE_MIN_PIXELS
        Planes with fewer pixels are evaluated exactly.

    Returns
    -------
    Transform
        The lattice, or ``transform`` itself (small planes, or a map too wiggly for the
        lattice).
    """
    height, width = (int(n) for n in output_shape[:2])
    if height * width < min_pixels:
        return transform
    lattice = LatticeSampleMap(transform, (height, width), step)
    error = lattice.interpolation_error()
    return lattice if error <= tolerance else transform  # NaN: the exact path says why
