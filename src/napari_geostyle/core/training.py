"""Self-supervised training and evaluation of the geometry network (CNNGeometric's recipe).

Pairs are made on the fly, on the training device: a pool of images is held there as one tensor
of square crops; each step draws random crops (zoom, mirror), a random ground-truth transform
(affine or TPS), warps with mirror padding (no empty border), and re-styles the target with
batched photometric and texture randomisation (colour mixing, gamma, blur, noise, posterisation,
texture blending) so that colour and texture are nuisances the network must ignore.

Ground truth and predictions are *sampling* maps, as in ``geonet``: target(p) = source(T(p)) for
normalised output points p. The loss is CNNGeometric's transformed-grid loss on a 20 x 20 lattice
(mean squared distance, in normalised units, between predicted and true sample points); the
image L2 between the target before re-styling and the warped source (masked to valid pixels) is
an option.

torch is imported inside functions.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .warp_params import (
    identity_params,
    identity_theta,
    lattice_xy,
    output_centres,
    sample_map,
    sample_points,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp")
LOSSES = ("grid", "image")
EVAL_MODELS = ("affine", "tps", "affine+tps")
EVAL_METHODS = ("identity", "network", "refine")
LATTICE_SIZE = 20


@dataclass
class PairRanges:
    """Ranges of the random ground-truth transforms (normalised units: the half-size is 1)."""

    rotation_deg: float = 15.0
    shear_deg: float = 30.0
    scale: tuple[float, float] = (0.75, 1.25)
    translation: float = 0.25
    tps_shift: float = 0.4
    # TPS pairs: share also given a milder affine, since the TPS stage sees residual affines
    tps_affine_share: float = 0.5
    tps_affine_strength: float = 0.3
    crop_zoom: tuple[float, float] = (0.55, 1.0)
    appearance: bool = True
    # Cross-instance proxies (0 = off). Two pictures of different objects of one kind differ by
    # more than a global warp: local shape (an elastic warp on a fine TPS grid that the loss does
    # not ask the network to predict), surroundings (the background outside a soft ellipse
    # replaced by another image) and appearance (the source re-styled as strongly as the target).
    nuisance_shift: float = 0.0
    nuisance_grid: int = 5
    nuisance_share: float = 1.0  # share of pairs that get the local-shape nuisance
    background_swap: float = 0.0
    source_appearance: float = 0.4
    # share of pairs whose true warp is a weaker one (``small_strength`` of the ranges): after the
    # layout search, the network mostly sees small residual warps
    small_share: float = 0.0
    small_strength: float = 0.3

    @classmethod
    def cross_instance(cls, **overrides) -> PairRanges:
        """The proxies for pairs of different objects switched on (fine-tuning preset)."""
        # half the pairs keep CNNGeometric's exact warps: same-image precision must not drop
        preset = {
            "nuisance_shift": 0.1,
            "nuisance_share": 0.5,
            "background_swap": 0.4,
            "source_appearance": 1.0,
            "small_share": 0.3,
        }
        return cls(**{**preset, **overrides})


@dataclass
class TrainingProgress:
    step: int
    steps: int | None
    loss: float
    lr: float
    elapsed: float
    checkpoint: str | None = None
    done: bool = False
    extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- images
def list_image_files(folders) -> list[Path]:
    """Image files (by extension) in ``folders`` (non-recursive), sorted by name."""
    files = []
    for folder in [folders] if isinstance(folders, (str, Path)) else folders:
        folder = Path(folder)
        if folder.is_file():
            files.append(folder)
            continue
        if not folder.is_dir():
            raise ValueError(f"image folder {folder} does not exist.")
        files.extend(sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS))
    return files


def load_images(sources, exclude_names=(), min_size: int = 64) -> list[np.ndarray]:
    """RGB float32 images from arrays, files and folders; names in ``exclude_names`` skipped."""
    from .images import to_rgb_float
    from .media import read_image_file

    exclude = {Path(n).stem.lower() for n in exclude_names}
    if isinstance(sources, (str, Path, np.ndarray)):
        sources = [sources]
    images = []
    for source in sources:
        if isinstance(source, np.ndarray):
            images.append(to_rgb_float(source, "training image", min_size))
            continue
        for path in list_image_files([source]):
            if path.stem.lower() in exclude:
                continue
            try:  # media's reader: the pixel cap applies before anything is decoded
                array = read_image_file(path)[0]
            except ValueError:  # unreadable or too large: skipped in a folder, not fatal
                continue
            if array.ndim == 3 and array.shape[2] not in (1, 3, 4):
                continue
            if min(array.shape[:2]) < min_size:
                continue
            images.append(to_rgb_float(array, str(path), min_size))
    if not images:
        raise ValueError(f"no usable images (>= {min_size} px, gray/RGB/RGBA) in {sources!r}.")
    return images


def build_image_pool(images, size: int = 320, device=None, crops_per_image: int = 3):
    """Square crops of every image, resized to ``size``, as one ``(N, 3, size, size)`` tensor.

    Long images give up to ``crops_per_image`` crops along their long side. Stored in fp16 on
    CUDA (memory), float32 elsewhere.
    """
    import torch

    from .devices import resolve_device
    from .images import image_to_tensor, resize_tensor

    device = resolve_device(device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    crops = []
    for image in images:
        height, width = image.shape[:2]
        side = min(height, width)
        count = 1 if max(height, width) < 1.2 * side else crops_per_image
        for offset in np.linspace(0, max(height, width) - side, count):
            offset = round(offset)
            crop = (
                image[offset : offset + side]
                if height > width
                else image[:, offset : offset + side]
            )
            tensor = resize_tensor(image_to_tensor(np.ascontiguousarray(crop)), (size, size))
            crops.append(tensor.clamp(0, 1).to(dtype))
    return torch.cat(crops, 0).to(device)


# --------------------------------------------------------------------------- random transforms
def _uniform(shape, low, high, gen, device):
    import torch

    return low + (high - low) * torch.rand(shape, generator=gen, device=device)


def random_affine_theta(batch: int, gen, ranges: PairRanges, device, strength: float = 1.0):
    """``(B, 2, 3)`` sampling thetas: R(a) R(-phi) diag(sx, sy) R(phi), plus translation."""
    import torch

    rot = _uniform(batch, -1, 1, gen, device) * math.radians(ranges.rotation_deg) * strength
    shear = _uniform(batch, -1, 1, gen, device) * math.radians(ranges.shear_deg) * strength
    lo, hi = ranges.scale
    sx = 1 + (_uniform(batch, lo, hi, gen, device) - 1) * strength
    sy = 1 + (_uniform(batch, lo, hi, gen, device) - 1) * strength
    t = _uniform((batch, 2), -1, 1, gen, device) * ranges.translation * strength

    def rotation(angle):
        c, s = torch.cos(angle), torch.sin(angle)
        return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)

    diag = torch.diag_embed(torch.stack([sx, sy], -1))
    linear = rotation(rot) @ rotation(-shear) @ diag @ rotation(shear)
    return torch.cat([linear, t[..., None]], -1)


def random_tps_params(batch: int, gen, ranges: PairRanges, device, grid_size: int = 3):
    """``(B, 2 K^2)`` grid params: the identity grid with every point moved up to ``tps_shift``."""
    identity = identity_params("tps", grid_size, device=device)
    shift = _uniform((batch, identity.numel()), -1, 1, gen, device) * ranges.tps_shift
    return identity[None] + shift


class GroundTruth:
    """A random sampling map: an optional TPS, then an optional affine (``theta(tps(p))``)."""

    def __init__(self, theta=None, tps=None, grid_size: int = 3):
        self.theta, self.tps, self.grid_size = theta, tps, grid_size

    def __call__(self, points_xy):
        return sample_map(points_xy, self.theta, self.tps, self.grid_size)


def random_ground_truth(kind: str, batch: int, gen, ranges: PairRanges, device, grid_size=3):
    """Random ``GroundTruth`` for training/evaluating ``kind`` ("affine" | "tps" | "affine+tps")."""
    import torch

    if kind == "affine":
        theta = random_affine_theta(batch, gen, ranges, device)
        if ranges.small_share > 0:
            small = random_affine_theta(batch, gen, ranges, device, ranges.small_strength)
            pick = torch.rand(batch, generator=gen, device=device) < ranges.small_share
            theta = torch.where(pick[:, None, None], small, theta)
        return GroundTruth(theta=theta)
    tps = random_tps_params(batch, gen, ranges, device, grid_size)
    if ranges.small_share > 0:
        identity = identity_params("tps", grid_size, device=device)[None]
        pick = torch.rand(batch, generator=gen, device=device) < ranges.small_share
        tps = torch.where(pick[:, None], identity + (tps - identity) * ranges.small_strength, tps)
    if kind == "affine+tps":
        return GroundTruth(random_affine_theta(batch, gen, ranges, device), tps, grid_size)
    theta = random_affine_theta(batch, gen, ranges, device, ranges.tps_affine_strength)
    keep = torch.rand(batch, generator=gen, device=device) < ranges.tps_affine_share
    theta = torch.where(keep[:, None, None], theta, identity_theta(device=device)[None])
    return GroundTruth(theta, tps, grid_size)


# --------------------------------------------------------------------------- appearance
def _gaussian_blur(images, sigma):
    """Per-sample Gaussian blur, ``sigma`` (B,) in pixels (0 leaves a sample as it is)."""
    import torch
    import torch.nn.functional as F

    b, c, h, w = images.shape
    radius = 4
    x = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-(x[None] ** 2) / (2 * sigma.clamp_min(1e-3)[:, None] ** 2))
    kernel = kernel / kernel.sum(1, keepdim=True)  # (B, K)
    kernel = kernel.repeat_interleave(c, 0)  # (B*C, K)
    flat = images.reshape(1, b * c, h, w)
    flat = F.pad(flat, (radius, radius, radius, radius), mode="reflect")
    flat = F.conv2d(flat, kernel[:, None, None, :], groups=b * c)
    flat = F.conv2d(flat, kernel[:, None, :, None], groups=b * c)
    return flat.reshape(b, c, h, w)


def randomize_appearance(images, gen, strength: float = 1.0, textures=None):
    """Batched photometric and texture randomisation of ``(B, 3, H, W)`` images in 0..1.

    Each sample independently gets some of: colour mixing (random 3x3 matrix, channel shuffles,
    gray, inversion), brightness/contrast, gamma, texture blending with ``textures`` (B, 3, H, W),
    blur, posterisation and noise. ``strength`` scales probabilities and amplitudes.
    """
    import torch

    b, device = images.shape[0], images.device

    def chance(p):
        return (torch.rand(b, generator=gen, device=device) < p * strength).float()

    def rand(shape=None, low=0.0, high=1.0):
        return _uniform(b if shape is None else (b, *shape), low, high, gen, device)

    x = images.float()
    # colour mixing
    eye = torch.eye(3, device=device)[None]
    mix = eye + 0.35 * strength * torch.randn(b, 3, 3, generator=gen, device=device)
    mix = torch.where(chance(0.8)[:, None, None] > 0, mix, eye)
    perm = torch.argsort(torch.rand(b, 3, generator=gen, device=device), 1)
    perm_matrix = torch.nn.functional.one_hot(perm, 3).float()
    mix = torch.where(chance(0.3)[:, None, None] > 0, perm_matrix @ mix, mix)
    luma = torch.tensor([0.299, 0.587, 0.114], device=device).expand(3, 3)[None]
    mix = torch.where(chance(0.15)[:, None, None] > 0, luma.expand(b, 3, 3), mix)
    x = torch.einsum("bij,bjhw->bihw", mix, x)
    low = x.amin((1, 2, 3), keepdim=True)
    high = x.amax((1, 2, 3), keepdim=True)
    x = (x - low) / (high - low).clamp_min(1e-3)
    invert = chance(0.1)[:, None, None, None]
    x = invert * (1 - x) + (1 - invert) * x
    # brightness, contrast, gamma
    contrast = 1 + rand(low=-0.4, high=0.4)[:, None, None, None] * strength
    bright = rand(low=-0.15, high=0.15)[:, None, None, None] * strength
    x = ((x - 0.5) * contrast + 0.5 + bright).clamp(0, 1)
    gamma = torch.exp(rand(low=-0.6, high=0.6) * strength)[:, None, None, None]
    x = x.clamp_min(1e-4) ** gamma
    # texture blending: additive or multiplicative mix with another image's texture
    if textures is not None:
        a = (rand(low=0.1, high=0.4) * chance(0.4))[:, None, None, None]
        tex = textures.float()
        multiplicative = chance(0.5)[:, None, None, None]
        gray = tex.mean(1, keepdim=True)
        mult = x * (1 - a + 2 * a * gray)
        add = (1 - a) * x + a * tex
        x = (multiplicative * mult + (1 - multiplicative) * add).clamp(0, 1)
    # blur
    sigma = rand(low=0.3, high=2.5) * chance(0.5)
    if bool((sigma > 0).any()):
        blurred = _gaussian_blur(x, sigma)
        x = torch.where((sigma > 0)[:, None, None, None], blurred, x)
    # posterisation
    levels = torch.randint(3, 9, (b,), generator=gen, device=device).float()[:, None, None, None]
    poster = torch.round(x * (levels - 1)) / (levels - 1)
    x = torch.where(chance(0.25)[:, None, None, None] > 0, poster, x)
    # noise
    noise_sigma = (rand(low=0.0, high=0.06) * chance(0.5))[:, None, None, None]
    x = x + noise_sigma * torch.randn(x.shape, generator=gen, device=device)
    return x.clamp(0, 1)


# --------------------------------------------------------------------------- pairs
@dataclass
class PairBatch:
    source: torch.Tensor  # (B, 3, S, S) content
    target: torch.Tensor  # (B, 3, S, S) geometry style (re-styled)
    target_clean: torch.Tensor  # target before re-styling (for the image loss)
    truth: GroundTruth


def make_pairs(
    pool,
    batch: int,
    kind: str,
    gen,
    ranges: PairRanges | None = None,
    size: int = 240,
    grid_size: int = 3,
) -> PairBatch:
    """A batch of synthetic (source, target) pairs from ``pool`` on ``pool``'s device."""
    import torch
    import torch.nn.functional as F

    from .images import ALIGN_CORNERS

    ranges = ranges or PairRanges()
    device = pool.device
    idx = torch.randint(0, pool.shape[0], (batch,), generator=gen, device=device)
    zoom = _uniform(batch, *ranges.crop_zoom, gen, device)
    # mirror crops in x and y: more variety from few images (geometry has no gravity)
    flip = torch.where(torch.rand((batch, 2), generator=gen, device=device) < 0.5, -1.0, 1.0)
    centre = _uniform((batch, 2), -1, 1, gen, device) * (1 - zoom)[:, None]
    crop_scale = (zoom[:, None] * flip)[:, None]  # (B, 1, 2)

    centres = output_centres(batch, size, size, device=device)
    truth = random_ground_truth(kind, batch, gen, ranges, device, grid_size)
    if ranges.nuisance_shift > 0:
        # target(p) = source(T(D(p))): D is local shape the network must not try to predict
        fine = PairRanges(tps_shift=ranges.nuisance_shift)
        nuisance = random_tps_params(batch, gen, fine, device, ranges.nuisance_grid)
        identity = identity_params("tps", ranges.nuisance_grid, device=device)[None]
        share = torch.rand(batch, generator=gen, device=device) < ranges.nuisance_share
        nuisance = torch.where(share[:, None], nuisance, identity)
        warped = truth(sample_map(centres, None, nuisance, ranges.nuisance_grid))
    else:
        warped = truth(centres)

    images = pool[idx].float()
    source_grid = (centres * crop_scale + centre[:, None]).reshape(batch, size, size, 2)
    target_grid = (warped * crop_scale + centre[:, None]).reshape(batch, size, size, 2)
    # mirror padding: samples beyond the pool image reflect back in, so no empty border
    sample: dict[str, Any] = {
        "mode": "bilinear",
        "padding_mode": "reflection",
        "align_corners": ALIGN_CORNERS,
    }
    source = F.grid_sample(images, source_grid, **sample)
    target_clean = F.grid_sample(images, target_grid, **sample)
    if ranges.appearance:
        textures = _random_pool_crops(pool, gen, centres, size, (0.15, 0.6))
        target = randomize_appearance(target_clean, gen, 1.0, textures)
        source_textures = textures.roll(1, 0) if ranges.source_appearance >= 1 else None
        source = randomize_appearance(source, gen, ranges.source_appearance, source_textures)
    else:
        target = target_clean
    if ranges.background_swap > 0:
        source = _swap_background(source, pool, gen, ranges.background_swap, centres)
        target = _swap_background(target, pool, gen, ranges.background_swap, centres)
    return PairBatch(source, target, target_clean, truth)


