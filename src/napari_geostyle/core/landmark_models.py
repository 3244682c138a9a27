"""Landmark fits by model name, and how far each pair is from its fit (BigWarp-style models).

Qt-free: the landmark table and the live warp use these, and tests reach them without a viewer.
"""

from __future__ import annotations

import numpy as np

#: models a landmark warp can be fitted with, most to least constrained
FIT_MODELS = ("rigid", "similarity", "affine", "tps")


def fit_landmarks(src, dst, model: str = "tps"):
    """The ``model`` transform taking content landmarks ``src`` onto output landmarks ``dst``."""
    from .transforms import fit_affine, fit_rigid, fit_similarity, fit_tps

    fits = {"rigid": fit_rigid, "similarity": fit_similarity, "affine": fit_affine, "tps": fit_tps}
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
