"""``estimate_warp``: the transform that gives ``content`` the geometry of ``geometry_style``.

The result is a landmark transform in CONTENT PIXEL coordinates, mapping content -> output, where
the output frame has the content's ``(H, W)`` shape: ``warp_image(content, tf)`` is the content
with the style's geometry, at the content's size. The networks see both images resized to a
square (240 x 240), so their parameters live in normalised coordinates, which are independent of
size and aspect; ``transforms.affine_from_theta`` / ``tps_from_grid_params`` turn them into pixels.

- ``model="affine"``: one affine; ``"tps"``: one 3 x 3 TPS; ``"affine+tps"``: an affine, then a
  TPS estimated on the affine-warped content, composed (``ComposedTransform([affine, tps])``).
- A prediction that folds the image (Jacobian determinant <= a small margin somewhere) is damped:
  moved toward the identity until it does not fold.
- ``method="refine"`` starts from the network and optimises the parameters directly (affine,
  then TPS) so that deep features of the warped content match the style's, coarse (stride 16)
  to fine (stride 8), with a bending (smoothness) term and a fold barrier. The best parameters on
  that objective are kept, so it never ends worse than the network's estimate.
"""

from __future__ import annotations

import numpy as np

MODELS = ("affine", "tps", "affine+tps")
METHODS = ("network", "refine")
MIN_SIZE = 32
FOLD_MARGIN = 0.02  # smallest Jacobian determinant (area ratio) accepted as "not folding"
_DAMPING = (1.0, 0.8, 0.6, 0.4, 0.2, 0.1, 0.0)


def check_options(model: str, method: str, trunk: str) -> None:
    """``ValueError`` naming the accepted values for an unknown model / method / trunk."""
    from .geonet import TRUNKS

    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; accepted: {', '.join(MODELS)}.")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; accepted: {', '.join(METHODS)}.")
    if trunk not in TRUNKS:
        raise ValueError(f"unknown trunk {trunk!r}; accepted: {', '.join(TRUNKS)}.")


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


def _warp_tensor(image, theta, tps, grid_size: int):
    """Warp a (1, C, H, W) tensor by A(T(p)), mirror padding (as the training pairs)."""
    import torch.nn.functional as F

    from .images import ALIGN_CORNERS

    _, _, h, w = image.shape
    grid = _sample_map(theta, tps, _centres(h, w, image.device).reshape(1, h * w, 2), grid_size)
    return F.grid_sample(image, grid.reshape(1, h, w, 2).to(image.dtype), mode="bilinear",
                         padding_mode="reflection", align_corners=ALIGN_CORNERS)