def _random_pool_crops(pool, gen, centres, size: int, zoom: tuple[float, float]):
    """A centred crop (zoom drawn in ``zoom``, mirror padding) of a random pool image per
    output point set in ``centres`` (B, size * size, 2): (B, 3, size, size) float."""
    import torch
    import torch.nn.functional as F

    from .images import ALIGN_CORNERS

    batch, device = centres.shape[0], pool.device
    other = pool[torch.randint(0, pool.shape[0], (batch,), generator=gen, device=device)]
    scale = _uniform(batch, *zoom, gen, device)[:, None, None]
    grid = (centres * scale).reshape(batch, size, size, 2)
    return F.grid_sample(other.float(), grid, mode="bilinear", padding_mode="reflection",
                         align_corners=ALIGN_CORNERS)  # fmt: skip


def _swap_background(images, pool, gen, chance: float, centres):
    """With probability ``chance`` per sample, keep a soft ellipse (random centre and radii)
    of ``images`` and fill the rest with a random crop of another pool image."""
    import torch

    b, _, h, w = images.shape
    device = images.device
    background = _random_pool_crops(pool, gen, centres, h, (0.4, 1.0))
    middle = _uniform((b, 2), -0.15, 0.15, gen, device)[:, None]
    radii = _uniform((b, 2), 0.55, 0.95, gen, device)[:, None]
    distance = (((centres - middle) / radii) ** 2).sum(-1).sqrt().reshape(b, 1, h, w)
    keep = torch.sigmoid((1 - distance) * 12)
    swap = (torch.rand(b, generator=gen, device=device) < chance).float()[:, None, None, None]
    keep = swap * keep + (1 - swap)
    return keep * images + (1 - keep) * background


