"""Gatys et al. texture transfer, coarse to fine, as a generator (progress, previews, cancel).

Losses (all relative, so a weight means the same at every resolution and for every backbone),
on the taps the backbone names (``texture_trunks``: VGG-19's ``conv4_2`` and ``conv1_1 ...
conv5_1``, or the installed EfficientNet-Lite0's when VGG-19's weights are missing):
- content: ``||F - F_c||^2 / ||F_c||^2`` on the content tap;
- style: the weighted mean over the style taps of ``||G - G_s||^2 / ||G_s||^2`` where
  ``G = F^T F / (H*W)`` is the Gram matrix per position (fp32 even when the trunk runs in bf16),
  plus, where the backbone asks, the same relative distance of per-channel means and stds;
- total variation: squared neighbour differences relative to the content's own.

The solve starts at 1/8 of the output size (``levels=4``) and doubles per level, each level
initialised with the upsampled result of the previous one (``_solve_level``; eager or CUDA-graph
iterations are ``_EagerSteps`` / ``_GraphSteps``). L-BFGS (``optim.LBFGS``) is a fixed-step
implementation whose bookkeeping stays on the device (torch's ``optim.LBFGS`` reads several
scalars back to the host every iteration, which stalls a GPU).

``iter_texture_transfer`` checks its arguments when called; torch is imported, the device
resolved and the trunk built only when iteration starts, in the consuming thread.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from . import images
from .optim import LBFGS
from .texture_trunks import VGG19_LAYERS, Backbone, build_texture_trunk, resolve_backbone

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from numpy.typing import ArrayLike


class Preset(TypedDict):
    """A preset's output size (longest side) and iterations per level, coarsest first."""

    size: int
    iterations: tuple[int, ...]


PRESETS: dict[str, Preset] = {
    # iterations per level, coarsest first (for levels=4; other level counts reuse the tail)
    "fast": {"size": 256, "iterations": (80, 60, 40, 30)},
    "balanced": {"size": 512, "iterations": (200, 150, 120, 100)},
    "quality": {"size": 1024, "iterations": (300, 250, 200, 200)},
}
PRESET_NAMES = tuple(PRESETS)  # fastest first
PRESET_SIZES = {name: spec["size"] for name, spec in PRESETS.items()}
OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "noise")
MIN_OUTPUT_SIDE = 16  # conv5_1 sits behind four 2x2 pools: 16 px -> 1 px
# Coarser pyramid levels than this (longest side) carry too little content (conv4_2 would be
# 4 x 4 or less) and only scramble the image the next level starts from, so they are skipped:
# at the default 512 px the pyramid starts at 1/8 (64 px) as in the paper.
MIN_LEVEL_SIDE = 64
MIN_INPUT_SIDE = 16
DEFAULT_CONTENT_WEIGHT = VGG19_LAYERS.content_weight  # each backbone has its own defaults
DEFAULT_STYLE_WEIGHT = VGG19_LAYERS.style_weight
DEFAULT_TV_WEIGHT = 0.01
LBFGS_HISTORY = 10
GRAPH_WARMUP = 3  # eager iterations per level before a CUDA graph is captured
FP16_LOSS_SCALE = 1024.0  # fixed: gradients of the relative losses stay far from fp16's max
ADAM_LR = 0.02


@dataclass
class TextureStep:
    """One iteration of the solve.

    ``level`` (1..levels) and ``iteration`` (1..iterations) count from 1; ``loss`` is the latest
    loss known on the host (on a GPU it may lag a few iterations behind so the loop never waits
    for the device; it is exact on preview and final steps). ``image`` is None or a float32
    ``(H, W, 3)`` preview at the output size; the last step has ``done=True`` and the result.
    ``progress`` / ``total`` count iterations over all levels, for one progress bar.
    ``backbone`` names the network the losses read (what ``backbone="auto"`` resolved to).

    Parameters
    ----------
    level : int
        The pyramid level, 1..``levels``.
    levels : int
        The number of levels this run solves.
    iteration : int
        The iteration within the level, 1..``iterations``.
    iterations : int
        The iterations of this level.
    loss : float
        The latest loss known on the host.
    image : numpy.ndarray, optional
        A float32 ``(H, W, 3)`` preview (0..1) at the output size, or the result when ``done``.
    done : bool, default False
        True on the last step.
    progress : int, default 0
        Iterations done over all levels.
    total : int, default 0
        Iterations over all levels.
    shape : tuple of int, default (0, 0)
        The output's ``(H, W)``.
    backbone : str, default ""
        The network that runs: "vgg19", "efficientnet" or "random".
    """

    level: int
    levels: int
    iteration: int
    iterations: int
    loss: float
    image: np.ndarray | None = None
    done: bool = False
    progress: int = 0
    total: int = 0
    shape: tuple[int, int] = (0, 0)
    backbone: str = ""  # the network that runs: "vgg19", "efficientnet" or "random"


