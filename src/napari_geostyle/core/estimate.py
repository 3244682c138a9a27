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
"""

from __future__ import annotations

import numpy as np

MODELS = ("affine", "tps", "affine+tps")
METHODS = ("network", "refine")
# where the network stages start: "search" = the similarity that best aligns the two images'
# edge layouts (core/matching.py), found by exhaustive search; "identity" = no warp
# ("search-vgg19": the same search on ImageNet VGG-19 conv4 features, as the paper's geometry
# stage; it needs the weights, see ``napari-geostyle weights``)
INITS = ("search", "identity", "search-vgg19")
MIN_SIZE = 32
FOLD_MARGIN = 0.02  # smallest Jacobian determinant (area ratio) accepted as "not folding"
_DAMPING = (1.0, 0.8, 0.6, 0.4, 0.2, 0.1, 0.0)
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
# Refinement settings, chosen on the tuning split (MODEL_CARD.md). ``margin``: how much lower
# the objective must end than it started for the refined parameters to replace the network's.
REFINE = {"trust_weight": 1.0, "affine_iterations": 25, "affine_lr": 0.01,
          "tps_iterations": 25, "tps_lr": 0.02, "margin": 0.0, "layout_weight": 1.0}


def check_options(model: str, method: str, trunk: str, init: str = "search") -> None:
    """``ValueError`` naming the accepted values for an unknown model / method / trunk."""
    from .geonet import TRUNKS

    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}: model must be one of {', '.join(MODELS)}.")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: method must be one of {', '.join(METHODS)}.")
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}: init must be one of {', '.join(INITS)}.")
    if trunk not in TRUNKS:
        raise ValueError(f"unknown trunk {trunk!r}: trunk must be one of {', '.join(TRUNKS)}.")


def _checkpoint_for(kind: str, model: str, checkpoint):
    """The checkpoint path for network ``kind`` out of the user's ``checkpoint`` argument."""
    if checkpoint is None:
        return None
    if isinstance(checkpoint, dict):
        unknown = set(checkpoint) - {"affine", "tps"}
        if unknown:
            raise ValueError(f"checkpoint keys must be 'affine' and/or 'tps'; got {sorted(unknown)}.")
        return checkpoint.get(kind)
    if model == "affine+tps":
        raise ValueError(
            "model 'affine+tps' uses two networks: pass checkpoint={'affine': path, 'tps': path} "
            "(or leave it None for the shipped ones)."
        )
    return checkpoint


# --------------------------------------------------------------------------- parameter helpers
def _affine_min_det(theta):
    """Determinant of each theta's linear part, (B,)."""
    return theta[:, 0, 0] * theta[:, 1, 1] - theta[:, 0, 1] * theta[:, 1, 0]


def _tps_spline(params, grid_size: int):
    """``(control, coefficients)`` of grid-param TPS sample maps ``params`` (B, 2K^2)."""
    import torch

    from .images import regular_grid_xy
    from .transforms import tps_solve

    batch, count = params.shape[0], grid_size * grid_size
    control = torch.as_tensor(regular_grid_xy(grid_size), dtype=params.dtype,
                              device=params.device)[None].expand(batch, count, 2)
    values = torch.stack([params[:, :count], params[:, count:]], 2)
    return control, tps_solve(control, values)


def _tps_min_det(params, grid_size: int, samples: int = 24, spline=None):
    """Smallest Jacobian determinant of grid-param TPS sample maps over the output, (B,)."""
    import torch

    from .images import regular_grid_xy
    from .transforms import tps_jacobian

    control, coefficients = spline or _tps_spline(params, grid_size)
    points = torch.as_tensor(regular_grid_xy(samples), dtype=params.dtype, device=params.device)
    jac = tps_jacobian(points[None].expand(params.shape[0], -1, 2), control, coefficients)
    det = jac[..., 0, 0] * jac[..., 1, 1] - jac[..., 0, 1] * jac[..., 1, 0]
    return det.amin(1)