# --------------------------------------------------------------------------- losses
def grid_loss(kind: str, predicted, truth: GroundTruth, grid_size: int = 3, points=None):
    """Mean squared distance (normalised units) between predicted and true lattice samples."""
    batch = predicted.shape[0]
    if points is None:
        points = lattice_xy(LATTICE_SIZE, predicted.device)
    points = points[None].expand(batch, *points.shape)
    error = sample_points(kind, predicted, points, grid_size) - truth(points)
    return error.pow(2).sum(-1).mean()


def image_loss(kind: str, predicted, pairs: PairBatch, grid_size: int = 3):
    """L2 between the clean target and the source warped by ``predicted``, on valid pixels."""
    import torch.nn.functional as F

    from .images import ALIGN_CORNERS

    b, _, h, w = pairs.source.shape
    centres = output_centres(b, h, w, device=predicted.device)
    grid = sample_points(kind, predicted, centres, grid_size).reshape(b, h, w, 2)
    warped = F.grid_sample(pairs.source, grid.to(pairs.source.dtype), align_corners=ALIGN_CORNERS)
    valid = (grid.abs() <= 1).all(-1, keepdim=True).permute(0, 3, 1, 2).float()
    diff = (warped - pairs.target_clean).pow(2) * valid
    return diff.sum() / (valid.sum() * 3).clamp_min(1.0)


