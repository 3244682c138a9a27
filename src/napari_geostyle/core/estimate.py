"""``estimate_warp``: the transform that gives ``content`` the geometry of ``geometry_style``.

The result is a landmark transform in CONTENT PIXEL coordinates, mapping content -> output, where
the output frame has the content's ``(H, W)`` shape: ``warp_image(content, tf)`` is the content
with the style's geometry, at the content's size. The networks see both images resized to a
square (240 x 240), so their parameters live in normalised coordinates, which are independent of
size and aspect; ``transforms.affine_from_theta`` / ``tps_from_grid_params`` turn them into pixels.

- ``model="affine"``: one affine; ``"tps"``: one 3 x 3 TPS; ``"affine+tps"``: an affine, then a
  TPS estimated on the affine-warped content, composed (``ComposedTransform([affine, tps])``).
- Each stage runs its network ``passes`` times (CNNGeometric's iterative use): a pass sees the
  content warped by the estimate so far and predicts the residual, which is composed into the
  stage's one transform (exactly for the affine; for the TPS, the least-squares TPS of the
  composition). Defaults per model: ``DEFAULT_PASSES``.
- A prediction that folds the image (Jacobian determinant <= a small margin somewhere) is damped:
  moved toward the identity until it does not fold.
- ``method="refine"`` starts from the network and optimises the parameters directly so that the
  stride-16 features of the warped content match the style's (see ``_FeatureObjective``), with
  a trust region around the network's estimate and fold barriers. The best
  parameters on that objective are kept, and only when they beat the start by ``margin``, so
  it never ends worse than the network's estimate on its own objective. Settings: ``REFINE``.
- ``estimate_warps`` estimates many pairs with the networks batched: every network pass is one
  forward of up to ``batch_size`` pairs (``_NetworkStages``), with the same results as
  ``estimate_warp`` pair by pair (to float rounding). The global search (``init``) and the
  refinement run pair by pair.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .hints import check_hints
from .warp_params import (
    compose_thetas,
    compose_tps,
    fold_affine_into_tps,
    identity_params,
    lattice_xy,
    output_centres,
    sample_map,
    theta_determinant,
    tps_min_determinant,
    tps_spline,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from numpy.typing import ArrayLike

    from .transforms import Transform

MODELS = ("affine", "tps", "affine+tps")
METHODS = ("network", "refine")
# where the network stages start: "search" = the similarity that best aligns the two images
# (core/matching.py), found by exhaustive search on the ImageNet EfficientNet-Lite0 features
# installed with the package (``efficientnet``), on edge layouts where they are not installed;
# "search-edges" = that search on edge layouts always; "identity" = no warp
# ("search-vgg19": the same search on ImageNet VGG-19 conv4 features, as the paper's geometry
# stage; "matches-vgg19": an affine fitted robustly to the mutual nearest neighbours of those
# features, the search where too few agree; both need the weights, see
# ``napari-geostyle weights``)
INITS = ("search", "search-edges", "identity", "search-vgg19", "matches-vgg19")
MIN_SIZE = 32
FOLD_MARGIN = 0.02  # smallest Jacobian determinant (area ratio) accepted as "not folding"
_DAMPING = (1.0, 0.8, 0.6, 0.4, 0.2, 0.1, 0.0)
# Hints (``core.hints``): the refinement's weight on the mean squared hint residual (normalised
# units: a residual of 0.02, 1 % of the side, costs 0.04, about what a few percent of feature
# agreement is worth), and the judge's penalty per unit of RMS hint residual (a candidate that
# moves the hints by 0.02 needs 0.02 more feature similarity to be kept)
HINT_WEIGHT = 100.0
HINT_JUDGE_WEIGHT = 1.0
# and the refinement's trust region, times ``REFINE["trust_weight"]``, when hints pinned the pose:
# across different faces the features' optimum lies off the true shape, and a pinned pose is
# the better start to stay near (one face pair, two clicks, PCK@0.1: the pose 0.30, refined
# with the usual trust region 0.04, with ten times it 0.13)
HINT_TRUST_FACTOR = 10.0
# Network passes per stage and model: each pass after the first predicts the residual between
# the content warped so far and the style. Chosen on a tuning split of TRAINING images (see
# MODEL_CARD.md): more affine passes help the affine model but hurt affine+tps, whose affine
# stage then absorbs part of the TPS.
DEFAULT_PASSES = {
    "affine": {"affine": 3},
    "tps": {"tps": 2},
    "affine+tps": {"affine": 1, "tps": 3},
}
MAX_PASSES = 8
# pairs per network forward in ``estimate_warps`` when its batch_size is None
DEFAULT_BATCH_SIZE = 32
# Refinement settings, chosen on the tuning split (MODEL_CARD.md). ``margin``: how much lower
# the objective must end than it started for the refined parameters to replace the network's.
REFINE = {
    "trust_weight": 1.0,
    "affine_iterations": 40,
    "affine_lr": 0.01,
    "tps_iterations": 40,
    "tps_lr": 0.02,
    "margin": 0.0,
    "layout_weight": 1.0,
}


def check_options(model: str, method: str, trunk: str, init: str = "search") -> None:
    """``ValueError`` naming the accepted values for an unknown model / method / trunk."""
    from .geonet import TRUNK_CHOICES

    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}: model must be one of {', '.join(MODELS)}.")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: method must be one of {', '.join(METHODS)}.")
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}: init must be one of {', '.join(INITS)}.")
    if trunk not in TRUNK_CHOICES:
        raise ValueError(
            f"unknown trunk {trunk!r}: trunk must be one of {', '.join(TRUNK_CHOICES)}."
        )


def _checkpoint_for(kind: str, model: str, checkpoint):
    """The checkpoint path for network ``kind`` out of the user's ``checkpoint`` argument."""
    if checkpoint is None:
        return None
    if isinstance(checkpoint, dict):
        unknown = set(checkpoint) - {"affine", "tps"}
        if unknown:
            raise ValueError(
                f"checkpoint keys must be 'affine' and/or 'tps'; got {sorted(unknown)}."
            )
        return checkpoint.get(kind)
    if model == "affine+tps":
        raise ValueError(
            "model 'affine+tps' uses two networks: pass checkpoint={'affine': path, 'tps': path} "
            "(or leave it None for the shipped ones)."
        )
    return checkpoint