@dataclass
class _Plan:
    content: np.ndarray  # (H, W, 3) float32 0..1
    styles: list
    style_weights: np.ndarray
    output_shape: tuple[int, int]
    level_shapes: list
    iterations: list
    optimizer: str
    content_weight: float
    style_weight: float
    tv_weight: float
    preserve_color: bool
    init: str | np.ndarray  # "content", "noise" or a float32 (H, W, 3) start image
    backbone: Backbone
    device: str | torch.device | None
    seed: int
    preview_every: int
    compile: bool
    amp: bool | None
    precision: str  # "auto", "bf16", "fp16" or "fp32" (devices.choose_precision)
    cuda_graphs: bool | None  # None: where the GPU supports them (devices.choose_cuda_graphs)


# --------------------------------------------------------------------------- argument checks
# loss weights beyond this overflow the float32 loss (or L-BFGS's products of its gradients)
# and turn the image into NaN; the defaults are 1 to 30
MAX_LOSS_WEIGHT = 1e12


def _number(value, name, minimum=0.0, maximum=math.inf) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a number; got {value!r}.") from error
    if not math.isfinite(number) or number < minimum or number > maximum:
        bound = f">= {minimum}" if maximum == math.inf else f"between {minimum} and {maximum:g}"
        raise ValueError(f"{name} must be a finite number {bound}; got {value!r}.")
    return number


def _flag(value, name, allow_none=False):
    """``value`` as a bool: True/False (or 1/0); None too where ``allow_none`` (automatic)."""
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, (int, np.integer))
                                               and value in (0, 1)):  # fmt: skip
        return bool(value)
    raise ValueError(f"{name} must be True or False; got {value!r}.")


def _integer(value, name, minimum, maximum=None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer; got {value!r}.")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name} must be {bound}; got {value}.")
    return int(value)


def _style_list(texture_style) -> list:
    if isinstance(texture_style, (list, tuple)):
        if len(texture_style) == 0:
            raise ValueError("texture_style is an empty list: give at least one style image.")
        items = list(texture_style)
    else:
        items = [texture_style]
    return [
        images.to_rgb_float(item, f"texture style {i + 1}", min_size=MIN_INPUT_SIDE)
        for i, item in enumerate(items)
    ]


def _style_weights(style_weights, count) -> np.ndarray:
    if style_weights is None:
        return np.full(count, 1.0 / count)
    try:
        weights = np.asarray(style_weights, dtype=np.float64).ravel()
    except (TypeError, ValueError) as error:
        raise ValueError(f"style_weights must be numbers; got {style_weights!r}.") from error
    if len(weights) != count:
        raise ValueError(f"style_weights has {len(weights)} values for {count} style images.")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError("style_weights must be finite, >= 0 and not all zero.")
    return weights / weights.sum()


def level_shapes(output_shape, levels: int) -> list[tuple[int, int]]:
    """Shapes of the pyramid, coarsest first: output / 2**k; levels too small for VGG dropped."""
    height, width = output_shape
    shapes = []
    for k in range(levels - 1, 0, -1):
        shape = (max(1, round(height / 2**k)), max(1, round(width / 2**k)))
        if max(shape) >= MIN_LEVEL_SIDE and min(shape) >= MIN_OUTPUT_SIDE:
            shapes.append(shape)
    return [*shapes, (int(height), int(width))]


def _iterations(iterations, preset, levels) -> list[int]:
    if iterations is None:
        schedule = list(PRESETS[preset]["iterations"])
        if levels <= len(schedule):
            return schedule[len(schedule) - levels :]
        return [schedule[0]] * (levels - len(schedule)) + schedule
    if isinstance(iterations, (list, tuple, np.ndarray)):
        values = [_integer(v, "iterations", 1) for v in iterations]
        if len(values) != levels:
            raise ValueError(
                f"iterations has {len(values)} values but there are {levels} levels; give one "
                "number per level (coarsest first) or a single number."
            )
        return values
    return [_integer(iterations, "iterations", 1)] * levels


