"""Fuzzing ``estimate_warp``: hostile images and options.

The contract, the settings and the strategies are in tests/fuzzing.py.
"""

from __future__ import annotations

import numpy as np
from fuzzing import (
    CONTENT,
    FEW,
    STYLE,
    accepts,
    check_transform,
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

ESTIMATE_VALID = {
    "model": st.sampled_from(["affine", "tps", "affine+tps"]),
    "method": st.just("network"),
    "device": st.sampled_from([None, "cpu", "auto"]),
    "trunk": st.just("embedded"),
    "checkpoint": st.none(),
    "passes": st.sampled_from([None, 1, 2, {"affine": 1, "tps": 1}]),
    "strength": st.floats(0, 1),
    "init": st.sampled_from(["identity", "identity", "search"]),
}
ESTIMATE_HOSTILE = {
    "model": st.one_of(option_text(), junk()),
    "method": st.one_of(option_text(), junk()),
    "device": st.one_of(option_text(), junk()),
    "trunk": st.one_of(option_text(), junk()),
    "checkpoint": st.one_of(option_text(), junk(), st.just({"affine": "/nonexistent.pt"})),
    "passes": st.one_of(st.sampled_from([0, 9, -1, 2**70]), numbers(),
                        st.dictionaries(option_text(), numbers(), max_size=2)),
    "strength": numbers(),
    "init": st.one_of(option_text(), junk()),
}  # fmt: skip


def check_estimate(transform, options, content):
    check_transform(transform)
    if options.get("strength", 1.0) == 0:  # the identity, exactly
        corners = np.array([[0.0, 0.0], [39.0, 47.0]])
        np.testing.assert_allclose(transform.map_points(corners), corners, atol=1e-9)
    # nearest: int64 beyond 2**32 cannot be interpolated exactly (a documented refusal)
    warped = gs.warp_image(content, transform, mode="nearest")
    assert warped.shape == np.asarray(content).shape


@accepts(pair=(CONTENT, STYLE))
@FEW
@given(
    pair=st.one_of(
        st.tuples(images(min_side=30), st.just(STYLE)),
        st.tuples(st.just(CONTENT), images(min_side=30)),
    )
)
def test_estimate_warp_with_hostile_images(pair):
    content, style = pair
    options = {"model": "affine", "init": "identity"}
    transform = outcome(lambda: gs.estimate_warp(content, style, **options))
    if transform is not None:
        check_estimate(transform, options, content)


@accepts(options={"model": "affine+tps", "passes": 1})
@FEW
@given(options=with_one_hostile(ESTIMATE_VALID, ESTIMATE_HOSTILE))
def test_estimate_warp_with_hostile_options(options):
    options = {"init": "identity", **options}
    transform = outcome(lambda: gs.estimate_warp(CONTENT, STYLE, **options))
    if transform is not None:
        check_estimate(transform, options, CONTENT)
