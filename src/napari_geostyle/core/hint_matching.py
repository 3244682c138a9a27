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

With two hints or more, the pose comes first (``refit_pose``). The pose that fits a few clicks
is not the pose that fits the object (two eyes leave the face's length open; three clicks fix an
affine that extrapolates their error), and one match across different objects says little, but
the least-squares affine of many of them, near the hints, averages their noise out. The
estimate's pose is corrected by a share of that affine that grows with how likely the estimate
is wrong (``sqrt(1 - confidence)``): a likely-right estimate keeps its pose, and on a same-object
pair, where the matches agree with the estimate, the correction is near the identity anyway.

It applies to estimates whose last part is a TPS (models ``tps`` and ``affine+tps``), with hints,
when the ImageNet EfficientNet-Lite0 weights are installed (random features have nothing to
match). Nothing here knows what a hint marks.

Units: normalised ``(x, y)`` of each image (``core.images``; the output frame and the style
share them), where an image's side is 2.

Chosen on face pairs with landmarks, used only to measure (PCK@0.1 of the landmarks that were not
clicked, 40 perturbed pairs, ``affine+tps`` refine, the hinted estimate before -> after the
matching): 2 hints 0.533 -> 0.61, 3 hints 0.547 -> 0.69 (the local field alone: 0.58 and 0.60).
Checked not to hurt where the features do match: hinted same-image and cross-instance-proxy
pairs of the held-out photos (lattice error, the pose correction on and off).
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
    field_sigma: float = 0.3  # the displacement field's radial functions
    ridge: float = 1.0  # the field's ridge (the matches' weights average 1)
    hint_weight: float = 100.0
    rounds: int = 2  # match again from the moved estimate, window and prior times ``shrink``
    shrink: float = 0.7
    # with 2+ hints, the estimate's pose is first corrected by the affine that the matches near
    # the hints agree on, refitted this many times from its own matches (0: no correction)
    affine_refits: int = 5
    affine_reach: float = 1.25  # near: a Gaussian weight of this many hint spreads (RMS radius)
    affine_reach_min: float = 0.3  # and at least this wide: close hints do not bound the object
    correction_exponent: float = 0.5  # the correction's share: (1 - confidence) ** this
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


def _match_points(settings: MatchSettings) -> np.ndarray:
    """The content grid that looks for matches: ``(N, 2)`` normalised ``(x, y)``."""
    side = np.linspace(-settings.match_extent, settings.match_extent, settings.match_grid)
    rows, cols = np.meshgrid(side, side, indexing="ij")
    return np.stack([cols.ravel(), rows.ravel()], 1)


class FeatureMatcher:
    """Where content points find their match in the style: the softmax-weighted mean position
    in a window around where the estimate puts them, under a Gaussian prior on the offset.

    ``matcher(content_xy, here, factor)`` -> ``(matched, sharpness)``: the matched output-frame
    points and how peaked each window was (its largest weight); ``factor`` shrinks the window
    and the prior (later rounds look closer)."""

    def __init__(self, content_features, style_features, settings: MatchSettings):
        self.content_features, self.style_features = content_features, style_features
        self.settings = settings

    def __call__(self, content_xy: np.ndarray, here: np.ndarray, factor: float = 1.0):
        settings = self.settings
        descriptors = _sample(self.content_features, content_xy)  # (N, C)
        half = settings.window * factor
        steps = np.arange(-half, half + 1e-9, settings.window_step * max(factor, 0.5))
        dy, dx = np.meshgrid(steps, steps, indexing="ij")
        offsets = np.stack([dx.ravel(), dy.ravel()], 1)  # (M, 2)
        candidates = here[:, None] + offsets[None]  # (N, M, 2)
        found = _sample(self.style_features, candidates.reshape(-1, 2))
        similarity = (found.view(len(here), len(offsets), -1) * descriptors[:, None]).sum(-1)
        prior = (offsets**2).sum(1) / (2.0 * (settings.prior_sigma * factor) ** 2)
        logits = similarity.double().numpy() / settings.temperature - prior[None]
        weights = np.exp(logits - logits.max(1, keepdims=True))
        weights /= weights.sum(1, keepdims=True)
        matched = (weights[..., None] * candidates).sum(1)
        return matched, weights.max(1)  # a peaked window is a surer match


def match_field(matcher, to_output, hints, settings: MatchSettings):
    """The displacement field (output frame) that moves the estimate onto the local matches.

    ``matcher``: a ``FeatureMatcher`` (or anything called the same way). ``to_output``: the
    estimate, content normalised -> output normalised points. ``hints``: a ``core.hints.Hints``.
    """
    content_xy = _match_points(settings)
    start = to_output(content_xy)
    hint_start = to_output(hints.content_xy)
    hint_moves = hints.style_xy - hint_start
    field = None
    for round_index in range(settings.rounds):
        factor = settings.shrink**round_index
        here = start if field is None else start + field(start)
        matched, sharpness = matcher(content_xy, here, factor)
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