def _check_precision(precision) -> str:
    from .devices import PRECISIONS

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}.")
    return precision


def _make_plan(content, texture_style, *, size, levels, iterations, optimizer, content_weight,
               style_weight, tv_weight, style_weights, preserve_color, init, backbone, device,
               seed, preview_every, preset, compile, amp, cuda_graphs,
               precision="auto") -> _Plan:  # fmt: skip
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}.")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; use 'lbfgs' or 'adam'.")
    if isinstance(init, str):
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; use 'content', 'noise' or an image.")
    else:  # a start image, e.g. the previous frame's result (warm start): any size, resized
        init = images.to_rgb_float(init, "init", min_size=1)
    backbone = resolve_backbone(backbone)  # decided now: a typo or missing weights fail here
    content_rgb = images.to_rgb_float(content, "content", min_size=MIN_INPUT_SIDE)
    styles = _style_list(texture_style)
    weights = _style_weights(style_weights, len(styles))
    size = PRESETS[preset]["size"] if size is None else _integer(size, "size", MIN_OUTPUT_SIDE)
    levels = _integer(levels, "levels", 1, 8)
    output_shape = images.fit_longest_side(content_rgb.shape, size)
    if min(output_shape) < MIN_OUTPUT_SIDE:
        raise ValueError(
            f"at size {size} the output would be {output_shape[0]} x {output_shape[1]} px; "
            f"VGG-19 needs at least {MIN_OUTPUT_SIDE} px on the short side: raise size or crop "
            "the content to a less elongated shape."
        )
    shapes = level_shapes(output_shape, levels)
    schedule = _iterations(iterations, preset, levels)[levels - len(shapes) :]
    return _Plan(
        content=content_rgb,
        styles=styles,
        style_weights=weights,
        output_shape=output_shape,
        level_shapes=shapes,
        iterations=schedule,
        optimizer=optimizer,
        content_weight=_number(
            backbone.layers.content_weight if content_weight is None else content_weight,
            "content_weight",
            maximum=MAX_LOSS_WEIGHT,
        ),
        style_weight=_number(
            backbone.layers.style_weight if style_weight is None else style_weight,
            "style_weight",
            maximum=MAX_LOSS_WEIGHT,
        ),
        tv_weight=_number(tv_weight, "tv_weight", maximum=MAX_LOSS_WEIGHT),
        preserve_color=_flag(preserve_color, "preserve_color"),
        init=init,
        backbone=backbone,
        device=device,
        seed=_integer(seed, "seed", 0),
        preview_every=_integer(preview_every, "preview_every", 0),
        compile=_flag(compile, "compile"),
        amp=_flag(amp, "amp", allow_none=True),
        precision=_check_precision(precision),
        cuda_graphs=_flag(cuda_graphs, "cuda_graphs", allow_none=True),
    )


# --------------------------------------------------------------------------- memory
def estimate_memory_bytes(output_shape, amp: bool = False, channels: int = 3,
                          history: int = LBFGS_HISTORY) -> int:  # fmt: skip
    """Device memory a solve at ``output_shape`` needs, from VGG-19's layer widths.

    Per input pixel up to ``conv5_1``: ~320 activations saved for the backward pass (ReLU outputs
    and pool outputs), ~30 int64 pool indices, the fp32 copies the Gram matrices keep (122), the
    widest gradients alive during the backward pass (2 x 64) and the image-sized optimiser
    buffers; plus weights and convolution workspace.
    """
    activation_bytes = 2 if amp else 4
    per_pixel = (
        320 * activation_bytes
        + 30 * 8
        + 122 * 4
        + 128 * activation_bytes
        + (2 * history + 8) * channels * 4
    )
    fixed = 80e6 * (1.5 if amp else 1.0) + 256e6
    pixels = int(output_shape[0]) * int(output_shape[1])
    return int(1.25 * (fixed + per_pixel * pixels))


def available_memory_bytes(device) -> int | None:
    """Free memory usable on ``device`` (None when it cannot be known)."""
    import torch

    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + cached)
    if device.type == "mps":
        mps: Any = getattr(torch, "mps", None)
        try:
            return int(mps.recommended_max_memory() - mps.driver_allocated_memory())
        except Exception:  # older torch without these queries (or no torch.mps)
            return None
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:
        return None