# --------------------------------------------------------------------------- parameter helpers
def damp_folding(kind: str, params, grid_size: int = 3):
    """``(params, factor)``: ``params`` (P,) shrunk toward the identity until it does not fold.

    ``factor`` is 1.0 when the prediction was fine, smaller when it was damped.
    """
    rows, factors = damp_folding_rows(kind, params[None], grid_size)
    return rows[0], factors[0]


def damp_folding_rows(kind: str, params, grid_size: int = 3):
    """``damp_folding`` of every row of ``params`` (B, P) at once: ``(rows (B, P), factors)``
    with one factor per row."""
    import torch

    batch, count = params.shape
    identity = identity_params(kind, grid_size).to(params)
    factors = torch.tensor(_DAMPING, dtype=params.dtype, device=params.device)
    # (B, D, P): each row moved toward the identity by every damping factor
    candidates = identity + factors[:, None] * (params[:, None] - identity)
    flat = candidates.reshape(-1, count)
    if kind == "affine":
        det = theta_determinant(flat.reshape(-1, 2, 3))
    else:
        det = tps_min_determinant(flat, grid_size)
    ok = (det > FOLD_MARGIN).reshape(batch, len(_DAMPING))
    # the first factor that does not fold; the last (the identity) when every one folds
    index = torch.where(ok.any(1), ok.int().argmax(1), len(_DAMPING) - 1)
    rows = candidates[torch.arange(batch, device=params.device), index]
    return rows, factors[index].tolist()


# A sample map with a TPS part is evaluated on a lattice through the first and last pixel
# centres, one node every TPS_LATTICE_STEP pixels, and interpolated bilinearly in between: a 3 x 3
# TPS is smooth enough (within 0.03 px of the exact map at 240 px) and a refinement step of the
# TPS models evaluates a sixteenth of the kernels (38 -> 26 ms a step on 2 CPU threads). Outputs
# smaller than TPS_LATTICE_MIN_SIDE are evaluated exactly. (The live warp's full-size warps do
# the same on transforms in pixels, with an error check: ``_napari.live_warp.LatticeSampleMap``;
# this one stays differentiable in the parameters, for the refinement.)
TPS_LATTICE_STEP = 4
TPS_LATTICE_MIN_SIDE = 128


def _sample_grid(batch: int, h: int, w: int, theta, tps, grid_size: int, spline, device):
    """(B, H, W, 2) ``theta(tps(p))`` at the centres of an H x W output (see above)."""
    import torch
    import torch.nn.functional as F

    from .images import pixel_to_normalized

    if tps is None or min(h, w) < TPS_LATTICE_MIN_SIDE:
        centres = output_centres(batch, h, w, device=device)
        return sample_map(centres, theta, tps, grid_size, spline).reshape(batch, h, w, 2)
    # the first and last pixel centres, in the normalised (x, y) the sample map takes
    (x0, y0), (x1, y1) = pixel_to_normalized([[0, 0], [h - 1, w - 1]], (h, w)).tolist()
    step = TPS_LATTICE_STEP
    rows, cols = (h - 1) // step + 1, (w - 1) // step + 1
    ys = torch.linspace(y0, y1, rows, device=device)
    xs = torch.linspace(x0, x1, cols, device=device)
    lattice = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).reshape(1, -1, 2)
    coarse = sample_map(lattice.expand(batch, -1, -1), theta, tps, grid_size, spline)
    coarse = coarse.reshape(batch, rows, cols, 2).permute(0, 3, 1, 2)
    # align_corners=True: fine pixel i sits at lattice position i (n - 1) / (N - 1), which is
    # where the lattice's nodes, spread evenly from the first to the last centre, put it
    fine = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=True)
    return fine.permute(0, 2, 3, 1)


def _warp_tensor(image, theta, tps, grid_size: int, spline=None):
    """Warp a (B, C, H, W) tensor by theta(tps(p)), mirror padding (as the training pairs).

    ``theta``: (B, 2, 3) or None; ``tps``: (B, 2 K^2) or None (one (2, 3) / (2 K^2,) when B
    is 1), each row warping its own image.
    """
    import torch.nn.functional as F

    from .images import ALIGN_CORNERS

    batch, _, h, w = image.shape
    grid = _sample_grid(batch, h, w, theta, tps, grid_size, spline, image.device)
    return F.grid_sample(
        image,
        grid.to(image.dtype),
        mode="bilinear",
        padding_mode="reflection",
        align_corners=ALIGN_CORNERS,
    )


