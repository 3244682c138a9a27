"""Landmark fits by model name, and how far each pair is from its fit (BigWarp-style models).

Qt-free: the landmark table and the live warp use these, and tests reach them without a viewer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .transforms import Transform

#: models a landmark warp can be fitted with, most to least constrained
FIT_MODELS = ("rigid", "similarity", "affine", "tps")
#: grid side used to show a transform that is not a landmark TPS as landmark pairs
GRID_POINTS = 4


def fit_landmarks(src, dst, model: str = "tps"):
    """The ``model`` transform taking content landmarks ``src`` onto output landmarks ``dst``."""
    from .transforms import fit_affine, fit_rigid, fit_similarity, fit_tps

    fits: dict[str, Callable[..., Transform]] = {
        "rigid": fit_rigid,
        "similarity": fit_similarity,
        "affine": fit_affine,
        "tps": fit_tps,
    }
    if model not in fits:
        raise ValueError(f"unknown landmark model {model!r}; choose one of {list(FIT_MODELS)}.")
    return fits[model](src, dst)


def landmark_residuals(transform, src, dst) -> np.ndarray:
    """Per pair, the distance (output pixels) from ``transform.map_points(src[i])`` to ``dst[i]``.

    Zero for every pair of a landmark TPS (it interpolates); for rigid, similarity and affine fits
    a large residual points at a misplaced landmark.
    """
    src = np.asarray(src, float).reshape(-1, 2)
    dst = np.asarray(dst, float).reshape(-1, 2)
    if len(src) != len(dst):
        raise ValueError(f"{len(src)} content landmarks but {len(dst)} output landmarks.")
    if len(src) == 0:
        return np.zeros(0)
    return np.linalg.norm(np.asarray(transform.map_points(src)) - dst, axis=1)


def landmarks_of(transform, output_shape, grid_points: int = GRID_POINTS):
    """``(control, target)`` landmark pairs that reproduce ``transform`` as one landmark TPS.

    A landmark TPS keeps its own points. Anything else (affine, affine then TPS) is sampled on a
    regular output grid (the last TPS's grid when there is one): target = grid, control =
    ``transform.sample_points(grid)``. A TPS through these pairs reproduces an affine exactly.
    """
    from .images import regular_grid_points

    if hasattr(transform, "output_points") and hasattr(transform, "content_points"):
        return np.array(transform.content_points), np.array(transform.output_points)
    grid = None
    for part in reversed(getattr(transform, "transforms", ())):
        if hasattr(part, "output_points"):
            grid = np.array(part.output_points)
            break
    if grid is None:
        grid = regular_grid_points(output_shape, grid_points, margin=0.1)
    return np.asarray(transform.sample_points(grid)), grid