def _check_memory(plan: _Plan, device, amp: bool, channels: int) -> None:
    needed = estimate_memory_bytes(plan.output_shape, amp, channels)
    available = available_memory_bytes(device)
    if available is None or needed <= available:
        return
    height, width = plan.output_shape
    per_pixel = (needed / 1.25 - estimate_memory_bytes((0, 0), amp, channels) / 1.25) / (
        height * width
    )
    budget = available / 1.25 - estimate_memory_bytes((0, 0), amp, channels) / 1.25
    aspect = min(height, width) / max(height, width)
    fits = int(math.sqrt(max(budget, 0) / per_pixel / aspect)) // 8 * 8
    raise ValueError(
        f"a {height} x {width} px texture transfer needs about {needed / 1e9:.1f} GB on {device} "
        f"but only {available / 1e9:.1f} GB are free; the largest size that fits is about "
        f"{fits} px (size={fits}), or use another device."
    )


# --------------------------------------------------------------------------- the solve
def _gram(feature):
    """Gram matrix per position, in fp32, from ``(1, C, H, W)`` features of any dtype/layout."""
    channels = feature.shape[1]
    flat = feature.permute(0, 2, 3, 1).reshape(-1, channels).float()
    return flat.T @ flat / flat.shape[0]


def _tv(image):
    dy = (image[:, :, 1:, :] - image[:, :, :-1, :]).pow(2).mean()
    dx = (image[:, :, :, 1:] - image[:, :, :, :-1]).pow(2).mean()
    return dy + dx


def _moments(feature):
    """Per-channel mean and standard deviation of ``(1, C, H, W)`` features, in fp32."""
    flat = feature.float().flatten(2)
    return flat.mean(2), flat.std(2, unbiased=False)


class _Objective:
    """Loss of an image against the fixed targets of one level (targets built once per level).

    Every term is relative to its target's own size, so a weight means the same at every
    resolution and on every trunk; the style layers are mixed by the backbone's layer weights.
    """

    def __init__(self, trunk, layers, autocast, content, styles, style_weights, weights):
        import torch

        self.trunk, self.autocast = trunk, autocast
        self.content_layer, self.style_layers = layers.content, layers.style
        total = float(sum(layers.style_weights))
        self.layer_weights = [float(w) / total for w in layers.style_weights]
        self.moments_weight = float(layers.moments)
        self.content_weight, self.style_weight, self.tv_weight = weights
        with torch.no_grad():
            with autocast():
                content_features = trunk(_rgb(content), taps=(self.content_layer,))
            self.content_target = content_features[self.content_layer].float()
            self.content_norm = self.content_target.pow(2).sum().clamp_min(1e-12)
            count = len(self.style_layers)
            grams, means, stds = [0.0] * count, [0.0] * count, [0.0] * count
            for style, weight in zip(styles, style_weights):
                with autocast():
                    feats = trunk(_rgb(style), taps=self.style_layers)
                for i, layer in enumerate(self.style_layers):
                    grams[i] = grams[i] + float(weight) * _gram(feats[layer])
                    mean, std = _moments(feats[layer])
                    means[i] = means[i] + float(weight) * mean
                    stds[i] = stds[i] + float(weight) * std
                del feats
            self.style_targets = grams
            self.style_norms = [g.pow(2).sum().clamp_min(1e-12) for g in grams]
            self.moment_targets = [torch.cat([m, s], 1) for m, s in zip(means, stds)]
            self.moment_norms = [t.pow(2).sum().clamp_min(1e-12) for t in self.moment_targets]
            self.tv_norm = _tv(content).clamp_min(1e-8)

    def __call__(self, image):
        import torch

        with self.autocast():
            feats = self.trunk(_rgb(image), taps=(*self.style_layers, self.content_layer))
        content = (feats[self.content_layer].float() - self.content_target).pow(2).sum()
        loss = self.content_weight * content / self.content_norm
        style = 0.0
        for i, layer in enumerate(self.style_layers):
            term = (_gram(feats[layer]) - self.style_targets[i]).pow(2).sum() / self.style_norms[i]
            if self.moments_weight:
                moments = torch.cat(_moments(feats[layer]), 1) - self.moment_targets[i]
                term = term + self.moments_weight * moments.pow(2).sum() / self.moment_norms[i]
            style = style + self.layer_weights[i] * term
        loss = loss + self.style_weight * style
        if self.tv_weight:
            loss = loss + self.tv_weight * _tv(image) / self.tv_norm
        return loss


