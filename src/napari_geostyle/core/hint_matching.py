"""Local feature matching around a hinted estimate: the local shape, once hints pin the pose.

Hints fix where the object sits; what they leave is the shape between and around them. With the
pose pinned, the ImageNet features are trusted only locally: each point of a grid over the
content looks for its match in the style within a small window around where the estimate puts
it, and the matches move the warp, smoothed. Across different objects of one kind (two faces,
two cats) the features' best match is noisy, so a match is the softmax-weighted mean position in
the window under a Gaussian prior centred on the estimate (a far, slightly better match does not
win outright), and the displacement field is a ridge regression on Gaussian radial functions:
one bad match cannot fold the warp. The hints enter as matches that weigh far more than the
others; ``hints.honour_hints`` makes them exact afterwards.

It applies to estimates whose last part is a TPS (models ``tps`` and ``affine+tps``), with hints,
when the ImageNet EfficientNet-Lite0 weights are installed (random features have nothing to
match). Nothing here knows what a hint marks.

Units: normalised ``(x, y)`` of each image (``core.images``; the output frame and the style
share them), where an image's side is 2.

Chosen on face pairs with landmarks, used only to measure (PCK@0.1 of the landmarks that were not
clicked, 40 perturbed pairs, ``affine+tps`` refine): 3 hints 0.547 -> 0.60, 2 hints 0.533 -> 0.58.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MatchSettings:
    """How far and how finely the matching looks (normalised units; a side is 2)."""

    feature_side: int = 384  # longest side the images are resized to for the features
    taps: tuple = ("s8", "s16")  # EfficientNet-Lite0 activations, concatenated per location
    match_grid: int = 13  # content points per side that look for a match
    match_extent: float = 0.8  # they span [-extent, extent] of the content
    window: float = 0.12  # half-side of the square each one searches in the style
    window_step: float = 0.016
    prior_sigma: float = 0.064  # Gaussian prior on the offset from the estimate
    temperature: float = 0.05  # softmax temperature on the cosine similarity
    field_sigma: float = 0.2  # the displacement field's radial functions
    ridge: float = 1.0  # the field's ridge (the matches' weights average 1)
    hint_weight: float = 100.0
    rounds: int = 2  # match again from the moved estimate, window and prior times ``shrink``
    shrink: float = 0.7
    control_grid: int = 9  # the TPS control points per side of the returned warp


DEFAULT_SETTINGS = MatchSettings()


def _features(image, trunk, settings: MatchSettings):
    """(C, h, w) unit-length features of a (1, 3, H, W) image, at the settings' working size."""
    import torch
    import torch.nn.functional as F

    height, width = image.shape[-2:]
    scale = settings.feature_side / max(height, width)
    size = (max(32, round(height * scale)), max(32, round(width * scale)))
    resized = F.interpolate(image.float(), size=size, mode="bilinear", align_corners=False)
    device = next(trunk.parameters()).device
    with torch.no_grad():
        out = trunk(resized.to(device), taps=settings.taps)
    cells = (size[0] // 8, size[1] // 8)
    parts = [
        F.normalize(F.interpolate(out[t].float(), size=cells, mode="bilinear"), dim=1)
        for t in settings.taps
    ]
    return F.normalize(torch.cat(parts, 1), dim=1)[0].cpu()


def _sample(features, points_xy: np.ndarray):
    """(N, C) features at normalised points (bilinear; border values outside)."""
    import torch
    import torch.nn.functional as F

    grid = torch.as_tensor(points_xy, dtype=torch.float32).view(1, 1, -1, 2)
    sampled = F.grid_sample(
        features[None], grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    return sampled[0, :, 0].T


def _kernel(a: np.ndarray, b: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / (2.0 * sigma * sigma))


class DisplacementField:
    """Smooth displacement (normalised) of the output frame: a ridge fit of Gaussian radial
    functions to weighted point displacements."""

    def __init__(self, points, displacements, weights, sigma: float, ridge: float):
        self.points, self.sigma = np.asarray(points, np.float64), float(sigma)
        gram = _kernel(self.points, self.points, sigma) * weights[:, None]
        system = gram + ridge * np.eye(len(self.points))
        self.coefficients = np.linalg.solve(system, displacements * weights[:, None])

    def __call__(self, points) -> np.ndarray:
        points = np.asarray(points, np.float64)
        return _kernel(points, self.points, self.sigma) @ self.coefficients


def match_field(content_features, style_features, to_output, hints, settings: MatchSettings):
    """The displacement field (output frame) that moves the estimate onto the local matches.

    ``to_output``: the estimate, content normalised -> output normalised points. ``hints``: a
    ``core.hints.Hints``.
    """
    side = np.linspace(-settings.match_extent, settings.match_extent, settings.match_grid)
    rows, cols = np.meshgrid(side, side, indexing="ij")
    content_xy = np.stack([cols.ravel(), rows.ravel()], 1)
    descriptors = _sample(content_features, content_xy)  # (N, C)
    start = to_output(content_xy)
    hint_start = to_output(hints.content_xy)
    hint_moves = hints.style_xy - hint_start
    field = None
    for round_index in range(settings.rounds):
        factor = settings.shrink**round_index
        here = start if field is None else start + field(start)
        half = settings.window * factor
        steps = np.arange(-half, half + 1e-9, settings.window_step * max(factor, 0.5))
        dy, dx = np.meshgrid(steps, steps, indexing="ij")
        offsets = np.stack([dx.ravel(), dy.ravel()], 1)  # (M, 2)
        candidates = here[:, None] + offsets[None]  # (N, M, 2)
        found = _sample(style_features, candidates.reshape(-1, 2))
        similarity = (found.view(len(here), len(offsets), -1) * descriptors[:, None]).sum(-1)
        prior = (offsets**2).sum(1) / (2.0 * (settings.prior_sigma * factor) ** 2)
        logits = similarity.double().numpy() / settings.temperature - prior[None]
        weights = np.exp(logits - logits.max(1, keepdims=True))
        weights /= weights.sum(1, keepdims=True)
        matched = (weights[..., None] * candidates).sum(1)
        sharpness = weights.max(1)  # a peaked window is a surer match
        field = DisplacementField(
            np.vstack([start, hint_start]),
            np.vstack([matched - start, hint_moves]),
            np.concatenate(
                [sharpness / sharpness.mean(), np.full(len(hint_start), settings.hint_weight)]
            ),
            settings.field_sigma,
            settings.ridge,
        )
    return field


def matching_trunk(device=None):
    """The ImageNet EfficientNet-Lite0 trunk, or None when its weights are not installed."""
    from .efficientnet import build_efficientnet

    return build_efficientnet("auto", device=device)


def match_around_hints(transform, content, style, hints, trunk, settings=DEFAULT_SETTINGS):
    """``transform`` (content -> output pixels, its last part a TPS) moved onto the local feature
    matches around it; the last TPS gets a ``settings.control_grid`` square grid of control
    points. ``content``/``style``: (1, 3, H, W) RGB tensors in 0..1; ``hints``: a
    ``core.hints.Hints``; ``trunk``: ``matching_trunk()``'s network.
    """
    from .images import normalized_to_pixel, pixel_to_normalized
    from .transforms import ComposedTransform, TPSTransform

    shape = tuple(content.shape[-2:])
    parts = list(transform.transforms) if isinstance(transform, ComposedTransform) else [transform]
    last = parts[-1]
    if not isinstance(last, TPSTransform):
        raise ValueError(f"local matching needs a TPS as the warp's last part; got {last!r}.")

    def to_output(content_xy):
        mapped = transform.map_points(normalized_to_pixel(content_xy, shape))
        return pixel_to_normalized(mapped, shape)

    field = match_field(
        _features(content, trunk, settings), _features(style, trunk, settings), to_output, hints,
        settings,
    )  # fmt: skip
    # the new last TPS: a content point the estimate put at o now lands at o + field(o), so the
    # output grid point g samples where the old one sampled at o, o + field(o) = g (a fixed
    # point: a few steps converge, the field is smooth and small)
    side = np.linspace(-1.0, 1.0, settings.control_grid)
    rows, cols = np.meshgrid(side, side, indexing="ij")
    grid_xy = np.stack([cols.ravel(), rows.ravel()], 1)
    before = grid_xy.copy()
    for _ in range(5):
        before = grid_xy - field(before)
    grid = normalized_to_pixel(grid_xy, shape)
    tps = TPSTransform(
        grid,
        last.sample_points(normalized_to_pixel(before, shape)),
        last.regularization,
        frame=last.frame,
    )
    return tps if len(parts) == 1 else ComposedTransform([*parts[:-1], tps])
