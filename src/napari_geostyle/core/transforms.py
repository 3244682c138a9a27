"""Geometric transforms: numpy landmark transforms, and the network's parameters as such.

Landmark transforms in PIXEL ``(row, col)`` coordinates, numpy float64 in and out:
``AffineTransform``, ``TPSTransform``, ``ComposedTransform``. A transform maps CONTENT points to
OUTPUT points (``map_points``); ``sample_points`` is the inverse map (output -> content) that a
warp samples with. ``affine_from_theta`` / ``tps_from_grid_params`` (and back) turn the geometry
network's parameters into such transforms.

The batched torch thin-plate spline (``tps_solve``, ``tps_evaluate``, ``tps_jacobian``) is
defined in ``tps``; the network's parametrisations in NORMALISED ``(x, y)`` in ``warp_params``.
Both stay importable from here (``tps_grid_params_to_grid``, ``tps_grid_params_sample_points``,
``tps_identity_params``, ``affine_sample_points``), as they were before they moved.

torch is imported inside functions so that importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from . import images
from .geonet_spec import check_grid_size
from .tps import tps_evaluate, tps_evaluate_fast, tps_jacobian, tps_solve  # noqa: F401
from .warp_params import (  # the network's parametrisations; importable from here (public API)
    affine_sample_points,  # noqa: F401
    grid_params_to_xy,
    tps_grid_params_sample_points,  # noqa: F401
    tps_grid_params_to_grid,  # noqa: F401
    tps_identity_params,  # noqa: F401
    xy_to_grid_params,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from numpy.typing import ArrayLike


# =========================================================================== landmark transforms
#: most landmark pairs a thin-plate spline takes: its N x N solve and the N kernel terms per
#: warped pixel stay at about a second on a laptop CPU
MAX_TPS_LANDMARKS = 2000
#: deepest nesting ``transform_from_dict`` reads (a real composition is a few levels deep)
MAX_DICT_DEPTH = 32
_MAX_AFFINE_ENTRY = 1e150  # beyond it the determinant of the linear part overflows
_DUPLICATE_TOLERANCE = 1e-6  # relative to the landmark extent (at least 1 px)
#: farthest a landmark may be from the origin, in pixels (far beyond any image's side)
MAX_LANDMARK_COORDINATE = 1e8
_COLINEAR_TOLERANCE = 1e-6  # smallest / largest singular value of the centred landmarks
_EVALUATION_CHUNK = 1 << 16  # points per chunk when evaluating a spline in float64 on the CPU


def _check_spread(points: np.ndarray, name: str) -> None:
    """Duplicate or colinear landmarks make the fits singular: say which, and how to fix it."""
    from scipy.spatial import cKDTree

    # the scale first: one absurd coordinate would make every other pair look like a duplicate
    reach = np.abs(points).max(axis=1)
    if not np.all(np.isfinite(points)) or reach.max() > MAX_LANDMARK_COORDINATE:
        far = int(np.argmax(np.where(np.isfinite(reach), reach, np.inf)))
        raise ValueError(
            f"{name} {far} is at {points[far].tolist()}, more than "
            f"{MAX_LANDMARK_COORDINATE:.0e} px from the origin; landmarks are image pixels: "
            "fix or remove that landmark."
        )
    extent = max(1.0, float(np.ptp(points, axis=0).max()))
    # nearest other landmark of each, from a KD-tree: O(N log N) time and O(N) memory
    distance, index = cKDTree(points).query(points, k=2)
    closest = int(np.argmin(distance[:, 1]))
    gap = float(distance[closest, 1])
    if gap <= _DUPLICATE_TOLERANCE * extent:
        # with several landmarks at one spot the query may return another one first
        partner = int(index[closest, 1] if index[closest, 1] != closest else index[closest, 0])
        first, second = sorted((closest, partner))
        where = (
            f"are at the same position {points[first].tolist()}"
            if gap == 0
            else f"are {gap:.3g} px apart, as good as the same position for landmarks that "
            f"span {extent:.3g} px"
        )
        raise ValueError(f"{name} {first} and {second} {where}; remove one of the two landmarks.")
    singular = np.linalg.svd(points - points.mean(axis=0), compute_uv=False)
    if singular[-1] <= _COLINEAR_TOLERANCE * singular[0]:
        raise ValueError(
            f"{name} all lie on one line; place at least one landmark off that line so the "
            "transform is defined in both directions."
        )


def _validate_landmark_pairs(content, output, content_name: str, output_name: str,
                            max_count: int | None = None):  # fmt: skip
    content = images.validate_points(content, content_name)
    output = images.validate_points(output, output_name)
    if len(content) != len(output):
        raise ValueError(
            f"{content_name} has {len(content)} points but {output_name} has {len(output)}; "
            "give one point in each for every landmark pair."
        )
    if len(content) < 3:
        raise ValueError(f"{len(content)} landmark pairs given; at least 3 pairs are needed.")
    if max_count is not None and len(content) > max_count:
        raise ValueError(
            f"{len(content)} landmark pairs given; a thin-plate spline takes at most {max_count} "
            "(its solve grows with the cube of the count, every warped pixel with the count). "
            "Thin the landmarks, or fit an affine transform to this many."
        )
    _check_spread(content, content_name)
    _check_spread(output, output_name)
    return content, output


class Transform:
    """Base of the landmark transforms: maps CONTENT ``(row, col)`` to OUTPUT ``(row, col)``."""

    #: control points whose kernel each sampled point evaluates (sizes warp tiles)
    kernel_size = 0
    # set on an estimate's result only (``core.estimate``; read with getattr): P(the warp is
    # right), 0..1, and what it was made from
    confidence: float | None
    confidence_features: dict | None

    def map_points(self, points: ArrayLike) -> np.ndarray:
        """Content ``(row, col)`` -> output ``(row, col)``: where a content feature appears."""
        raise NotImplementedError

    def sample_points(self, points: ArrayLike) -> np.ndarray:
        """Output ``(row, col)`` -> content ``(row, col)``: where a warp samples an output pixel."""
        raise NotImplementedError

    def sample_jacobian(self, points: ArrayLike) -> np.ndarray:
        """``(M, 2, 2)`` Jacobian of the sample map: ``J[m, k, j] = d content_k / d output_j``."""
        raise NotImplementedError

    def to_dict(self) -> dict:
        raise NotImplementedError

    def sample_points_torch(self, points_rc: torch.Tensor) -> torch.Tensor:
        """``sample_points`` on an ``(M, 2)`` tensor, in its dtype and on its device (for warps)."""
        raise NotImplementedError

    def then(self, other: Transform) -> ComposedTransform:
        """This transform followed by ``other`` (content -> this -> other -> output)."""
        return ComposedTransform([self, other])

    @staticmethod
    def _points(points) -> np.ndarray:
        return images.validate_points(points, "points")


def _homogeneous_apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:2, :2].T + matrix[:2, 2]


class AffineTransform(Transform):
    """Affine map ``output = matrix @ (row, col, 1)`` of content pixel coordinates.

    Parameters
    ----------
    matrix : array_like
        3 x 3 (last row ``0 0 1``) or 2 x 3, in ``(row, col)`` homogeneous coordinates.

    Raises
    ------
    ValueError
        If ``matrix`` is not numbers, has another shape, holds NaN or infinite values, has a
        last row other than ``0 0 1``, an entry too large for a pixel transform, or is singular.

    Examples
    --------
    >>> shift = AffineTransform([[1, 0, 5], [0, 1, -2]])
    >>> shift.map_points([[10.0, 10.0]]).tolist()
    [[15.0, 8.0]]
    """

    def __init__(self, matrix: ArrayLike) -> None:
        try:
            array = np.array(matrix, dtype=np.float64)
        except (TypeError, ValueError, OverflowError) as error:
            raise ValueError(f"affine matrix must be numbers: {error}") from None
        if array.shape == (2, 3):
            array = np.vstack([array, [0.0, 0.0, 1.0]])
        if array.shape != (3, 3):
            raise ValueError(f"affine matrix must be 3 x 3 or 2 x 3; got shape {array.shape}.")
        if not np.all(np.isfinite(array)):
            raise ValueError("affine matrix contains NaN or infinite values.")
        if not np.allclose(array[2], [0.0, 0.0, 1.0], rtol=0, atol=1e-12):
            raise ValueError(
                f"affine matrix's last row must be [0, 0, 1]; got {array[2].tolist()}."
            )
        array[2] = [0.0, 0.0, 1.0]
        linear = array[:2, :2]
        peak = float(np.abs(linear).max())
        if peak > _MAX_AFFINE_ENTRY:  # its determinant and inverse would overflow
            raise ValueError(
                f"affine matrix has an entry of {peak:.3g}; a pixel transform's linear part "
                f"stays below {_MAX_AFFINE_ENTRY:.0e} (is the file corrupt?)."
            )
        if abs(np.linalg.det(linear)) <= 1e-12 * max(1.0, peak) ** 2:
            raise ValueError(
                "affine matrix is singular (it squashes the image onto a line or point); "
                "it cannot be inverted to sample a warp."
            )
        self.matrix = array
        self.matrix.setflags(write=False)
        self._inverse = np.linalg.inv(array)
        self._inverse[2] = [0.0, 0.0, 1.0]

    def map_points(self, points: ArrayLike) -> np.ndarray:
        return _homogeneous_apply(self.matrix, self._points(points))

    def sample_points(self, points: ArrayLike) -> np.ndarray:
        return _homogeneous_apply(self._inverse, self._points(points))

    def sample_jacobian(self, points: ArrayLike) -> np.ndarray:
        points = self._points(points)
        return np.broadcast_to(self._inverse[:2, :2], (len(points), 2, 2)).copy()

    def sample_points_torch(self, points_rc: torch.Tensor) -> torch.Tensor:
        import torch

        inverse = torch.as_tensor(self._inverse, dtype=points_rc.dtype, device=points_rc.device)
        return points_rc @ inverse[:2, :2].T + inverse[:2, 2]

    def inverse(self) -> AffineTransform:
        """The affine transform that maps output back to content."""
        return AffineTransform(self._inverse)

    def to_dict(self) -> dict:
        return {"type": "affine", "matrix": [[float(v) for v in row] for row in self.matrix]}

    def __repr__(self) -> str:
        return f"AffineTransform(matrix={self.matrix[:2].tolist()})"


class _Spline:
    """A TPS ``(row, col) -> (row, col)`` fitted in a frame ``u = (p - center) / scale``.

    The frame keeps the kernel well conditioned (and float32 evaluation accurate) at any image
    size; the landmark values stay in pixels.
    """

    def __init__(self, control, values, regularization, center, scale, exact: bool = True):
        import torch

        self.control = control
        self.center = np.array(center, dtype=np.float64)
        self.scale = np.array(scale, dtype=np.float64)
        self.control_frame = (control - self.center) / self.scale
        try:
            self.coefficients = (
                tps_solve(
                    torch.from_numpy(self.control_frame)[None],
                    torch.from_numpy(np.array(values, dtype=np.float64))[None],
                    regularization,
                )[0]
                .numpy()
                .copy()
            )
        except torch.linalg.LinAlgError:
            self.coefficients = np.full((len(control) + 3, 2), np.nan)
        if not np.all(np.isfinite(self.coefficients)):
            raise ValueError("the thin-plate spline system is singular for these landmarks.")
        if exact and regularization == 0:
            self._make_exact(np.array(values, dtype=np.float64))

    def _make_exact(self, values: np.ndarray) -> None:
        """An interpolating spline must hit its landmarks: refine the solve where it misses
        (an ill-conditioned system, e.g. landmarks at scales 1e6 apart), refuse if it still does."""
        import torch

        values_scale = max(1.0, float(np.abs(values - values.mean(axis=0)).max()))
        tolerance = 1e-9 * values_scale
        for _refinement in range(3):
            miss = self.evaluate(self.control) - values
            worst = float(np.abs(miss).max())
            if worst <= tolerance:
                return
            correction = tps_solve(
                torch.from_numpy(self.control_frame)[None], torch.from_numpy(miss)[None], 0.0
            )[0].numpy()
            self.coefficients = self.coefficients - correction
        raise ValueError(
            f"the landmarks span scales too far apart for an exact thin-plate spline (it misses "
            f"a landmark by {worst:.3g} px): remove far-away landmarks, or fit with "
            "regularization > 0 or fit_affine."
        )

    def evaluate_torch(self, points):
        import torch

        options = {"dtype": points.dtype, "device": points.device}
        center = torch.as_tensor(self.center, **options)
        scale = torch.as_tensor(self.scale, **options)
        control = torch.as_tensor(self.control_frame, **options)[None]
        coefficients = torch.as_tensor(self.coefficients, **options)[None]
        return tps_evaluate_fast(((points - center) / scale)[None], control, coefficients)[0]

    def evaluate(self, points: np.ndarray) -> np.ndarray:
        import torch

        points = np.require(
            points, np.float64, ["C", "W"]
        )  # torch wants writable, positive strides
        result = np.empty_like(points)
        for start in range(0, len(points), _EVALUATION_CHUNK):
            chunk = torch.from_numpy(points[start : start + _EVALUATION_CHUNK])
            result[start : start + _EVALUATION_CHUNK] = self.evaluate_torch(chunk).numpy()
        return result

    def jacobian(self, points: np.ndarray) -> np.ndarray:
        import torch

        points = np.require(
            points, np.float64, ["C", "W"]
        )  # torch wants writable, positive strides
        result = np.empty((len(points), 2, 2))
        control = torch.from_numpy(self.control_frame)[None]
        coefficients = torch.from_numpy(self.coefficients)[None]
        for start in range(0, len(points), _EVALUATION_CHUNK):
            frame = (points[start : start + _EVALUATION_CHUNK] - self.center) / self.scale
            jac = tps_jacobian(torch.from_numpy(frame)[None], control, coefficients)[0].numpy()
            result[start : start + _EVALUATION_CHUNK] = jac / self.scale  # chain rule d u_j / d p_j
        return result


def _isotropic_frame(points: np.ndarray):
    center = points.mean(axis=0)
    radius = float(np.sqrt(((points - center) ** 2).sum(axis=1).mean()))
    return center, np.array([radius, radius])


def image_frame(shape) -> tuple[np.ndarray, np.ndarray]:
    """``(center, scale)`` turning pixel ``(row, col)`` into normalised ``(y, x)`` of ``shape``."""
    matrix = images.normalized_to_pixel_matrix(images.validate_shape(shape, "shape"))
    return matrix[:2, 2].copy(), np.array([matrix[0, 1], matrix[1, 0]])


class TPSTransform(Transform):
    """Landmark thin-plate spline: its SAMPLE map sends ``output_points[i]`` to
    ``content_points[i]`` (``fit_tps(src, dst)`` builds one with output = dst, content = src).

    - ``regularization`` = 0 interpolates the landmarks exactly; > 0 smooths (``lambda * I`` added
      to the kernel block, in the frame below, so the value means the same at any image size).
    - ``frame = (center, scale)``: output coordinates enter the kernel as ``(p - center) / scale``
      (per axis, ``(row, col)``). ``None`` centres on the output landmarks and scales isotropically
      by their RMS radius (the classic TPS; this is what ``fit_tps`` uses). With regularization 0
      an isotropic frame does not change the spline; ``tps_from_grid_params`` uses the image's
      normalised frame, so the spline is exactly the network's (``tps_grid_params_to_grid``).
    - ``map_points`` (content -> output) inverts the sample map with Newton iterations started
      from a forward spline fit; it is exact at the landmarks (regularization 0).

    Parameters
    ----------
    output_points : array_like
        ``(N, 2)`` output landmarks, ``(row, col)`` pixels.
    content_points : array_like
        ``(N, 2)`` content landmarks, ``(row, col)`` pixels; ``output_points[i]`` samples
        ``content_points[i]``.
    regularization : float, default 0.0
        0 interpolates exactly; > 0 smooths (must be finite).
    frame : tuple of array_like, optional
        ``(center, scale)`` of the kernel's frame, each ``(row, col)``; ``None``: isotropic, on
        the output landmarks.

    Raises
    ------
    ValueError
        If the landmarks are not paired ``(N, 2)`` finite arrays of 3 to ``MAX_TPS_LANDMARKS``
        pairs that spread in two dimensions, ``regularization`` is not a finite number >= 0,
        or the spline system is singular.
    """

    _NEWTON_ITERATIONS = 40
    _NEWTON_TOLERANCE = 1e-9  # pixels

    def __init__(
        self,
        output_points: ArrayLike,
        content_points: ArrayLike,
        regularization: float = 0.0,
        frame: tuple[ArrayLike, ArrayLike] | None = None,
    ) -> None:
        content, output = _validate_landmark_pairs(
            content_points, output_points, "content_points", "output_points", MAX_TPS_LANDMARKS
        )
        regularization = _as_number(regularization, "regularization must be a number")
        if not np.isfinite(regularization) or regularization < 0:
            raise ValueError(f"regularization must be finite and >= 0; got {regularization}.")
        if frame is None:
            center, scale = _isotropic_frame(output)
        else:
            try:
                center, scale = (np.array(v, dtype=np.float64).reshape(2) for v in frame)
            except (TypeError, ValueError, OverflowError):
                raise ValueError(
                    "frame must be (center, scale), each two numbers (row, col)."
                ) from None
            if not (
                np.all(np.isfinite(center)) and np.all(np.isfinite(scale)) and np.all(scale > 0)
            ):
                raise ValueError(f"frame must be finite with positive scale; got {frame!r}.")
        self.output_points = output
        self.content_points = content
        self.regularization = regularization
        for array in (self.output_points, self.content_points, center, scale):
            array.setflags(write=False)
        self.frame = (center, scale)
        self.kernel_size = len(output)
        self._sample = _Spline(output, content, regularization, center, scale)
        self._forward: _Spline | None = None  # content -> output spline, fitted on first map_points

    # ----------------------------------------------------------------- maps
    def sample_points(self, points: ArrayLike) -> np.ndarray:
        return self._sample.evaluate(self._points(points))

    def sample_points_torch(self, points_rc: torch.Tensor) -> torch.Tensor:
        return self._sample.evaluate_torch(points_rc)

    def sample_jacobian(self, points: ArrayLike) -> np.ndarray:
        return self._sample.jacobian(self._points(points))

    def map_points(self, points: ArrayLike) -> np.ndarray:
        targets = self._points(points)
        if len(targets) == 0:
            return targets.copy()
        if self._forward is None:
            center, scale = _isotropic_frame(self.content_points)
            self._forward = _Spline(
                self.content_points,
                self.output_points,
                self.regularization,
                center,
                scale,
                exact=False,  # only the Newton start: an inexact guess is fine
            )
        estimate = self._forward.evaluate(targets)
        return self._newton_inverse(targets, estimate)

    def _newton_inverse(self, targets: np.ndarray, estimate: np.ndarray) -> np.ndarray:
        """Solve ``sample(x) = targets`` by damped Newton from ``estimate`` (vectorised)."""
        residual = self._sample.evaluate(estimate) - targets
        error = np.linalg.norm(residual, axis=1)
        for _ in range(self._NEWTON_ITERATIONS):
            active = np.flatnonzero(error > self._NEWTON_TOLERANCE)
            if active.size == 0:
                break
            # pinv copes with a singular Jacobian where the sample map folds.
            step = np.einsum(
                "mjk,mk->mj",
                np.linalg.pinv(self._sample.jacobian(estimate[active])),
                residual[active],
            )
            length = np.ones(active.size)
            improved = np.zeros(active.size, dtype=bool)
            for _halving in range(12):  # backtracking keeps each step a descent step
                pending = np.flatnonzero(~improved)
                if pending.size == 0:
                    break
                index = active[pending]
                trial = estimate[index] - length[pending, None] * step[pending]
                trial_residual = self._sample.evaluate(trial) - targets[index]
                trial_error = np.linalg.norm(trial_residual, axis=1)
                better = trial_error < error[index]
                accepted = index[better]
                estimate[accepted] = trial[better]
                residual[accepted] = trial_residual[better]
                error[accepted] = trial_error[better]
                improved[pending[better]] = True
                length[pending[~better]] *= 0.5
            if not improved.any():
                break  # stuck (a fold): keep the best point found
        return estimate

    # ----------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict:
        center, scale = self.frame
        return {
            "type": "tps",
            "output_points": self.output_points.tolist(),
            "content_points": self.content_points.tolist(),
            "regularization": float(self.regularization),
            "frame": {"center": center.tolist(), "scale": scale.tolist()},
        }

    def __repr__(self) -> str:
        count = len(self.output_points)
        return f"TPSTransform({count} landmarks, regularization={self.regularization})"


class ComposedTransform(Transform):
    """Transforms applied in order: ``map_points`` runs them first to last, ``sample_points``
    inverts them last to first.

    Parameters
    ----------
    transforms : iterable of Transform
        The transforms, first applied first; nested compositions are flattened.

    Raises
    ------
    ValueError
        If an item is not a ``Transform``, or there are none.
    """

    def __init__(self, transforms: Iterable[Transform]) -> None:
        flat: list[Transform] = []
        for transform in transforms:
            if isinstance(transform, ComposedTransform):
                flat.extend(transform.transforms)
            elif isinstance(transform, Transform):
                flat.append(transform)
            else:
                raise ValueError(
                    f"ComposedTransform takes transforms; got {type(transform).__name__}."
                )
        if not flat:
            raise ValueError("ComposedTransform needs at least one transform.")
        self.transforms: tuple[Transform, ...] = tuple(flat)
        self.kernel_size = sum(t.kernel_size for t in flat)

    def map_points(self, points: ArrayLike) -> np.ndarray:
        points = self._points(points)
        for transform in self.transforms:
            points = transform.map_points(points)
        return points

    def sample_points(self, points: ArrayLike) -> np.ndarray:
        points = self._points(points)
        for transform in reversed(self.transforms):
            points = transform.sample_points(points)
        return points

    def sample_points_torch(self, points_rc: torch.Tensor) -> torch.Tensor:
        for transform in reversed(self.transforms):
            points_rc = transform.sample_points_torch(points_rc)
        return points_rc

    def sample_jacobian(self, points: ArrayLike) -> np.ndarray:
        points = self._points(points)
        jacobian = np.broadcast_to(np.eye(2), (len(points), 2, 2)).copy()
        for transform in reversed(self.transforms):  # chain rule, innermost map first
            jacobian = transform.sample_jacobian(points) @ jacobian
            points = transform.sample_points(points)
        return jacobian

    def inverse(self) -> ComposedTransform:
        """Exact inverse; only defined when every part is affine."""
        affines = [t for t in self.transforms if isinstance(t, AffineTransform)]
        if len(affines) != len(self.transforms):
            raise ValueError(
                "only affine transforms have an exact inverse; a thin-plate spline's inverse is "
                "not a thin-plate spline (fit one with the landmark roles swapped instead)."
            )
        return ComposedTransform([t.inverse() for t in reversed(affines)])

    def to_dict(self) -> dict:
        return {"type": "composed", "transforms": [t.to_dict() for t in self.transforms]}

    def __repr__(self) -> str:
        return f"ComposedTransform({list(self.transforms)!r})"


# =========================================================================== fitting
def fit_affine(src: ArrayLike, dst: ArrayLike) -> AffineTransform:
    """Least-squares affine transform taking content points ``src`` onto output points ``dst``.

    Parameters
    ----------
    src : array_like
        ``(N, 2)`` content landmarks, ``(row, col)`` pixels (N >= 3).
    dst : array_like
        ``(N, 2)`` output landmarks, ``(row, col)`` pixels, paired with ``src``.

    Returns
    -------
    AffineTransform
        The least-squares fit; ``map_points(src)`` is close to ``dst``.

    Raises
    ------
    ValueError
        If the arrays are not paired ``(N, 2)`` finite points, fewer than 3, or collinear.

    Examples
    --------
    >>> src = [[0, 0], [0, 10], [10, 0], [10, 10]]
    >>> dst = [[5, 5], [5, 25], [25, 5], [25, 25]]
    >>> fit_affine(src, dst).map_points([[5.0, 5.0]]).round(6).tolist()
    [[15.0, 15.0]]
    """
    content, output = _validate_landmark_pairs(
        src, dst, "src (content landmarks)", "dst (output landmarks)"
    )
    design = np.hstack([content, np.ones((len(content), 1))])
    solution, *_ = np.linalg.lstsq(design, output, rcond=None)  # (3, 2)
    return AffineTransform(np.vstack([solution.T, [0.0, 0.0, 1.0]]))


def _fit_rotation(src, dst, with_scale: bool) -> AffineTransform:
    """Least-squares rotation (+ uniform scale) + translation (Umeyama 1991), no reflection."""
    content, output = _validate_landmark_pairs(
        src, dst, "src (content landmarks)", "dst (output landmarks)"
    )
    content_mean, output_mean = content.mean(axis=0), output.mean(axis=0)
    centred_content, centred_output = content - content_mean, output - output_mean
    u, singular, vt = np.linalg.svd(centred_output.T @ centred_content)
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])  # a rotation, not a mirror
    rotation = u @ sign @ vt
    scale = 1.0
    if with_scale:
        scale = float((singular * np.diag(sign)).sum() / (centred_content**2).sum())
    matrix = np.eye(3)
    matrix[:2, :2] = scale * rotation
    matrix[:2, 2] = output_mean - scale * rotation @ content_mean
    return AffineTransform(matrix)


def fit_rigid(src, dst) -> AffineTransform:
    """Least-squares rotation + translation taking content points ``src`` onto ``dst``."""
    return _fit_rotation(src, dst, with_scale=False)


def fit_similarity(src, dst) -> AffineTransform:
    """Least-squares rotation + uniform scale + translation taking ``src`` onto ``dst``."""
    return _fit_rotation(src, dst, with_scale=True)


def fit_tps(src: ArrayLike, dst: ArrayLike, regularization: float = 0.0) -> TPSTransform:
    """Thin-plate spline warp in which content point ``src[i]`` lands on output point ``dst[i]``.

    3 to ``MAX_TPS_LANDMARKS`` (2000) pairs; more is a ``ValueError`` (thin them first).

    Parameters
    ----------
    src : array_like
        ``(N, 2)`` content landmarks, ``(row, col)`` pixels.
    dst : array_like
        ``(N, 2)`` output landmarks, ``(row, col)`` pixels, paired with ``src``.
    regularization : float, default 0.0
        0 interpolates the landmarks exactly; > 0 smooths.

    Returns
    -------
    TPSTransform
        The spline; ``map_points(src)`` gives ``dst`` (exactly when ``regularization`` is 0).

    Raises
    ------
    ValueError
        If the arrays are not paired ``(N, 2)`` finite points, fewer than 3 or more than
        ``MAX_TPS_LANDMARKS`` pairs, collinear, or ``regularization`` is not a finite number
        >= 0.

    Examples
    --------
    >>> src = [[0, 0], [0, 10], [10, 0], [10, 10], [5, 5]]
    >>> dst = [[0, 0], [0, 10], [10, 0], [10, 10], [6, 4]]
    >>> fit_tps(src, dst).map_points([[5.0, 5.0]]).round(6).tolist()
    [[6.0, 4.0]]
    """
    content, output = _validate_landmark_pairs(
        src, dst, "src (content landmarks)", "dst (output landmarks)", MAX_TPS_LANDMARKS
    )
    return TPSTransform(output, content, regularization)


def identity_transform() -> AffineTransform:
    """The transform that leaves every point where it is."""
    return AffineTransform(np.eye(3))


def _as_number(value: Any, must: str) -> float:
    """``value`` as a float; anything else is a ``ValueError`` saying what it ``must`` be and
    what it got (cut to 40 characters)."""
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{must}; got {str(value)[:40]!r}.") from None


def check_strength(strength) -> float:
    """``strength`` as a float in [0, 1]; anything else is a ``ValueError``."""
    value = _as_number(strength, "strength must be a number from 0 to 1")
    if not (0.0 <= value <= 1.0):
        raise ValueError(f"strength must be from 0 (no warp) to 1 (the full warp); got {value}.")
    return value


def with_strength(transform: Transform, strength: float) -> Transform:
    """``transform`` dosed from the identity (``strength`` 0) to itself (1).

    Affine: the matrix moves linearly from the identity. TPS: each output landmark keeps its
    place and its content landmark moves from the output landmark (no displacement) to where it
    was. A composition doses each part. Strength 0 is exactly ``identity_transform()``, so a warp
    gives the content back unchanged; strength 1 is ``transform`` itself.
    """
    strength = check_strength(strength)
    if not isinstance(transform, Transform):
        raise ValueError(f"with_strength needs a transform; got {type(transform).__name__}.")
    if strength == 1.0:
        return transform
    if strength == 0.0:
        return identity_transform()
    if isinstance(transform, AffineTransform):
        return AffineTransform(np.eye(3) + strength * (transform.matrix - np.eye(3)))
    if isinstance(transform, TPSTransform):
        output = transform.output_points
        content = output + strength * (transform.content_points - output)
        return TPSTransform(output, content, transform.regularization, transform.frame)
    if isinstance(transform, ComposedTransform):
        return ComposedTransform([with_strength(t, strength) for t in transform.transforms])
    raise ValueError(f"with_strength does not know {type(transform).__name__}.")


# =========================================================================== serialisation
def transform_from_dict(data: Mapping[str, Any], _depth: int = 0) -> Transform:
    """Rebuild a transform from ``to_dict()`` output (exactly: same numbers, same maps).

    Compositions nested deeper than ``MAX_DICT_DEPTH`` are a ``ValueError``.

    Parameters
    ----------
    data : dict
        A transform's ``to_dict()``: ``{"type": "affine" | "tps" | "composed", ...}``.

    Returns
    -------
    Transform
        An ``AffineTransform``, ``TPSTransform`` or ``ComposedTransform``.

    Raises
    ------
    ValueError
        If ``data`` is not such a dict, its type is unknown, a key is missing or bad, its numbers
        do not make a usable transform, or it is nested too deep.

    Examples
    --------
    >>> shift = AffineTransform([[1, 0, 5], [0, 1, -2]])
    >>> transform_from_dict(shift.to_dict()).map_points([[0.0, 0.0]]).tolist()
    [[5.0, -2.0]]
    """
    if _depth > MAX_DICT_DEPTH:
        raise ValueError(
            f"transform dict is nested more than {MAX_DICT_DEPTH} 'composed' levels deep; "
            "flatten the composition (a composed transform's parts can be listed side by side)."
        )
    if not isinstance(data, dict) or "type" not in data:
        raise ValueError("a transform dict needs a 'type' key ('affine', 'tps' or 'composed').")
    kind = data["type"]
    try:
        if kind == "affine":
            return AffineTransform(data["matrix"])
        if kind == "tps":
            frame = data.get("frame")
            if frame is not None:
                frame = (frame["center"], frame["scale"])
            return TPSTransform(
                data["output_points"],
                data["content_points"],
                data.get("regularization", 0.0),
                frame,
            )
        if kind == "composed":
            return ComposedTransform(
                [transform_from_dict(d, _depth + 1) for d in data["transforms"]]
            )
    except (KeyError, TypeError, IndexError) as error:
        raise ValueError(f"malformed {kind!r} transform dict: missing or bad {error}") from None
    except (ArithmeticError, np.linalg.LinAlgError) as error:  # overflow, a singular system
        raise ValueError(
            f"the {kind!r} transform's numbers do not make a usable transform: "
            f"{' '.join(str(error).split())[:200]}"
        ) from error
    raise ValueError(f"unknown transform type {kind!r}; expected 'affine', 'tps' or 'composed'.")


# =================================================================== network parametrisations
def _homogeneous_theta(theta) -> np.ndarray:
    array = np.asarray(theta, dtype=np.float64)
    if array.shape == (1, 2, 3):
        array = array[0]
    if array.shape != (2, 3):
        raise ValueError(f"theta must have shape (2, 3); got {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise ValueError("theta contains NaN or infinite values.")
    return np.vstack([array, [0.0, 0.0, 1.0]])


def affine_from_theta(theta, content_shape, output_shape) -> AffineTransform:
    """``AffineTransform`` (content -> output pixels) from ``affine_grid``'s ``theta`` (2, 3).

    ``theta`` maps normalised OUTPUT ``(x, y, 1)`` to normalised CONTENT ``(x, y)``.
    """
    content_shape = images.validate_shape(content_shape, "content_shape")
    output_shape = images.validate_shape(output_shape, "output_shape")
    sample = (
        images.normalized_to_pixel_matrix(content_shape)
        @ _homogeneous_theta(theta)
        @ images.pixel_to_normalized_matrix(output_shape)
    )
    return AffineTransform(np.linalg.inv(sample))


def theta_from_affine(transform: AffineTransform, content_shape, output_shape) -> np.ndarray:
    """``affine_grid``'s ``theta`` (2, 3) for ``transform`` between images of these shapes."""
    if not isinstance(transform, AffineTransform):
        raise ValueError(
            f"theta_from_affine needs an AffineTransform; got {type(transform).__name__}."
        )
    content_shape = images.validate_shape(content_shape, "content_shape")
    output_shape = images.validate_shape(output_shape, "output_shape")
    theta = (
        images.pixel_to_normalized_matrix(content_shape)
        @ transform._inverse
        @ images.normalized_to_pixel_matrix(output_shape)
    )
    return theta[:2].copy()