def damp_folding(kind: str, params, grid_size: int = 3):
    """``(params, factor)``: ``params`` (P,) shrunk toward the identity until it does not fold.

    ``factor`` is 1.0 when the prediction was fine, smaller when it was damped.
    """
    import torch

    from .geonet import identity_parameters

    identity = identity_parameters(kind, grid_size).to(params)
    factors = torch.tensor(_DAMPING, dtype=params.dtype, device=params.device)
    candidates = identity[None] + factors[:, None] * (params[None] - identity[None])
    if kind == "affine":
        det = _affine_min_det(candidates.reshape(-1, 2, 3))
    else:
        det = _tps_min_det(candidates, grid_size)
    ok = (det > FOLD_MARGIN).nonzero()
    index = int(ok[0, 0]) if len(ok) else len(_DAMPING) - 1
    return candidates[index], float(factors[index])


def _centres(height: int, width: int, device):
    import torch
    import torch.nn.functional as F

    from .images import ALIGN_CORNERS

    identity = torch.eye(2, 3, device=device)[None]
    return F.affine_grid(identity, [1, 1, height, width], align_corners=ALIGN_CORNERS)


def _sample_map(theta, tps, points, grid_size: int, spline=None):
    """A(T(p)) for (1, M, 2) normalised output points; ``theta``/``tps`` None = identity.

    ``spline``: ``_tps_spline(tps[None])`` when already computed.
    """
    from .transforms import affine_sample_points, tps_evaluate

    if tps is not None:
        control, coefficients = spline or _tps_spline(tps[None], grid_size)
        points = tps_evaluate(points, control, coefficients)
    if theta is not None:
        points = affine_sample_points(theta.reshape(1, 2, 3), points)
    return points


def _warp_tensor(image, theta, tps, grid_size: int, spline=None):
    """Warp a (1, C, H, W) tensor by A(T(p)), mirror padding (as the training pairs)."""
    import torch.nn.functional as F

    from .images import ALIGN_CORNERS

    _, _, h, w = image.shape
    grid = _sample_map(theta, tps, _centres(h, w, image.device).reshape(1, h * w, 2), grid_size,
                       spline)
    return F.grid_sample(image, grid.reshape(1, h, w, 2).to(image.dtype), mode="bilinear",
                         padding_mode="reflection", align_corners=ALIGN_CORNERS)


# --------------------------------------------------------------------------- refinement
class _FeatureObjective:
    """Feature alignment objective of the refinement (see the module docstring).

    The content IMAGE is warped (mirror padding, as the training pairs) and goes through the
    TPS network's trunk; the objective is the mean over locations of ``1 - cos`` between its
    stride-16 features and the style's. Features of the warped image, not warped features:
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

    def __init__(self, trunk, content, style, grid_size: int):
        import torch

        from .geonet import _classes
        from .images import regular_grid_xy

        self.normalize = _classes()["l2_normalize"]
        self.trunk, self.content, self.grid_size = trunk, content, grid_size
        self.style_image = style
        with torch.no_grad():
            self.style = {t: self.normalize(f.float())
                          for t, f in trunk(style, taps=self.taps).items()}
        self.lattice = torch.as_tensor(regular_grid_xy(5), dtype=torch.float32,
                                       device=content.device)[None]
        self.anchor = None

    def set_anchor(self, theta, tps):
        """The network's estimate, which the trust region keeps the refinement near."""
        import torch

        with torch.no_grad():
            self.anchor = _sample_map(theta, tps, self.lattice, self.grid_size)

    def __call__(self, theta, tps, taps=None):
        import torch

        total = 0.0
        taps = taps or self.taps
        spline = None if tps is None else _tps_spline(tps[None], self.grid_size)
        warped = _warp_tensor(self.content, theta, tps, self.grid_size, spline)
        features = self.trunk(warped, taps=taps)
        for tap in taps:
            cos = (self.normalize(features[tap].float()) * self.style[tap]).sum(1)
            total = total + (1.0 - cos).mean()
        if self.layout_weight:
            from .matching import layout_similarity

            total = total + self.layout_weight * (
                1.0 - layout_similarity(warped, self.style_image)).sum()
        if tps is not None:
            # no bending penalty: one toward the identity pulls the TPS off the network's estimate
            # (the tuning split's refine error fell from 6.90% to 5.70% without it); the trust
            # region already keeps the refinement near that estimate, the barrier keeps it unfolded
            det = _tps_min_det(tps[None], self.grid_size, samples=10, spline=spline)
            total = total + self.fold_weight * torch.relu(0.1 - det).pow(2).sum()
        if theta is not None:
            det = _affine_min_det(theta.reshape(1, 2, 3))
            total = total + self.fold_weight * torch.relu(0.1 - det).pow(2).sum()
        if self.anchor is not None:
            moved = _sample_map(theta, tps, self.lattice, self.grid_size, spline) - self.anchor
            total = total + self.trust_weight * moved.pow(2).sum(-1).mean()
        return total