def _rgb(image):
    return image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image


class _Adam:
    """Adam on the image, kept in 0..1 (``optim.Adam``: no ``torch.optim`` in the GUI's worker)."""

    def __init__(self, image, lr=ADAM_LR):
        from .optim import Adam

        self.image = image
        self.adam = Adam(image, lr)

    def step(self, grad) -> None:
        import torch

        self.adam.step(grad)
        with torch.no_grad():
            self.image.clamp_(0.0, 1.0)


class _LossReporter:
    """Loss values for progress without waiting for the GPU: copies go to the host
    asynchronously and are read once their CUDA event has completed."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"
        self.pending: deque = deque()
        self.latest = float("nan")

    def push(self, loss) -> None:
        import torch

        if not self.cuda:
            self.latest = float(loss.detach())
            return
        host = loss.detach().to("cpu", non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self.pending.append((host, event))

    def value(self, exact: bool = False) -> float:
        while self.pending and (exact or self.pending[0][1].query()):
            host, event = self.pending.popleft()
            event.synchronize()
            self.latest = float(host)
        return self.latest


def iter_texture_transfer(content: ArrayLike, texture_style: ArrayLike | Sequence[ArrayLike],
                          *, size: int | None = None, levels: int = 4,
                          iterations: int | Sequence[int] | None = None,
                          optimizer: str = "lbfgs", content_weight: float | None = None,
                          style_weight: float | None = None,
                          tv_weight: float = DEFAULT_TV_WEIGHT,
                          style_weights: Sequence[float] | None = None,
                          preserve_color: bool = False, init: str | ArrayLike = "content",
                          backbone: str | Backbone = "auto",
                          device: str | torch.device | None = None, seed: int = 0,
                          preview_every: int = 10, preset: str = "balanced",
                          compile: bool = False, amp: bool | None = None,
                          cuda_graphs: bool | None = None,
                          precision: str = "auto") -> Generator[TextureStep, None, None]:  # fmt: skip
    """Texture transfer of ``texture_style`` (one image or a list, mixed by ``style_weights``)
    onto ``content``, yielding a ``TextureStep`` per iteration.

    Arguments are checked now (``ValueError``); the work starts on the first ``next()``.
    Closing the generator stops it at once and frees its device memory.

    Parameters
    ----------
    content : array_like
        The content image, ``(H, W)`` or ``(H, W, C)``.
    texture_style : array_like or sequence of array_like
        One style image, or a list of them mixed by ``style_weights``.
    size : int, optional
        Longest side of the output in pixels (at least 16; default from ``preset``: fast 256,
        balanced 512, quality 1024); the aspect is the content's.
    levels : int, default 4
        Pyramid levels, 1 to 8 (too coarse levels are skipped).
    iterations : int or sequence of int, optional
        Per level, one int or one per level (coarsest first); default from ``preset``.
    optimizer : {"lbfgs", "adam"}, default "lbfgs"
        The solver.
    content_weight : float, optional
        Weight of the content loss; default: the backbone's.
    style_weight : float, optional
        Weight of the style loss; default: the backbone's.
    tv_weight : float, default DEFAULT_TV_WEIGHT
        Weight of the total-variation (smoothness) loss.
    style_weights : sequence of float, optional
        One weight per style image (finite, >= 0, not all zero); default equal.
    preserve_color : bool, default False
        Transfer luminance only and keep the content's chroma.
    init : {"content", "noise"} or array_like, default "content"
        What the first level starts from: "content", "noise" (seeded) or an image resized to
        that level (a warm start, e.g. the previous video frame's result).
    backbone : str or Backbone, default "auto"
        The network whose features the losses read: "auto", "vgg19", "efficientnet" or
        "random".
    device : str or torch.device, optional
        ``None``/``"auto"`` picks cuda > mps > cpu.
    seed : int, default 0
        Seeds the noise (>= 0).
    preview_every : int, default 10
        Iterations between preview images in the steps (0: none).
    preset : {"fast", "balanced", "quality"}, default "balanced"
        Default size and iterations.
    compile : bool, default False
        ``torch.compile`` the loss (pays off only for long runs).
    amp : bool, optional
        The older switch: False for fp32, True for half precision where the GPU can.
    cuda_graphs : bool, optional
        On CUDA, replay each level's iteration as a CUDA graph after a short warm-up (removes
        the per-kernel launch cost that dominates at small sizes); None (default) where the GPU
        supports them (compute capability 7.0+), True or False to force.
    precision : {"auto", "bf16", "fp16", "fp32"}, default "auto"
        The trunk's arithmetic on CUDA: "auto" (bf16 autocast where the GPU has native bf16,
        compute capability 8.0+; else fp32), or forced "bf16", "fp16" (with a fixed loss scale)
        or "fp32"; CPU and MPS always run fp32.

    Yields
    ------
    TextureStep
        One per iteration; the last has ``done=True`` and the float32 ``(H, W, 3)`` result in
        0..1 as ``image``.

    Raises
    ------
    ValueError
        At the call, if an argument is invalid, or the device, precision or memory does not fit.
    """
    plan = _make_plan(
        content, texture_style, size=size, levels=levels, iterations=iterations,
        optimizer=optimizer, content_weight=content_weight, style_weight=style_weight,
        tv_weight=tv_weight, style_weights=style_weights, preserve_color=preserve_color,
        init=init, backbone=backbone, device=device, seed=seed, preview_every=preview_every,
        preset=preset, compile=compile, amp=amp, cuda_graphs=cuda_graphs, precision=precision,
    )  # fmt: skip
    _check_device(plan)
    return _solve(plan)


def _check_device(plan: _Plan) -> None:
    """The device, the precision and the memory, checked at the call as the solve will find
    them (``ValueError`` now, not at the first ``next()``)."""
    from .devices import choose_precision, cuda_capabilities, resolve_device

    device = resolve_device(plan.device)
    precision = choose_precision(plan.precision, cuda_capabilities(device), amp=plan.amp)
    _check_memory(plan, device, precision != "fp32", 1 if plan.preserve_color else 3)


def _working_images(plan: _Plan):
    """Content and styles as the solve sees them: RGB, or luminance only for preserve_color
    (each style's luminance matched to the content's mean and spread, as Gatys et al. 2016)."""
    if not plan.preserve_color:
        return plan.content, plan.styles
    content_y = images.luminance(plan.content)[..., None]
    mean, std = float(content_y.mean()), float(content_y.std())
    styles = []
    for style in plan.styles:
        style_y = images.luminance(style)[..., None]
        scaled = (style_y - style_y.mean()) * (std / max(float(style_y.std()), 1e-6)) + mean
        styles.append(np.clip(scaled, 0.0, 1.0).astype(np.float32))
    return content_y.astype(np.float32), styles


def _working_init(plan: _Plan, init: np.ndarray) -> np.ndarray:
    """The start image ``init`` (``plan.init``, an image) in the solve's channels (luminance
    only for preserve_color)."""
    if not plan.preserve_color:
        return init
    return images.luminance(init)[..., None].astype(np.float32)


def _colour_matched_start(plan: _Plan) -> bool:
    """Whether the solve starts from the content recoloured to the styles' colours: where the
    backbone asks for it (a trunk whose losses move colours little), never when the content's
    colours are to be kept, and never over a given start image."""
    return (
        plan.backbone.layers.match_colour
        and not plan.preserve_color
        and isinstance(plan.init, str)
        and plan.init == "content"
    )


def _capture(iterate):
    """Record one iteration as a CUDA graph: ``(graph, static loss)``, or ``(None, None)``
    with a warning when this torch/driver cannot capture it (the solve then runs eagerly)."""
    import warnings

    import torch

    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            static_loss = iterate()
    except Exception as error:  # capture support varies with torch and driver versions
        warnings.warn(f"CUDA graph capture failed ({error}); running without graphs.",
                      RuntimeWarning, stacklevel=2)  # fmt: skip
        return None, None
    return graph, static_loss


def _style_level_shape(style_shape, longest: int) -> tuple[int, int]:
    """Style scaled to the level's longest side, but never thinner than VGG-19 accepts."""
    long_side, short_side = max(style_shape), min(style_shape)
    longest = max(longest, math.ceil(MIN_OUTPUT_SIDE * long_side / short_side))
    return images.fit_longest_side(style_shape, longest)


