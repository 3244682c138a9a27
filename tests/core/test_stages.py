"""core.stages: the warp and texture stages that the pipeline, stacks and batches chain."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data

from napari_geostyle.core import stages
from napari_geostyle.core.estimate import estimate_warp
from napari_geostyle.core.geometry_options import GeometryOptions
from napari_geostyle.core.transforms import AffineTransform
from napari_geostyle.core.warp import warp_image

TINY = {"size": 48, "levels": 2, "iterations": 2, "backbone": "random", "preview_every": 1}


@pytest.fixture(scope="module")
def content():
    return skimage.data.astronaut()[::4, ::4].astype(np.float32) / 255.0  # 128 x 128


@pytest.mark.slow
def test_warp_stage_estimates_as_estimate_warp_and_warps_by_it(content):
    style = content[:, ::-1]
    options = GeometryOptions(model="affine", strength=0.7)
    warped, transform = stages.warp_stage(content, style, options, "cpu")
    expected = estimate_warp(content, style, model="affine", strength=0.7, device="cpu")
    np.testing.assert_array_equal(transform.matrix, expected.matrix)
    np.testing.assert_array_equal(warped, warp_image(content, expected, device="cpu"))
    assert warped.shape == content.shape and warped.dtype == content.dtype


def test_warp_stage_takes_a_transform_as_it_is(content):
    shift = AffineTransform(np.array([[1.0, 0.0, 3.0], [0.0, 1.0, -2.0], [0.0, 0.0, 1.0]]))
    warped, transform = stages.warp_stage(content, None, None, "cpu", transform=shift)
    assert transform is shift  # no estimate, no dosing: the caller's transform
    np.testing.assert_array_equal(warped, warp_image(content, shift, device="cpu"))


def test_texture_stage_yields_the_texture_steps_and_starts_where_told(content):
    texture = skimage.data.brick()[:64, :64]
    steps = list(stages.texture_stage(content, texture, "cpu", TINY))
    assert steps[-1].done and steps[-1].image.shape == (48, 48, 3)
    assert [s.progress for s in steps] == list(range(1, steps[-1].total + 1))
    # a warm start from an image: the same options, another start, another result
    warm = list(stages.texture_stage(content, texture, "cpu", TINY, init=steps[-1].image))
    assert warm[-1].done and not np.array_equal(warm[-1].image, steps[-1].image)


def test_closing_the_texture_stage_closes_the_solve(content, monkeypatch):
    from napari_geostyle.core import texture as texture_module

    closed = []
    real = texture_module.iter_texture_transfer

    def watched(*args, **kwargs):
        inner = real(*args, **kwargs)

        def steps():
            try:
                yield from inner
            finally:
                closed.append(True)

        return steps()

    monkeypatch.setattr(texture_module, "iter_texture_transfer", watched)
    run = stages.texture_stage(content, skimage.data.brick()[:64, :64], "cpu", TINY)
    next(run)
    run.close()
    assert closed == [True]


def test_check_texture_stage_refuses_a_bad_option_before_any_work(content):
    with pytest.raises(ValueError, match="preset"):
        stages.check_texture_stage(content, content, "cpu", {"preset": "slowest"})
    stages.check_texture_stage(content, content, "cpu", TINY)  # good options: no error


def test_texture_result_is_the_last_step_and_transfer_textures(content):
    from napari_geostyle.core.texture import transfer_texture

    texture = skimage.data.brick()[:64, :64]
    options = {**TINY, "preview_every": 0}
    result = stages.texture_result(content, texture, "cpu", options, init="content")
    np.testing.assert_array_equal(
        result, transfer_texture(content, texture, device="cpu", init="content", **options)
    )
