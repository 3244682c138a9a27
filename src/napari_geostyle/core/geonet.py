"""The geometry network (CNNGeometric, Rocco et al. 2017, as used by Liu et al. 2020).

Both images are resized to ``input_size`` (240) and passed through a trunk at stride 16
(15 x 15 x C); every location is L2-normalised; the correlation tensor
``C[b, (i, j), k, l] = <f_content(i, j), f_style(k, l)>`` (225 channels) goes through ReLU and an
L2 normalisation over its channels; a regression head (conv 7x7 -> 128, BN, ReLU; conv 5x5 -> 64,
BN, ReLU; linear) predicts the parameters as an offset from the identity:

- ``affine``: 6 numbers, ``theta`` (2, 3) of ``torch.nn.functional.affine_grid``: output
  normalised ``(x, y)`` -> content normalised ``(x, y)``;
- ``tps``: 18 numbers, ``[x..., y...]`` content positions that a 3 x 3 grid of output control
  points (``transforms.tps_grid_params_to_grid``) samples from.

The prediction is a *sampling* map: warping the content with it gives the geometry of the style.

Trunks: ``embedded`` (a small CNN trained end to end with this package, shipped in
``napari_geostyle/models``) and ``vgg19`` (frozen VGG-19 to ``pool4`` from ``features.build_trunk``).

Checkpoints are dicts ``{"format": ..., "config": {...}, "state_dict": {...}}`` (tensors may be
fp16). torch is imported inside functions and classes are built lazily so that importing this
module stays cheap.
"""

from __future__ import annotations

import threading
from pathlib import Path

CHECKPOINT_FORMAT = "napari-geostyle-geonet"
CHECKPOINT_VERSION = 1
MODEL_KINDS = ("affine", "tps")
TRUNKS = ("embedded", "vgg19")
INPUT_SIZE = 240
FEATURE_STRIDE = 16
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"

_CLASSES: dict = {}
_CACHE: dict = {}
_CACHE_LOCK = threading.Lock()


def check_model_kind(model: str) -> str:
    if model not in MODEL_KINDS:
        raise ValueError(f"unknown geometry model {model!r}; accepted: {', '.join(MODEL_KINDS)}.")
    return model


def check_trunk(trunk: str) -> str:
    if trunk not in TRUNKS:
        raise ValueError(f"unknown trunk {trunk!r}; accepted: {', '.join(TRUNKS)}.")
    return trunk


def parameter_count(model: str, grid_size: int = 3) -> int:
    """Number of regressed parameters: 6 for affine, 2 * grid_size**2 for TPS."""
    return 6 if check_model_kind(model) == "affine" else 2 * grid_size * grid_size


def default_config(model: str = "affine", trunk: str = "embedded", **overrides) -> dict:
    """The configuration stored with a checkpoint (what ``GeometryNet`` is built from)."""
    from .. import __version__

    config = {
        "model": check_model_kind(model),
        "trunk": check_trunk(trunk),
        "grid_size": 3,
        "input_size": INPUT_SIZE,
        "embedded_widths": [32, 64, 96, 128],
        "version": CHECKPOINT_VERSION,
        "package_version": __version__,
    }
    config.update(overrides)
    return config


def shipped_checkpoint_path(model: str, trunk: str = "embedded") -> Path:
    """Where the shipped checkpoint of ``model``/``trunk`` lives."""
    return MODELS_DIR / f"geonet_{check_model_kind(model)}_{check_trunk(trunk)}.pt"


