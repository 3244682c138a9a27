"""Hints: point correspondences the user asserts between a content and its geometry style.

``hints = (content_points, style_points)``: two ``(K, 2)`` arrays, ``(row, col)`` pixels of each
image, K >= 1. Nothing here knows what a hint marks (an eye, a wing tip, a corner): a hint is a
point of the content and the point of the style it must land on. They steer ``estimate_warp``:

- the global search is restricted to poses that honour them (``hinted_thetas``): one hint fixes
  the translation (rotations and scales about it are searched), two fix a similarity (the two
  directions left to an affine, stretch and shear across the line through them, are searched),
  three or more give the least-squares affine;
- the refinement keeps them as a soft constraint (``refine.FeatureObjective``);
- the returned transform honours them (``honour_hints``): exactly for the TPS models (the hints
  become control points of the TPS), in the least-squares sense for ``affine``.

Frames: ``estimate_warp``'s transform maps CONTENT pixels to OUTPUT pixels, and the output is the
content's ``(H, W)`` holding the style's geometry, so a style hint sits in the output frame at
the same normalised position (``output_points``). The search and the networks work in
normalised ``(x, y)``, where the output and the style coincide: a sample map ``theta`` honours a
hint when ``theta(style_xy) = content_xy``. Conversions go through ``core.images``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# two hints of one image closer than this (pixels) are one point given twice
DUPLICATE_PX = 1.0
# the searched rotations (degrees) and scales about a single hint: the global search's ranges
ONE_HINT_ROTATION_DEG = 20.0
ONE_HINT_ROTATION_STEP_DEG = 5.0
ONE_HINT_SCALES = (0.75, 1.33)
ONE_HINT_SCALE_STEPS = 7
# two hints: the stretch across the line through them and the shear along it, searched
TWO_HINT_STRETCHES = (0.75, 0.87, 1.0, 1.15, 1.33)
TWO_HINT_SHEARS = (-0.3, -0.15, 0.0, 0.15, 0.3)
# a TPS grid control point closer than this to a hint (fraction of the shorter output side)
# gives its place to the hint in ``honour_hints`` (two control points that close make the
# spline's solve ill-conditioned)
CONTROL_CLEARANCE = 0.08


@dataclass(frozen=True)
class Hints:
    """Validated hints of one pair: pixels of each image and their normalised ``(x, y)``."""

    content_rc: np.ndarray  # (K, 2) content pixels
    style_rc: np.ndarray  # (K, 2) style pixels
    content_shape: tuple
    style_shape: tuple

    @property
    def count(self) -> int:
        return len(self.content_rc)

    @property
    def content_xy(self) -> np.ndarray:
        from .images import pixel_to_normalized

        return pixel_to_normalized(self.content_rc, self.content_shape)

    @property
    def style_xy(self) -> np.ndarray:
        from .images import pixel_to_normalized

        return pixel_to_normalized(self.style_rc, self.style_shape)

    def output_points(self, output_shape=None) -> np.ndarray:
        """The style hints in the output frame (default: the content's shape), pixels."""
        from .images import normalized_to_pixel

        return normalized_to_pixel(self.style_xy, output_shape or self.content_shape)

    def to_dict(self) -> dict:
        return {
            "content_points": self.content_rc.tolist(),
            "style_points": self.style_rc.tolist(),
        }


def _check_side(points, shape, name: str) -> np.ndarray:
    from .images import validate_points

    array = validate_points(points, name, min_count=1)
    height, width = shape[:2]
    # a hint may sit anywhere on the image, up to the outer edge of its border pixels
    outside = (
        (array[:, 0] < -0.5)
        | (array[:, 0] > height - 0.5)
        | (array[:, 1] < -0.5)
        | (array[:, 1] > width - 0.5)
    )
    if outside.any():
        index = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"{name} {index} at (row, col) {array[index].tolist()} is outside the "
            f"{height} x {width} image; hints are (row, col) pixels of their own image."
        )
    if len(array) > 1:
        distance = np.linalg.norm(array[:, None] - array[None], axis=-1)
        distance[np.diag_indices(len(array))] = np.inf
        row, col = np.unravel_index(int(np.argmin(distance)), distance.shape)
        if distance[row, col] < DUPLICATE_PX:
            first, second = sorted((int(row), int(col)))
            raise ValueError(
                f"{name} {first} and {second} are at the same place {array[first].tolist()}; "
                "remove the duplicate hint."
            )
    return array


