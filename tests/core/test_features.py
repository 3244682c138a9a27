"""VGG-19 trunk: taps, shapes, caching, the seeded random backbone and backbone resolution."""

import warnings

import numpy as np
import pytest
import torch

from napari_geostyle.core import features


def test_taps_have_vgg19_shapes_and_strides():
    trunk = features.build_trunk("random", "cpu")
    x = torch.rand(1, 3, 64, 96)
    out = trunk(x, taps=("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv4_2", "conv5_1", "pool4"))
    assert out["conv1_1"].shape == (1, 64, 64, 96)
    assert out["conv2_1"].shape == (1, 128, 32, 48)
    assert out["conv3_1"].shape == (1, 256, 16, 24)
    assert out["conv4_2"].shape == (1, 512, 8, 12)
    assert out["pool4"].shape == (1, 512, 4, 6)
    assert out["conv5_1"].shape == (1, 512, 4, 6)
    assert all((v >= 0).all() for k, v in out.items() if k.startswith("conv"))  # ReLU outputs
    assert trunk.backbone_name == "random" and trunk.source == "seeded random"
    assert not any(p.requires_grad for p in trunk.parameters()) and not trunk.training


def test_random_trunk_is_identical_across_builds_and_keeps_activation_scale():
    first = features.build_trunk("random", "cpu")
    features.clear_trunk_cache()
    second = features.build_trunk("random", "cpu")
    assert first is not second
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)
    with torch.no_grad():
        out = second(torch.rand(1, 3, 64, 64), taps=features.STYLE_LAYERS)
    rms = [float(v.pow(2).mean().sqrt()) for v in out.values()]
    assert all(0.2 < r < 20 for r in rms), rms  # neither vanishing nor exploding over 16 convs


def test_trunk_is_cached_and_pool4_trunk_stops_there():
    assert features.build_trunk("random", "cpu") is features.build_trunk("random", "cpu")
    short = features.build_trunk("random", "cpu", last_layer="pool4")
    assert short.features[-1].__class__.__name__ == "MaxPool2d"
    assert len(short.features) == features.TAP_INDICES["pool4"] + 1
    with pytest.raises(ValueError, match="deeper"):
        short(torch.rand(1, 3, 32, 32), taps=("conv5_1",))
    with pytest.raises(ValueError, match="unknown VGG-19 tap"):
        short(torch.rand(1, 3, 32, 32), taps=("conv9_9",))


def test_forward_gradient_flows_to_the_image():
    trunk = features.build_trunk("random", "cpu")
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    loss = trunk(x, taps=("conv4_2",))["conv4_2"].mean()
    (grad,) = torch.autograd.grad(loss, x)
    assert grad.abs().sum() > 0


def test_auto_without_weights_warns_and_falls_back_to_random():
    with pytest.warns(UserWarning, match="lower-quality.*napari-geostyle weights --download"):
        trunk = features.build_trunk("auto", "cpu")
    assert trunk.backbone_name == "random"


def test_vgg19_without_weights_says_how_to_get_them():
    with pytest.raises(ValueError) as info:
        features.build_trunk("vgg19", "cpu")
    message = str(info.value)
    assert "vgg19-dcbb9e9d.pth" in message and "GEOSTYLE_VGG19_WEIGHTS" in message
    assert "napari-geostyle weights --download" in message


@pytest.mark.parametrize("backbone", ["resnet", 3, "missing/file.pth"])
def test_bad_backbone_is_a_value_error(backbone):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError):
            features.build_trunk(backbone, "cpu")


def test_bad_device_and_layer_are_value_errors():
    with pytest.raises(ValueError):
        features.build_trunk("random", "tpu")
    with pytest.raises(ValueError):
        features.build_trunk("random", "cpu", last_layer="fc7")


def test_reflect_padding_on_first_layer_only():
    trunk = features.build_trunk("random", "cpu")
    convs = [m for m in trunk.features if isinstance(m, torch.nn.Conv2d)]
    assert convs[0].padding_mode == "reflect"
    assert all(c.padding_mode == "zeros" for c in convs[1:])
    # a constant image gives constant first-layer features up to the border: no dark frame
    with torch.no_grad():
        out = trunk(torch.full((1, 3, 16, 16), 0.5), taps=("conv1_1",))["conv1_1"][0]
    assert np.allclose(out[:, 0, 0].numpy(), out[:, 8, 8].numpy(), atol=1e-5)
