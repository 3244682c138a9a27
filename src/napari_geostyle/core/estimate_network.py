"""The geometry networks' part of the estimate: their passes on a batch of pairs, the damping
of folds, the starts they run from and the choice among those starts.

- ``NetworkStages`` runs each stage's network ``passes`` times on a batch of prepared pairs
  (B, 3, S, S) (CNNGeometric's iterative use): a pass sees the content warped by the estimate
  so far and predicts the residual, composed into the stage's one transform (exactly for the
  affine; for the TPS, the least-squares TPS of the composition).
- A prediction that folds the image (Jacobian determinant <= ``FOLD_MARGIN`` somewhere) is
  damped: moved toward the identity until it does not fold (``damp_folding_rows``).
- ``NetworkStages.starts`` runs the networks from every start ``init`` allows (``START_NAMES``:
  the identity, the global search of ``core/matching.py``, the search alone), and
  ``best_layout`` keeps, pair by pair, the one whose warped content the judge
  (``judge_scores``) finds closest to the style.
- ``warp_tensor`` warps a batch by network parameters (``sample_grid``: a TPS evaluated on a
  lattice), differentiably, for the passes, the judge and the refinement (``core/refine.py``).
"""

from __future__ import annotations

import math
from typing import Any

from .geometry_options import DEFAULT_PASSES, checkpoint_for
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
)

FOLD_MARGIN = 0.02  # smallest Jacobian determinant (area ratio) accepted as "not folding"
_DAMPING = (1.0, 0.8, 0.6, 0.4, 0.2, 0.1, 0.0)
# Hints (``core.hints``): the judge's penalty per unit of RMS hint residual (a candidate that
# moves the hints by 0.02 needs 0.02 more feature similarity to be kept)
HINT_JUDGE_WEIGHT = 1.0


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
# smaller than TPS_LATTICE_MIN_SIDE are evaluated exactly. The lattice is ``core.lattice``'s
# (``lattice_counts``, ``upsample_lattice``); the live warp's full-size warps do the same on
# transforms in pixels, with an error check (``lattice.LatticeSampleMap``); this one stays
# differentiable in the parameters, for the refinement.
TPS_LATTICE_STEP = 4
TPS_LATTICE_MIN_SIDE = 128


def sample_grid(batch: int, h: int, w: int, theta, tps, grid_size: int, spline, device):
    """(B, H, W, 2) ``theta(tps(p))`` at the centres of an H x W output (see above)."""
    import torch

    from .images import pixel_to_normalized
    from .lattice import lattice_counts, upsample_lattice

    if tps is None or min(h, w) < TPS_LATTICE_MIN_SIDE:
        centres = output_centres(batch, h, w, device=device)
        return sample_map(centres, theta, tps, grid_size, spline).reshape(batch, h, w, 2)
    # the first and last pixel centres, in the normalised (x, y) the sample map takes
    (x0, y0), (x1, y1) = pixel_to_normalized([[0, 0], [h - 1, w - 1]], (h, w)).tolist()
    rows, cols = lattice_counts((h, w), TPS_LATTICE_STEP)
    ys = torch.linspace(y0, y1, rows, device=device)
    xs = torch.linspace(x0, x1, cols, device=device)
    lattice = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).reshape(1, -1, 2)
    coarse = sample_map(lattice.expand(batch, -1, -1), theta, tps, grid_size, spline)
    coarse = coarse.reshape(batch, rows, cols, 2).permute(0, 3, 1, 2)
    return upsample_lattice(coarse, (h, w)).permute(0, 2, 3, 1)


def warp_tensor(image, theta, tps, grid_size: int, spline=None):
    """Warp a (B, C, H, W) tensor by theta(tps(p)), mirror padding (as the training pairs).

    ``theta``: (B, 2, 3) or None; ``tps``: (B, 2 K^2) or None (one (2, 3) / (2 K^2,) when B
    is 1), each row warping its own image.
    """
    import torch.nn.functional as F

    from .images import ALIGN_CORNERS

    batch, _, h, w = image.shape
    grid = sample_grid(batch, h, w, theta, tps, grid_size, spline, image.device)
    return F.grid_sample(
        image,
        grid.to(image.dtype),
        mode="bilinear",
        padding_mode="reflection",
        align_corners=ALIGN_CORNERS,
    )


# --------------------------------------------------------------------------- starts
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


def initial_thetas(content, style, init: str, hints=None):
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
    """(N,) how well each warped content lines up with its style, for ``best_layout``
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


def best_layout(
    candidates: dict[str, tuple[Any, Any]], content, style, grid_size: int, model: str, hints=None
):
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
    warped = [warp_tensor(content, *candidates[n], grid_size) for n in names]
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


# --------------------------------------------------------------------------- network stages
def load_networks(model: str, trunk: str, checkpoint, device) -> dict:
    """``{"affine": net, "tps": net}``, the networks ``model`` uses (cached by ``geonet``)."""
    from .geonet import load_geometry_model

    return {
        kind: load_geometry_model(kind, trunk, checkpoint_for(kind, model, checkpoint), device)
        for kind in DEFAULT_PASSES[model]
    }  # its stages, in order


def _damp_rows(kind: str, params, grid_size: int, damped: list):
    """``damp_folding_rows`` of ``params`` (B, P); each row's factor is appended to
    ``damped[row]``."""
    rows, factors = damp_folding_rows(kind, params, grid_size)
    for record, factor in zip(damped, factors, strict=True):
        record.append(factor)
    return rows


class NetworkStages:
    """The network passes of ``model`` on a batch of prepared pairs (B, 3, S, S): every pass
    runs the network once for the whole batch. ``damped[i]`` collects pair i's damping."""

    def __init__(self, nets: dict, counts: dict, model: str, content, style):
        self.nets, self.counts, self.model = nets, counts, model
        self.content, self.style = content, style
        self.grid_size = nets["tps"].grid_size if "tps" in nets else 3
        self.damped: list[dict[str, list]] = [
            {"affine": [], "tps": []} for _ in range(content.shape[0])
        ]

    def affine(self, theta):
        """(B, 2, 3) after the affine passes from ``theta`` (None: the identity)."""
        for _ in range(self.counts["affine"]):
            # each pass sees the content warped by the estimate so far (CNNGeometric's
            # iterative use) and predicts the residual, composed on the output side
            source = (
                self.content
                if theta is None
                else warp_tensor(self.content, theta, None, self.grid_size)
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
                else warp_tensor(self.content, theta, tps, grid_size)
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
        (``hints``: see ``initial_thetas``)."""
        starts = {"identity": self(None)}
        searched = initial_thetas(self.content, self.style, init, hints)
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