def _optimise(objective, theta, tps, which: str, iterations: int, lr: float):
    """Adam on ``which`` ("affine" | "tps") coarse to fine; returns the best (theta, tps, value)."""
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
        with torch.no_grad():
            value = float(objective(*unpack(variable)))
        if value < best_value:
            best_value, best = value, variable.detach().clone()
        variable = best.clone().requires_grad_(True)
    return (*unpack(best), best_value)


# --------------------------------------------------------------------------- main entry
def _compose_theta(outer, inner):
    """theta (2, 3) of the sample map ``p -> outer(inner(p))`` (both (2, 3))."""
    import torch

    linear = outer[:, :2] @ inner[:, :2]
    shift = outer[:, :2] @ inner[:, 2] + outer[:, 2]
    return torch.cat([linear, shift[:, None]], 1)


def _tps_basis(points, grid_size: int):
    """(M, K^2) matrix B: a grid-param TPS evaluated at ``points`` (M, 2) is ``B @ values``.

    A TPS through fixed control points is linear in the values it takes there.
    """
    import torch

    from .images import regular_grid_xy
    from .transforms import tps_evaluate, tps_solve

    count = grid_size * grid_size
    control = torch.as_tensor(regular_grid_xy(grid_size), dtype=points.dtype,
                              device=points.device)[None].expand(count, count, 2)
    unit = torch.eye(count, dtype=points.dtype, device=points.device)
    values = torch.stack([unit, torch.zeros_like(unit)], 2)  # value e_b in x, 0 in y
    spline = tps_solve(control, values)
    return tps_evaluate(points[None].expand(count, -1, 2), control, spline)[..., 0].T


def _compose_tps(outer, inner, grid_size: int, lattice_size: int = 20):
    """Grid params of the TPS closest (least squares on a lattice) to ``outer(inner(p))``.

    Two TPS do not compose into one exactly; on the stage's residuals (small, smooth) the
    least-squares fit differs from the composition by a small fraction of a percent.
    """
    import torch

    from .images import regular_grid_xy

    lattice = torch.as_tensor(regular_grid_xy(lattice_size), dtype=torch.float64,
                              device=outer.device)
    target = _sample_map(None, outer.double(), _sample_map(None, inner.double(), lattice[None],
                                                           grid_size), grid_size)[0]
    basis = _tps_basis(lattice, grid_size)
    fitted = torch.linalg.lstsq(basis, target).solution  # (K^2, 2)
    return torch.cat([fitted[:, 0], fitted[:, 1]]).to(outer.dtype)


def initial_theta(content, style, init: str):
    """The affine the network stages start from: None (identity) or the global search's
    ("search": edge-orientation layout; "search-vgg19": VGG-19 conv4 features, which needs the
    ImageNet weights to be semantic)."""
    if init == "identity":
        return None
    from .matching import search_similarity

    descriptor = "vgg19" if init == "search-vgg19" else "orientation"
    return search_similarity(content, style, descriptor=descriptor).to(content.device)


def _best_layout(candidates: dict, content, style, grid_size: int):
    """``(theta, tps, name)`` of the candidate whose warped content best matches the style's
    edge layout (``matching.layout_similarity``).

    The networks, trained on same-image pairs, refine well from nearby but may drift when the
    content is another object: this keeps whichever start, or the search on its own, lines the
    two images up best.
    """
    import torch

    from .matching import layout_similarity

    if len(candidates) == 1:
        name, (theta, tps) = next(iter(candidates.items()))
        return theta, tps, name
    names = list(candidates)
    warped = [_warp_tensor(content, *candidates[n], grid_size) for n in names]
    scores = layout_similarity(torch.cat(warped, 0), style.expand(len(names), -1, -1, -1))
    name = names[int(scores.argmax())]
    return (*candidates[name], name)