# --------------------------------------------------------------------------- refinement
class _FeatureObjective:
    """Feature alignment objective of the refinement (see the module docstring).

    The content IMAGE is warped (mirror padding, as the training pairs) and goes through a
    trunk (``_objective_trunk``: the ImageNet EfficientNet-Lite0 when installed, else the TPS
    network's); the objective is the mean over locations and taps of ``1 - cos`` between its
    features and the style's. Features of the warped image, not warped features:
    the trunk is not equivariant to rotation, shear or scale, and the TPS trunk, trained on
    the strongest deformations, is the one whose features score the true warp above the
    network's estimate most often (tuning split, MODEL_CARD.md). Plus fold barriers on the TPS
    and the affine, and a trust region: the mean squared lattice displacement from the
    network's estimate (``anchor``). No bending term (see ``__call__``).
    """

    fold_weight = 10.0
    trust_weight = 1.0
    # weight of (1 - layout similarity, ``matching``): edge layouts still agree where the
    # trunk's features differ (another object, another texture)
    layout_weight = 0.0
    taps = ("s16",)

    def __init__(self, trunk, content, style, grid_size: int, taps=None):
        import torch

        from .geonet_modules import l2_normalize

        if taps is not None:
            self.taps = tuple(taps)  # coarse to fine: the first alone, then adding the next

        self.normalize = l2_normalize
        self.trunk, self.content, self.grid_size = trunk, content, grid_size
        self.style_image = style
        with torch.no_grad():
            self.style = {
                t: self.normalize(f.float()) for t, f in trunk(style, taps=self.taps).items()
            }
        self.lattice = lattice_xy(5, content.device)[None]
        self.anchor = None
        self.hints = None  # (style (1, K, 2), content (1, K, 2)) normalised: ``set_hints``
        self._style_layout = None  # the style's layout features, made on first use

    def set_anchor(self, theta, tps):
        """The network's estimate, which the trust region keeps the refinement near."""
        import torch

        with torch.no_grad():
            self.anchor = sample_map(self.lattice, theta, tps, self.grid_size)

    def set_hints(self, hints) -> None:
        """Keep ``hints`` (``core.hints.Hints``) as a soft constraint: ``hint_weight`` x the
        mean squared distance (normalised) between where the style hints sample and the
        content hints."""
        import torch

        device = self.content.device
        self.hints = tuple(
            torch.as_tensor(a, dtype=torch.float32, device=device)[None]
            for a in (hints.style_xy, hints.content_xy)
        )

    def __call__(self, theta, tps, taps=None):
        import torch

        total = 0.0
        taps = taps or self.taps
        spline = None if tps is None else tps_spline(tps[None], self.grid_size)
        warped = _warp_tensor(self.content, theta, tps, self.grid_size, spline)
        features = self.trunk(warped, taps=taps)
        for tap in taps:
            cos = (self.normalize(features[tap].float()) * self.style[tap]).sum(1)
            total = total + (1.0 - cos).mean()
        if self.layout_weight:
            from .matching import layout_features, layout_similarity

            if self._style_layout is None:  # the same every step: computed once
                with torch.no_grad():
                    self._style_layout = layout_features(self.style_image)
            similarity = layout_similarity(warped, None, style_features=self._style_layout)
            total = total + self.layout_weight * (1.0 - similarity).sum()
        if tps is not None:
            # no bending penalty: one toward the identity pulls the TPS off the network's estimate
            # (the tuning split's refine error fell from 6.90% to 5.70% without it); the trust
            # region already keeps the refinement near that estimate, the barrier keeps it unfolded
            det = tps_min_determinant(tps[None], self.grid_size, samples=10, spline=spline)
            total = total + self.fold_weight * torch.relu(0.1 - det).pow(2).sum()
        if theta is not None:
            det = theta_determinant(theta.reshape(1, 2, 3))
            total = total + self.fold_weight * torch.relu(0.1 - det).pow(2).sum()
        if self.anchor is not None:
            moved = sample_map(self.lattice, theta, tps, self.grid_size, spline) - self.anchor
            total = total + self.trust_weight * moved.pow(2).sum(-1).mean()
        if self.hints is not None:
            style_xy, content_xy = self.hints
            sampled = sample_map(style_xy, theta, tps, self.grid_size, spline)
            total = total + HINT_WEIGHT * (sampled - content_xy).pow(2).sum(-1).mean()
        return total


def _optimise(objective, theta, tps, which: str, iterations: int, lr: float, tick=None):
    """Adam on ``which`` ("affine" | "tps") coarse to fine; returns the best (theta, tps, value).
    ``tick()`` (optional) is called after every Adam step (progress, and a place to cancel)."""
    import torch

    from .optim import Adam

    start = theta if which == "affine" else tps
    variable = start.detach().clone().requires_grad_(True)

    def unpack(v):
        return (v, tps) if which == "affine" else (theta, v)

    with torch.no_grad():
        best_value = float(objective(*unpack(variable)))
    best = variable.detach().clone()
    levels = [objective.taps[:i] for i in range(1, len(objective.taps) + 1)]
    for level, taps in enumerate(levels):
        optimizer = Adam(variable, lr)
        final_level = level == len(levels) - 1
        for _ in range(iterations):
            value = objective(*unpack(variable), taps=taps)
            if final_level and float(value.detach()) < best_value:
                best_value, best = float(value.detach()), variable.detach().clone()
            (gradient,) = torch.autograd.grad(value, variable)
            optimizer.step(gradient)
            if tick is not None:
                tick()
        with torch.no_grad():
            value = float(objective(*unpack(variable)))
        if value < best_value:
            best_value, best = value, variable.detach().clone()
        variable = best.clone().requires_grad_(True)
    return (*unpack(best), best_value)


# --------------------------------------------------------------------------- network stages
@dataclass
class WarpParameters:
    """What ``estimate_parameters`` found for one pair: the sample map ``theta(tps(p))`` in
    normalised coordinates (``warp_params``), and how it was reached."""

    theta: np.ndarray | None  # (2, 3) float64; None: no affine part
    tps: np.ndarray | None  # (2 K^2,) float64 grid params; None: no TPS part
    grid_size: int  # K of the TPS's K x K control grid
    # ``{"affine": [...], "tps": [...]}``: the damping factor of each network pass per stage
    # (1.0: the prediction did not fold), over every start the networks ran from
    damped: dict
    start: str  # the start kept by ``_best_layout``, one of ``START_NAMES``
    objective: tuple | None = None  # refine: the feature objective's (start, end) values
    # the judge's view of the pair (``_best_layout``): each start's score, the kept start's
    # lattice distance to the others; the estimate's ``confidence`` is made from it
    judge: dict | None = None
    confidence: float | None = None  # P(the warp is right), ``core.confidence``
    confidence_features: dict | None = None  # what it was made from


# where the network stages may start (``estimate_parameters``): no warp, the global search
# followed by the networks, or the global search alone
START_NAMES = ("identity", "search", "search only")


def search_descriptor() -> str:
    """The descriptor ``init="search"`` uses: ``"efficientnet"`` (ImageNet EfficientNet-Lite0
    features, which tell parts of different objects apart) when its weights are installed,
    ``"orientation"`` (edge layouts) where they are not."""
    from .weights import resolve_efficientnet_weights

    return "efficientnet" if resolve_efficientnet_weights() is not None else "orientation"