# --------------------------------------------------------------------------- network classes
def _classes():
    """Build the nn.Module classes on first use (keeps torch out of module import)."""
    if _CLASSES:
        return _CLASSES
    import torch
    import torch.nn.functional as F
    from torch import nn

    imagenet_mean = (0.485, 0.456, 0.406)
    imagenet_std = (0.229, 0.224, 0.225)

    def conv_bn(cin, cout, kernel, stride):
        return [
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        ]

    class EmbeddedTrunk(nn.Module):
        """Small stride-16 CNN (trained end to end for geometry matching).

        Taps: ``s4`` (stride 4), ``s8`` (stride 8), ``s16`` (stride 16, the correlation input).
        """

        def __init__(self, widths=(32, 64, 96, 128)):
            super().__init__()
            w1, w2, w3, w4 = widths
            self.stem = nn.Sequential(*conv_bn(3, w1, 5, 2), *conv_bn(w1, w2, 3, 2),
                                      *conv_bn(w2, w2, 3, 1))
            self.stage8 = nn.Sequential(*conv_bn(w2, w3, 3, 2), *conv_bn(w3, w3, 3, 1))
            self.stage16 = nn.Sequential(*conv_bn(w3, w4, 3, 2), *conv_bn(w4, w4, 3, 1),
                                         nn.Conv2d(w4, w4, 1))
            self.register_buffer("mean", torch.tensor(imagenet_mean).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(imagenet_std).view(1, 3, 1, 1))

        def forward(self, rgb01, taps=("s16",)):
            out = {}
            x = self.stem((rgb01 - self.mean) / self.std)
            out["s4"] = x
            x = self.stage8(x)
            out["s8"] = x
            if "s16" in taps:
                out["s16"] = self.stage16(x)
            return {name: out[name] for name in taps}

    class VGGTrunk(nn.Module):
        """Frozen VGG-19 to pool4 (the paper's trunk), shared through ``features.build_trunk``.

        It holds no parameters of its own, so checkpoints carry only the trained head.
        """

        def __init__(self, backbone="auto"):
            super().__init__()
            self.backbone = backbone

        def forward(self, rgb01, taps=("s16",)):
            from .features import build_trunk

            names = {"s4": "pool2", "s8": "pool3", "s16": "pool4"}
            vgg = build_trunk(self.backbone, device=rgb01.device, last_layer="pool4")
            with torch.no_grad():
                feats = vgg(rgb01.float(), taps=tuple(names[t] for t in taps))
            return {t: feats[names[t]] for t in taps}

    def l2_normalize(x, dim=1):
        return x / (x.pow(2).sum(dim=dim, keepdim=True) + 1e-6).sqrt()

    class GeometryNet(nn.Module):
        """Correlation + regression network; ``forward(content, style)`` -> parameters (B, P)."""

        def __init__(self, config: dict, backbone: str = "auto"):
            super().__init__()
            self.config = dict(config)
            self.kind = check_model_kind(config["model"])
            self.grid_size = int(config.get("grid_size", 3))
            self.input_size = int(config.get("input_size", INPUT_SIZE))
            if check_trunk(config["trunk"]) == "embedded":
                self.trunk = EmbeddedTrunk(tuple(config.get("embedded_widths", (32, 64, 96, 128))))
            else:
                self.trunk = VGGTrunk(backbone)
            side = self.input_size // FEATURE_STRIDE
            channels = side * side
            self.head = nn.Sequential(
                nn.Conv2d(channels, 128, 7), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
                nn.Conv2d(128, 64, 5), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            )
            reduced = side - 6 - 4
            n_out = parameter_count(self.kind, self.grid_size)
            self.linear = nn.Linear(64 * reduced * reduced, n_out)
            # Adam moves every weight by ~lr per step: scaling the 1600 inputs by 1/sqrt(n)
            # keeps the first steps from throwing the output far from the identity
            self.linear_scale = (64 * reduced * reduced) ** -0.5
            # start at the identity transform
            nn.init.zeros_(self.linear.weight)
            nn.init.zeros_(self.linear.bias)
            self.register_buffer("identity", identity_parameters(self.kind, self.grid_size))

        def prepare(self, rgb01):
            """Resize a (B, 3, H, W) 0..1 batch to the network's square input."""
            from .images import resize_tensor

            return resize_tensor(rgb01, (self.input_size, self.input_size))

        def correlation(self, feat_content, feat_style):
            b, c, h, w = feat_content.shape
            fa = l2_normalize(feat_content.float()).reshape(b, c, h * w)
            fb = l2_normalize(feat_style.float()).reshape(b, c, h * w)
            # channel index = content location (i, j) row-major, spatial = style location (k, l)
            corr = torch.bmm(fa.transpose(1, 2), fb).reshape(b, h * w, h, w)
            return l2_normalize(F.relu(corr))

        def forward(self, content, style):
            content, style = self.prepare(content), self.prepare(style)
            both = self.trunk(torch.cat([content, style], 0))["s16"]
            fa, fb = both.chunk(2, 0)
            x = self.head(self.correlation(fa, fb).to(fa.dtype))
            offset = self.linear(x.flatten(1) * self.linear_scale).float()
            return self.identity + offset

    _CLASSES.update(EmbeddedTrunk=EmbeddedTrunk, VGGTrunk=VGGTrunk, GeometryNet=GeometryNet,
                    l2_normalize=l2_normalize)
    return _CLASSES


def identity_parameters(model: str, grid_size: int = 3):
    """Identity parameters as a (P,) float32 tensor."""
    import torch

    if check_model_kind(model) == "affine":
        return torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    from .transforms import tps_identity_params

    return torch.as_tensor(tps_identity_params(grid_size), dtype=torch.float32).reshape(-1)