def _apply_affine(affine: np.ndarray, points_xy: np.ndarray) -> np.ndarray:
    return points_xy @ affine[:2, :2].T + affine[:2, 2]


def refit_pose(matcher, to_output, hints, settings: MatchSettings) -> np.ndarray:
    """The (3, 3) normalised affine correction, output -> output, that moves the estimate onto
    the local matches near the hints: fitted by weighted least squares to the matches found from
    the estimate (``to_output``), then again from each corrected estimate,
    ``settings.affine_refits`` times.

    Two or three clicks pin a few points; between and around them, the pose that fits them is
    not the pose that fits the object (the clicks' affine extrapolates their error). Each match
    is weak across different objects, but their least-squares affine averages many of them;
    where the estimate is already right the matches agree with it and the correction stays near
    the identity. The weight: the match's sharpness times a Gaussian around the hints' centroid
    whose width is ``settings.affine_reach`` times their RMS distance from it (the user clicked
    on the object, so the matches there are about it). The hints stay out of the fit: the TPS
    that follows honours them exactly."""
    content_xy = _match_points(settings)
    centre = hints.content_xy.mean(0)
    spread = np.sqrt(((hints.content_xy - centre) ** 2).sum(1).mean())
    width = max(settings.affine_reach * spread, settings.affine_reach_min)
    near = np.exp(-((content_xy - centre) ** 2).sum(1) / (2.0 * width**2))
    start = to_output(content_xy)
    design = np.hstack([start, np.ones((len(start), 1))])
    correction = np.eye(3)
    for _ in range(settings.affine_refits):
        matched, sharpness = matcher(content_xy, _apply_affine(correction, start))
        root = np.sqrt(sharpness * near)[:, None]
        solution, *_ = np.linalg.lstsq(design * root, matched * root, rcond=None)
        correction = np.vstack([solution.T, [0.0, 0.0, 1.0]])
    return correction


def matching_trunk(device=None):
    """The ImageNet EfficientNet-Lite0 trunk, or None when its weights are not installed."""
    from .efficientnet import build_efficientnet

    return build_efficientnet("auto", device=device)


def match_around_hints(
    transform, content, style, hints, trunk, settings=DEFAULT_SETTINGS, matcher=None,
    confidence=None,
):  # fmt: skip
    """``transform`` (content -> output pixels, its last part a TPS) moved onto the local feature
    matches around it; the last TPS gets a ``settings.control_grid`` square grid of control
    points. ``content``/``style``: (1, 3, H, W) RGB tensors in 0..1; ``hints``: a
    ``core.hints.Hints``; ``trunk``: ``matching_trunk()``'s network. With two hints or more,
    the estimate's pose is first corrected by ``refit_pose``, a share ``(1 - confidence) **
    settings.correction_exponent`` of it when the estimate's ``confidence``
    (``core.confidence``) is given: the correction is for the estimates that are likely
    wrong. ``matcher``: replaces the ``FeatureMatcher`` of the two images (``trunk`` is then
    unused): how the evaluation feeds known matches through the same machinery.
    """
    from .images import normalized_to_pixel, pixel_to_normalized
    from .transforms import ComposedTransform, TPSTransform, affine_from_theta

    shape = tuple(content.shape[-2:])
    parts = list(transform.transforms) if isinstance(transform, ComposedTransform) else [transform]
    last = parts[-1]
    if not isinstance(last, TPSTransform):
        raise ValueError(f"local matching needs a TPS as the warp's last part; got {last!r}.")

    def estimate_output(content_xy):
        mapped = transform.map_points(normalized_to_pixel(content_xy, shape))
        return pixel_to_normalized(mapped, shape)

    if matcher is None:
        matcher = FeatureMatcher(
            _features(content, trunk, settings), _features(style, trunk, settings), settings
        )
    correction = None  # the pose correction (normalised, output -> output) and in pixels
    if hints.count >= 2 and settings.affine_refits > 0:
        correction = refit_pose(matcher, estimate_output, hints, settings)
        if confidence is not None:  # a likely-right estimate keeps its pose
            share = (1.0 - float(confidence)) ** settings.correction_exponent
            correction = np.eye(3) + share * (correction - np.eye(3))
        correction_px = affine_from_theta(np.linalg.inv(correction)[:2], shape, shape)

    def to_output(content_xy):
        mapped = estimate_output(content_xy)
        return mapped if correction is None else _apply_affine(correction, mapped)

    def sample_last(points):  # where the old last TPS, then the correction, sample
        if correction is not None:
            points = correction_px.sample_points(points)
        return last.sample_points(points)

    field = match_field(matcher, to_output, hints, settings)
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
        grid, sample_last(normalized_to_pixel(before, shape)), last.regularization, frame=last.frame
    )
    return tps if len(parts) == 1 else ComposedTransform([*parts[:-1], tps])
