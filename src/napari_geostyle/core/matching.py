"""Training-free global alignment: the similarity that best lines up two images' edge layouts.

Two different objects of one kind (two faces, two cats) rarely share texture or colour, but
they share where their edges run and which way: the outline, the eyes, the mouth. This module
describes each image by dense, contrast-normalised histograms of unsigned gradient orientation
(HOG-like, Dalal & Triggs 2005; computed in torch, batched), and searches rotations, scales and
shifts exhaustively for the similarity whose warped content best matches the style (mean
cosine, weighted towards the centre of the style), coarse to fine. Shifts are scored all at once
as a cross-correlation (``conv2d``), so the search costs a few hundred milliseconds on a CPU.

The same search runs on ImageNet features when they are installed (``"efficientnet"``,
EfficientNet-Lite0 from PyPI, ``core/efficientnet.py``): alike for the same part of two
different objects, they place another face better than edges do. Each candidate scored on a
warped image costs a trunk forward there, so its coarse level warps the content's features
instead and only a shortlist is scored again on warped images (``Descriptor.shortlist``).

It also matches points (``match_affine``): the mutual nearest neighbours of two dense feature
maps and the affine most of them agree on (RANSAC, then least squares), a training-free matcher
meant for features that say what a part is (ImageNet VGG-19, ``init="matches-vgg19"``).

The result initialises ``estimate_warp``'s network stages (``init="search"``): the networks,
trained on same-image pairs, refine a warp well from nearby but are easily lost when the content
is another instance moved far from the style's pose.

Parameters are sampling maps in normalised ``(x, y)`` (``affine_grid``'s ``theta``), as in
``geonet``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .warp_params import compose_thetas

if TYPE_CHECKING:  # pragma: no cover
    import torch

SEARCH_SIZE = 128  # side of the square the images are resized to for the search
ORIENTATION_BINS = 8
SEMANTIC_SEARCH_SIZE = 256  # the same for the EfficientNet-Lite0 descriptor (16 x 16 cells)
SEMANTIC_SHORTLIST = 8  # its coarse candidates scored again on warped images (``Descriptor``)


@dataclass(frozen=True)
class SearchRanges:
    """What the search covers: rotations (degrees), scales, shifts (normalised: 1 = half side)."""

    rotation_deg: float = 20.0
    rotation_step_deg: float = 5.0
    scale: tuple = (0.75, 1.33)
    scale_steps: int = 7
    shift: float = 0.3
    # fraction of each side left out of the score: the mirror-padded border
    margin: float = 0.1
    # Gaussian weight on the style's cells (sigma in half-sides; None = flat): content and style
    # are taken for object-centred images, so the object in the middle of the style counts most
    # and clutter at its edges least (chosen on face pairs: mean PCK@0.1 0.46 flat with a 0.25
    # margin, 0.51 with sigma 0.35)
    centre_sigma: float | None = 0.35
    fine_levels: int = 2

    def __post_init__(self):
        low, high = self.scale
        if not (0 < low <= high) or self.scale_steps < 1:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high; got {self.scale}.")
        if self.rotation_deg < 0 or self.rotation_step_deg <= 0 or self.shift < 0:
            raise ValueError("rotation_deg and shift must be >= 0 and rotation_step_deg > 0.")
        if not (0 <= self.margin < 0.5):
            raise ValueError(f"margin must be in [0, 0.5); got {self.margin}.")
        if self.centre_sigma is not None and not self.centre_sigma > 0:
            raise ValueError(f"centre_sigma must be > 0 or None; got {self.centre_sigma}.")


def _gaussian_blur(x, sigma: float, stride: int = 1):
    """Separable Gaussian blur of a (B, C, H, W) tensor, reflect padding; ``stride`` keeps every
    stride-th sample (blurring and subsampling in one pass costs a stride-th of the work)."""
    import torch
    import torch.nn.functional as F

    radius = max(1, math.ceil(2.5 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(
        x, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), stride=(1, stride), groups=channels
    )
    return F.conv2d(
        x, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), stride=(stride, 1), groups=channels
    )


def orientation_features(
    rgb01, bins: int = ORIENTATION_BINS, cell: float = 2.5, presmooth: float = 1.0, stride: int = 2
):
    """Dense orientation histograms of (B, 3, H, W) images in 0..1: (B, bins, H/s, W/s).

    Gradient magnitude is soft-binned by unsigned orientation, pooled over a Gaussian cell,
    normalised by the energy of a neighbourhood twice as wide (so contrast and lighting drop
    out), square-rooted (Hellinger), and L2-normalised per location.
    """
    import torch
    import torch.nn.functional as F

    gray = _gaussian_blur(rgb01.float().mean(1, keepdim=True), presmooth)
    gx = F.pad(gray[..., :, 2:] - gray[..., :, :-2], (1, 1, 0, 0), mode="replicate")
    gy = F.pad(gray[..., 2:, :] - gray[..., :-2, :], (0, 0, 1, 1), mode="replicate")
    magnitude = torch.sqrt(gx**2 + gy**2 + 1e-8)  # eps: finite gradients on flat areas
    angle = torch.remainder(torch.atan2(gy, gx), math.pi)
    centres = torch.arange(bins, dtype=gray.dtype, device=gray.device) * (math.pi / bins)
    distance = (angle - centres.view(1, -1, 1, 1)).abs()
    distance = torch.minimum(distance, math.pi - distance)
    weights = torch.clamp(1 - distance / (math.pi / bins), min=0)
    histogram = _gaussian_blur(weights * magnitude, cell, stride)
    energy = _gaussian_blur(histogram.pow(2).sum(1, keepdim=True), 2 * cell / stride).sqrt()
    histogram = (histogram / (energy + 0.02) + 1e-6).sqrt()
    return histogram / (histogram.pow(2).sum(1, keepdim=True).sqrt() + 1e-6)


DESCRIPTORS = ("orientation", "vgg19", "efficientnet")


class Descriptor:
    """How images are described for the search: a function of (B, 3, S, S) 0..1 images giving
    L2-normalised (B, C, h, w) features, and the side S it wants. ``shortlist``: when > 0, the
    coarse search warps the content's features (described once) instead of the content, and
    only that many best rotation x scale candidates are scored again on warped images: for
    descriptors that cost a network forward per candidate."""

    def __init__(self, describe, size: int, name: str, shortlist: int = 0):
        self.describe, self.size, self.name = describe, int(size), name
        self.shortlist = int(shortlist)

    def __call__(self, rgb01):
        return self.describe(rgb01)


def deep_descriptor(backbone="vgg19", device=None, layer: str = "conv4_4") -> Descriptor:
    """VGG-19 features at ``layer`` (stride 8), L2-normalised per location, as the paper's
    geometry stage uses them. Semantic with the ImageNet weights (``backbone="vgg19"``); the
    seeded ``"random"`` backbone exercises the same mechanics."""
    from .features import build_trunk

    trunk = build_trunk(backbone, device=device, last_layer=layer)

    def describe(rgb01):
        features = trunk(rgb01.to(next(trunk.parameters()).device).float(), taps=(layer,))[layer]
        features = features.float().to(rgb01.device)
        return _renormalise(features)

    # 160 px: conv4 at stride 8 gives 20 x 20 cells; every candidate is a VGG forward, so
    # this descriptor is meant for a GPU
    return Descriptor(describe, 160, f"vgg19 {layer} ({getattr(trunk, 'source', backbone)})")


def semantic_descriptor(backbone="imagenet", device=None, tap: str = "s16") -> Descriptor:
    """EfficientNet-Lite0 features at ``tap`` (``efficientnet``), L2-normalised per location:
    ImageNet features installed with the package, alike for the same part of two different
    objects. The seeded ``"random"`` backbone exercises the same mechanics."""
    import torch

    from .efficientnet import build_efficientnet

    trunk = build_efficientnet(backbone, device=device)

    def describe(rgb01):
        with torch.no_grad():
            features = trunk(rgb01.to(next(trunk.parameters()).device).float(), taps=(tap,))[tap]
        features = features.float().to(rgb01.device)
        return _renormalise(features)

    # every candidate scored on a warped image is a trunk forward (~50 ms at 256 px on 2 CPU
    # cores): the coarse search warps the content's features and shortlists
    return Descriptor(
        describe,
        SEMANTIC_SEARCH_SIZE,
        f"efficientnet-lite0 {tap} ({trunk.source})",
        shortlist=SEMANTIC_SHORTLIST,
    )


def make_descriptor(descriptor="orientation", device=None) -> Descriptor:
    """A ``Descriptor`` from a name in ``DESCRIPTORS`` (or one already made)."""
    if isinstance(descriptor, Descriptor):
        return descriptor
    if descriptor == "orientation":
        return Descriptor(orientation_features, SEARCH_SIZE, "orientation")
    if descriptor == "vgg19":
        return deep_descriptor("vgg19", device)
    if descriptor == "efficientnet":
        return semantic_descriptor("imagenet", device)
    raise ValueError(
        f"unknown search descriptor {descriptor!r}; accepted: {', '.join(DESCRIPTORS)}."
    )


def _similarity_thetas(rotations_deg, scales, centre=None):
    """(N, 2, 3) sample maps ``p -> R(a) p / s`` (+ ``centre``'s shift), every rotation x scale."""
    import torch

    rows = []
    for angle in rotations_deg:
        radians = math.radians(float(angle))
        for scale in scales:
            c, s = math.cos(radians) / float(scale), math.sin(radians) / float(scale)
            rows.append([[c, -s, 0.0], [s, c, 0.0]])
    thetas = torch.tensor(rows, dtype=torch.float32)
    if centre is not None:
        thetas = compose_thetas(centre.expand(len(thetas), 2, 3), thetas)
    return thetas


def centre_weights(side: int, margin: float, sigma: float | None, device=None):
    """(h, h) weights of the scored cells of a (side, side) feature map: the central window
    left by ``margin``, Gaussian about the centre (``sigma`` in half-sides, None = flat), mean 1.
    """
    import torch

    keep = round(side * margin)
    count = side - 2 * keep
    if sigma is None:
        return torch.ones(count, count, device=device)
    axis = torch.linspace(-1, 1, side, device=device)[keep : side - keep]
    weights = torch.exp(-(axis[:, None] ** 2 + axis[None] ** 2) / (2 * sigma**2))
    return weights / weights.mean()


def _renormalise(features):
    """Per-location L2 normalisation (of a feature map that was warped)."""
    return features / (features.pow(2).sum(1, keepdim=True).sqrt() + 1e-6)


def _best_of(placements: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """theta (2, 3) of the best-scoring candidate of ``_placement_scores``'s
    ``(scores, thetas)``."""
    scores, placed = placements
    return placed[int(scores.argmax())]


def _placement_scores(
    content,
    style_features,
    thetas,
    shift: float,
    margin: float,
    describe=orientation_features,
    centre_sigma: float | None = None,
):
    """``(scores (N,), thetas (N, 2, 3))``: each candidate's best score over all shifts, and
    the candidate composed with that shift."""
    import torch
    import torch.nn.functional as F

    from .images import ALIGN_CORNERS

    count, size = thetas.shape[0], content.shape[-1]
    grid = F.affine_grid(thetas.to(content), [count, 3, size, size], align_corners=ALIGN_CORNERS)
    warped = F.grid_sample(
        content.expand(count, -1, -1, -1),
        grid,
        mode="bilinear",
        padding_mode="reflection",
        align_corners=ALIGN_CORNERS,
    )
    features = describe(warped)
    side = features.shape[-1]
    keep = round(side * margin)
    kernel = style_features[..., keep : side - keep, keep : side - keep] * centre_weights(
        side, margin, centre_sigma, style_features.device
    )
    # shift in feature cells (side = 2 units); a shift of 0 scores each candidate where it is
    reach = max(1, round(shift * side / 2)) if shift > 0 else 0
    padded = (
        F.pad(features, (reach - keep,) * 4, mode="reflect")
        if reach > keep
        else features[..., keep - reach : side - keep + reach, keep - reach : side - keep + reach]
    )
    scores = F.conv2d(padded, kernel) / (kernel.shape[-1] * kernel.shape[-2])  # (N, 1, 2r+1, ..)
    flat = scores.flatten(1).float().cpu()
    best_scores, index = flat.max(1)
    width = scores.shape[-1]
    dy, dx = index // width - reach, index % width - reach
    # a score at offset (dy, dx) compares style cell p with warped cell p + (dy, dx): the sample
    # map first moves by that offset (in normalised units), then applies the candidate
    step = 2.0 / side
    offsets = torch.zeros(count, 2, 3)
    offsets[:, 0, 0] = offsets[:, 1, 1] = 1.0
    offsets[:, 0, 2], offsets[:, 1, 2] = dx * step, dy * step
    return best_scores, compose_thetas(thetas.float().cpu(), offsets)


def search_similarity(content, style, ranges: SearchRanges | None = None, descriptor="orientation"):
    """theta (2, 3) of the similarity that best aligns ``content`` to ``style`` (see module).

    ``content``, ``style``: (1, 3, H, W) tensors in 0..1. ``descriptor``: a name in
    ``DESCRIPTORS`` or a ``Descriptor``. Returns a float32 CPU tensor.
    """
    import numpy as np
    import torch

    from .images import resize_tensor

    ranges = ranges or SearchRanges()
    describe = make_descriptor(descriptor, content.device)
    size = (describe.size, describe.size)
    with torch.no_grad():
        # on the inputs' device (a GPU when there is one); the candidate thetas stay on the CPU
        content = resize_tensor(content.float(), size)
        style_features = describe(resize_tensor(style.float(), size))
        steps = max(0, int(ranges.rotation_deg // ranges.rotation_step_deg))
        rotations = np.arange(-steps, steps + 1) * ranges.rotation_step_deg
        scales = np.exp(
            np.linspace(math.log(ranges.scale[0]), math.log(ranges.scale[1]), ranges.scale_steps)
        )
        candidates = _similarity_thetas(rotations, scales)
        if describe.shortlist:
            # features of a warped image ~ the warped features, well enough to shortlist
            scores, _ = _placement_scores(
                describe(content),
                style_features,
                candidates,
                ranges.shift,
                ranges.margin,
                _renormalise,
                ranges.centre_sigma,
            )
            candidates = candidates[scores.topk(min(describe.shortlist, len(scores))).indices]
        theta = _best_of(
            _placement_scores(
                content,
                style_features,
                candidates,
                ranges.shift,
                ranges.margin,
                describe,
                ranges.centre_sigma,
            )
        )
        rotation_step = ranges.rotation_step_deg
        scale_step = (math.log(ranges.scale[1]) - math.log(ranges.scale[0])) / max(
            ranges.scale_steps - 1, 1
        )
        for _ in range(ranges.fine_levels):
            rotation_step, scale_step = rotation_step / 2, scale_step / 2
            local = _similarity_thetas(
                [-rotation_step, 0.0, rotation_step],
                np.exp([-scale_step, 0.0, scale_step]),
                theta[None],
            )
            theta = _best_of(
                _placement_scores(
                    content,
                    style_features,
                    local,
                    2.0 / 32,
                    ranges.margin,
                    describe,
                    ranges.centre_sigma,
                )
            )
    return theta


def best_pinned(content, style, thetas, ranges: SearchRanges | None = None,
                descriptor="orientation"):  # fmt: skip
    """theta (2, 3) of the candidate in ``thetas`` (N, 2, 3) whose warped content best matches
    ``style``, each scored where it is (no shifts: the candidates are pinned, e.g. by hints,
    ``core.hints``). Scored as ``search_similarity`` scores (the same descriptor, margin and
    centre weighting, the same shortlist on warped features first). Float32 CPU tensor."""
    import torch

    from .images import resize_tensor

    ranges = ranges or SearchRanges()
    describe = make_descriptor(descriptor, content.device)
    size = (describe.size, describe.size)
    thetas = torch.as_tensor(thetas, dtype=torch.float32)
    if len(thetas) == 1:
        return thetas[0]
    with torch.no_grad():
        content = resize_tensor(content.float(), size)
        style_features = describe(resize_tensor(style.float(), size))
        if describe.shortlist and len(thetas) > describe.shortlist:
            scores, _ = _placement_scores(
                describe(content), style_features, thetas, 0.0, ranges.margin, _renormalise,
                ranges.centre_sigma,
            )  # fmt: skip
            thetas = thetas[scores.topk(describe.shortlist).indices]
        theta = _best_of(
            _placement_scores(
                content, style_features, thetas, 0.0, ranges.margin, describe, ranges.centre_sigma
            )
        )
    return theta


# the border left out when judging a whole warp (``layout_similarity``): narrower than the
# search's, so that the judgement sees most of the image (same-image pairs need it)
JUDGE_MARGIN = 0.15
# and flat (no centre weighting): weighting it as the search does gained little across instances
# (affine+tps, 40 face pairs, PCK@0.1 network / refine 0.465 / 0.466 -> 0.471 / 0.475) and cost
# much on same-image pairs (held-out lattice error 5.92 / 3.20 % -> 6.67 / 4.16 %)
JUDGE_SIGMA = None


def layout_features(images):
    """The orientation features ``layout_similarity`` compares, of (B, 3, H, W) images in 0..1
    resized to the search size."""
    from .images import resize_tensor

    return orientation_features(resize_tensor(images.float(), (SEARCH_SIZE, SEARCH_SIZE)))


def layout_similarity(
    warped,
    style,
    margin: float = JUDGE_MARGIN,
    centre_sigma: float | None = JUDGE_SIGMA,
    style_features=None,
):
    """Mean cosine of the orientation features of ``warped`` and ``style`` over the centre
    (weighted as the search weighs it when ``centre_sigma`` is given, see ``centre_weights``).

    Both (B, 3, H, W) in 0..1, resized to the search size; (B,) scores in [0, 1], differentiable.
    ``style_features``: ``layout_features(style)`` when already computed (``style`` is then
    not read), as an optimisation that compares many warps with one style does.
    """
    a = layout_features(warped)
    b = layout_features(style) if style_features is None else style_features
    side = a.shape[-1]
    keep = round(side * margin)
    window = (..., slice(keep, side - keep), slice(keep, side - keep))
    weights = centre_weights(side, margin, centre_sigma, a.device)
    return ((a[window] * b[window]).sum(1) * weights).mean((1, 2))


# --------------------------------------------------------------------------- point matches
MIN_INLIERS = 8  # fewer consistent matches than this: the fit is not trusted


class TooFewMatches(ValueError):
    """Fewer than ``MIN_INLIERS`` point matches agree on one warp."""


def mutual_matches(content_features, style_features):
    """``(content_xy, style_xy, similarity)``: the mutual nearest neighbours of two
    L2-normalised (1, C, h, w) feature maps (cell i of the content and cell j of the style,
    each the other's most similar), as cell centres in normalised ``(x, y)``, best first."""
    import torch

    from .warp_params import output_centres

    a = content_features[0].flatten(1).T.float()
    b = style_features[0].flatten(1).T.float()
    similarity = a @ b.T
    content_best = similarity.argmax(1)
    style_best = similarity.argmax(0)
    content_index = torch.nonzero(style_best[content_best] == torch.arange(len(a))).squeeze(1)
    style_index = content_best[content_index]
    scores = similarity[content_index, style_index]
    order = scores.argsort(descending=True)
    # a cell's centre is its pixel's centre in a map of the feature grid's size
    content_xy = output_centres(1, *content_features.shape[-2:])[0][content_index[order]]
    style_xy = output_centres(1, *style_features.shape[-2:])[0][style_index[order]]
    return content_xy, style_xy, scores[order]


def _affine_solve(style_xy, content_xy):
    """(..., 2, 3) least-squares sample map ``style -> content`` of matched points (..., N, 2)."""
    import torch

    ones = torch.ones(style_xy.shape[:-1] + (1,), dtype=style_xy.dtype, device=style_xy.device)
    design = torch.cat([style_xy, ones], -1)
    solution = torch.linalg.lstsq(design.double(), content_xy.double()).solution
    return solution.transpose(-1, -2).to(style_xy.dtype)


def robust_affine(
    content_xy, style_xy, threshold: float = 0.08, trials: int = 512, seed: int = 0
) -> tuple:
    """``(theta, inliers)``: the affine sample map ``style -> content`` that most matches agree
    with (RANSAC over random triples, then least squares on the inliers, twice), and the boolean
    inlier mask. ``threshold``: the residual (normalised units, 2 = a side) that counts as
    agreeing. ``TooFewMatches`` (a ``ValueError``) when fewer than ``MIN_INLIERS`` agree."""
    import torch

    from .warp_params import affine_sample_points

    count = len(content_xy)
    if count < MIN_INLIERS:
        raise TooFewMatches(
            f"only {count} point matches; need at least {MIN_INLIERS} to fit a warp."
        )
    generator = torch.Generator().manual_seed(seed)
    triples = torch.stack(
        [torch.randperm(count, generator=generator)[:3] for _ in range(trials)]
    )  # (T, 3): distinct within a triple
    candidates = _affine_solve(style_xy[triples], content_xy[triples])  # (T, 2, 3)
    # degenerate triples (nearly collinear) give wild maps; they gather no inliers
    predicted = affine_sample_points(candidates, style_xy.expand(trials, -1, -1))
    inliers = (predicted - content_xy).norm(dim=-1) < threshold  # (T, N)
    best = int(inliers.sum(1).argmax())
    mask = inliers[best]
    theta = candidates[best]
    for _ in range(2):  # refit on the inliers, then take the inliers of the refit
        if int(mask.sum()) < MIN_INLIERS:
            break
        theta = _affine_solve(style_xy[mask], content_xy[mask])
        predicted = affine_sample_points(theta[None], style_xy[None])[0]
        mask = (predicted - content_xy).norm(dim=-1) < threshold
    if int(mask.sum()) < MIN_INLIERS:
        raise TooFewMatches(
            f"only {int(mask.sum())} of {count} point matches agree on one affine; need "
            f"{MIN_INLIERS}: the images may show different things."
        )
    return theta, mask


def match_affine(content, style, descriptor="vgg19", threshold: float = 0.08):
    """theta (2, 3) of the affine that aligns ``content`` to ``style``, from the mutual nearest
    neighbours of their dense features and a robust fit (``robust_affine``): a training-free
    matcher, as the paper's geometry stage matches VGG features. ``content``, ``style``:
    (1, 3, H, W) in 0..1. ``TooFewMatches`` (a ``ValueError``) when too few matches agree."""
    import torch

    from .images import resize_tensor

    describe = make_descriptor(descriptor, content.device)
    size = (describe.size, describe.size)
    with torch.no_grad():
        content_features = describe(resize_tensor(content.float(), size)).cpu()
        style_features = describe(resize_tensor(style.float(), size)).cpu()
        content_xy, style_xy, _ = mutual_matches(content_features, style_features)
        theta, _ = robust_affine(content_xy, style_xy, threshold)
    return theta.float()


def semantic_similarity(warped, style, trunk, margin: float = JUDGE_MARGIN, tap: str = "s16"):
    """Mean cosine of ``trunk``'s (EfficientNet-Lite0) features at ``tap`` of ``warped`` and
    ``style`` over the centre, as ``layout_similarity`` but on features that say what a part is.

    Both (B, 3, H, W) in 0..1, resized to the semantic search size; (B,) scores in [-1, 1].
    ``style`` may hold B / k images for k candidates per style (candidate-major, as
    ``style.repeat(k, 1, 1, 1)`` would give): each style then goes through the trunk once.
    """
    from .images import resize_tensor

    size = (SEMANTIC_SEARCH_SIZE, SEMANTIC_SEARCH_SIZE)
    device = next(trunk.parameters()).device
    a = _renormalise(trunk(resize_tensor(warped.float(), size).to(device), taps=(tap,))[tap])
    b = _renormalise(trunk(resize_tensor(style.float(), size).to(device), taps=(tap,))[tap])
    if b.shape[0] != a.shape[0]:
        b = b.repeat(a.shape[0] // b.shape[0], 1, 1, 1)
    side = a.shape[-1]
    keep = round(side * margin)
    window = (..., slice(keep, side - keep), slice(keep, side - keep))
    return (a[window] * b[window]).sum(1).mean((1, 2)).to(warped.device)