def build_geometry_net(config: dict, backbone: str = "auto"):
    """A freshly initialised ``GeometryNet`` for ``config`` (see ``default_config``)."""
    return _classes()["GeometryNet"](config, backbone=backbone)


# --------------------------------------------------------------------------- checkpoints
def save_checkpoint(net, path, extra: dict | None = None, half: bool = True) -> Path:
    """Write ``net`` (config + state_dict; fp16 floats when ``half``) to ``path``."""
    import torch

    path = Path(path)
    state = {}
    for name, tensor in net.state_dict().items():
        tensor = tensor.detach().to("cpu")
        if half and tensor.is_floating_point():
            tensor = tensor.half()
        state[name] = tensor.clone()
    payload = {"format": CHECKPOINT_FORMAT, "config": dict(net.config), "state_dict": state}
    if extra:
        payload["extra"] = extra
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # atomic: an interrupted save never leaves a broken checkpoint
    return path


CHECKSUMS_FILE = MODELS_DIR / "checksums.json"  # SHA-256 of each shipped model file
INPUT_SIZE_RANGE = (176, 1024)  # the head's 7x7 and 5x5 convolutions need >= 11 x 11 cells
GRID_SIZE_RANGE = (2, 8)
_REQUIRED_CONFIG = ("model", "trunk", "grid_size", "input_size")
_OPTIONAL_CONFIG = ("embedded_widths", "version", "package_version")


def file_sha256(path) -> str:
    """Hex SHA-256 of a file's bytes."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_shipped_file(path: Path) -> None:
    """A file from the package's models folder must match its SHA-256 in ``checksums.json``."""
    import json

    path = path.resolve()
    if path.parent != MODELS_DIR.resolve():
        return  # a user checkpoint: no known hash
    try:
        expected = json.loads(CHECKSUMS_FILE.read_text(encoding="utf-8"))[path.name]
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(
            f"{path.name} has no entry in {CHECKSUMS_FILE}; the installation is incomplete "
            "(reinstall napari-geostyle)."
        ) from None
    actual = file_sha256(path)
    if actual != expected:
        raise ValueError(
            f"shipped model {path} is damaged (SHA-256 {actual[:12]}..., expected "
            f"{str(expected)[:12]}...); reinstall napari-geostyle (after retraining a "
            "model, run scripts/update_model_checksums.py)."
        )


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_config(config, where: str = "checkpoint") -> dict:
    """Check a checkpoint config before anything is built from it (``ValueError`` naming the
    key): known keys, types, and sizes in a sane range (a huge ``input_size`` would allocate
    gigabytes before failing)."""
    if not isinstance(config, dict):
        raise ValueError(f"{where}: 'config' must be a dict; got {type(config).__name__}.")
    unknown = sorted(str(k) for k in config if k not in _REQUIRED_CONFIG + _OPTIONAL_CONFIG)
    if unknown:
        raise ValueError(
            f"{where}: unknown config key(s) {', '.join(unknown)} (made by a newer "
            "napari-geostyle, or edited by hand?)."
        )
    for key in _REQUIRED_CONFIG:
        if key not in config:
            raise ValueError(f"{where}: config key {key!r} is missing.")
    if config["model"] not in MODEL_KINDS:
        raise ValueError(f"{where}: config 'model' must be one of {MODEL_KINDS}; got "
                         f"{config['model']!r}.")  # fmt: skip
    if config["trunk"] not in TRUNKS:
        raise ValueError(f"{where}: config 'trunk' must be one of {TRUNKS}; got "
                         f"{config['trunk']!r}.")  # fmt: skip
    low, high = GRID_SIZE_RANGE
    grid = config["grid_size"]
    if not _is_int(grid) or not low <= grid <= high:
        raise ValueError(f"{where}: config 'grid_size' must be an integer {low}..{high}; "
                         f"got {grid!r}.")  # fmt: skip
    low, high = INPUT_SIZE_RANGE
    size = config["input_size"]
    if not _is_int(size) or not low <= size <= high or size % FEATURE_STRIDE:
        raise ValueError(
            f"{where}: config 'input_size' must be a multiple of {FEATURE_STRIDE} from {low} "
            f"to {high}; got {size!r}."
        )
    if config["trunk"] == "embedded" or "embedded_widths" in config:
        if "embedded_widths" not in config:
            raise ValueError(f"{where}: config key 'embedded_widths' is missing.")
        widths = config["embedded_widths"]
        if (
            not isinstance(widths, (list, tuple))
            or len(widths) != 4
            or not all(_is_int(w) and 1 <= w <= 4096 for w in widths)
        ):
            raise ValueError(f"{where}: config 'embedded_widths' must be 4 positive integers "
                             f"(at most 4096); got {widths!r}.")  # fmt: skip
    version = config.get("version", CHECKPOINT_VERSION)
    if not _is_int(version) or not 1 <= version <= CHECKPOINT_VERSION:
        raise ValueError(
            f"{where}: checkpoint format version {version!r} is not one this napari-geostyle "
            f"reads (1..{CHECKPOINT_VERSION}); update napari-geostyle."
        )
    return config