def initial_theta(content, style, init: str):
    """The affine the network stages start from: None (identity) or the global search's
    ("search": see ``search_descriptor``; "search-edges": edge-orientation layouts;
    "search-vgg19": VGG-19 conv4 features, which needs the ImageNet weights to be semantic), or
    for "matches-vgg19" the robust affine of the VGG-19 features' mutual nearest neighbours
    (``matching.match_affine``), the VGG-19 search where too few matches agree."""
    if init == "identity":
        return None
    from .matching import TooFewMatches, match_affine, search_similarity

    descriptor = {"search": search_descriptor(), "search-edges": "orientation"}.get(init, "vgg19")
    if init == "matches-vgg19":
        try:
            return match_affine(content, style, descriptor=descriptor).to(content.device)
        except TooFewMatches:
            pass  # the images share too little for point matches: the layout search
    return search_similarity(content, style, descriptor=descriptor).to(content.device)


def _initial_thetas(content, style, init: str, hints=None):
    """``initial_theta`` of every pair of a (B, 3, S, S) batch, as (B, 2, 3); None for
    "identity" without hints. The search runs pair by pair (``matching`` works on one pair).
    ``hints``: None or one ``core.hints.Hints`` (or None) per pair: a hinted pair's search is
    restricted to the poses that honour its hints (``hints.hinted_thetas``)."""
    import torch

    hints = hints or [None] * content.shape[0]
    if init == "identity" and not any(h is not None for h in hints):
        return None
    thetas = []
    for i, pair_hints in enumerate(hints):
        one_content, one_style = content[i : i + 1], style[i : i + 1]
        if pair_hints is None:
            theta = initial_theta(one_content, one_style, init)
            thetas.append(torch.eye(2, 3) if theta is None else theta.float().cpu())
            continue
        from .hints import hinted_thetas
        from .matching import best_pinned

        descriptor = {"search-edges": "orientation", "search-vgg19": "vgg19"}.get(
            init, search_descriptor()
        )
        thetas.append(
            best_pinned(one_content, one_style, hinted_thetas(pair_hints), descriptor=descriptor)
        )
    return torch.stack(thetas).to(content.device)


# How much more ImageNet-feature similarity (``judge_scores``) a network's answer needs than
# the search's alone to be kept, per model. Across different faces the networks' answers score
# a hair above the search's and land farther from the true landmarks: affine PCK@0.1 0.501 ->
# 0.528 with 0.03 (same-image error 3.08 -> 3.37 %, under the 3.83 % limit). For affine+tps,
# 0.03 gave 0.493 -> 0.513 but same-image 6.14 -> 6.44 %, over the 6.21 % limit: off there.
SEARCH_ONLY_BONUS = {"affine": 0.03, "tps": 0.0, "affine+tps": 0.0}


def judge_scores(warped, style, device=None):
    """(N,) how well each warped content lines up with its style, for ``_best_layout``
    (``style``: the N / k styles of k candidates each, candidate-major): the
    ImageNet EfficientNet-Lite0 features' similarity when installed (``matching.
    semantic_similarity``; across different faces the kept start scored PCK@0.1 0.499 against
    0.473 on edge layouts, MODEL_CARD.md), else edge layouts (``matching.layout_similarity``)."""
    from .efficientnet import build_efficientnet
    from .matching import layout_similarity, semantic_similarity

    trunk = build_efficientnet("auto", device if device is not None else warped.device)
    if trunk is None:
        repeats = warped.shape[0] // style.shape[0]
        return layout_similarity(warped, style.repeat(repeats, 1, 1, 1))
    return semantic_similarity(warped, style, trunk)


def _best_layout(candidates: dict, content, style, grid_size: int, model: str, hints=None):
    """``(theta, tps, names)``: for each pair of the batch, the candidate whose warped content
    best matches the style (``judge_scores``).

    ``candidates``: ``{name: (theta (B, 2, 3) or None, tps (B, P) or None)}``; ``content``,
    ``style``: (B, 3, S, S). The networks, trained on same-image pairs, refine well from nearby
    but may drift when the content is another object: this keeps whichever start, or the
    search on its own, lines the two images up best; on the ImageNet features a network's
    answer must beat the search alone by ``SEARCH_ONLY_BONUS[model]``. ``hints``: None or one
    ``core.hints.Hints`` (or None) per pair: a candidate loses ``HINT_JUDGE_WEIGHT`` x its RMS
    hint residual. Also returns ``judges``: per pair, each candidate's score and the kept
    candidate's RMS lattice distance to the others (``WarpParameters.judge``).
    """
    import torch

    names = list(candidates)
    batch = content.shape[0]
    warped = [_warp_tensor(content, *candidates[n], grid_size) for n in names]
    scores = judge_scores(torch.cat(warped, 0), style).reshape(len(names), batch).float().cpu()
    raw = scores.clone()
    if "search only" in names and search_descriptor() == "efficientnet":
        scores[names.index("search only")] += SEARCH_ONLY_BONUS[model]
    for i, pair_hints in enumerate(hints or []):
        if pair_hints is None:
            continue
        from .hints import hint_residual

        for k, name in enumerate(names):
            theta, tps = (None if p is None else p[i].float().cpu() for p in candidates[name])
            scores[k, i] -= HINT_JUDGE_WEIGHT * hint_residual(theta, tps, pair_hints, grid_size)
    best = scores.argmax(0).tolist()
    lattice = lattice_xy(5, content.device)[None].expand(batch, -1, -1)
    maps = torch.stack([sample_map(lattice, *candidates[n], grid_size) for n in names]).cpu()
    judges = []
    design = torch.cat([lattice[0].cpu(), torch.ones(lattice.shape[1], 1)], 1).double()
    for i in range(batch):
        spread = (maps[:, i] - maps[best[i], i]).pow(2).sum(-1).mean(-1).sqrt()
        # the kept sample map's least-squares affine: how much it scales and turns the content
        linear = torch.linalg.lstsq(design, maps[best[i], i].double()).solution[:2].T
        judges.append(
            {
                "scores": {n: float(raw[k, i]) for k, n in enumerate(names)},
                "kept": names[best[i]],
                "spread": {n: float(spread[k]) for k, n in enumerate(names)},
                "log_scale": -0.5 * math.log(max(abs(float(torch.linalg.det(linear))), 1e-9)),
                "rotation_deg": math.degrees(
                    math.atan2(
                        float(linear[1, 0] - linear[0, 1]), float(linear[0, 0] + linear[1, 1])
                    )
                ),
            }
        )

    def pick(part):  # 0: theta, 1: tps; one row per pair, from that pair's best candidate
        if candidates[names[0]][part] is None:
            return None
        return torch.stack([candidates[names[best[i]]][part][i] for i in range(batch)])

    return pick(0), pick(1), [names[b] for b in best], judges


