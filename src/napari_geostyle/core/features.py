"""VGG-19 trunk with named taps (torchvision's architecture), frozen, built once per device.

Taps are ``conv1_1 ... conv5_4`` (ReLU outputs, as Gatys et al. use them) and ``pool1 ... pool5``.
The content layer is ``conv4_2``, the style layers ``conv1_1 ... conv5_1``; the geometry network
uses ``pool4`` (stride 16). A forward pass runs only the layers up to the deepest requested tap.

Backbones: ``"vgg19"`` (ImageNet weights, see ``weights.py``), ``"random"`` (a deterministic,
seeded VGG-19: identical on every machine), ``"auto"`` (vgg19 when its weights are here, else
random with a warning) or a path to a torchvision-format weights file. Texture transfer does not
ask for ``"auto"`` here: ``texture_trunks.resolve_backbone`` takes the installed ImageNet
EfficientNet-Lite0 when VGG-19's weights are missing.

torch is imported inside functions: this module is cheap to import.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Literal

from . import weights as _weights

CONTENT_LAYER = "conv4_2"
STYLE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
GEOMETRY_LAYER = "pool4"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_SEED = 0x1919_5EED  # fixed: the "random" backbone is the same everywhere

# torchvision vgg19 ``features``: numbers are conv widths, "M" a 2x2 max-pool.
_VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
              512, 512, 512, 512, "M", 512, 512, 512, 512, "M")  # fmt: skip


def _tap_indices() -> dict[str, int]:
    """Tap name -> index in ``features`` of the module whose output it is."""
    taps, index, block, conv = {}, 0, 1, 1
    for item in _VGG19_CFG:
        if item == "M":
            taps[f"pool{block}"] = index
            index, block, conv = index + 1, block + 1, 1
        else:
            taps[f"conv{block}_{conv}"] = index + 1  # the ReLU after the conv
            index, conv = index + 2, conv + 1
    return taps


TAP_INDICES = _tap_indices()
TAP_NAMES = tuple(TAP_INDICES)

BACKBONES = ("auto", "vgg19", "random")  # or the path of a VGG-19 weights file
_CACHE: dict = {}
_CACHE_LOCK = threading.Lock()


def _check_tap(name: str) -> int:
    if name not in TAP_INDICES:
        raise ValueError(f"unknown VGG-19 tap {name!r}; use one of {', '.join(TAP_NAMES)}.")
    return TAP_INDICES[name]


def _make_module_class():
    import torch
    from torch import nn

    class VGGFeatures(nn.Module):
        """VGG-19 ``features`` up to ``last_layer``; ``forward`` returns the requested taps.

        Input: RGB in 0..1, ``(B, 3, H, W)``; the ImageNet normalisation happens inside.
        The first convolution pads by reflection: zero padding of a normalised image is a dark
        frame that the style loss turns into edge artefacts.
        """

        def __init__(self, last_layer: str = "conv5_1"):
            super().__init__()
            last_index = _check_tap(last_layer)
            layers: list[nn.Module] = []
            in_channels = 3
            for item in _VGG19_CFG:
                if len(layers) > last_index:
                    break
                if isinstance(item, str):  # "M", the only name in the table
                    layers.append(nn.MaxPool2d(2, 2))
                else:
                    mode: Literal["reflect", "zeros"] = "reflect" if not layers else "zeros"
                    layers.append(nn.Conv2d(in_channels, item, 3, padding=1, padding_mode=mode))
                    layers.append(nn.ReLU(inplace=True))
                    in_channels = item
            self.features = nn.Sequential(*layers[: last_index + 1])
            self.last_layer = last_layer
            self.taps = tuple(n for n, i in TAP_INDICES.items() if i <= last_index)
            self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
            self.backbone_name = "random"
            self.source = "unset"

        def forward(self, rgb01, taps=(CONTENT_LAYER,)):
            if isinstance(taps, str):
                taps = (taps,)
            wanted = {}
            for name in taps:
                index = _check_tap(name)
                if name not in self.taps:
                    raise ValueError(
                        f"tap {name!r} is deeper than this trunk's last layer "
                        f"{self.last_layer!r}; build it with last_layer={name!r} or deeper."
                    )
                wanted[index] = name
            x = (rgb01 - self.mean.to(rgb01.dtype)) / self.std.to(rgb01.dtype)
            if rgb01.is_cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            out = {}
            for index, layer in enumerate(self.features):
                if index > max(wanted):
                    break
                x = layer(x)
                if index in wanted:
                    out[wanted[index]] = x
            return out

    return VGGFeatures


_CLASS = None


def _module_class():
    global _CLASS
    if _CLASS is None:
        _CLASS = _make_module_class()
    return _CLASS


def __getattr__(name):  # ``features.VGGFeatures`` without importing torch at module import
    if name == "VGGFeatures":
        return _module_class()
    raise AttributeError(name)


def _init_random(model) -> None:
    """He-normal convolutions from a CPU generator with a fixed seed, zero biases.

    He scaling (std = sqrt(2 / fan_in)) keeps the second moment of ReLU activations constant from
    layer to layer, so features neither vanish nor explode through 16 convolutions and every style
    layer contributes. Drawing on the CPU makes the weights identical on every machine.
    """
    import torch

    generator = torch.Generator(device="cpu").manual_seed(RANDOM_SEED)
    with torch.no_grad():
        for layer in model.features:
            if isinstance(layer, torch.nn.Conv2d):
                fan_in = layer.in_channels * 9
                weight = torch.randn(layer.weight.shape, generator=generator)
                layer.weight.copy_(weight * (2.0 / fan_in) ** 0.5)
                if layer.bias is not None:  # always there: VGG's convolutions have biases
                    layer.bias.zero_()


def _load_state(model, path: Path) -> None:
    state = _weights.load_vgg19_state(path)
    own = model.state_dict()
    model.load_state_dict({k: v for k, v in state.items() if k in own} | {
        "mean": own["mean"], "std": own["std"]})  # fmt: skip


def _resolve_backbone(backbone, download) -> tuple[str, Path | None]:
    """``(name, weights path)`` for a backbone argument; warns when auto falls back."""
    if isinstance(backbone, Path) or (
        isinstance(backbone, str) and backbone.strip().lower() not in BACKBONES
    ):
        text = str(backbone)
        looks_like_path = (
            isinstance(backbone, Path) or any(c in text for c in "/\\.") or Path(text).exists()
        )
        if not looks_like_path:
            raise ValueError(
                f"unknown backbone {backbone!r}; use 'auto', 'vgg19', 'random' or the path "
                "of a VGG-19 weights file."
            )
        return "vgg19", _weights.resolve_vgg19_weights(path=text, download=False)
    if not isinstance(backbone, str):
        raise ValueError(
            f"backbone must be 'auto', 'vgg19', 'random' or a file path; got {backbone!r}."
        )
    name = backbone.strip().lower()
    if name == "random":
        return "random", None
    if name == "vgg19":
        path = _weights.resolve_vgg19_weights(download=download)
        if path is None:
            raise ValueError(
                "backbone 'vgg19' needs the ImageNet VGG-19 weights, which are not on this "
                "machine. " + _weights.how_to_get_weights()
            )
        return "vgg19", path
    # auto never downloads on its own (548 MB unasked); download=True opts in
    path = _weights.resolve_vgg19_weights(download=bool(download))
    if path is None:
        warnings.warn(
            "ImageNet VGG-19 weights not found: using the seeded random VGG-19 backbone, which "
            "gives lower-quality textures. " + _weights.how_to_get_weights(),
            UserWarning,
            stacklevel=3,
        )
        return "random", None
    return "vgg19", path


def build_trunk(backbone="auto", device=None, last_layer="conv5_1", download=None):
    """A frozen, eval-mode ``VGGFeatures`` on ``device``; cached per (backbone, device, last layer).

    ``download``: for ``"vgg19"``, None downloads the weights if missing (unless
    ``GEOSTYLE_OFFLINE=1``); ``"auto"`` only downloads when ``download=True``.
    """
    import torch

    from .devices import resolve_device

    _check_tap(last_layer)
    device = resolve_device(device)
    name, path = _resolve_backbone(backbone, download)
    # keyed by the file's identity (path, size, mtime): a file replaced on disk is read again
    identity = None if path is None else _weights.file_identity(path)
    key = (name, identity, str(device), last_layer)
    with _CACHE_LOCK:
        model = _CACHE.get(key)
        if model is not None:
            return model
        model = _weights.frozen_model(
            lambda: _module_class()(last_layer), name, path, _init_random, _load_state
        )
        model.to(device)
        if device.type == "cuda":
            model.to(memory_format=torch.channels_last)
        _CACHE[key] = model
        return model


def clear_trunk_cache() -> None:
    """Drop every cached trunk and give cached GPU memory back to the driver."""
    import gc

    with _CACHE_LOCK:
        _CACHE.clear()
    gc.collect()
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    mps = getattr(torch, "mps", None)
    if (
        mps is not None
        and getattr(torch.backends, "mps", None)
        and torch.backends.mps.is_available()
    ):
        mps.empty_cache()