# --------------------------------------------------------------------------- training
def _learning_rate(progress: float, peak: float, warmup: float = 0.05) -> float:
    """Linear warm-up then cosine decay to 2% of ``peak`` over ``progress`` in 0..1."""
    progress = min(max(progress, 0.0), 1.0)
    if progress < warmup:
        return peak * (0.05 + 0.95 * progress / warmup)
    t = (progress - warmup) / (1 - warmup)
    return peak * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))


def _check_training_options(
    model: str, trunk: str, loss: str, steps, seconds, lr, batch_size
) -> None:
    """``ValueError`` naming the bad option of ``train_geometry``, before any work."""
    from .geonet import check_model_kind, check_trunk

    check_model_kind(model)
    check_trunk(trunk)
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; accepted: {', '.join(LOSSES)}.")
    if steps is None and seconds is None:
        raise ValueError("give steps or seconds (or both) to bound the training.")
    if steps is not None and int(steps) < 1:
        raise ValueError(f"steps must be >= 1; got {steps}.")
    # a budget <= 0 never ends the loop (progress = elapsed / seconds stays below 1)
    if seconds is not None and not (math.isfinite(float(seconds)) and float(seconds) > 0):
        raise ValueError(f"seconds must be a positive number; got {seconds}.")
    if not (math.isfinite(float(lr)) and float(lr) > 0):
        raise ValueError(f"lr must be a positive number; got {lr}.")
    if int(batch_size) < 2:
        raise ValueError(f"batch_size must be >= 2 (batch norm); got {batch_size}.")