def _solve(plan: _Plan) -> Generator[TextureStep, None, None]:
    import contextlib

    import torch

    from .devices import choose_cuda_graphs, choose_precision, cuda_capabilities, resolve_device

    device = resolve_device(plan.device)
    cuda = device.type == "cuda"
    capabilities = cuda_capabilities(device)
    precision = choose_precision(plan.precision, capabilities, amp=plan.amp)
    amp = precision != "fp32"
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    content_np, styles_np = _working_images(plan)
    channels = content_np.shape[2]
    _check_memory(plan, device, amp, channels)
    trunk = build_texture_trunk(plan.backbone, device)

    def autocast():
        if amp:
            # no cast cache: CUDA graph capture requires it, and weights are re-cast cheaply
            return torch.autocast("cuda", dtype=half, cache_enabled=False)
        return contextlib.nullcontext()

    chroma = None
    if plan.preserve_color:
        out_content = images.tensor_to_image(
            images.resize_tensor(images.image_to_tensor(plan.content), plan.output_shape),
            squeeze_gray=False,
        )
        chroma = images.rgb_to_yiq(out_content)[..., 1:]

    def to_output(image) -> np.ndarray:
        with torch.no_grad():
            full = images.resize_tensor(image.detach(), plan.output_shape).clamp(0.0, 1.0)
        array = images.tensor_to_image(full, squeeze_gray=False)
        if chroma is None:
            return np.ascontiguousarray(array, dtype=np.float32)
        yiq = np.concatenate([array[..., :1], chroma], axis=2)
        return np.clip(images.yiq_to_rgb(yiq), 0.0, 1.0).astype(np.float32)

    solve = image = None
    try:
        solve = _Solve(
            plan=plan, device=device, trunk=trunk, autocast=autocast, to_output=to_output,
            content=images.image_to_tensor(content_np, device=device),
            styles=[images.image_to_tensor(s, device=device) for s in styles_np],
            levels=len(plan.level_shapes), total=sum(plan.iterations),
            cuda_graphs=choose_cuda_graphs(plan.cuda_graphs, capabilities) and not plan.compile,
            loss_scale=FP16_LOSS_SCALE if precision == "fp16" else 1.0,
        )  # fmt: skip
        for level, (shape, count) in enumerate(zip(plan.level_shapes, plan.iterations), 1):
            image = yield from _solve_level(solve, level, tuple(shape), count, image)
    finally:
        # runs on completion, on error and on generator.close(): drop every device tensor
        solve = image = None
        if cuda:
            torch.cuda.empty_cache()