def _fold_affine_into_tps(theta, tps, grid_size: int):
    """Grid params of ``p -> theta(tps(p))``: a TPS is linear in its control values, so an
    affine applied after it is the same TPS with the affine applied to those values."""
    import torch

    count = grid_size * grid_size
    values = torch.stack([tps[:count], tps[count:]], 1)  # (K^2, 2) normalised (x, y)
    moved = values @ theta[:, :2].T + theta[:, 2]
    return torch.cat([moved[:, 0], moved[:, 1]])


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
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not (
                1 <= count <= MAX_PASSES):
            raise ValueError(f"passes ({kind}) must be an integer from 1 to {MAX_PASSES}; "
                             f"got {count!r}.")
    return {kind: int(count) for kind, count in chosen.items()}


def _objective_trunk(nets: dict, trunk: str, device):
    """The trunk whose features the refinement matches: the TPS network's (see
    ``_FeatureObjective``), the shipped one when only an affine network is in use; the affine
    network's own when no TPS network exists for ``trunk``."""
    from .geonet import load_geometry_model, shipped_checkpoint_path

    if "tps" in nets:
        return nets["tps"].trunk
    if shipped_checkpoint_path("tps", trunk).is_file():
        return load_geometry_model("tps", trunk, None, device).trunk
    return nets["affine"].trunk


def estimate_parameters(content, style, model: str = "affine+tps", method: str = "network",
                        device=None, trunk: str = "embedded", checkpoint=None,
                        passes=None, refine_iterations: int | None = None,
                        init: str = "search"):
    """Normalised parameters: ``{"theta": (2, 3) or None, "tps": (2K^2,) or None, ...}``.

    ``content``/``style`` are (1, 3, H, W) RGB tensors in 0..1 on ``device``. Also returns
    ``"damped"`` (the damping factors applied) and, for refine, ``"objective"`` (start, end).
    ``passes``: network passes per stage (see ``estimate_warp``); ``refine_iterations``: Adam
    steps of the refinement (None = ``REFINE``'s).
    """
    import torch

    from .geonet import identity_parameters, load_geometry_model

    counts = stage_passes(model, passes)
    info = {"theta": None, "tps": None, "damped": {"affine": [], "tps": []}}
    nets = {}
    if model in ("affine", "affine+tps"):
        nets["affine"] = load_geometry_model("affine", trunk, _checkpoint_for("affine", model,
                                                                             checkpoint), device)
    if model in ("tps", "affine+tps"):
        nets["tps"] = load_geometry_model("tps", trunk, _checkpoint_for("tps", model, checkpoint),
                                          device)
    first = next(iter(nets.values()))
    grid_size = nets["tps"].grid_size if "tps" in nets else 3
    content_in, style_in = first.prepare(content), first.prepare(style)

    def predict_affine(theta):
        for _ in range(counts["affine"]):
            # each pass sees the content warped by the estimate so far (CNNGeometric's
            # iterative use) and predicts the residual, composed on the output side
            source = content_in if theta is None else _warp_tensor(content_in, theta, None,
                                                                   grid_size)
            residual, factor = damp_folding("affine", nets["affine"](source, style_in)[0])
            info["damped"]["affine"].append(factor)
            residual = residual.reshape(2, 3)
            theta = residual if theta is None else _compose_theta(theta, residual)
        return theta

    def predict_tps(theta):
        tps = None
        for _ in range(counts["tps"]):
            source = content_in if theta is None and tps is None else _warp_tensor(
                content_in, theta, tps, grid_size)
            residual, factor = damp_folding("tps", nets["tps"](source, style_in)[0],
                                           grid_size)
            info["damped"]["tps"].append(factor)
            tps = residual if tps is None else damp_folding(
                "tps", _compose_tps(tps, residual, grid_size), grid_size)[0]
        return tps

    def run_networks(theta):
        if "affine" in nets:
            theta = predict_affine(theta)
        return theta, predict_tps(theta) if "tps" in nets else None

    def model_form(theta, tps):
        if model == "tps" and theta is not None:
            # a TPS model answers with one TPS: an affine after a TPS is a TPS (exactly)
            return None, _fold_affine_into_tps(theta, tps, grid_size)
        return theta, tps

    with torch.no_grad():
        starts = {"identity": model_form(*run_networks(None))}
        if init != "identity":
            searched = initial_theta(content_in, style_in, init)
            starts["search"] = model_form(*run_networks(searched))
            # the search alone, in the model's own form (an identity TPS where it has one)
            identity_tps = None if "tps" not in nets else identity_parameters(
                "tps", grid_size).to(searched)
            starts["search only"] = model_form(searched, identity_tps)
        theta, tps, info["start"] = _best_layout(starts, content_in, style_in, grid_size)
    if method == "refine":
        objective = _FeatureObjective(_objective_trunk(nets, trunk, device), content_in,
                                      style_in, grid_size)
        objective.trust_weight = REFINE["trust_weight"]
        objective.layout_weight = REFINE["layout_weight"]
        objective.set_anchor(theta, tps)
        with torch.no_grad():
            start_value = float(objective(theta, tps))
        candidates = [(start_value, theta, tps)]
        with torch.enable_grad():
            if tps is None:
                theta, _, value = _optimise(objective, theta, tps, "affine",
                                            refine_iterations or REFINE["affine_iterations"],
                                            REFINE["affine_lr"])
            else:
                # only the TPS moves: it holds an affine part of its own, and moving the
                # affine under it as well did worse on the tuning split, in more time
                theta, tps, value = _optimise(objective, theta, tps, "tps",
                                              refine_iterations or REFINE["tps_iterations"],
                                              REFINE["tps_lr"])
            candidates.append((value, theta, tps))
        best_value, theta, tps = min(candidates, key=lambda c: c[0])
        if best_value > start_value - REFINE["margin"]:
            best_value, theta, tps = candidates[0]
        info["objective"] = (start_value, best_value)
    info["theta"] = None if theta is None else theta.detach().cpu().numpy().astype(np.float64)
    info["tps"] = None if tps is None else tps.detach().cpu().numpy().astype(np.float64)
    info["grid_size"] = grid_size
    return info


