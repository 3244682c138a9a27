"""The feature refinement of ``method="refine"``: from the networks' estimate, the parameters
are optimised directly so that the features of the warped content match the style's
(``FeatureObjective``), with a trust region around the networks' estimate and fold barriers.
The best parameters on that objective are kept, and only when they beat the start by
``REFINE["margin"]``, so the refinement never ends worse than the networks' estimate on its own
objective (``refine_pair``). Hints (``core.hints``) are kept as a penalty on their residual.
"""

from __future__ import annotations

from typing import TypedDict

from .estimate_network import search_descriptor, warp_tensor
from .warp_params import lattice_xy, sample_map, theta_determinant, tps_min_determinant, tps_spline

# Hints (``core.hints``): the weight on the mean squared hint residual (normalised units: a
# residual of 0.02, 1 % of the side, costs 0.04, about what a few percent of feature agreement
# is worth)
HINT_WEIGHT = 100.0
# and the refinement's trust region, times ``REFINE["trust_weight"]``, when hints pinned the pose:
# across different faces the features' optimum lies off the true shape, and a pinned pose is
# the better start to stay near (one face pair, two clicks, PCK@0.1: the pose 0.30, refined
# with the usual trust region 0.04, with ten times it 0.13)
HINT_TRUST_FACTOR = 10.0


class RefineSettings(TypedDict):
    """The keys of ``REFINE`` and their types."""

    trust_weight: float
    affine_iterations: int
    affine_lr: float
    tps_iterations: int
    tps_lr: float
    margin: float
    layout_weight: float


# Refinement settings, chosen on the tuning split (MODEL_CARD.md). ``margin``: how much lower
# the objective must end than it started for the refined parameters to replace the network's.
REFINE: RefineSettings = {
    "trust_weight": 1.0,
    "affine_iterations": 40,
    "affine_lr": 0.01,
    "tps_iterations": 40,
    "tps_lr": 0.02,
    "margin": 0.0,
    "layout_weight": 1.0,
}


# the taps the refinement matches on the ImageNet EfficientNet-Lite0 trunk, coarse to fine (one
# level each: the first alone, then adding the next). s8 alone, 40 steps, against s8 then
# s8 + s16, 25 steps each: same-image error on the tuning split (training photos) affine+tps
# 3.02 -> 2.96 %, affine 0.75 -> 0.73 %; held out 3.69 -> 3.60 %, 1.98 -> 1.94 %; face pairs
# PCK@0.1 0.497 -> 0.508, 0.485 -> 0.499 (with the TPS lattice above); a fifth fewer steps,
# each about 40 % cheaper (MODEL_CARD.md). Earlier, from the full search's start: s16 alone 0.526, s8 + s16 0.563.
SEMANTIC_REFINE_TAPS = ("s8",)


def objective_trunk(nets: dict, trunk: str, device) -> tuple:
    """``(trunk, taps)`` whose features the refinement matches: the ImageNet EfficientNet-Lite0
    (``efficientnet``) when installed and the networks do not run on VGG-19, as its features
    say what a part is across different objects (same-image held-out error with it: affine
    2.22 -> 1.65 %, affine+tps 3.20 -> 3.65 %, MODEL_CARD.md); else the TPS network's
    trunk (see ``FeatureObjective``), the shipped one when only an affine network is in use,
    the affine network's own when no TPS network exists for ``trunk``."""
    from .geonet import load_geometry_model, shipped_checkpoint_path

    if trunk != "vgg19":
        from .efficientnet import build_efficientnet

        semantic = build_efficientnet("auto", device)
        if semantic is not None:
            return semantic, SEMANTIC_REFINE_TAPS
    if "tps" in nets:
        return nets["tps"].trunk, FeatureObjective.taps
    if shipped_checkpoint_path("tps", trunk).is_file():
        return load_geometry_model("tps", trunk, None, device).trunk, FeatureObjective.taps
    return nets["affine"].trunk, FeatureObjective.taps


class FeatureObjective:
    """Feature alignment objective of the refinement (see the module docstring).

    The content IMAGE is warped (mirror padding, as the training pairs) and goes through a
    trunk (``objective_trunk``: the ImageNet EfficientNet-Lite0 when installed, else the TPS
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
        # (style (1, K, 2), content (1, K, 2)) normalised: ``set_hints``
        self.hints: tuple | None = None
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
        warped = warp_tensor(self.content, theta, tps, self.grid_size, spline)
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


def optimise(objective, theta, tps, which: str, iterations: int, lr: float, tick=None):
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


def refine_steps(model: str, iterations: int | None, levels: int | None = None) -> int:
    """Adam steps ``refine_pair`` takes per pair for ``model`` (for progress reports): the affine
    alone moves for "affine", the TPS otherwise; ``levels``: the objective's taps (one level
    each, coarse to fine; default: those of the trunk the refinement uses, ``objective_trunk``)."""
    default = REFINE["affine_iterations"] if model == "affine" else REFINE["tps_iterations"]
    if levels is None:
        semantic = search_descriptor() == "efficientnet"  # its weights are installed
        levels = len(SEMANTIC_REFINE_TAPS if semantic else FeatureObjective.taps)
    return levels * (iterations or default)


def refine_pair(objective, theta, tps, iterations: int | None, tick=None):
    """``(theta, tps, (start, end))``: the refinement of one pair's estimate on ``objective``
    (a ``FeatureObjective``), kept only when it ends ``REFINE["margin"]`` below its start.
    ``tick``: called after every Adam step (see ``optimise``)."""
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
            theta, _, value = optimise(
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
            theta, tps, value = optimise(
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