def _starting_network(model: str, trunk: str, device, out, resume: bool, backbone: str):
    """``(net, start_step)``: the network stored in ``out`` and its step count when resuming
    from an existing file, else a freshly initialised one at step 0; in train mode."""
    from .geonet import build_geometry_net, default_config, net_from_checkpoint, read_checkpoint

    start_step = 0
    if resume and out is not None and Path(out).is_file():
        payload = read_checkpoint(out)
        if payload["config"].get("model") != model or payload["config"].get("trunk") != trunk:
            raise ValueError(f"cannot resume from {out}: it holds a different model or trunk.")
        net = net_from_checkpoint(payload, device=device, backbone=backbone)
        start_step = int(payload.get("extra", {}).get("step", 0))
    else:
        net = build_geometry_net(default_config(model, trunk), backbone=backbone).to(device)
    net.train()
    return net, start_step


class _GeometryTrainer:
    """One training run's network, optimiser and pair source; ``step(lr)`` is one update."""

    def __init__(
        self,
        net,
        pool,
        gen,
        model: str,
        loss: str,
        batch_size: int,
        ranges: PairRanges,
        lr: float,
        weight_decay: float,
        amp: bool,
        device,
    ):
        import torch

        self.net, self.pool, self.gen, self.model, self.loss = net, pool, gen, model, loss
        self.batch_size, self.ranges, self.device = int(batch_size), ranges, device
        self.params = [p for p in net.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=lr, weight_decay=weight_decay)
        self.use_amp = amp and device.type == "cuda"
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.points = lattice_xy(LATTICE_SIZE, device)

    def step(self, lr: float):
        """One optimiser step at learning rate ``lr`` on a fresh batch; returns the loss."""
        import torch

        net = self.net
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with torch.no_grad():
            pairs = make_pairs(
                self.pool,
                self.batch_size,
                self.model,
                self.gen,
                self.ranges,
                net.input_size,
                net.grid_size,
            )
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_amp):
            predicted = net(pairs.source, pairs.target)
        predicted = predicted.float()
        if self.loss == "grid":
            value = grid_loss(self.model, predicted, pairs.truth, net.grid_size, self.points)
        else:
            value = image_loss(self.model, predicted, pairs, net.grid_size)
        if not bool(torch.isfinite(value)):
            raise ValueError(
                f"training diverged: the loss is {float(value)}; lower the learning rate (lr)."
            )
        self.optimizer.zero_grad(set_to_none=True)
        value.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 5.0)
        self.optimizer.step()
        return value