@dataclass
class _Solve:
    """What every pyramid level of one solve shares (``progress`` counts over all levels)."""

    plan: _Plan
    device: torch.device
    trunk: Any
    autocast: Callable[[], Any]  # () -> the trunk's autocast context (bf16 or none)
    # working tensor -> float32 (H, W, 3) result at the output size
    to_output: Callable[[torch.Tensor], np.ndarray]
    content: torch.Tensor  # the working content at full resolution, on the device
    styles: list[torch.Tensor]
    levels: int
    total: int
    cuda_graphs: bool = False  # replay iterations as CUDA graphs (devices.choose_cuda_graphs)
    loss_scale: float = 1.0  # fp16: keeps the trunk's small gradients from underflowing
    progress: int = 0


def _level_start(solve: _Solve, content_level, shape, previous):
    """What a level's optimisation starts from: the previous level's result upsampled, else the
    plan's ``init`` (the content, seeded noise, or a given image)."""
    import torch

    plan = solve.plan
    with torch.no_grad():
        if previous is not None:
            return images.resize_tensor(previous.detach(), shape).clamp(0.0, 1.0)
        if not isinstance(plan.init, str):
            start = images.image_to_tensor(_working_init(plan, plan.init), device=solve.device)
            return images.resize_tensor(start, shape)
        if plan.init == "noise":
            generator = torch.Generator(device="cpu").manual_seed(plan.seed)
            return torch.rand(content_level.shape, generator=generator).to(solve.device)
        if _colour_matched_start(plan):
            matched = images.match_colour_statistics(plan.content, plan.styles, plan.style_weights)
            return images.resize_tensor(images.image_to_tensor(matched, device=solve.device), shape)
        return content_level.clone()


