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
  stride-16 features of the warped content match the style's (``refine.FeatureObjective``), with
  a trust region around the network's estimate and fold barriers. The best
  parameters on that objective are kept, and only when they beat the start by ``margin``, so
  it never ends worse than the network's estimate on its own objective. Settings: ``REFINE``.
- ``estimate_warps`` estimates many pairs with the networks batched: every network pass is one
  forward of up to ``batch_size`` pairs (``estimate_network.NetworkStages``), with the same
  results as ``estimate_warp`` pair by pair (to float rounding). The global search (``init``)
  and the refinement run pair by pair.

This module keeps the entry points; the network passes, damping and starts are in
``core/estimate_network.py``, the refinement in ``core/refine.py``, the options and their
checks in ``core/geometry_options.py``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .estimate_network import (  # noqa: F401 - also importable from here, as before the split
    FOLD_MARGIN,
    HINT_JUDGE_WEIGHT,
    SEARCH_ONLY_BONUS,
    START_NAMES,
    NetworkStages,
    best_layout,
    damp_folding,
    damp_folding_rows,
    initial_theta,
    judge_scores,
    load_networks,
    search_descriptor,
)
from .geometry_options import (  # noqa: F401 - also importable from here, as before the split
    DEFAULT_PASSES,
    INITS,
    MAX_PASSES,
    METHODS,
    MODELS,
    GeometryOptions,
    check_options,
    stage_passes,
)
from .hints import check_hints
from .refine import (  # noqa: F401 - also importable from here, as before the split
    HINT_TRUST_FACTOR,
    HINT_WEIGHT,
    REFINE,
    SEMANTIC_REFINE_TAPS,
    FeatureObjective,
    objective_trunk,
    refine_pair,
    refine_steps,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from numpy.typing import ArrayLike

    from .hints import Hints
    from .transforms import Transform

MIN_SIZE = 32
# pairs per network forward in ``estimate_warps`` when its batch_size is None
DEFAULT_BATCH_SIZE = 32


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
    start: str  # the start kept by ``estimate_network.best_layout``, one of ``START_NAMES``
    objective: tuple | None = None  # refine: the feature objective's (start, end) values
    # the judge's view of the pair (``estimate_network.best_layout``): each start's score, the kept start's
    # lattice distance to the others; the estimate's ``confidence`` is made from it
    judge: dict | None = None
    confidence: float | None = None  # P(the warp is right), ``core.confidence``
    confidence_features: dict | None = None  # what it was made from


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
    contents: Sequence[torch.Tensor],
    styles: Sequence[torch.Tensor],
    options: GeometryOptions,
    device: str | torch.device | None = None,
    hints: Sequence[Hints | None] | None = None,
    refine_iterations: int | None = None,
    progress: Callable[[int, int, str], object] | None = None,
) -> list[WarpParameters]:
    """``WarpParameters`` of each pair ``(contents[i], styles[i])``, the networks run on all
    pairs at once: every network pass is one forward of the whole batch.

    ``contents``/``styles``: sequences of (1, 3, H, W) RGB tensors in 0..1 on ``device``, of
    any sizes (each is resized to the networks' input). The global search and the refinement
    run pair by pair. ``options``: the estimate's (its ``hints`` are one pair's, not read
    here; its ``strength`` is the transform's, not the parameters'). ``hints``: None or one
    ``core.hints.Hints`` (or None) per pair (``hints.check_hints``). ``refine_iterations``:
    Adam steps of the refinement (None = ``REFINE``'s). ``progress(done, total, stage)``: see
    ``estimate_warp``.
    """
    import torch

    from .geonet import resolve_trunk

    report = _ProgressReport(progress)
    model, trunk = options.model, resolve_trunk(options.trunk)
    if len(contents) != len(styles) or not len(contents):
        raise ValueError(
            f"need as many styles as contents, at least one; got {len(contents)} "
            f"contents and {len(styles)} styles."
        )
    counts = stage_passes(model, options.passes)
    nets = load_networks(model, trunk, options.checkpoint, device)
    if options.method == "refine":
        refine_trunk, taps = objective_trunk(nets, trunk, device)
        report.plan_refine(len(contents), refine_steps(model, refine_iterations, len(taps)))
    report.begin()
    first = next(iter(nets.values()))
    content_in = torch.cat([first.prepare(c) for c in contents])
    style_in = torch.cat([first.prepare(s) for s in styles])
    stages = NetworkStages(nets, counts, model, content_in, style_in)
    grid_size = stages.grid_size
    hints = list(hints) if hints is not None else [None] * len(contents)
    if len(hints) != len(contents):
        raise ValueError(f"hints: one entry (or None) per pair; got {len(hints)} for "
                         f"{len(contents)} pairs.")  # fmt: skip
    with torch.no_grad():
        thetas, tpss, names, judges = best_layout(
            stages.starts(options.init, hints), content_in, style_in, grid_size, model, hints
        )
    report.networks_done()
    from .confidence import estimate_confidence

    results = []
    for i, (damped, name) in enumerate(zip(stages.damped, names, strict=True)):
        theta = None if thetas is None else thetas[i]
        tps = None if tpss is None else tpss[i]
        objective = None
        if options.method == "refine":
            feature_objective = FeatureObjective(
                refine_trunk, content_in[i : i + 1], style_in[i : i + 1], grid_size, taps
            )
            if hints[i] is not None:
                feature_objective.set_hints(hints[i])
            theta, tps, objective = refine_pair(
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
    content: torch.Tensor,
    style: torch.Tensor,
    options: GeometryOptions,
    device: str | torch.device | None = None,
    refine_iterations: int | None = None,
    progress: Callable[[int, int, str], object] | None = None,
) -> WarpParameters:
    """Normalised parameters of one pair, as ``WarpParameters``.

    ``content``/``style`` are (1, 3, H, W) RGB tensors in 0..1 on ``device``; ``options``: the
    estimate's, with the pair's hints (``options.hints``); ``refine_iterations``, ``progress``:
    see ``estimate_parameters_batch``.
    """
    return estimate_parameters_batch(
        [content],
        [style],
        options,
        device,
        None if options.hints is None else [options.hints],
        refine_iterations,
        progress,
    )[0]