def check_hints(hints, content_shape, style_shape) -> Hints | None:
    """``hints`` validated (``ValueError`` naming what is wrong), or None for no hints.

    ``content_shape``, ``style_shape``: the two images' ``(H, W)``.
    """
    if hints is None:
        return None
    if isinstance(hints, Hints):
        hints = (hints.content_rc, hints.style_rc)
    if isinstance(hints, dict):
        hints = (hints.get("content_points"), hints.get("style_points"))
    try:
        content_points, style_points = hints
    except (TypeError, ValueError):
        raise ValueError(
            "hints must be (content_points, style_points): two (K, 2) arrays of (row, col) "
            "pixels, one point of each image per hint."
        ) from None
    content = _check_side(content_points, content_shape, "content hint")
    style = _check_side(style_points, style_shape, "style hint")
    if len(content) != len(style):
        raise ValueError(
            f"{len(content)} content hints but {len(style)} style hints; give one point in "
            "each image for every hint."
        )
    return Hints(content, style, tuple(content_shape[:2]), tuple(style_shape[:2]))


# --------------------------------------------------------------------------- poses
def _theta_of_pixel_map(matrix: np.ndarray, hints: Hints) -> np.ndarray:
    """theta (2, 3) of a sample map given in pixels (style ``(row, col, 1)`` -> content)."""
    from .images import normalized_to_pixel_matrix, pixel_to_normalized_matrix

    return (
        pixel_to_normalized_matrix(hints.content_shape)
        @ matrix
        @ normalized_to_pixel_matrix(hints.style_shape)
    )[:2]


def _similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """3 x 3 least-squares similarity taking ``source`` points onto ``target`` (Umeyama, no
    mirror); a translation for one point."""
    style, content = source, target
    style_mean, content_mean = style.mean(0), content.mean(0)
    a, b = style - style_mean, content - content_mean
    if len(style) == 1 or not (a**2).sum() > 0:
        linear = np.eye(2)
    else:
        u, singular, vt = np.linalg.svd(b.T @ a)
        sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
        rotation = u @ sign @ vt
        linear = rotation * float((singular * np.diag(sign)).sum() / (a**2).sum())
    matrix = np.eye(3)
    matrix[:2, :2] = linear
    matrix[:2, 2] = content_mean - linear @ style_mean
    return matrix


def _spread(points: np.ndarray) -> float:
    """Smallest over largest singular value of the centred points (0: on one line)."""
    if len(points) < 3:
        return 0.0
    singular = np.linalg.svd(points - points.mean(0), compute_uv=False)
    return float(singular[-1] / max(singular[0], 1e-12))


def _spread_out(*point_sets) -> bool:
    return all(len(p) >= 3 and _spread(p) > 1e-3 for p in point_sets)


def point_fit(source, target) -> np.ndarray:
    """3 x 3 matrix of the transform that K point pairs fix, taking ``source`` (K, 2) onto
    ``target``: a translation for one pair, the least-squares similarity for two (or for more
    on one line), the least-squares affine for three or more."""
    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    if not _spread_out(source, target):
        return _similarity(source, target)
    design = np.hstack([source, np.ones((len(source), 1))])
    solution, *_ = np.linalg.lstsq(design, target, rcond=None)
    return np.vstack([solution.T, [0.0, 0.0, 1.0]])