def _save_training_checkpoint(
    net, out, step: int, loss: float, elapsed: float, settings: dict, half: bool
):
    """Write ``net`` to ``out`` (in eval mode, then back to train mode) with the step, elapsed
    time, loss and the run's ``settings`` as extras; the path as a string, None without ``out``."""
    import torch

    from .geonet import save_checkpoint

    if not all(bool(torch.isfinite(p).all()) for p in net.parameters()):
        # a diverged run must not leave (or replace) a checkpoint that loading refuses
        raise ValueError(
            f"training diverged at step {step}: the weights are no longer finite; "
            "lower the learning rate (lr). Nothing was saved."
        )
    if out is None:
        return None
    extra = {"step": step, "elapsed": elapsed, "loss": loss, **settings}
    net.eval()
    path = save_checkpoint(net, out, extra=extra, half=half)
    net.train()
    return str(path)


def _training_progress(step: int, start_step: int, total, elapsed: float, seconds) -> float:
    """Share of the budget used, 0..1+: the larger of the steps' and the seconds' shares."""
    progress = 0.0
    if total is not None:
        progress = max(progress, (step - start_step) / max(total - start_step, 1))
    if seconds is not None:
        progress = max(progress, elapsed / float(seconds))
    return progress


def train_geometry(
    images,
    model: str = "affine",
    trunk: str = "embedded",
    *,
    steps=None,
    seconds=None,
    batch_size: int = 32,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    device=None,
    out=None,
    resume: bool = False,
    checkpoint_every: float = 60.0,
    loss: str = "grid",
    ranges: PairRanges | None = None,
    seed: int = 0,
    pool_size: int = 320,
    amp: bool = True,
    backbone: str = "auto",
    log_every: int = 10,
    half_checkpoint: bool = True,
    images_are_pool: bool = False,
):
    """Train a geometry network; a generator of ``TrainingProgress`` (last one has ``done``).

    ``images``: arrays, files or folders (or, with ``images_are_pool``, a tensor from
    ``build_image_pool``). Stops after ``steps`` steps or ``seconds`` of wall clock, whichever
    comes first (at least one must be given); the learning rate follows warm-up + cosine over
    that budget. Every ``checkpoint_every`` seconds and at the end, the network is written to
    ``out`` (fp16 when ``half_checkpoint``). ``resume`` starts from the weights and step count
    stored in ``out`` (the optimiser restarts). The last progress item (``done=True``) carries
    the trained network, in eval mode, as ``extra["net"]``.
    """
    import torch

    from .devices import resolve_device

    _check_training_options(model, trunk, loss, steps, seconds, lr, batch_size)
    device = resolve_device(device)
    ranges = ranges or PairRanges()
    torch.manual_seed(seed)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    pool = images if images_are_pool else build_image_pool(load_images(images), pool_size, device)
    pool = pool.to(device)
    net, start_step = _starting_network(model, trunk, device, out, resume, backbone)
    trainer = _GeometryTrainer(
        net, pool, gen, model, loss, batch_size, ranges, lr, weight_decay, amp, device
    )
    settings = {
        "device": str(device),
        "batch_size": int(batch_size),
        "lr": lr,
        "loss_kind": loss,
        "ranges": asdict(ranges),
        "seed": seed,
        "pool_images": int(pool.shape[0]),
    }

    t0 = time.perf_counter()
    last_save = t0
    step = start_step
    running = None
    total = None if steps is None else int(steps)
    while True:
        progress = _training_progress(step, start_step, total, time.perf_counter() - t0, seconds)
        if progress >= 1.0 or (total is not None and step >= total):
            break
        current_lr = _learning_rate(progress, lr)
        value = trainer.step(current_lr)
        step += 1
        if step % log_every == 0 or step == start_step + 1:
            loss_value = float(value.detach())
            running = loss_value if running is None else 0.8 * running + 0.2 * loss_value
            now = time.perf_counter()
            saved = None
            if out is not None and now - last_save >= checkpoint_every:
                saved = _save_training_checkpoint(
                    net, out, step, running, now - t0, settings, half_checkpoint
                )
                last_save = now
            yield TrainingProgress(step, total, running, current_lr, now - t0, saved)
    elapsed = time.perf_counter() - t0
    final_loss = float("nan") if running is None else running
    saved = _save_training_checkpoint(
        net, out, step, final_loss, elapsed, settings, half_checkpoint
    )
    net.eval()
    yield TrainingProgress(
        step,
        total,
        final_loss,
        _learning_rate(1.0, lr),
        elapsed,
        saved,
        done=True,
        extra={"net": net},
    )