# --------------------------------------------------------------------------- refinement
class _FeatureObjective:
    """Feature alignment objective of the refinement (see the module docstring).

    Per tap: mean over style locations of ``1 - cos`` between the style's feature and the warped
    content's, with features centred per image (so the shared mean does not make everything
    look alike) and samples outside the content counting as mismatches. Plus a bending term
    and a fold barrier on the TPS, a fold barrier on the affine, and a trust region: the mean
    squared lattice displacement from the network's estimate (``anchor``).
    """

    smoothness = 0.05
    fold_weight = 10.0
    trust_weight = 1.0

    def __init__(self, trunk, content, style, grid_size: int, taps=("s16", "s8")):
        import torch

        from .geonet import _classes
        from .images import regular_grid_xy

        normalize = _classes()["l2_normalize"]
        self.grid_size, self.taps = grid_size, taps
        with torch.no_grad():
            both = trunk(torch.cat([content, style], 0), taps=taps)

        def centred(feat):
            feat = feat.float()
            return normalize(feat - feat.mean((2, 3), keepdim=True))

        self.content = {t: centred(both[t][:1]) for t in taps}
        self.style = {t: centred(both[t][1:]) for t in taps}
        self.centres = {t: _centres(*self.content[t].shape[-2:], content.device).reshape(1, -1, 2)
                        for t in taps}
        self.lattice = torch.as_tensor(regular_grid_xy(5), dtype=torch.float32,
                                       device=content.device)[None]
        self.normalize = normalize
        self.anchor = None

    def set_anchor(self, theta, tps):
        """The network's estimate, which the trust region keeps the refinement near."""
        import torch

        with torch.no_grad():
            self.anchor = _sample_map(theta, tps, self.lattice, self.grid_size)

    def __call__(self, theta, tps, taps=None):
        import torch
        import torch.nn.functional as F

        from .images import ALIGN_CORNERS

        total = 0.0
        spline = None if tps is None else _tps_spline(tps[None], self.grid_size)
        for tap in taps or self.taps:
            feat = self.content[tap]
            h, w = feat.shape[-2:]
            grid = _sample_map(theta, tps, self.centres[tap], self.grid_size, spline)
            grid = grid.reshape(1, h, w, 2)
            warped = F.grid_sample(feat, grid, mode="bilinear", padding_mode="border",
                                   align_corners=ALIGN_CORNERS)
            # soft in-image weight: 1 inside, 0 a little beyond the border
            inside = ((1.05 - grid.abs()) / 0.1).clamp(0, 1).prod(-1)
            cos = (self.normalize(warped) * self.style[tap]).sum(1)
            total = total + (1.0 - cos * inside).mean()
        if tps is not None:
            k = self.grid_size
            d = (tps - _identity_like("tps", tps, k)).reshape(2, k, k)
            bend = (d[:, :, 2:] - 2 * d[:, :, 1:-1] + d[:, :, :-2]).pow(2).sum()
            bend = bend + (d[:, 2:] - 2 * d[:, 1:-1] + d[:, :-2]).pow(2).sum()
            total = total + self.smoothness * bend
            det = _tps_min_det(tps[None], k, samples=10, spline=spline)
            total = total + self.fold_weight * torch.relu(0.1 - det).pow(2).sum()
        if theta is not None:
            det = _affine_min_det(theta.reshape(1, 2, 3))
            total = total + self.fold_weight * torch.relu(0.1 - det).pow(2).sum()
        if self.anchor is not None:
            moved = _sample_map(theta, tps, self.lattice, self.grid_size, spline) - self.anchor
            total = total + self.trust_weight * moved.pow(2).sum(-1).mean()
        return total


def _identity_like(kind, tensor, grid_size):
    from .geonet import identity_parameters

    return identity_parameters(kind, grid_size).to(tensor)


def _optimise(objective, theta, tps, which: str, iterations: int, lr: float):
    """Adam on ``which`` ("affine" | "tps") coarse to fine; returns the best (theta, tps, value)."""
    import torch

    start = theta if which == "affine" else tps
    variable = start.detach().clone().requires_grad_(True)

    def unpack(v):
        return (v, tps) if which == "affine" else (theta, v)

    with torch.no_grad():
        best_value = float(objective(*unpack(variable)))
    best = variable.detach().clone()
    levels = [objective.taps[:i] for i in range(1, len(objective.taps) + 1)]
    for level, taps in enumerate(levels):
        optimizer = torch.optim.Adam([variable], lr=lr)
        final_level = level == len(levels) - 1
        for _ in range(iterations):
            value = objective(*unpack(variable), taps=taps)
            if final_level and float(value.detach()) < best_value:
                best_value, best = float(value.detach()), variable.detach().clone()
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
        with torch.no_grad():
            value = float(objective(*unpack(variable)))
        if value < best_value:
            best_value, best = value, variable.detach().clone()
        variable = best.clone().requires_grad_(True)
    return (*unpack(best), best_value)