def stage_passes(model: str, passes=None) -> dict:
    """``{stage: count}`` for ``model`` from the user's ``passes`` (None, an int or a dict)."""
    defaults = dict(DEFAULT_PASSES[model])
    if passes is None:
        return defaults
    if isinstance(passes, dict):
        unknown = set(passes) - {"affine", "tps"}
        if unknown:
            raise ValueError(f"passes keys must be 'affine' and/or 'tps'; got {sorted(unknown)}.")
        chosen = {**defaults, **{k: v for k, v in passes.items() if k in defaults}}
    else:
        chosen = {kind: passes for kind in defaults}
    for kind, count in chosen.items():
        if (
            isinstance(count, bool)
            or not isinstance(count, (int, np.integer))
            or not (1 <= count <= MAX_PASSES)
        ):
            raise ValueError(
                f"passes ({kind}) must be an integer from 1 to {MAX_PASSES}; got {count!r}."
            )
    return {kind: int(count) for kind, count in chosen.items()}


# the taps the refinement matches on the ImageNet EfficientNet-Lite0 trunk, coarse to fine (one
# level each: the first alone, then adding the next). s8 alone, 40 steps, against s8 then
# s8 + s16, 25 steps each: same-image error on the tuning split (training photos) affine+tps
# 3.02 -> 2.96 %, affine 0.75 -> 0.73 %; held out 3.69 -> 3.60 %, 1.98 -> 1.94 %; face pairs
# PCK@0.1 0.497 -> 0.508, 0.485 -> 0.499 (with the TPS lattice above); a fifth fewer steps,
# each about 40 % cheaper (MODEL_CARD.md). Earlier, from the full search's start: s16 alone 0.526, s8 + s16 0.563.
SEMANTIC_REFINE_TAPS = ("s8",)


def _objective_trunk(nets: dict, trunk: str, device) -> tuple:
    """``(trunk, taps)`` whose features the refinement matches: the ImageNet EfficientNet-Lite0
    (``efficientnet``) when installed and the networks do not run on VGG-19, as its features
    say what a part is across different objects (same-image held-out error with it: affine
    2.22 -> 1.65 %, affine+tps 3.20 -> 3.65 %, MODEL_CARD.md); else the TPS network's
    trunk (see ``_FeatureObjective``), the shipped one when only an affine network is in use,
    the affine network's own when no TPS network exists for ``trunk``."""
    from .geonet import load_geometry_model, shipped_checkpoint_path

    if trunk != "vgg19":
        from .efficientnet import build_efficientnet

        semantic = build_efficientnet("auto", device)
        if semantic is not None:
            return semantic, SEMANTIC_REFINE_TAPS
    if "tps" in nets:
        return nets["tps"].trunk, _FeatureObjective.taps
    if shipped_checkpoint_path("tps", trunk).is_file():
        return load_geometry_model("tps", trunk, None, device).trunk, _FeatureObjective.taps
    return nets["affine"].trunk, _FeatureObjective.taps


def _load_networks(model: str, trunk: str, checkpoint, device) -> dict:
    """``{"affine": net, "tps": net}``, the networks ``model`` uses (cached by ``geonet``)."""
    from .geonet import load_geometry_model

    return {
        kind: load_geometry_model(kind, trunk, _checkpoint_for(kind, model, checkpoint), device)
        for kind in DEFAULT_PASSES[model]
    }  # its stages, in order


def _damp_rows(kind: str, params, grid_size: int, damped: list):
    """``damp_folding_rows`` of ``params`` (B, P); each row's factor is appended to
    ``damped[row]``."""
    rows, factors = damp_folding_rows(kind, params, grid_size)
    for record, factor in zip(damped, factors, strict=True):
        record.append(factor)
    return rows


class _NetworkStages:
    """The network passes of ``model`` on a batch of prepared pairs (B, 3, S, S): every pass
    runs the network once for the whole batch. ``damped[i]`` collects pair i's damping."""

    def __init__(self, nets: dict, counts: dict, model: str, content, style):
        self.nets, self.counts, self.model = nets, counts, model
        self.content, self.style = content, style
        self.grid_size = nets["tps"].grid_size if "tps" in nets else 3
        self.damped = [{"affine": [], "tps": []} for _ in range(content.shape[0])]

    def affine(self, theta):
        """(B, 2, 3) after the affine passes from ``theta`` (None: the identity)."""
        for _ in range(self.counts["affine"]):
            # each pass sees the content warped by the estimate so far (CNNGeometric's
            # iterative use) and predicts the residual, composed on the output side
            source = (
                self.content
                if theta is None
                else _warp_tensor(self.content, theta, None, self.grid_size)
            )
            residual = _damp_rows(
                "affine",
                self.nets["affine"](source, self.style),
                self.grid_size,
                [d["affine"] for d in self.damped],
            )
            residual = residual.reshape(-1, 2, 3)
            theta = residual if theta is None else compose_thetas(theta, residual)
        return theta

    def tps(self, theta):
        """(B, 2 K^2) after the TPS passes on the content warped by ``theta``."""
        import torch

        grid_size, tps = self.grid_size, None
        for _ in range(self.counts["tps"]):
            source = (
                self.content
                if theta is None and tps is None
                else _warp_tensor(self.content, theta, tps, grid_size)
            )
            residual = _damp_rows(
                "tps",
                self.nets["tps"](source, self.style),
                grid_size,
                [d["tps"] for d in self.damped],
            )
            if tps is None:
                tps = residual
            else:  # two TPS compose into one only by a fit, pair by pair
                composed = torch.stack(
                    [
                        compose_tps(outer, inner, grid_size)
                        for outer, inner in zip(tps, residual, strict=True)
                    ]
                )
                tps = damp_folding_rows("tps", composed, grid_size)[0]
        return tps

    def model_form(self, theta, tps):
        """``(theta, tps)`` as ``model`` answers: a TPS model folds an affine into its TPS
        (an affine after a TPS is a TPS, exactly)."""
        import torch

        if self.model == "tps" and theta is not None:
            return None, torch.stack(
                [
                    fold_affine_into_tps(t, p, self.grid_size)
                    for t, p in zip(theta, tps, strict=True)
                ]
            )
        return theta, tps

    def __call__(self, theta):
        """``(theta, tps)`` in the model's form, the networks run from ``theta`` (None or
        (B, 2, 3))."""
        if "affine" in self.nets:
            theta = self.affine(theta)
        return self.model_form(theta, self.tps(theta) if "tps" in self.nets else None)

    def starts(self, init: str, hints=None) -> dict:
        """``{name: (theta, tps)}`` of every start in ``START_NAMES`` that ``init`` allows
        (``hints``: see ``_initial_thetas``)."""
        starts = {"identity": self(None)}
        searched = _initial_thetas(self.content, self.style, init, hints)
        if searched is not None:
            starts["search"] = self(searched)
            # the search alone, in the model's own form (an identity TPS where it has one)
            identity_tps = (
                None
                if "tps" not in self.nets
                else identity_params("tps", self.grid_size).to(searched).repeat(len(searched), 1)
            )
            starts["search only"] = self.model_form(searched, identity_tps)
        return starts


