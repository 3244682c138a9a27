"""Fuzzing ``iter_stack_transfer``: hostile frames and smoothing options.

The contract, the settings and the strategies are in tests/fuzzing.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from fuzzing import (
    CONTENT,
    FEW,
    STYLE,
    TEXTURE,
    accepts,
    arrays,
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


@accepts(count=2, geometry=CONTENT, options={"smooth_frames": 1})
@FEW
@given(
    count=st.integers(1, 3),
    geometry=st.sampled_from([None, CONTENT]),
    options=with_one_hostile(
        {"smooth_frames": st.sampled_from([1, 3, 5]),
         "smooth_kernel": st.sampled_from(["gaussian", "box"]), "coherent": st.booleans(),
         "strength": st.floats(0, 1)},
        {"frames": st.one_of(
            arrays(st.tuples(st.integers(0, 3), st.integers(0, 40), st.integers(0, 40))),
            st.lists(images(min_side=30), max_size=3), junk()),
         "smooth_frames": numbers(), "smooth_kernel": option_text(), "coherent": junk(),
         "geometry_per_frame": junk(), "strength": numbers(), "init": st.just("noise")},
    ),
)  # fmt: skip
@pytest.mark.slow
def test_iter_stack_transfer(count, geometry, options):
    frames = options.pop("frames", [CONTENT] * count)
    steps = outcome(lambda: list(gs.iter_stack_transfer(
        frames, STYLE, geometry, model="affine", **options, **TEXTURE)))  # fmt: skip
    if steps is None:
        return
    count = len(frames)
    assert steps[-1].done and steps[-1].frames == count
    done = [step for step in steps if step.frame_done]
    assert sorted(step.frame for step in done) == list(range(count))
    for step in done:
        check_texture_result(step.image, np.asarray(frames[step.frame]).shape, TEXTURE["size"])
