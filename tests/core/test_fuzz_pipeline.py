"""Fuzzing the pipeline (``iter_geometric_style_transfer``): hostile styles, transforms and options.

The contract, the settings and the strategies are in tests/fuzzing.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from fuzzing import (
    CONTENT,
    FEW,
    GOOD_TRANSFORMS,
    STYLE,
    TEXTURE,
    accepts,
    check_texture_result,
    images,
    junk,
    numbers,
    option_text,
    outcome,
    with_one_hostile,
)
from hypothesis import given
from hypothesis import strategies as st

import napari_geostyle as gs


@accepts(arguments={"style": STYLE}, separate=False)
@FEW
@given(
    arguments=with_one_hostile(
        {"transform": st.sampled_from(GOOD_TRANSFORMS), "strength": st.floats(0, 1)},
        {"style": images(min_side=30), "geometry_style": images(min_side=30),
         "texture_style": st.one_of(images(min_side=30), st.lists(images(min_side=30),
                                                                  max_size=2)),
         "transform": junk(), "strength": numbers(), "model": option_text()},
        required={"style": st.just(STYLE)},
    ),
    separate=st.booleans(),
)  # fmt: skip
@pytest.mark.slow
def test_geometric_style_transfer(arguments, separate):
    if separate:  # the two styles given apart instead of one style for both
        style = arguments.pop("style")
        arguments = {"geometry_style": style, "texture_style": style, **arguments}
    arguments = {"model": "affine", **TEXTURE, **arguments}
    generator = outcome(lambda: gs.iter_geometric_style_transfer(CONTENT, **arguments))
    if generator is None:
        return
    steps = list(generator)  # inputs were checked at the call: no error from here on
    assert [step.stage for step in steps[:1]] == ["geometry"] and steps[-1].done
    result = steps[-1].result
    assert isinstance(result, gs.GeometricStyleResult)
    assert result.warped.shape == CONTENT.shape
    check_texture_result(result.image, CONTENT.shape, TEXTURE["size"])
    if arguments.get("strength", 1.0) == 0 or "transform" in arguments:
        expected = arguments.get("transform")
        if arguments.get("strength", 1.0) == 0:
            np.testing.assert_array_equal(result.warped, CONTENT)  # no warp at all
        elif expected is not None and arguments.get("strength", 1.0) == 1:
            np.testing.assert_array_equal(result.warped, gs.warp_image(CONTENT, expected))