def refine_steps(model: str, iterations: int | None, levels: int | None = None) -> int:
    """Adam steps ``_refine`` takes per pair for ``model`` (for progress reports): the affine
    alone moves for "affine", the TPS otherwise; ``levels``: the objective's taps (one level
    each, coarse to fine; default: those of the trunk the refinement uses, ``_objective_trunk``)."""
    default = REFINE["affine_iterations"] if model == "affine" else REFINE["tps_iterations"]
    if levels is None:
        semantic = search_descriptor() == "efficientnet"  # its weights are installed
        levels = len(SEMANTIC_REFINE_TAPS if semantic else _FeatureObjective.taps)
    return levels * (iterations or default)


def _refine(objective, theta, tps, iterations: int | None, tick=None):
    """``(theta, tps, (start, end))``: the refinement of one pair's estimate on ``objective``
    (a ``_FeatureObjective``), kept only when it ends ``REFINE["margin"]`` below its start.
    ``tick``: called after every Adam step (see ``_optimise``)."""
    import torch

    objective.trust_weight = REFINE["trust_weight"]
    if objective.hints is not None:
        objective.trust_weight *= HINT_TRUST_FACTOR
    objective.layout_weight = REFINE["layout_weight"]
    objective.set_anchor(theta, tps)
    with torch.no_grad():
        start_value = float(objective(theta, tps))
    candidates = [(start_value, theta, tps)]
    with torch.enable_grad():
        if tps is None:
            theta, _, value = _optimise(
                objective,
                theta,
                tps,
                "affine",
                iterations or REFINE["affine_iterations"],
                REFINE["affine_lr"],
                tick,
            )
        else:
            # only the TPS moves: it holds an affine part of its own, and moving the
            # affine under it as well did worse on the tuning split, in more time
            theta, tps, value = _optimise(
                objective,
                theta,
                tps,
                "tps",
                iterations or REFINE["tps_iterations"],
                REFINE["tps_lr"],
                tick,
            )
        candidates.append((value, theta, tps))
    best_value, theta, tps = min(candidates, key=lambda c: c[0])
    if best_value > start_value - REFINE["margin"]:
        best_value, theta, tps = candidates[0]
    return theta, tps, (start_value, best_value)


class _ProgressReport:
    """Calls ``progress(done, total, stage)`` (when given): one unit for the search and the
    networks, then one per refinement step over all pairs."""

    def __init__(self, progress):
        self.progress, self.done, self.total = progress, 0, 1

    def _send(self, stage: str) -> None:
        if self.progress is not None:
            self.progress(self.done, self.total, stage)

    def begin(self) -> None:
        self._send("search and networks")

    def networks_done(self) -> None:
        self.done = 1
        self._send("done" if self.done >= self.total else "networks done")

    def plan_refine(self, pairs: int, steps_per_pair: int) -> None:
        self.total = 1 + pairs * steps_per_pair

    def tick(self) -> None:
        self.done = min(self.done + 1, self.total)
        self._send("done" if self.done >= self.total else "refining")


def _as_numpy(params):
    return None if params is None else params.detach().cpu().numpy().astype(np.float64)


def estimate_parameters_batch(
    contents,
    styles,
    model: str = "affine+tps",
    method: str = "network",
    device=None,
    trunk: str = "auto",
    checkpoint=None,
    passes=None,
    refine_iterations: int | None = None,
    init: str = "search",
    progress=None,
    hints=None,
) -> list[WarpParameters]:
    """``WarpParameters`` of each pair ``(contents[i], styles[i])``, the networks run on all
    pairs at once: every network pass is one forward of the whole batch.

    ``contents``/``styles``: sequences of (1, 3, H, W) RGB tensors in 0..1 on ``device``, of
    any sizes (each is resized to the networks' input). The global search and the refinement
    run pair by pair. ``progress(done, total, stage)``: see ``estimate_warp``. ``hints``: None
    or one ``core.hints.Hints`` (or None) per pair (``hints.check_hints``). Other arguments as
    ``estimate_parameters``.
    """
    import torch

    from .geonet import resolve_trunk

    report = _ProgressReport(progress)
    trunk = resolve_trunk(trunk)
    if len(contents) != len(styles) or not len(contents):
        raise ValueError(
            f"need as many styles as contents, at least one; got {len(contents)} "
            f"contents and {len(styles)} styles."
        )
    counts = stage_passes(model, passes)
    nets = _load_networks(model, trunk, checkpoint, device)
    if method == "refine":
        objective_trunk, taps = _objective_trunk(nets, trunk, device)
        report.plan_refine(len(contents), refine_steps(model, refine_iterations, len(taps)))
    report.begin()
    first = next(iter(nets.values()))
    content_in = torch.cat([first.prepare(c) for c in contents])
    style_in = torch.cat([first.prepare(s) for s in styles])
    stages = _NetworkStages(nets, counts, model, content_in, style_in)
    grid_size = stages.grid_size
    hints = list(hints) if hints is not None else [None] * len(contents)
    if len(hints) != len(contents):
        raise ValueError(f"hints: one entry (or None) per pair; got {len(hints)} for "
                         f"{len(contents)} pairs.")  # fmt: skip
    with torch.no_grad():
        thetas, tpss, names, judges = _best_layout(
            stages.starts(init, hints), content_in, style_in, grid_size, model, hints
        )
    report.networks_done()
    from .confidence import estimate_confidence

    results = []
    for i, (damped, name) in enumerate(zip(stages.damped, names, strict=True)):
        theta = None if thetas is None else thetas[i]
        tps = None if tpss is None else tpss[i]
        objective = None
        if method == "refine":
            feature_objective = _FeatureObjective(
                objective_trunk, content_in[i : i + 1], style_in[i : i + 1], grid_size, taps
            )
            if hints[i] is not None:
                feature_objective.set_hints(hints[i])
            theta, tps, objective = _refine(
                feature_objective, theta, tps, refine_iterations, report.tick
            )
        params = WarpParameters(
            _as_numpy(theta), _as_numpy(tps), grid_size, damped, name, objective, judges[i]
        )
        params.confidence, params.confidence_features = estimate_confidence(
            params, hinted=hints[i] is not None
        )
        results.append(params)
    return results