# --------------------------------------------------------------------------- evaluation
def make_eval_pairs(
    images,
    kind: str,
    pairs_per_image: int = 4,
    seed: int = 1234,
    size: int = 240,
    ranges: PairRanges | None = None,
    grid_size: int = 3,
):
    """Fixed-seed CPU pairs: list of ``(source, target, truth_lattice_rc)`` numpy triples.

    ``truth_lattice_rc`` are the source pixel positions (row, col) that the 20 x 20 output
    lattice samples from.
    """
    import torch

    from .images import normalized_to_pixel, tensor_to_image

    if int(pairs_per_image) < 1:
        raise ValueError(f"pairs_per_image must be >= 1; got {pairs_per_image}.")
    pairs = []
    for index, image in enumerate(images):
        pool = build_image_pool([image], size=int(size * 1.34), device="cpu", crops_per_image=1)
        gen = torch.Generator().manual_seed(seed + 7919 * index)
        with torch.no_grad():
            batch = make_pairs(pool, pairs_per_image, kind, gen, ranges, size, grid_size)
            points = lattice_xy(LATTICE_SIZE)[None].expand(pairs_per_image, -1, -1)
            truth = batch.truth(points)
        for k in range(pairs_per_image):
            pairs.append(
                (
                    tensor_to_image(batch.source[k : k + 1]),
                    tensor_to_image(batch.target[k : k + 1]),
                    normalized_to_pixel(truth[k].numpy(), (size, size)),
                )
            )
    return pairs


