"""Fuzzing ``warp_image``: hostile images and options.

The contract, the settings and the strategies are in tests/fuzzing.py.
"""

from __future__ import annotations

import numpy as np
from fuzzing import (
    CONTENT,
    FUZZ,
    GOOD_TRANSFORMS,
    HUGE_INTS,
    accepts,
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


@accepts(image=CONTENT)
@FUZZ
@given(image=images())
def test_warp_image_keeps_shape_and_dtype_or_refuses(image):
    transform = gs.AffineTransform(np.array([[1.0, 0.1, 2.0], [0.0, 1.0, -1.0], [0, 0, 1]]))
    warped = outcome(lambda: gs.warp_image(image, transform))
    if warped is None:
        return
    array = np.asarray(image)
    assert warped.shape == array.shape and warped.dtype == array.dtype
    if array.dtype.kind == "f":
        assert np.all(np.isfinite(warped))
        # interpolation never leaves the input's range
        assert warped.min() >= array.min() - 1e-6 * abs(array.min()) - 1e-6
        assert warped.max() <= array.max() + 1e-6 * abs(array.max()) + 1e-6


@accepts(arguments={"transform": GOOD_TRANSFORMS[2], "mode": "nearest"})
@FUZZ
@given(arguments=with_one_hostile(
    {"output_shape": st.one_of(st.none(), st.tuples(st.integers(1, 40), st.integers(1, 40))),
     "mode": st.sampled_from(["bilinear", "nearest", "bicubic"]),
     "padding": st.sampled_from(["border", "zeros", "reflection"]),
     "device": st.sampled_from([None, "auto", "cpu"])},
    {"transform": junk(),
     "output_shape": st.one_of(st.tuples(st.sampled_from(HUGE_INTS + [2**45]), st.integers(1, 5)),
                               st.tuples(numbers(), numbers()), junk()),
     "mode": st.one_of(option_text(), junk()), "padding": st.one_of(option_text(), junk()),
     "device": st.one_of(option_text(), junk())},
    required={"transform": st.sampled_from(GOOD_TRANSFORMS)},
))  # fmt: skip
def test_warp_image_options(arguments):
    warped = outcome(lambda: gs.warp_image(CONTENT, **arguments))
    if warped is None:
        return
    output_shape = arguments.get("output_shape")
    expected = (CONTENT.shape[:2] if output_shape is None
                else tuple(int(v) for v in list(output_shape)[:2]))  # fmt: skip
    assert warped.shape == expected + (3,) and warped.dtype == np.uint8
    if arguments.get("mode") == "nearest":  # moves the original pixels (or zeros) only
        pixels = np.concatenate([CONTENT.reshape(-1, 3), np.zeros((1, 3), np.uint8)])
        assert np.isin(warped.reshape(-1, 3).view("V3"), pixels.view("V3")).all()