def estimate_parameters(
    content,
    style,
    model: str = "affine+tps",
    method: str = "network",
    device=None,
    trunk: str = "auto",
    checkpoint=None,
    passes=None,
    refine_iterations: int | None = None,
    init: str = "search",
    progress=None,
    hints=None,
) -> WarpParameters:
    """Normalised parameters of one pair, as ``WarpParameters``.

    ``content``/``style`` are (1, 3, H, W) RGB tensors in 0..1 on ``device``. ``passes``:
    network passes per stage (see ``estimate_warp``); ``refine_iterations``: Adam steps of the
    refinement (None = ``REFINE``'s); ``progress``: see ``estimate_warp``; ``hints``: None or a
    ``core.hints.Hints`` of the pair.
    """
    return estimate_parameters_batch(
        [content],
        [style],
        model,
        method,
        device,
        trunk,
        checkpoint,
        passes,
        refine_iterations,
        init,
        progress,
        None if hints is None else [hints],
    )[0]


def _transform_from_parameters(params: WarpParameters, shape: tuple, strength: float, hints=None):
    """The landmark transform (content pixels, output frame ``shape``) of ``params``, made to
    honour ``hints`` (``core.hints.honour_hints``) when given, with the estimate's
    ``confidence`` as an attribute."""
    from .transforms import (
        ComposedTransform,
        affine_from_theta,
        tps_from_grid_params,
        with_strength,
    )

    parts = []
    if params.theta is not None:
        parts.append(affine_from_theta(params.theta, shape, shape))
    if params.tps is not None:
        parts.append(tps_from_grid_params(params.tps, shape, shape, params.grid_size))
    full = parts[0] if len(parts) == 1 else ComposedTransform(parts)
    if hints is not None:
        from .hints import honour_hints

        full = honour_hints(full, hints, shape)
    full = with_strength(full, strength)
    full.confidence = params.confidence
    full.confidence_features = params.confidence_features
    return full


def estimate_warp(
    content: ArrayLike,
    geometry_style: ArrayLike,
    model: str = "affine+tps",
    method: str = "network",
    device: str | torch.device | None = None,
    trunk: str = "auto",
    checkpoint: str | os.PathLike[str] | Mapping[str, str | os.PathLike[str]] | None = None,
    passes: int | Mapping[str, int] | None = None,
    strength: float = 1.0,
    init: str = "search",
    progress: Callable[[int, int, str], object] | None = None,
    hints: tuple[ArrayLike, ArrayLike] | None = None,
) -> Transform:
    """Transform (content -> output, CONTENT PIXEL coordinates, output frame = content's (H, W))
    that gives ``content`` the geometry of ``geometry_style``.

    For many pairs, ``estimate_warps`` runs the networks on several pairs per forward.

    Parameters
    ----------
    content, geometry_style : array_like
        2D images of any size/aspect (>= 32 px), gray/RGB/RGBA, uint8/uint16/float.
    model : {"affine", "tps", "affine+tps"}, default "affine+tps"
        The transform to estimate.
    method : {"network", "refine"}, default "network"
        The networks alone, or the networks followed by an optimisation.
    device : str or torch.device, optional
        ``None``/``"auto"`` picks cuda > mps > cpu.
    trunk : str, default "auto"
        "auto" (``geonet.resolve_trunk``: the shipped networks) | "embedded" (shipped) |
        "efficientnet" or "vgg19" (frozen ImageNet trunks; need a checkpoint trained on them
        unless one ships).
    checkpoint : path or dict, optional
        A path (single model) or ``{"affine": path, "tps": path}``; None = shipped.
    passes : int or dict, optional
        Network passes per stage, an int for every stage or ``{"affine": n, "tps": m}``
        (1..8); None = ``DEFAULT_PASSES[model]``, chosen on a tuning split of training images.
    strength : float, default 1.0
        0 (the identity: the content comes back unchanged) .. 1 (the full warp), see
        ``transforms.with_strength``.
    init : str, default "search"
        Where the networks start: "search" (the similarity found by a global search over
        rotations, scales and shifts, ``core/matching.py``, on the ImageNet EfficientNet-Lite0
        features installed with the package; it lets the content be another object in another
        pose), "search-edges" (that search on edge layouts), "identity", or, with the ImageNet
        VGG-19 weights, "search-vgg19" (the same search on VGG-19 conv4 features) or
        "matches-vgg19" (an affine fitted robustly to those features' mutual nearest
        neighbours).
    progress : callable, optional
        ``progress(done, total, stage)`` called as the work advances (``stage`` "search and
        networks", then "refining" once per refinement step, "done" at the end). An exception
        it raises stops the estimate there and propagates: that is how a caller cancels.
    hints : tuple of array_like, optional
        ``(content_points, style_points)``, two (K, 2) arrays of ``(row, col)`` pixels of each
        image (K >= 1), points the user asserts correspond (``core/hints.py``). They restrict
        the search to poses that honour them and hold the refinement to them, and the result
        honours them: a TPS model maps each content hint onto its style hint exactly (the style
        hint in the output frame: the same normalised position in the content's (H, W)), the
        affine to least squares.

    Returns
    -------
    Transform
        Content -> output in content pixel coordinates. It carries ``confidence``: the
        estimated probability, 0..1, that the warp is right (``core/confidence.py``); low values
        say the shapes may not match (add a hint).

    Raises
    ------
    ValueError
        If an option, image or ``strength`` is invalid, or the hints are bad (before any work).
    """
    import torch

    from .devices import resolve_device
    from .images import rgb_tensor
    from .transforms import check_strength

    check_options(model, method, trunk, init)
    stage_passes(model, passes)  # a bad value fails before any work
    strength = check_strength(strength)
    device = resolve_device(device)
    content_t = rgb_tensor(content, device, "content", MIN_SIZE)
    style_t = rgb_tensor(geometry_style, device, "geometry_style", MIN_SIZE)
    shape = tuple(content_t.shape[-2:])
    hints = check_hints(hints, shape, tuple(style_t.shape[-2:]))
    with torch.inference_mode(False):
        params = estimate_parameters(
            content_t, style_t, model, method, device, trunk, checkpoint, passes=passes,
            init=init, progress=progress, hints=hints,
        )  # fmt: skip
    return _transform_from_parameters(params, shape, strength, hints)