def evaluate_geometry(
    images,
    model: str = "affine+tps",
    methods=EVAL_METHODS,
    pairs_per_image: int = 4,
    seed: int = 1234,
    size: int = 240,
    trunk: str = "auto",
    checkpoint=None,
    device=None,
    ranges: PairRanges | None = None,
    pairs=None,
    keep_pairs: int = 0,
    estimate_options: dict | None = None,
):
    """Accuracy of ``estimate_warp`` on fixed-seed synthetic pairs (with appearance changes).

    ``estimate_options``: further keyword arguments of ``estimate_warp`` (e.g. ``passes``).

    Returns ``{"pairs": n, "model": ..., method: {"mean_error_pct", "median_error_pct",
    "pck@0.05", "pck@0.10", "seconds_per_pair", "confidence_auroc"}}``: lattice sampling error
    in % of the image side, PCK the share of lattice points within 5% / 10% of the side, and
    the AUROC of the estimates' ``confidence`` for telling pairs whose PCK@0.10 >= 0.5 from the
    rest (None when every pair is on one side; per pair in ``"per_pair"``). ``"examples"`` holds the
    first ``keep_pairs`` (source, target, {method: transform}) for figures.
    """
    from .estimate import check_options, estimate_warp
    from .images import regular_grid_points

    if model not in EVAL_MODELS:
        raise ValueError(f"unknown model {model!r}; accepted: {', '.join(EVAL_MODELS)}.")
    methods = tuple(methods)
    for method in methods:
        if method not in EVAL_METHODS:
            raise ValueError(f"unknown method {method!r}; accepted: {', '.join(EVAL_METHODS)}.")
    check_options(model, "network", trunk)
    if pairs is None:
        pairs = make_eval_pairs(
            load_images(images, min_size=32), model, pairs_per_image, seed, size, ranges
        )
    lattice = regular_grid_points((size, size), LATTICE_SIZE)
    from .geonet import resolve_trunk

    trunk = resolve_trunk(trunk)
    results = {"pairs": len(pairs), "model": model, "trunk": trunk, "size": size}
    errors: dict[str, list] = {m: [] for m in methods}
    confidences: dict[str, list] = {m: [] for m in methods}
    timings = {m: 0.0 for m in methods}
    examples = []
    for index, (source, target, truth_rc) in enumerate(pairs):
        transforms = {}
        for method in methods:
            t0 = time.perf_counter()
            if method == "identity":
                predicted = lattice
            else:
                tf = estimate_warp(
                    source,
                    target,
                    model=model,
                    method=method,
                    device=device,
                    trunk=trunk,
                    checkpoint=checkpoint,
                    **(estimate_options or {}),
                )
                predicted = tf.sample_points(lattice)
                transforms[method] = tf
                confidences[method].append(
                    (getattr(tf, "confidence", None), getattr(tf, "confidence_features", None))
                )
            timings[method] += time.perf_counter() - t0
            errors[method].append(np.linalg.norm(predicted - truth_rc, axis=1) / size * 100.0)
        if index < keep_pairs:
            examples.append((source, target, transforms))
    from .landmark_eval import auroc

    for method in methods:
        err = np.concatenate(errors[method])
        right = [bool((e < 10.0).mean() >= 0.5) for e in errors[method]]
        scores = [c for c, _ in confidences[method]]
        results[method] = {
            "mean_error_pct": float(err.mean()),
            "median_error_pct": float(np.median(err)),
            "pck@0.05": float((err < 5.0).mean()),
            "pck@0.10": float((err < 10.0).mean()),
            "seconds_per_pair": timings[method] / max(len(pairs), 1),
            "confidence_auroc": auroc(scores, right) if scores else None,
            "per_pair": [
                {"pck@0.10": float((e < 10.0).mean()), "confidence": c, "features": f}
                for e, (c, f) in zip(errors[method], confidences[method])
            ]
            if scores
            else None,
        }
    if keep_pairs:
        results["examples"] = examples
    return results


def validation_figure(examples, methods=("network", "refine")) -> np.ndarray:
    """uint8 mosaic, one row per example: source | target | source warped by each method."""
    from .warp import warp_image

    rows = []
    for source, target, transforms in examples:
        tiles = [source, target]
        for method in methods:
            if method in transforms:
                tiles.append(np.asarray(warp_image(source, transforms[method]), np.float32))
        tiles = [np.clip(t[..., :3], 0, 1) for t in tiles]
        gap = np.ones((tiles[0].shape[0], 4, 3), np.float32)
        spaced = [part for tile in tiles for part in (tile, gap)][:-1]
        rows.append(np.concatenate(spaced, axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=1) for r in rows]
    return (np.concatenate(rows, 0) * 255 + 0.5).astype(np.uint8)