def _solve_level(solve: _Solve, level: int, shape, count: int, previous):
    """Generator: the ``count`` iterations of one pyramid level at ``shape``, a
    ``TextureStep`` each; returns the level's image (a tensor on the device)."""
    import torch

    plan = solve.plan
    content_level = images.resize_tensor(solve.content, shape)
    # each style is seen at the level's scale: its longest side matches the level's
    style_levels = [
        images.resize_tensor(s, _style_level_shape(s.shape[-2:], max(shape))) for s in solve.styles
    ]
    objective = _Objective(
        solve.trunk, plan.backbone.layers, solve.autocast, content_level, style_levels,
        plan.style_weights,
        (plan.content_weight, plan.style_weight, plan.tv_weight),
    )  # fmt: skip
    del style_levels
    image = _level_start(solve, content_level, shape, previous).contiguous().requires_grad_(True)
    del content_level
    optimizer: LBFGS | _Adam
    if plan.optimizer == "lbfgs":
        optimizer = LBFGS(image, history=LBFGS_HISTORY)
    else:
        optimizer = _Adam(image)
    reporter = _LossReporter(solve.device)
    loss_fn = torch.compile(objective.__call__, dynamic=False) if plan.compile else objective

    def iterate():
        with torch.enable_grad():  # grad mode is thread-local: the GUI runs us in a worker
            loss = loss_fn(image)
            if solve.loss_scale == 1.0:
                (grad,) = torch.autograd.grad(loss, image)
            else:
                (grad,) = torch.autograd.grad(loss * solve.loss_scale, image)
                grad = grad / solve.loss_scale
        optimizer.step(grad)
        return loss.detach()

    use_graphs = solve.cuda_graphs
    steps: _GraphSteps | _EagerSteps
    steps = _GraphSteps(iterate, solve.device, count) if use_graphs else _EagerSteps(iterate)
    try:
        for iteration in range(1, count + 1):
            reporter.push(steps(iteration))
            solve.progress += 1
            last = solve.progress == solve.total
            preview = plan.preview_every and iteration % plan.preview_every == 0
            exact = last or preview or iteration == 1
            step = TextureStep(
                level=level, levels=solve.levels, iteration=iteration, iterations=count,
                loss=reporter.value(exact=exact), done=last, progress=solve.progress,
                total=solve.total, shape=tuple(shape), backbone=plan.backbone.name,
            )  # fmt: skip
            if last or preview:
                step.image = solve.to_output(image)
            yield step
    finally:
        steps.close()
    return image


class _EagerSteps:
    """Every iteration runs eagerly (CPU, MPS, or CUDA without graphs)."""

    def __init__(self, iterate):
        self.iterate = iterate

    def __call__(self, iteration: int):
        return self.iterate()

    def close(self) -> None:
        self.iterate = None


class _GraphSteps:
    """On CUDA: ``GRAPH_WARMUP`` eager iterations on a side stream (as capture needs), then one
    iteration captured as a CUDA graph and replayed for the rest of the level. Levels too short
    to gain (fewer than 2 replays left) stay eager; a failed capture falls back to eager."""

    def __init__(self, iterate, device, count: int):
        self.iterate, self.device, self.count = iterate, device, count
        self.graph = self.static_loss = None
        self.enabled = True

    def __call__(self, iteration: int):
        if self.graph is not None:
            self.graph.replay()
            return self.static_loss
        if not self.enabled:
            return self.iterate()
        if iteration > GRAPH_WARMUP and self.count - iteration >= 2:
            self.graph, self.static_loss = _capture(self.iterate)
            if self.graph is None:
                self.enabled = False
                return self.iterate()
            self.graph.replay()
            return self.static_loss
        return self._warm_up()

    def _warm_up(self):
        import torch

        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            loss = self.iterate()
        torch.cuda.current_stream(self.device).wait_stream(side)
        return loss

    def close(self) -> None:
        self.graph = self.static_loss = self.iterate = None


def transfer_texture(
    content: ArrayLike, texture_style: ArrayLike | Sequence[ArrayLike], **options: Any
) -> np.ndarray:
    """Run ``iter_texture_transfer`` to the end; float32 ``(H, W, 3)`` in 0..1.

    Parameters
    ----------
    content : array_like
        The content image, ``(H, W)`` or ``(H, W, C)``.
    texture_style : array_like or sequence of array_like
        One style image, or a list of them (mixed by ``style_weights``).
    **options
        The keyword options of :func:`iter_texture_transfer`.

    Returns
    -------
    numpy.ndarray
        float32 ``(H, W, 3)`` in 0..1, the output size.

    Raises
    ------
    ValueError
        If an argument is invalid (see :func:`iter_texture_transfer`).
    """
    result = None
    for step in iter_texture_transfer(content, texture_style, **options):
        if step.done:
            result = step.image
    assert result is not None, "the last step is done and carries the image"
    return result