def _check_batch_size(batch_size) -> int:
    if batch_size is None:
        return DEFAULT_BATCH_SIZE
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or (batch_size < 1)
    ):
        raise ValueError(f"batch_size must be a positive integer or None; got {batch_size!r}.")
    return int(batch_size)


def _image_list(images, name: str) -> list:
    """``images`` (a sequence of images, or an (N, H, W[, C]) array) as a list."""
    if isinstance(images, np.ndarray) and images.ndim < 3:
        raise ValueError(
            f"{name} must be a sequence of images (or an (N, H, W[, C]) array); "
            f"got an array of shape {images.shape}."
        )
    try:
        return list(images)
    except TypeError:
        raise ValueError(
            f"{name} must be a sequence of images; got {type(images).__name__}."
        ) from None


def estimate_warps(
    contents: Sequence[ArrayLike] | np.ndarray,
    geometry_styles: Sequence[ArrayLike] | np.ndarray,
    model: str = "affine+tps",
    method: str = "network",
    device: str | torch.device | None = None,
    trunk: str = "auto",
    checkpoint: str | os.PathLike[str] | Mapping[str, str | os.PathLike[str]] | None = None,
    passes: int | Mapping[str, int] | None = None,
    strength: float = 1.0,
    init: str = "search",
    batch_size: int | None = None,
    hints: Sequence[tuple[ArrayLike, ArrayLike] | None] | None = None,
) -> list[Transform]:
    """``estimate_warp`` of every pair ``(contents[i], geometry_styles[i])``, one transform per
    pair (each in its content's pixels), with the networks run on ``batch_size`` pairs per
    forward pass (None: ``DEFAULT_BATCH_SIZE``).

    The results equal ``estimate_warp``'s pair by pair (to float rounding); the pairs may have
    different sizes. Batching pays on a GPU, where one forward of many pairs costs about as
    much as one of a single pair; the global search and ``method="refine"``'s optimisation
    still run pair by pair. Images are converted one batch at a time, so memory stays bounded
    by ``batch_size``.

    Parameters
    ----------
    contents, geometry_styles : sequence of array_like
        The pairs' images (or ``(N, H, W[, C])`` arrays), paired one to one.
    model, method, device, trunk, checkpoint, passes, strength, init
        As :func:`estimate_warp`.
    batch_size : int, optional
        Pairs per forward pass (a positive integer); None: ``DEFAULT_BATCH_SIZE``.
    hints : sequence, optional
        None, or one entry per pair, each None or that pair's ``(content_points,
        style_points)`` (see ``estimate_warp``).

    Returns
    -------
    list of Transform
        One transform per pair, each in its content's pixels, with ``confidence``.

    Raises
    ------
    ValueError
        If the lists do not pair up, are empty, ``batch_size`` or ``hints`` do not fit, or an
        option or image is invalid.
    """
    import torch

    from .devices import resolve_device
    from .images import rgb_tensor
    from .transforms import check_strength

    contents = _image_list(contents, "contents")
    styles = _image_list(geometry_styles, "geometry_styles")
    if len(contents) != len(styles):
        raise ValueError(
            f"contents and geometry_styles must pair up one to one; got "
            f"{len(contents)} contents and {len(styles)} geometry styles."
        )
    if not contents:
        raise ValueError("contents and geometry_styles are empty: give at least one pair.")
    check_options(model, method, trunk, init)
    stage_passes(model, passes)  # a bad value fails before any work
    strength = check_strength(strength)
    batch_size = _check_batch_size(batch_size)
    if hints is not None:
        hints = list(hints)
        if len(hints) != len(contents):
            raise ValueError(
                f"hints: one entry (None or (content_points, style_points)) per pair; got "
                f"{len(hints)} for {len(contents)} pairs."
            )
        hints = [
            check_hints(h, np.shape(contents[i])[:2], np.shape(styles[i])[:2])
            for i, h in enumerate(hints)
        ]
    else:
        hints = [None] * len(contents)
    device = resolve_device(device)
    transforms = []
    for start in range(0, len(contents), batch_size):
        indices = range(start, min(start + batch_size, len(contents)))
        content_t = [rgb_tensor(contents[i], device, f"contents[{i}]", MIN_SIZE) for i in indices]
        style_t = [
            rgb_tensor(styles[i], device, f"geometry_styles[{i}]", MIN_SIZE) for i in indices
        ]
        with torch.inference_mode(False):
            params = estimate_parameters_batch(
                content_t,
                style_t,
                model,
                method,
                device,
                trunk,
                checkpoint,
                passes=passes,
                init=init,
                hints=[hints[i] for i in indices],
            )
        transforms.extend(
            _transform_from_parameters(p, tuple(c.shape[-2:]), strength, hints[i])
            for p, c, i in zip(params, content_t, indices, strict=True)
        )
    return transforms