def _transform_from_parameters(
    params: WarpParameters, shape: tuple, strength: float, hints=None, pair=None
):
    """The landmark transform (content pixels, output frame ``shape``) of ``params``, made to
    honour ``hints`` (``core.hints.honour_hints``) when given, with the estimate's
    ``confidence`` as an attribute. ``pair``: the (content, style) tensors; with hints and a TPS,
    the local feature matches around the estimate move it first (``core.hint_matching``)."""
    from .transforms import (
        ComposedTransform,
        affine_from_theta,
        tps_from_grid_params,
        with_strength,
    )

    parts: list[Transform] = []
    if params.theta is not None:
        parts.append(affine_from_theta(params.theta, shape, shape))
    if params.tps is not None:
        parts.append(tps_from_grid_params(params.tps, shape, shape, params.grid_size))
    full = parts[0] if len(parts) == 1 else ComposedTransform(parts)
    if hints is not None:
        from .hints import honour_hints

        if params.tps is not None and pair is not None:
            from .hint_matching import match_around_hints, matching_trunk

            content_t, style_t = pair
            trunk = matching_trunk(content_t.device)
            if trunk is not None:
                full = match_around_hints(
                    full, content_t, style_t, hints, trunk, confidence=params.confidence
                )
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
    options = GeometryOptions(model, method, trunk, init, passes, strength, checkpoint)
    return estimate_transform(content, geometry_style, options, device, progress, hints)


def estimate_transform(
    content: ArrayLike,
    geometry_style: ArrayLike,
    options: GeometryOptions,
    device: str | torch.device | None = None,
    progress: Callable[[int, int, str], object] | None = None,
    hints: tuple[ArrayLike, ArrayLike] | Hints | None = None,
) -> Transform:
    """``estimate_warp`` with its options already checked (``options``).

    ``hints``: the user's hints as ``estimate_warp`` takes them (checked here against the two
    images, before any work); None: ``options.hints``. The transform is dosed by
    ``options.strength``.
    """
    import dataclasses

    import torch

    from .devices import resolve_device
    from .images import rgb_tensor

    device = resolve_device(device)
    content_t = rgb_tensor(content, device, "content", MIN_SIZE)
    style_t = rgb_tensor(geometry_style, device, "geometry_style", MIN_SIZE)
    shape = tuple(content_t.shape[-2:])
    given = options.hints if hints is None else hints
    checked = check_hints(given, shape, tuple(style_t.shape[-2:]))
    if checked is not options.hints:
        options = dataclasses.replace(options, hints=checked)
    with torch.inference_mode(False):
        params = estimate_parameters(content_t, style_t, options, device, progress=progress)
    return _transform_from_parameters(
        params, shape, options.strength, checked, (content_t, style_t)
    )


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

    contents = _image_list(contents, "contents")
    styles = _image_list(geometry_styles, "geometry_styles")
    if len(contents) != len(styles):
        raise ValueError(
            f"contents and geometry_styles must pair up one to one; got "
            f"{len(contents)} contents and {len(styles)} geometry styles."
        )
    if not contents:
        raise ValueError("contents and geometry_styles are empty: give at least one pair.")
    options = GeometryOptions(model, method, trunk, init, passes, strength, checkpoint)
    batch_size = _check_batch_size(batch_size)
    pair_hints: list[Hints | None]
    if hints is not None:
        given = list(hints)
        if len(given) != len(contents):
            raise ValueError(
                f"hints: one entry (None or (content_points, style_points)) per pair; got "
                f"{len(given)} for {len(contents)} pairs."
            )
        pair_hints = [
            check_hints(h, np.shape(contents[i])[:2], np.shape(styles[i])[:2])
            for i, h in enumerate(given)
        ]
    else:
        pair_hints = [None] * len(contents)
    device = resolve_device(device)
    transforms: list[Transform] = []
    for start in range(0, len(contents), batch_size):
        indices = range(start, min(start + batch_size, len(contents)))
        content_t = [rgb_tensor(contents[i], device, f"contents[{i}]", MIN_SIZE) for i in indices]
        style_t = [
            rgb_tensor(styles[i], device, f"geometry_styles[{i}]", MIN_SIZE) for i in indices
        ]
        with torch.inference_mode(False):
            params = estimate_parameters_batch(
                content_t, style_t, options, device, hints=[pair_hints[i] for i in indices]
            )
        transforms.extend(
            _transform_from_parameters(
                p, tuple(c.shape[-2:]), options.strength, pair_hints[i], (c, style_t[k])
            )
            for k, (p, c, i) in enumerate(zip(params, content_t, indices, strict=True))
        )
    return transforms