# --------------------------------------------------------------------------- main entry
def estimate_parameters(content, style, model: str = "affine+tps", method: str = "network",
                        device=None, trunk: str = "embedded", checkpoint=None,
                        refine_iterations: int = 25):
    """Normalised parameters: ``{"theta": (2, 3) or None, "tps": (2K^2,) or None, ...}``.

    ``content``/``style`` are (1, 3, H, W) RGB tensors in 0..1 on ``device``. Also returns
    ``"damped"`` (the damping factors applied) and, for refine, ``"objective"`` (start, end).
    """
    import torch

    from .geonet import load_geometry_model

    info = {"theta": None, "tps": None, "damped": {}}
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

    def predict_tps(theta):
        source = content_in if theta is None else _warp_tensor(content_in, theta, None, grid_size)
        params = nets["tps"](source, style_in)[0]
        params, factor = damp_folding("tps", params, grid_size)
        info["damped"]["tps"] = factor
        return params

    with torch.no_grad():
        theta = tps = None
        if "affine" in nets:
            theta, factor = damp_folding("affine", nets["affine"](content_in, style_in)[0])
            info["damped"]["affine"] = factor
            theta = theta.reshape(2, 3)
        if "tps" in nets:
            tps = predict_tps(theta)
    if method == "refine":
        objective = _FeatureObjective(first.trunk, content_in, style_in, grid_size)
        objective.set_anchor(theta, tps)
        with torch.no_grad():
            start_value = float(objective(theta, tps))
        candidates = [(start_value, theta, tps)]
        with torch.enable_grad():
            if theta is not None:
                # the affine moves under the network's TPS (one objective throughout)
                theta, _, value = _optimise(objective, theta, tps, "affine",
                                            refine_iterations, 0.005)
                if tps is not None:
                    with torch.no_grad():
                        tps = predict_tps(theta)
                        value = float(objective(theta, tps))
                candidates.append((value, theta, tps))
            if tps is not None:
                theta, tps, value = _optimise(objective, theta, tps, "tps", refine_iterations,
                                              0.01)
                candidates.append((value, theta, tps))
        best_value, theta, tps = min(candidates, key=lambda c: c[0])
        info["objective"] = (start_value, best_value)
    info["theta"] = None if theta is None else theta.detach().cpu().numpy().astype(np.float64)
    info["tps"] = None if tps is None else tps.detach().cpu().numpy().astype(np.float64)
    info["grid_size"] = grid_size
    return info


def estimate_warp(content, geometry_style, model: str = "affine+tps", method: str = "network",
                  device=None, trunk: str = "embedded", checkpoint=None):
    """Transform (content -> output, CONTENT PIXEL coordinates, output frame = content's (H, W))
    that gives ``content`` the geometry of ``geometry_style``.

    ``content``, ``geometry_style``: 2D images of any size/aspect (>= 32 px), gray/RGB/RGBA,
    uint8/uint16/float. ``model``: "affine" | "tps" | "affine+tps"; ``method``: "network" |
    "refine"; ``trunk``: "embedded" (shipped) | "vgg19" (needs a trained checkpoint);
    ``checkpoint``: a path (single model) or ``{"affine": path, "tps": path}``; None = shipped.
    """
    import torch

    from .devices import resolve_device
    from .images import rgb_tensor
    from .transforms import ComposedTransform, affine_from_theta, tps_from_grid_params

    check_options(model, method, trunk)
    device = resolve_device(device)
    content_t = rgb_tensor(content, device, "content", MIN_SIZE)
    style_t = rgb_tensor(geometry_style, device, "geometry_style", MIN_SIZE)
    shape = tuple(content_t.shape[-2:])
    with torch.inference_mode(False):
        info = estimate_parameters(content_t, style_t, model, method, device, trunk, checkpoint)
    parts = []
    if info["theta"] is not None:
        parts.append(affine_from_theta(info["theta"], shape, shape))
    if info["tps"] is not None:
        parts.append(tps_from_grid_params(info["tps"], shape, shape, info["grid_size"]))
    return parts[0] if len(parts) == 1 else ComposedTransform(parts)
