"""Fuzzing the transforms: affine matrices, TPS and affine fits from hostile landmarks, composed
transforms, transforms from dicts.

The contract, the settings and the strategies are in tests/fuzzing.py.
"""

from __future__ import annotations

import copy
import json

import numpy as np
from fuzzing import (
    FUZZ,
    GOOD_PAIR,
    GOOD_SRC,
    GOOD_TRANSFORMS,
    accepts,
    arrays,
    check_transform,
    half,
    junk,
    numbers,
    option_text,
    outcome,
    point_pairs,
    points,
    spread_points,
    transforms,
)
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import napari_geostyle as gs


@accepts(matrix=np.array([[1.0, 0.1, 2.0], [-0.1, 1.0, 3.0]]))
@FUZZ
@given(
    matrix=half(
        st.builds(
            lambda angle, scale, row, col: np.array(
                [
                    [scale * np.cos(angle), -scale * np.sin(angle), row],
                    [scale * np.sin(angle), scale * np.cos(angle), col],
                ]
            ),
            st.floats(-4, 4),
            st.floats(0.1, 5),
            st.floats(-50, 50),
            st.floats(-50, 50),
        ),
        st.one_of(
            arrays(st.sampled_from([(2, 3), (3, 3), (3, 2), (4, 4), (0, 3)])), points(), junk()
        ),
    )
)
def test_affine_transform_from_any_matrix(matrix):
    transform = outcome(lambda: gs.AffineTransform(matrix))
    if transform is None:
        return
    given_rows = np.asarray(matrix, dtype=np.float64)[:2]
    np.testing.assert_array_equal(transform.to_dict()["matrix"][:2], given_rows)
    data = transform.to_dict()
    assert gs.transform_from_dict(data).to_dict() == data


@accepts(pair=GOOD_PAIR, regularization=0.0)
@FUZZ
@given(pair=point_pairs(), regularization=st.one_of(st.just(0.0), numbers()))
def test_fits_from_hostile_landmarks(pair, regularization):
    """An accepted fit is usable: finite where it sends the landmarks, through a session file
    exactly, and an interpolating TPS (regularization 0) is exact at its landmarks."""
    src, dst = pair
    affine = outcome(lambda: gs.fit_affine(src, dst))
    tps = outcome(lambda: gs.fit_tps(src, dst, regularization=regularization))
    for transform in (affine, tps):
        if transform is not None:
            assert np.all(np.isfinite(transform.map_points(np.asarray(src, np.float64))))
            data = transform.to_dict()
            json.dumps(data, allow_nan=False)
            assert gs.transform_from_dict(data).to_dict() == data
    if tps is not None and float(regularization) == 0 and _well_scaled(dst):
        src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
        scale = max(1.0, float(np.abs(src).max()), float(np.abs(dst).max()))
        np.testing.assert_allclose(tps.sample_points(dst), src, atol=1e-6 * scale)


def _well_scaled(points):
    """No two landmarks closer than a thousandth of their span (test_fit_tps_at_very_different
    _scales is the rest)."""
    points = np.asarray(points, np.float64)
    span = float(np.ptp(points, axis=0).max())
    gaps = np.hypot(*(points[:, None] - points[None]).transpose(2, 0, 1))
    return span > 0 and gaps[~np.eye(len(points), dtype=bool)].min() >= 1e-3 * span


def test_fit_tps_at_very_different_scales():
    """Landmarks a million pixels from a cluster a few pixels wide: an exact interpolating
    spline, or a ValueError, never a spline that misses its landmarks by pixels."""
    src = np.array([[0.0, 1.0], [2.0, 4.0], [1.5, 1e6], [3.0, 2.5]])
    dst = np.array([[0.0, 2.0], [3.0, 0.5], [0.25, 1.0], [1e-9, 1e6]])
    tps = outcome(lambda: gs.fit_tps(src, dst))
    if tps is not None:
        np.testing.assert_allclose(tps.sample_points(dst), src, atol=1e-3)


