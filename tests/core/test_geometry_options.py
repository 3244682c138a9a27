"""GeometryOptions: the geometry estimate's options, checked once when made, with the messages
users get from ``estimate_warp``; and the internal estimate family that takes them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from napari_geostyle.core.geometry_options import GeometryOptions
from napari_geostyle.core.hints import check_hints


@pytest.fixture(scope="module")
def astronaut():
    import skimage.data

    return skimage.data.astronaut()[::4, ::4]  # 128 x 128


def test_defaults_are_estimate_warps():
    import inspect

    from napari_geostyle.core.estimate import estimate_warp

    signature = inspect.signature(estimate_warp).parameters
    options = GeometryOptions()
    for field in dataclasses.fields(GeometryOptions):
        assert getattr(options, field.name) == signature[field.name].default, field.name


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": "homography"}, "model must be one of affine, tps, affine+tps"),
        ({"method": "guess"}, "method must be one of network, refine"),
        ({"init": "guess"}, "init must be one of"),
        ({"trunk": "resnet"}, "unknown trunk 'resnet'"),
        ({"passes": 0}, "passes (affine) must be an integer from 1 to 8"),
        ({"passes": {"bend": 2}}, "passes keys must be 'affine' and/or 'tps'"),
        ({"strength": 1.5}, "strength must be from 0 (no warp) to 1"),
        ({"strength": "strong"}, "strength must be a number from 0 to 1"),
        ({"checkpoint": "one.pt"}, "model 'affine+tps' uses two networks"),
        ({"checkpoint": {"bend": "one.pt"}}, "checkpoint keys must be 'affine' and/or 'tps'"),
        ({"hints": ([[1.0, 2.0]], [[1.0, 2.0]])}, "checked against the pair's images first"),
    ],
)
def test_bad_options_fail_when_made_with_estimate_warps_messages(kwargs, message):
    from napari_geostyle.core.estimate import estimate_warp

    pattern = message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")
    with pytest.raises(ValueError, match=pattern):
        GeometryOptions(**kwargs)
    if "hints" not in kwargs:  # the public front says the same (its hints are the raw points)
        image = np.zeros((64, 64), np.float32)
        with pytest.raises(ValueError, match=pattern):
            estimate_warp(image, image, device="cpu", **kwargs)


def test_options_are_frozen_and_strength_a_float():
    options = GeometryOptions(model="affine", strength=1)
    assert options.strength == 1.0 and isinstance(options.strength, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.model = "tps"
    # a single checkpoint path is fine for a one-network model
    assert GeometryOptions(model="tps", checkpoint="tps.pt").checkpoint == "tps.pt"


def test_checked_hints_ride_along():
    hints = check_hints(([[10.0, 12.0]], [[20.0, 22.0]]), (64, 64), (64, 64))
    options = dataclasses.replace(GeometryOptions(model="affine"), hints=hints)
    assert options.hints is hints and options.model == "affine"


@pytest.mark.slow
def test_internal_family_takes_the_options(astronaut):
    """``estimate_transform`` (options already made) gives ``estimate_warp``'s transform."""
    from napari_geostyle.core import estimate

    style = astronaut[::-1]
    front = estimate.estimate_warp(astronaut, style, model="affine", device="cpu", strength=0.5)
    options = GeometryOptions(model="affine", strength=0.5)
    inner = estimate.estimate_transform(astronaut, style, options, "cpu")
    np.testing.assert_array_equal(front.matrix, inner.matrix)
    assert front.confidence == inner.confidence


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": "homography"}, "model must be one of affine, tps, affine+tps"),
        ({"method": "guess"}, "method must be one of network, refine"),
        ({"strength": 2.0}, "strength must be from 0 (no warp) to 1"),
    ],
)
def test_every_front_refuses_bad_geometry_options_with_the_same_message(tmp_path, kwargs, message):
    """The pipeline, stack and batch fronts build ``GeometryOptions``: the same messages."""
    import napari_geostyle as gs

    pattern = message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")
    image = np.zeros((64, 64, 3), np.float32)
    with pytest.raises(ValueError, match=pattern):
        gs.iter_geometric_style_transfer(image, image, **kwargs)
    with pytest.raises(ValueError, match=pattern):
        gs.iter_stack_transfer([image, image], geometry_style=image, **kwargs)
    pytest.importorskip("distributed")
    inputs = tmp_path / "in"
    inputs.mkdir()
    np.save(inputs / "a.npy", image)  # never read: the options fail first
    with pytest.raises(ValueError, match=pattern):
        gs.batch_geometric_style_transfer(inputs, tmp_path / "out", image, **kwargs)
    assert not (tmp_path / "out").exists()