def tps_from_grid_params(params, content_shape, output_shape, grid_size: int = 3) -> TPSTransform:
    """Landmark ``TPSTransform`` equal to the network TPS of ``params`` (``2 K^2``, see
    ``tps_grid_params_to_grid``): output points are the K x K grid of ``output_shape``, content
    points are the parameters in ``content_shape`` pixels; the spline is the same everywhere."""
    grid_size = check_grid_size(grid_size)
    count = grid_size * grid_size
    array = np.asarray(params, dtype=np.float64).reshape(-1)
    if array.size != 2 * count:
        raise ValueError(
            f"TPS grid params for a {grid_size} x {grid_size} grid have {2 * count} values; "
            f"got {array.size}."
        )
    if not np.all(np.isfinite(array)):
        raise ValueError("TPS grid params contain NaN or infinite values.")
    content_shape = images.validate_shape(content_shape, "content_shape")
    output_shape = images.validate_shape(output_shape, "output_shape")
    content_xy = grid_params_to_xy(array, grid_size)
    return TPSTransform(
        images.regular_grid_points(output_shape, grid_size),
        images.normalized_to_pixel(content_xy, content_shape),
        0.0,
        frame=image_frame(output_shape),
    )


def grid_params_from_tps(
    transform: TPSTransform, content_shape, output_shape, grid_size: int = 3
) -> np.ndarray:
    """Inverse of ``tps_from_grid_params``: the ``2 K^2`` params of a TPS whose output points are
    the K x K grid of ``output_shape`` (its content points, normalised in ``content_shape``)."""
    if not isinstance(transform, TPSTransform):
        raise ValueError(
            f"grid_params_from_tps needs a TPSTransform; got {type(transform).__name__}."
        )
    grid_size = check_grid_size(grid_size)
    content_shape = images.validate_shape(content_shape, "content_shape")
    output_shape = images.validate_shape(output_shape, "output_shape")
    grid = images.regular_grid_points(output_shape, grid_size)
    if transform.output_points.shape != grid.shape or not np.allclose(
        transform.output_points, grid, rtol=0, atol=1e-6 * max(output_shape)
    ):
        raise ValueError(
            f"this TPS's output points are not the {grid_size} x {grid_size} control grid of a "
            f"{output_shape[0]} x {output_shape[1]} output; only such a TPS has grid params."
        )
    content_xy = images.pixel_to_normalized(transform.content_points, content_shape)
    return xy_to_grid_params(content_xy)


# =========================================================================== diagnostics
def min_jacobian_determinant(transform: Transform, output_shape, samples: int = 32) -> float:
    """Smallest Jacobian determinant of the sample map on a ``samples`` x ``samples`` output grid.

    ``<= 0`` means the warp folds (or mirrors) the image somewhere: a bad prediction.
    """
    height, width = images.validate_shape(output_shape, "output_shape")
    samples = int(samples)
    if samples < 2:
        raise ValueError(f"samples must be >= 2; got {samples}.")
    rows, cols = np.meshgrid(
        np.linspace(0.0, height - 1.0, samples),
        np.linspace(0.0, width - 1.0, samples),
        indexing="ij",
    )
    points = np.stack([rows.ravel(), cols.ravel()], axis=1)
    return float(np.linalg.det(transform.sample_jacobian(points)).min())