@accepts(src=GOOD_SRC, shift=1.0, scale=1.5)
@FUZZ
@given(src=spread_points(), shift=st.floats(-5, 5), scale=st.floats(0.5, 2))
def test_fits_from_good_landmarks_are_exact(src, shift, scale):
    """Well-spread landmarks always fit: the affine exactly for an affine motion, the
    interpolating TPS exactly at every landmark."""
    dst = src * scale + shift
    affine = gs.fit_affine(src, dst)
    np.testing.assert_allclose(affine.map_points(src), dst, atol=1e-6)
    bent = dst + np.sin(src) * 2.0
    tps = gs.fit_tps(src, bent)
    np.testing.assert_allclose(tps.sample_points(bent), src, atol=1e-6)
    check_transform(tps)


@accepts(pair=GOOD_PAIR, regularization=0.0, frame=None)
@FUZZ
@given(
    pair=half(spread_points().map(lambda p: (p, p[::-1] + 1.0)), st.tuples(points(), points())),
    regularization=half(st.sampled_from([0.0, 0.5, 10.0]), numbers()),
    frame=half(st.sampled_from([None, (np.array([20.0, 24.0]), np.array([10.0, 12.0]))]),
               st.one_of(junk(), st.tuples(points(), points()),
                         st.tuples(hnp.arrays(np.float64, 2), hnp.arrays(np.float64, 2)))),
)  # fmt: skip
def test_tps_transform_constructor(pair, regularization, frame):
    output_points, content_points = pair
    transform = outcome(lambda: gs.TPSTransform(output_points, content_points, regularization,
                                                frame))  # fmt: skip
    if transform is not None:
        if regularization == 0:  # the sample map interpolates: exact at the landmarks
            np.testing.assert_allclose(transform.sample_points(output_points), content_points,
                                       atol=1e-6)  # fmt: skip
        data = transform.to_dict()
        assert gs.transform_from_dict(data).to_dict() == data


@accepts(parts=GOOD_TRANSFORMS[:2])
@FUZZ
@given(
    parts=half(
        st.lists(st.sampled_from(GOOD_TRANSFORMS), min_size=1, max_size=3),
        st.one_of(st.lists(transforms(), max_size=3), junk()),
    )
)
def test_composed_transform(parts):
    transform = outcome(lambda: gs.ComposedTransform(parts))
    if transform is not None:
        check_transform(transform)


def transform_dicts():
    """Dicts that look like ``to_dict()`` output with hostile values, and any JSON at all
    (what a session file can hold: lists, not arrays)."""
    as_json = points().map(lambda v: v.tolist() if isinstance(v, np.ndarray) else v)
    values = st.one_of(junk(), as_json, st.lists(st.lists(numbers(), max_size=3), max_size=4))
    shaped = st.fixed_dictionaries(
        {
            "type": st.one_of(
                st.sampled_from(["affine", "tps", "composed", "identity"]), option_text()
            )
        },
        optional={
            "matrix": values,
            "output_points": values,
            "content_points": values,
            "regularization": numbers(),
            "frame": values,
            "transforms": st.lists(st.deferred(transform_dicts), max_size=2),
        },
    )

    @st.composite
    def edited(draw):  # a real to_dict(), with one value (maybe in a part) replaced
        data = copy.deepcopy(draw(st.sampled_from(GOOD_TRANSFORMS)).to_dict())
        if draw(st.booleans()):
            target = data
            while target["type"] == "composed" and draw(st.booleans()):
                target = draw(st.sampled_from(target["transforms"]))
            key = draw(st.sampled_from(sorted(target)))
            target[key] = draw(st.one_of(junk(), as_json, numbers(), option_text()))
        return data

    json_values = st.recursive(
        st.one_of(st.none(), st.booleans(), st.floats(), st.integers(), st.text(max_size=5)),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                    max_size=3),
        max_leaves=10,
    )  # fmt: skip
    return st.one_of(edited(), shaped, json_values)


@accepts(data=GOOD_TRANSFORMS[2].to_dict())
@FUZZ
@given(data=transform_dicts())
def test_transform_from_any_dict(data):
    transform = outcome(lambda: gs.transform_from_dict(data))
    if transform is not None:
        again = transform.to_dict()
        json.dumps(again, allow_nan=False)
        assert gs.transform_from_dict(again).to_dict() == again