def estimate_warp(content, geometry_style, model: str = "affine+tps", method: str = "network",
                  device=None, trunk: str = "embedded", checkpoint=None, passes=None,
                  strength: float = 1.0, init: str = "search"):
    """Transform (content -> output, CONTENT PIXEL coordinates, output frame = content's (H, W))
    that gives ``content`` the geometry of ``geometry_style``.

    ``content``, ``geometry_style``: 2D images of any size/aspect (>= 32 px), gray/RGB/RGBA,
    uint8/uint16/float. ``model``: "affine" | "tps" | "affine+tps"; ``method``: "network" |
    "refine"; ``trunk``: "embedded" (shipped) | "vgg19" (needs a trained checkpoint);
    ``checkpoint``: a path (single model) or ``{"affine": path, "tps": path}``; None = shipped.
    ``passes``: network passes per stage, an int for every stage or ``{"affine": n, "tps": m}``
    (1..8); None = ``DEFAULT_PASSES[model]``, chosen on a tuning split of training images.
    ``strength``: 0 (the identity: the content comes back unchanged) .. 1 (the full warp), see
    ``transforms.with_strength``. ``init``: where the networks start, "search" (default: the
    similarity found by a global search over rotations, scales and shifts, ``core/matching.py``;
    it lets the content be another object in another pose) or "identity".
    """
    import torch

    from .devices import resolve_device
    from .images import rgb_tensor
    from .transforms import (
        ComposedTransform,
        affine_from_theta,
        check_strength,
        tps_from_grid_params,
        with_strength,
    )

    check_options(model, method, trunk, init)
    stage_passes(model, passes)  # a bad value fails before any work
    strength = check_strength(strength)
    device = resolve_device(device)
    content_t = rgb_tensor(content, device, "content", MIN_SIZE)
    style_t = rgb_tensor(geometry_style, device, "geometry_style", MIN_SIZE)
    shape = tuple(content_t.shape[-2:])
    with torch.inference_mode(False):
        info = estimate_parameters(content_t, style_t, model, method, device, trunk, checkpoint,
                                   passes=passes, init=init)
    parts = []
    if info["theta"] is not None:
        parts.append(affine_from_theta(info["theta"], shape, shape))
    if info["tps"] is not None:
        parts.append(tps_from_grid_params(info["tps"], shape, shape, info["grid_size"]))
    full = parts[0] if len(parts) == 1 else ComposedTransform(parts)
    return with_strength(full, strength)