def hinted_thetas(hints: Hints) -> np.ndarray:
    """(N, 2, 3) candidate sample maps (normalised ``theta``), every one honouring ``hints``
    (to least squares from three hints on): the poses the global search is restricted to.

    One hint: rotations x scales about it, in normalised coordinates as the global search's
    (``matching.search_similarity``). Two (or more on one line): the similarity through them,
    stretched across their line and sheared along it (the two directions an affine has left),
    in pixels. Three or more off one line: their least-squares affine, in pixels.
    """
    count = hints.count
    if count == 1:
        (cx, cy), (sx, sy) = hints.content_xy[0], hints.style_xy[0]
        steps = int(ONE_HINT_ROTATION_DEG // ONE_HINT_ROTATION_STEP_DEG)
        rotations = np.arange(-steps, steps + 1) * ONE_HINT_ROTATION_STEP_DEG
        low, high = ONE_HINT_SCALES
        scales = np.exp(np.linspace(math.log(low), math.log(high), ONE_HINT_SCALE_STEPS))
        thetas = []
        for angle in rotations:
            radians = math.radians(float(angle))
            for scale in scales:
                c, s = math.cos(radians) / scale, math.sin(radians) / scale
                linear = np.array([[c, -s], [s, c]])
                shift = np.array([cx, cy]) - linear @ np.array([sx, sy])
                thetas.append(np.hstack([linear, shift[:, None]]))
        return np.stack(thetas)
    style = hints.style_rc
    if _spread_out(style, hints.content_rc):
        return _theta_of_pixel_map(point_fit(style, hints.content_rc), hints)[None]
    similarity = _similarity(style, hints.content_rc)
    centred = style - style.mean(0)
    direction = np.linalg.svd(centred, full_matrices=False)[2][0]  # along the hints' line
    normal = np.array([-direction[1], direction[0]])
    thetas = []
    for stretch in TWO_HINT_STRETCHES:
        for shear in TWO_HINT_SHEARS:
            # leaves the line through the hints as it is; moves the normal
            local = np.outer(direction, direction) + np.outer(
                stretch * normal + shear * direction, normal
            )
            centre = style.mean(0)
            matrix = np.eye(3)
            matrix[:2, :2] = local
            matrix[:2, 2] = centre - local @ centre
            thetas.append(_theta_of_pixel_map(similarity @ matrix, hints))
    return np.stack(thetas)


def hint_residual(theta, tps, hints: Hints, grid_size: int = 3) -> float:
    """RMS distance (normalised units) between where ``theta(tps(style hint))`` samples and
    the content hints."""
    import torch

    from .warp_params import sample_map

    style = torch.as_tensor(hints.style_xy, dtype=torch.float32)[None]
    content = torch.as_tensor(hints.content_xy, dtype=torch.float32)[None]
    with torch.no_grad():
        mapped = sample_map(style, theta, tps, grid_size)
    return float((mapped - content).pow(2).sum(-1).mean().sqrt())


# --------------------------------------------------------------------------- the final transform
def honour_hints(transform, hints: Hints, output_shape):
    """``transform`` (content -> output pixels) changed so that it honours ``hints``.

    - A transform whose last part is a TPS: the hints become control points of that TPS (its
      grid control points stay where they sampled, those within ``CONTROL_CLEARANCE`` of a
      hint give their place to it), so each content hint maps onto its style hint exactly.
    - An affine: the affine that honours them in the least-squares sense, as close to
      ``transform`` as the hints leave it (one hint: ``transform`` shifted; two: followed by
      the similarity that carries both; three or more: their least-squares affine).
    """
    from .transforms import AffineTransform, ComposedTransform, TPSTransform

    output = hints.output_points(output_shape)
    content = hints.content_rc
    parts = list(transform.transforms) if isinstance(transform, ComposedTransform) else [transform]
    last = parts[-1]
    if isinstance(last, TPSTransform):
        inner = ComposedTransform(parts[:-1]) if len(parts) > 1 else None
        targets = content if inner is None else inner.map_points(content)
        side = min(output_shape[:2])
        grid = last.output_points
        distance = np.linalg.norm(grid[:, None] - output[None], axis=-1).min(1)
        keep = distance > CONTROL_CLEARANCE * side
        tps = TPSTransform(
            np.vstack([grid[keep], output]),
            np.vstack([last.sample_points(grid[keep]), targets]),
            last.regularization,
            frame=last.frame,
        )
        return tps if inner is None else ComposedTransform([*parts[:-1], tps])
    if not isinstance(transform, AffineTransform):
        raise ValueError(f"cannot honour hints on a {type(transform).__name__}.")
    if _spread_out(content, output):
        return AffineTransform(point_fit(content, output))
    # the correction in the output frame: a shift (one hint), else the least-squares similarity
    correction = _similarity(transform.map_points(content), output)
    return AffineTransform(correction @ transform.matrix)