def _validate_state(state, where: str) -> None:
    import torch

    if not isinstance(state, dict) or not state:
        raise ValueError(f"{where}: 'state_dict' must be a non-empty dict of tensors.")
    for name, tensor in state.items():
        if not isinstance(name, str) or not torch.is_tensor(tensor):
            raise ValueError(f"{where}: state_dict entry {name!r} is not a named tensor.")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(
                f"{where}: weights {name!r} contain NaN or infinite values (a damaged or "
                "diverged checkpoint)."
            )


def read_checkpoint(path) -> dict:
    """The checkpoint dict at ``path``; a missing, foreign or damaged file is a clear error.

    Loaded with ``weights_only=True`` (a crafted pickle cannot run code); the config and the
    tensors (finite) are validated; a shipped model must match its SHA-256 in ``checksums.json``.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no geometry-network checkpoint at {path}")
    _check_shipped_file(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"cannot read geometry checkpoint {path}: {error}") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a napari-geostyle geometry-network checkpoint.")
    for key in ("config", "state_dict"):
        if key not in payload:
            raise ValueError(f"checkpoint {path}: key {key!r} is missing.")
    validate_config(payload["config"], f"checkpoint {path}")
    _validate_state(payload["state_dict"], f"checkpoint {path}")
    return payload


def net_from_checkpoint(payload: dict, device=None, backbone: str = "auto"):
    """Build a ``GeometryNet`` from a checkpoint dict, in eval mode, float32, on ``device``.

    The config is validated before anything is built, and every tensor must be finite and of
    the network's shape (``ValueError`` naming the first that is not).
    """
    import torch

    if not isinstance(payload, dict) or "config" not in payload or "state_dict" not in payload:
        raise ValueError("a checkpoint dict needs 'config' and 'state_dict' keys.")
    validate_config(payload["config"])
    _validate_state(payload["state_dict"], "checkpoint")
    net = build_geometry_net(payload["config"], backbone=backbone)
    own = net.state_dict()
    for name, tensor in payload["state_dict"].items():
        if name in own and tuple(tensor.shape) != tuple(own[name].shape):
            raise ValueError(
                f"checkpoint weights {name!r} have shape {tuple(tensor.shape)}, but the "
                f"network built from its config needs {tuple(own[name].shape)}."
            )
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"checkpoint does not match the network: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}"
        )
    return net.to(device=device, dtype=torch.float32).eval()


def load_geometry_model(model: str = "affine", trunk: str = "embedded", checkpoint=None,
                        device=None):
    """The geometry network ``model`` ("affine" | "tps") with ``trunk``, in eval mode (cached).

    ``checkpoint`` is a path; None uses the shipped file (``shipped_checkpoint_path``).
    """
    from .devices import resolve_device

    check_model_kind(model)
    check_trunk(trunk)
    device = resolve_device(device)
    path = Path(checkpoint) if checkpoint is not None else shipped_checkpoint_path(model, trunk)
    if not path.is_file():
        hint = "" if checkpoint is not None else (
            " (no shipped weights for this trunk: train one with `napari-geostyle "
            "train-geometry` and pass it as checkpoint)"
        )
        raise FileNotFoundError(f"no geometry-network checkpoint at {path}{hint}")
    key = (str(path.resolve()), path.stat().st_mtime_ns, str(device))
    with _CACHE_LOCK:
        net = _CACHE.get(key)
        if net is None:
            payload = read_checkpoint(path)
            config = payload["config"]
            if config.get("model") != model:
                raise ValueError(
                    f"checkpoint {path} holds a {config.get('model')!r} model, not {model!r}."
                )
            if config.get("trunk") != trunk:
                raise ValueError(
                    f"checkpoint {path} was trained with trunk {config.get('trunk')!r}, "
                    f"not {trunk!r}."
                )
            net = net_from_checkpoint(payload, device=device)
            _CACHE[key] = net
    return net


def clear_cache() -> None:
    """Drop cached networks (frees their memory)."""
    with _CACHE_LOCK:
        _CACHE.clear()
