"""Fuzzing: hostile inputs to every public function and every command (hypothesis).

The contract a user relies on: a call returns a correct result or raises a clear ``ValueError``,
``TypeError`` or ``FileNotFoundError`` (with a message); a command exits 0, or 2 with one
``error:`` line and no traceback, and leaves no output file (nor a temporary one) behind.
Anything else (an IndexError, a RuntimeError from torch, a NaN image, a half-written file) is a
bug.

Every test also runs at least one valid example (``@accepts``) that must be accepted, so that a
function that refuses everything fails. Under ``CI`` the examples are derandomized
(conftest.py); local runs draw new ones each time.

Kept fast: tiny images, ``method="network"``, the seeded random backbone with 1-2 iterations and
few examples. Values that are valid but only make a run long (a million iterations, a 10^5 px
output, a scheduler address to wait for) are left out of the pools; huge values that must be
refused (sizes beyond any memory, 2**70) are in them.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import json
import math
import tempfile
import warnings
from pathlib import Path
from unittest import mock

import imageio.v3 as iio
import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.extra import numpy as hnp

import napari_geostyle as gs
from napari_geostyle.cli import main

ALLOWED = (ValueError, TypeError, FileNotFoundError)
FUZZ = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FEW = settings(FUZZ, max_examples=10)  # the examples that may run a network or a solve
FEWER = settings(FUZZ, max_examples=6)  # the examples that may train a network

RNG = np.random.default_rng(7)
CONTENT = (RNG.random((40, 48, 3)) * 255).astype(np.uint8)
STYLE = (RNG.random((36, 40)) * 255).astype(np.uint8)
TEXTURE = {"size": 24, "levels": 1, "iterations": 1, "backbone": "random", "preview_every": 0}

# --------------------------------------------------------------------------- strategies
DTYPES = [np.uint8, np.uint16, np.int8, np.int32, np.int64, np.uint64, np.float16, np.float32,
          np.float64, np.bool_, np.complex64]  # fmt: skip
HUGE_INTS = [-(2**70), -1, 0, 2**31, 2**63, 2**70, 10**9]


def half(good, hostile):
    """``good`` in half of the examples, else ``hostile`` (st.one_of would weigh each of the
    branches inside ``hostile`` like ``good``)."""
    return st.booleans().flatmap(lambda use_good: good if use_good else hostile)


@st.composite
def with_one_hostile(draw, valid: dict, hostile: dict, required: dict | None = None):
    """Options: any subset of the valid (cheap) ones, then at most one replaced or added from
    its hostile pool, so that the work is reached often and each refusal has one cause."""
    options = draw(st.fixed_dictionaries(required or {}, optional=valid))
    if draw(st.booleans()):  # half of the examples: all valid
        key = draw(st.sampled_from(sorted(hostile)))
        options[key] = draw(hostile[key])
    return options


def junk():
    """Things that are not images, points or options at all."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(max_size=8),
        st.binary(max_size=8),
        st.lists(st.integers(-3, 300), max_size=4),
        st.lists(st.lists(st.floats(), min_size=2, max_size=2), max_size=3),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        st.builds(object),
    )


def arrays(shapes):
    """Arrays of any dtype, with every value the dtype has (NaN, inf, huge, negative)."""
    return st.sampled_from(DTYPES).flatmap(lambda dtype: hnp.arrays(dtype, shapes))


def image_shapes(min_side=0, max_side=48):
    side = st.integers(min_side, max_side)
    return st.one_of(
        hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),  # odd shapes
        st.tuples(side, side),
        st.tuples(side, side, st.sampled_from([1, 2, 3, 4, 5])),
    )


def plausible_images(min_side=0, max_side=48):
    """Images a user may well pass: gray, RGB or RGBA; uint8, uint16, bool or float in 0..1
    (sides from ``min_side``: some just under what a function needs)."""
    side = st.integers(min_side, max_side)
    shapes = st.one_of(st.tuples(side, side), st.tuples(side, side, st.sampled_from([1, 3, 4])))
    return st.one_of(
        st.sampled_from([np.uint8, np.uint16, np.bool_]).flatmap(
            lambda dtype: hnp.arrays(dtype, shapes)),
        hnp.arrays(np.float32, shapes, elements=st.floats(0, 1, width=32)),
    )  # fmt: skip


def images(min_side=0):
    """Hostile images (odd shapes and dtypes, NaN/inf/huge values, empty arrays, junk) and
    plausible ones, so that a good share of the calls gets through to the work."""
    return half(plausible_images(min_side), st.one_of(arrays(image_shapes(min_side)), junk()))


def points():
    """Landmarks: (N, 2) of any dtype and value, wrong shapes, junk."""
    shapes = st.one_of(
        st.tuples(st.integers(0, 7), st.just(2)),
        hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
    )
    return st.one_of(arrays(shapes), junk())


def spread_points():
    """Well-spread (N, 2) landmarks in a 40 x 48 image (3 to 6 around a circle, jittered): a
    fit with them must succeed."""

    def around(n, radius, jitter):
        angles = np.arange(n) * 2 * np.pi / n
        circle = np.stack([20 + radius * np.sin(angles), 24 + radius * np.cos(angles)], -1)
        return circle + np.asarray(jitter).reshape(n, 2)

    return st.integers(3, 6).flatmap(lambda n: st.builds(
        around, st.just(n), st.floats(10, 18),
        st.lists(st.floats(-1, 1), min_size=2 * n, max_size=2 * n),
    )).filter(lambda p: _spread(p) > 0.5)  # fmt: skip


def _spread(points):
    """The smallest distance of a point to the line through any two others (0 if colinear)."""
    if len(points) < 3:
        return 0.0
    smallest = math.inf
    for i in range(len(points)):
        for j in range(len(points)):
            for k in range(len(points)):
                if len({i, j, k}) < 3:
                    continue
                a, b, c = points[i], points[j], points[k]
                base = np.hypot(*(b - a))
                if base == 0:
                    return 0.0
                (u, v), (w, z) = b - a, c - a
                smallest = min(smallest, abs(u * z - v * w) / base)
    return smallest


def option_text():
    """Strings for options that take a name: random text and near misses."""
    return st.one_of(
        st.text(max_size=10),
        st.sampled_from(["", " ", "AFFINE", "tps ", "network\x00", "ü", "-1", "nan", "1e309",
                         "cuda", "cuda:99", "mps", "cpu:0", "../x", "\n"]),
    )  # fmt: skip


def numbers():
    """Numbers and number-like things: NaN, inf, huge, negative, bools, strings."""
    return st.one_of(
        st.floats(),
        st.sampled_from(HUGE_INTS),
        st.integers(-3, 3),
        st.sampled_from(["1", "0.5", "nan", None, True, [1.0], np.float32(0.5), np.int64(2)]),
    )


def _good_transforms():
    rotation = gs.AffineTransform(np.array([[0.95, 0.1, 1.0], [-0.1, 0.95, 2.0], [0, 0, 1]]))
    src = np.array([[5.0, 5.0], [5.0, 40.0], [35.0, 5.0], [35.0, 40.0], [20.0, 22.0]])
    tps = gs.fit_tps(src, src + [[1, 0], [0, 1], [-1, 0], [0, -1], [1, 1]])
    return [rotation, tps, gs.ComposedTransform([rotation, tps])]


GOOD_TRANSFORMS = _good_transforms()
GOOD_SRC = np.array([[8.0, 10.0], [8.0, 38.0], [32.0, 10.0], [32.0, 38.0], [20.0, 24.0]])
GOOD_PAIR = (GOOD_SRC, GOOD_SRC * 1.1 + [1.0, -2.0])  # well spread, an affine motion
GOOD_CSV = "\n".join(f'"Pt-{i}","true",{x},{y},{x + 1.5},{y - 2}' for i, (x, y) in
                     enumerate(GOOD_SRC.tolist()))  # fmt: skip
GOOD_CSV_PATH = "<a good BigWarp CSV file>"  # test_read_bigwarp_csv_of_odd_paths writes it


def transforms():
    return st.one_of(st.sampled_from(GOOD_TRANSFORMS), junk())


# --------------------------------------------------------------------------- helpers
_MUST_ACCEPT = [False]  # True while a test runs one of its @accepts examples


def accepts(**arguments):
    """``@example(**arguments)``: a valid input that the test must accept. While it runs,
    ``outcome`` fails on a refusal and ``run_cli`` on a non-zero status, so a function (or a
    command) that refuses everything cannot pass its fuzz test. Put it above ``@given``."""

    def decorate(test):
        inner = test.hypothesis.inner_test

        @functools.wraps(inner)
        def checked(*args, **values):
            this = all(values.get(key) is value for key, value in arguments.items())
            before = _MUST_ACCEPT[0]
            _MUST_ACCEPT[0] = before or this
            try:
                return inner(*args, **values)
            finally:
                _MUST_ACCEPT[0] = before

        test.hypothesis.inner_test = checked
        return example(**arguments)(test)

    return decorate


def must_accept() -> bool:
    return _MUST_ACCEPT[0]


def outcome(call):
    """``call()``'s result, or None for an allowed error (which must say what went wrong).
    Any other exception propagates: that is the bug the fuzzing looks for. In an ``@accepts``
    example, a refusal fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rescaling and fallback notes are fine
        try:
            result = call()
        except ALLOWED as error:
            assert str(error).strip(), f"{type(error).__name__} without a message"
            assert not must_accept(), f"a valid input was refused: {error!r}"
            note(f"refused: {type(error).__name__}")
            return None
    note("accepted")
    return result


def note(text):
    """Count ``text`` in ``pytest --hypothesis-show-statistics`` (the share of examples that
    get through to the work); nothing outside a hypothesis test."""
    with contextlib.suppress(InvalidArgument):
        event(text)


def check_texture_result(image, content_shape, size):
    assert image.dtype == np.float32 and image.ndim == 3 and image.shape[2] == 3
    assert max(image.shape[:2]) == size
    ratio = content_shape[0] / content_shape[1]
    assert abs(image.shape[0] / image.shape[1] - ratio) < 0.2 * max(ratio, 1 / ratio)
    assert np.all(np.isfinite(image)) and image.min() >= 0.0 and image.max() <= 1.0


def check_transform(transform):
    """A transform the library made: finite on the image, exact through a dict round trip."""
    corners = np.array([[0.0, 0.0], [0.0, 47.0], [39.0, 0.0], [39.0, 47.0], [20.0, 24.0]])
    mapped = transform.map_points(corners)
    assert mapped.shape == (5, 2) and np.all(np.isfinite(mapped))
    data = transform.to_dict()
    json.dumps(data, allow_nan=False)  # what a session file stores
    assert gs.transform_from_dict(data).to_dict() == data


# =========================================================================== images and warps
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


# =========================================================================== transforms
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


@st.composite
def point_pairs(draw):
    """(src, dst): plausible pairs (same count, finite, distinct coordinates, maybe colinear or
    of very different scales) or hostile ones drawn on their own."""
    if draw(st.booleans()):
        return draw(points()), draw(points())
    count = draw(st.integers(0, 8))
    coordinates = st.one_of(st.floats(-100, 100), st.sampled_from([0.0, 1.0, 1e-9, 1e6]))
    pair = hnp.arrays(np.float64, (count, 2), elements=coordinates, unique=True)
    return draw(pair), draw(pair)


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


@accepts(text=GOOD_CSV)
@FUZZ
@given(
    text=st.one_of(
        st.lists(  # BigWarp rows, half of them good
            half(
                st.tuples(st.sampled_from(['"Pt-0"', "name", ""]),
                          st.sampled_from(['"true"', '"false"', "TRUE", "False"]),
                          *[st.floats(-1e6, 1e6).map(repr)] * 4),
                st.tuples(
                    st.one_of(st.just('"Pt-0"'), st.text(max_size=4)),
                    st.sampled_from(['"true"', '"false"', "TRUE", "yes", ""]),
                    *[st.one_of(st.floats(-1e6, 1e6).map(repr),
                                st.sampled_from(["nan", "inf", "", "1e309", "x", "1_0"]))] * 4,
                ),
            ).map(",".join),
            min_size=1, max_size=5,
        ).map("\n".join),
        st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
        st.lists(
            st.lists(st.one_of(st.sampled_from(['"Pt-0"', '"true"', '"false"', "nan", "inf",
                                                "-1e309", "", '"', "1,5"]),
                               st.floats().map(repr), st.text(max_size=4)),
                     min_size=0, max_size=7).map(",".join),
            max_size=5,
        ).map("\n".join),
    ),
)  # fmt: skip
def test_read_bigwarp_csv_of_any_text(text):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "landmarks.csv"
        path.write_bytes(text.encode("latin-1", errors="replace"))
        pairs = outcome(lambda: gs.read_bigwarp_csv(path))
    if pairs is not None:
        content_points, target_points = pairs
        assert content_points.dtype == target_points.dtype == np.float64
        assert content_points.shape == target_points.shape
        assert content_points.ndim == 2 and content_points.shape[1] == 2
        assert np.all(np.isfinite(content_points)) and np.all(np.isfinite(target_points))


@accepts(path=GOOD_CSV_PATH)
@FUZZ
@given(path=st.one_of(junk(), st.sampled_from(["", ".", "/", "/nonexistent/x.csv", "\x00"])))
def test_read_bigwarp_csv_of_odd_paths(path):
    with tempfile.TemporaryDirectory() as folder:
        if path is GOOD_CSV_PATH:
            path = Path(folder) / "landmarks.csv"
            path.write_text(GOOD_CSV)
            assert len(outcome(lambda: gs.read_bigwarp_csv(path))[0]) == len(GOOD_SRC)
        else:
            assert outcome(lambda: gs.read_bigwarp_csv(path)) is None


@accepts(pair=GOOD_PAIR, names=None)
@FUZZ
@given(pair=point_pairs(),
       names=st.one_of(st.none(), junk(), st.lists(st.text(max_size=6), max_size=8)))  # fmt: skip
def test_write_bigwarp_csv_round_trips_or_refuses(pair, names):
    content_points, target_points = pair
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "out.csv"
        written = outcome(lambda: gs.write_bigwarp_csv(path, content_points, target_points,
                                                       names) or True)  # fmt: skip
        if written is None:
            assert not path.exists()
            assert not list(Path(folder).iterdir())  # nothing partial either
            return
        read_content, read_target = gs.read_bigwarp_csv(path)
    np.testing.assert_array_equal(read_content, np.asarray(content_points, np.float64))
    np.testing.assert_array_equal(read_target, np.asarray(target_points, np.float64))


@accepts(device="cpu")
@FUZZ
@given(
    device=half(
        st.sampled_from([None, "auto", "cpu", "CPU", "cuda", "cuda:0", "mps"]),
        st.one_of(option_text(), junk()),
    )
)
def test_resolve_device(device):
    import torch

    resolved = outcome(lambda: gs.resolve_device(device))
    if resolved is not None:
        assert isinstance(resolved, torch.device)
        assert str(resolved) in gs.available_devices() or resolved.type in gs.available_devices()
    assert "cpu" in gs.available_devices()


# =========================================================================== texture
@accepts(content=CONTENT)
@FUZZ
@given(content=images(min_side=10))
def test_texture_transfer_with_hostile_content(content):
    image = outcome(lambda: gs.transfer_texture(content, STYLE, **TEXTURE))
    if image is not None:
        check_texture_result(image, np.asarray(content).shape, TEXTURE["size"])


@accepts(style=[STYLE, CONTENT])
@FUZZ
@given(style=st.one_of(images(min_side=10), st.lists(images(min_side=10), max_size=2)))
def test_texture_transfer_with_hostile_styles(style):
    image = outcome(lambda: gs.transfer_texture(CONTENT, style, **TEXTURE))
    if image is not None:
        check_texture_result(image, CONTENT.shape, TEXTURE["size"])


TEXTURE_VALID = {
    "size": st.sampled_from([16, 24, 32]),
    "levels": st.sampled_from([1, 2]),
    "iterations": st.sampled_from([1, 2]),
    "optimizer": st.sampled_from(["lbfgs", "adam"]),
    "content_weight": st.floats(0, 10),
    "style_weight": st.floats(0, 100),
    "tv_weight": st.floats(0, 1),
    "style_weights": st.sampled_from([None, [1.0], (2,), np.array([0.5])]),
    "preserve_color": st.booleans(),
    "init": st.one_of(st.sampled_from(["content", "noise"]),
                      hnp.arrays(np.uint8, st.tuples(st.integers(1, 30), st.integers(1, 30)))),
    "backbone": st.just("random"),
    "device": st.sampled_from([None, "cpu", "auto"]),
    "seed": st.integers(0, 2**32),
    "preview_every": st.integers(0, 3),
    "preset": st.sampled_from(["fast", "balanced", "quality"]),
    "compile": st.just(False),
    "amp": st.sampled_from([None, False, True]),
    "cuda_graphs": st.sampled_from([None, False, True]),
    "precision": st.sampled_from(["auto", "fp32", "bf16", "fp16"]),
}  # fmt: skip
KNOWN_BACKBONES = ("auto", "vgg19", "efficientnet", "random")  # case and spaces ignored


@st.composite
def spellings(draw, name):
    """``name`` in other cases and with spaces around and inside it ("VGG19", " v gg19 ")."""
    cased = "".join(c.upper() if draw(st.booleans()) else c for c in name)
    cut = draw(st.integers(0, len(name)))
    around, inside = draw(st.sampled_from(["", " ", "\t"])), draw(st.sampled_from(["", " "]))
    return around + cased[:cut] + inside + cased[cut:] + around


TEXTURE_HOSTILE = {
    "size": st.one_of(st.sampled_from(HUGE_INTS + [15, 24.5, "24", True]), st.floats()),
    "levels": st.sampled_from([0, -1, 9, 2**70, 1.5, "2", None]),
    "iterations": st.sampled_from([0, -1, 1.5, "1", math.inf, [], [1, 1, 1], [1, 0], [1.5]]),
    "optimizer": st.one_of(option_text(), junk()),
    "content_weight": numbers(),
    "style_weight": numbers(),
    "tv_weight": numbers(),
    "style_weights": st.one_of(numbers(), st.lists(numbers(), max_size=3)),
    "preserve_color": junk(),
    "init": st.one_of(option_text(), images(min_side=1)),
    "backbone": st.one_of(option_text(), junk(),
                          st.sampled_from(["vgg19", "/nonexistent.pth", "x.pt", "auto"]),
                          st.sampled_from(KNOWN_BACKBONES).flatmap(spellings)),
    "device": st.one_of(option_text(), junk()),
    "seed": st.one_of(st.sampled_from(HUGE_INTS), numbers()),
    "preview_every": numbers(),
    "preset": st.one_of(option_text(), junk()),
    "compile": junk().filter(lambda value: value is not True),  # True: a minute of compiling
    "amp": junk(),
    "cuda_graphs": junk(),
    "precision": st.one_of(option_text(), junk()),
    "unknown_option": junk(),
}  # fmt: skip


@accepts(options={"backbone": " Random "})
@FUZZ
@given(options=with_one_hostile(TEXTURE_VALID, TEXTURE_HOSTILE))
def test_texture_transfer_with_hostile_options(options):
    options = {**TEXTURE, **options}
    generator = outcome(lambda: gs.iter_texture_transfer(CONTENT, STYLE, **options))
    backbone = options["backbone"]
    if isinstance(backbone, str) and not any(c in backbone for c in "/\\."):
        name = "".join(backbone.split()).lower()
        if name in KNOWN_BACKBONES and name != backbone:  # a spelling of a known name is
            canonical = {**options, "backbone": name}  # that name, decided at the call
            same = outcome(lambda: gs.iter_texture_transfer(CONTENT, STYLE, **canonical))
            assert (generator is None) == (same is None), (backbone, name)
            if same is not None:
                same.close()
        elif name not in KNOWN_BACKBONES:  # an unknown name is a ValueError at the call
            with pytest.raises(ValueError, match="backbone"):
                gs.iter_texture_transfer(CONTENT, STYLE, **options)
    if generator is None:
        return
    steps = list(generator)  # the options were checked at the call: no error from here on
    assert steps[-1].done and not any(step.done for step in steps[:-1])
    assert all(step.loss is None or math.isfinite(step.loss) for step in steps)
    assert steps[-1].levels >= 1 and len(steps) >= steps[-1].iterations
    check_texture_result(steps[-1].image, CONTENT.shape, int(options["size"]))


# =========================================================================== geometry
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


@accepts(inputs="input.png", styles=("input.png", "input.png"), options={})
@FUZZ
@given(
    inputs=half(st.just("input.png"),
                st.one_of(st.sampled_from(["missing.png", "*.none", "bytes.png", ""]),
                          st.lists(images(min_side=30), max_size=2), junk())),
    styles=half(
        st.sampled_from([("input.png", None), (None, "input.png"), ("input.png", "input.png")]),
        st.one_of(
        st.tuples(st.sampled_from([None, "input.png"]), st.sampled_from([None, "input.png"])),
        st.tuples(images(min_side=30), st.none()),
        st.tuples(st.none(), st.one_of(images(min_side=30), option_text())),
    )),
    options=with_one_hostile(
        {"model": st.sampled_from(["affine", "tps"]), "method": st.just("network"),
         "workers": st.sampled_from([None, 1, 2]), "chunk": st.sampled_from([None, 1, 4]),
         "smooth_frames": st.sampled_from([1, 5]), "smooth_kernel": st.just("box"),
         "strength": st.floats(0, 1), "size": st.just(24), "levels": st.just(1),
         "iterations": st.just(1), "device": st.sampled_from([None, "cpu"]),
         "scheduler": st.sampled_from(["local", None])},
        {"scheduler": st.one_of(option_text().filter(lambda s: "://" not in s), junk()),
         "workers": numbers(), "chunk": numbers(), "smooth_frames": numbers(),
         "smooth_kernel": option_text(), "model": option_text(), "method": option_text(),
         "strength": numbers(), "styles": st.one_of(junk(), st.just("bytes.png")),
         "size": numbers(), "levels": numbers(), "iterations": numbers(),
         "device": option_text(), "output_dir": st.sampled_from(["input.png", "", "\x00"])},
    ),
)  # fmt: skip
def test_batch_is_checked_before_it_starts(inputs, styles, options):
    """The batch checks everything when called (the work starts on the first next()): a
    hostile argument is refused there, before any cluster starts."""
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        iio.imwrite(folder / "input.png", CONTENT)
        (folder / "bytes.png").write_bytes(b"\x89PNG not really")

        def in_folder(value):  # names are relative to the folder
            return str(folder / value) if isinstance(value, str) and value else value

        geometry, texture = (in_folder(style) for style in styles)
        if isinstance(options.get("styles"), str):
            options["styles"] = in_folder(options["styles"])
        output_dir = in_folder(options.pop("output_dir", "out"))
        run = outcome(lambda: gs.batch_geometric_style_transfer(
            in_folder(inputs), output_dir, geometry, texture, **options))  # fmt: skip
        if run is not None:
            run.close()  # accepted: nothing has run, nothing is left running
            assert not (folder / "out" / "input.png").exists()


# =========================================================================== command line
@contextlib.contextmanager
def cli_folder():
    """A temporary folder with small input files, readable and not."""
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        iio.imwrite(folder / "content.png", CONTENT)
        iio.imwrite(folder / "style.png", STYLE)
        (folder / "images").mkdir()
        iio.imwrite(folder / "images" / "a.png", (RNG.random((64, 64, 3)) * 255).astype(np.uint8))
        gs.write_bigwarp_csv(folder / "landmarks.csv", [[5, 5], [5, 40], [35, 5], [35, 40]],
                             [[6, 5], [5, 41], [34, 6], [36, 40]])  # fmt: skip
        # a landmark set (eval-geometry --pairs), the same cut short, and one missing an array
        corners = [[8.0, 8.0], [8.0, 39.0], [31.0, 8.0], [31.0, 39.0]]
        np.savez(folder / "set.npz", images=np.stack([CONTENT, CONTENT[:, ::-1]]),
                 landmarks=np.array([corners, corners]))  # fmt: skip
        data = (folder / "set.npz").read_bytes()
        (folder / "cut.npz").write_bytes(data[: len(data) // 2])
        np.savez(folder / "partial.npz", images=np.stack([CONTENT, CONTENT]))
        yield folder


def run_cli(argv, outputs):
    """``main(argv)`` in this process; checks the exit contract and returns (status, stdout)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    existed = {path: path.exists() for path in outputs}
    with (contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr),
          warnings.catch_warnings()):  # fmt: skip
        warnings.simplefilter("ignore")
        status = main([str(arg) for arg in argv])
    err = stderr.getvalue()
    note(f"exit status {status}")
    assert "Traceback" not in err, err
    assert status == 0 or not must_accept(), f"a valid command failed ({status}): {err}"
    if status == 2:
        errors = [line for line in err.strip().splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err
        for path in outputs:
            if not existed[path]:
                assert not path.exists(), f"{path} was left behind after an error"
    else:
        assert status in (0, 1), (status, err)
    from napari_geostyle.core.media import TEMP_MARK

    for path in outputs:  # the temporary siblings of atomic writes (media.write_atomic)
        siblings = path.parent.iterdir() if path.parent.is_dir() else ()
        partial = [p.name for p in siblings if TEMP_MARK in p.name]
        assert not partial, partial
    return status, stdout.getvalue()


def hostile_text():
    """An option's value on the command line that is probably wrong."""
    return st.one_of(
        st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1e309", "", "x", "--", str(2**70),
                         "0x10", " 1", "1.5", "--help"]),
        option_text(),
    )  # fmt: skip


def file_argument():
    """A path argument: a good file, a missing one, a folder, or random bytes as a file."""
    return st.one_of(
        st.sampled_from(["content.png", "style.png", "missing.png", "images", "", "/dev/null",
                         "set.npz", "cut.npz", "partial.npz", "landmarks.csv"]),
        st.tuples(st.binary(max_size=64), st.sampled_from([".png", ".jpg", ".tif", ".csv",
                                                           ".npz", ".pt", ""])),
    )  # fmt: skip


def materialise(argument, folder):
    """A file_argument() value as a path in ``folder`` (random bytes are written there)."""
    if isinstance(argument, tuple):
        data, suffix = argument
        path = folder / f"random{suffix}"
        path.write_bytes(data)
        return str(path)
    return str(folder / argument) if argument and not argument.startswith("/") else argument


def options_argv(pairs):
    argv = []
    for flag, value in pairs.items():
        argv += [flag] if value is True else [flag, value]
    return argv


@accepts(options={"content": "content.png", "--landmarks": "landmarks.csv", "-o": "out.png"})
@FUZZ
@given(options=with_one_hostile(
    {"--regularization": st.sampled_from(["0", "0.5"]),
     "--strength": st.sampled_from(["0", "0.5", "1"]),
     "--padding": st.sampled_from(["border", "zeros"]), "--device": st.just("cpu"),
     "--affine": st.just(True), "--overwrite": st.just(True)},
    {"content": file_argument(), "--landmarks": file_argument(),
     "-o": st.sampled_from(["out.tif", "out.txt", "no/out.png", "images", "out"]),
     "--regularization": hostile_text(), "--strength": hostile_text(),
     "--padding": hostile_text(), "--device": hostile_text()},
    required={"content": st.just("content.png"), "--landmarks": st.just("landmarks.csv"),
              "-o": st.just("out.png")},
))  # fmt: skip
def test_cli_warp(options):
    with cli_folder() as folder:
        content = materialise(options.pop("content"), folder)
        out = folder / options.pop("-o")
        options["--landmarks"] = materialise(options["--landmarks"], folder)
        argv = ["warp", content, "-o", out, *options_argv(options)]
        status, _ = run_cli(argv, [out])
        if status == 0:
            assert iio.imread(out).shape[:2] == iio.imread(content).shape[:2]


@accepts(content="content.png", texture=["style.png"], output="out.png", options={})
@FUZZ
@given(
    content=half(st.just("content.png"), file_argument()),
    texture=half(st.just(["style.png"]), st.lists(file_argument(), max_size=2)),
    output=half(st.just("out.png"), st.sampled_from(["out.jpg", "out.txt", "no/out.png",
                                                      "images"])),
    options=with_one_hostile(
        {"--size": st.sampled_from(["16", "24"]), "--levels": st.sampled_from(["1", "2"]),
         "--iterations": st.sampled_from(["1", "2"]),
         "--optimizer": st.sampled_from(["lbfgs", "adam"]), "--style-weight": st.just("30"),
         "--content-weight": st.just("1"), "--texture-weights": st.just("1"),
         "--preset": st.sampled_from(["fast", "quality"]), "--device": st.just("cpu"),
         "--seed": st.sampled_from(["0", "3"]), "--preserve-color": st.just(True),
         "--geometry": st.just("style.png"), "--strength": st.sampled_from(["0", "0.5"]),
         "--warped-output": st.just("warped.png"), "--overwrite": st.just(True)},
        {"--size": hostile_text(), "--levels": hostile_text(), "--iterations": hostile_text(),
         "--optimizer": hostile_text(), "--style-weight": hostile_text(),
         "--content-weight": hostile_text(), "--texture-weights": hostile_text(),
         "--preset": hostile_text(), "--backbone": hostile_text(), "--device": hostile_text(),
         "--seed": hostile_text(), "--model": hostile_text(), "--method": hostile_text(),
         "--strength": hostile_text(), "--geometry": file_argument(),
         "--warped-output": st.sampled_from(["out.png", "no/w.png", "w.txt", "images"])},
    ),
)  # fmt: skip
def test_cli_transfer(content, texture, output, options):
    with cli_folder() as folder:
        content = materialise(content, folder)
        texture = [materialise(t, folder) for t in texture]
        out = folder / output
        options = {"--size": "24", "--levels": "1", "--iterations": "1", "--backbone": "random",
                   "--model": "affine", **options}  # fmt: skip
        for flag in ("--geometry", "--warped-output"):
            if flag in options:
                options[flag] = materialise(options[flag], folder)
        warped = Path(options.get("--warped-output") or folder / "none")
        argv = ["transfer", content, "--texture", *texture, "-o", out, *options_argv(options)]
        status, _ = run_cli(argv, [out, warped])
        if status == 0:
            result = iio.imread(out)
            assert result.ndim == 3 and result.shape[2] == 3
            assert max(result.shape[:2]) == int(options["--size"])


@accepts(flags=[])
@FUZZ
@given(flags=st.lists(st.sampled_from(["--download", "--path", "--x", "-", "extra"]),
                      max_size=3))  # fmt: skip
def test_cli_weights(flags):
    """GEOSTYLE_OFFLINE is set for the tests: --download is refused, never attempted."""
    status, out = run_cli(["weights", *flags], [])
    if "--download" in flags:
        assert status == 2
    elif status == 0 and "--path" not in flags:
        assert "looked for" in out


def _below(text, limit):
    """Not a whole number argparse reads as ``limit`` or more (those only make training long)."""
    try:
        return int(text) < limit
    except ValueError:
        return True


@accepts(images_argument=["images"], out="m.pt", options={"--steps": "1"})
@FEWER
@given(
    images_argument=st.one_of(st.just(["images"]), st.lists(file_argument(), min_size=1,
                                                            max_size=2)),
    out=st.sampled_from(["m.pt", "m.pt", "no/m.pt", "images", "m"]),
    options=with_one_hostile(
        {"--model": st.sampled_from(["affine", "tps"]), "--batch-size": st.sampled_from(["2", "3"]),
         "--lr": st.just("0.001"), "--loss": st.sampled_from(["grid", "mse"]),
         "--seconds": st.just("5"), "--device": st.just("cpu"), "--seed": st.just("1"),
         "--checkpoint-every": st.just("60"), "--resume": st.just(True),
         "--overwrite": st.just(True)},
        {"--steps": hostile_text().filter(lambda s: _below(s, 3)),
         "--model": hostile_text(), "--batch-size": hostile_text().filter(lambda s: _below(s, 5)),
         # a huge valid lr diverges: test_cli_train_geometry_refuses_a_diverged_run
         "--lr": st.sampled_from(["nan", "inf", "-1", "0", "x", "", "1e309", "0x1"]),
         "--loss": hostile_text(), "--seconds": hostile_text().filter(
             lambda s: s.strip().lower() not in ("inf", "1e309")),
         "--device": hostile_text(), "--seed": hostile_text(), "--val-count": hostile_text(),
         "--checkpoint-every": hostile_text(), "--trunk": hostile_text(),
         "--val-images": file_argument()},
        required={"--steps": st.sampled_from(["1", "2"])},
    ),
)  # fmt: skip
@pytest.mark.slow
def test_cli_train_geometry(images_argument, out, options):
    """Training steps, batch sizes and seconds stay small (valid large ones only take long)."""
    with cli_folder() as folder:
        paths = [materialise(i, folder) for i in images_argument]
        out_path = folder / out
        if "--val-images" in options:
            options["--val-images"] = materialise(options["--val-images"], folder)
        argv = ["train-geometry", "--images", *paths, "--out", out_path, "--val-count", "1",
                *options_argv(options)]  # fmt: skip
        figure = out_path.with_suffix(".validation.png")
        status, _ = run_cli(argv, [out_path, figure])
        if status == 0:
            assert out_path.is_file() and figure.is_file()


def test_cli_train_geometry_refuses_a_diverged_run():
    """A learning rate that makes the weights NaN is an error, with no checkpoint written
    (the evaluation after training refuses such a checkpoint, so the run must not end in one)."""
    with cli_folder() as folder:
        out = folder / "m.pt"
        status, _ = run_cli(["train-geometry", "--images", folder / "images", "--steps", "2",
                             "--batch-size", "2", "--lr", "1e30", "--out", out, "--val-count",
                             "1"], [out])  # fmt: skip
        assert status == 2


@accepts(source=("--pairs", ["set.npz"]), options={})
@FEW
@given(
    source=st.one_of(
        st.tuples(st.just("--images"), st.one_of(st.just(["images"]),
                                                  st.lists(file_argument(), min_size=1,
                                                           max_size=2))),
        st.tuples(st.just("--pairs"), half(st.just(["set.npz"]),
                                            file_argument().map(lambda f: [f]))),
    ),
    options=with_one_hostile(
        {"--model": st.sampled_from(["affine", "tps"]), "--seed": st.just("0"),
         "--json": st.just("report.json"), "--figure": st.just("figure.png"),
         "--figure-pairs": st.just("1"), "--device": st.just("cpu"),
         "--overwrite": st.just(True)},
        {"--model": hostile_text(), "--count": hostile_text(),
         "--pairs-per-image": hostile_text(), "--seed": hostile_text(), "--init": hostile_text(),
         "--json": st.sampled_from(["no/r.json", "images", ""]),
         "--figure": st.sampled_from(["figure.txt", "no/f.png", "images"]),
         "--figure-pairs": hostile_text(), "--device": hostile_text(),
         "--protocol": hostile_text(), "--checkpoint": file_argument(),
         "--trunk": hostile_text(), "--image-root": file_argument()},
    ),
)  # fmt: skip
def test_cli_eval_geometry(source, options):
    with cli_folder() as folder:
        flag, files = source
        paths = [materialise(f, folder) for f in files]
        for key in ("--json", "--figure", "--checkpoint", "--image-root"):
            if key in options:
                options[key] = materialise(options[key], folder)
        # one pair, one pass of the network: the cheapest evaluation there is
        options = {"--method": "network", "--pairs-per-image": "1", "--init": "identity",
                   "--count": "1", **options}  # fmt: skip
        outputs = [Path(options[k]) for k in ("--json", "--figure") if options.get(k)]
        status, out = run_cli(["eval-geometry", flag, *paths, *options_argv(options)], outputs)
        if status == 0:
            assert "network" in out
            for path in outputs:
                assert path.is_file()


class _ReachedNapari(Exception):
    """The demo got past its checks and would open a window now."""


@accepts(screenshot=None, options={})
@FUZZ
@given(
    screenshot=st.one_of(st.none(), st.sampled_from(["shot.png", "shot.txt", "no/shot.png",
                                                     "images", "content.png"]), option_text()),
    options=with_one_hostile(
        {"--model": st.just("affine"), "--method": st.just("network"),
         "--overwrite": st.just(True)},
        {"--model": hostile_text(), "--method": hostile_text(), "--unknown": hostile_text()},
    ),
)  # fmt: skip
def test_cli_demo_checks_before_napari(screenshot, options):
    pytest.importorskip("napari")
    with cli_folder() as folder, mock.patch("napari.Viewer", side_effect=_ReachedNapari):
        argv = ["demo", *options_argv(options)]
        outputs = []
        if screenshot is not None:
            shot = Path(materialise(screenshot, folder))
            argv += ["--screenshot", shot]
            outputs.append(shot)
        try:
            run_cli(argv, outputs)
        except _ReachedNapari:  # accepted: the screenshot path must then be writable
            if screenshot:
                assert shot.parent.is_dir() and not shot.is_dir()
        else:
            assert not must_accept(), "a valid demo command never reached napari"


@accepts(inputs=["content.png"], options={}, hostile=None, hostile_value=None)
@FEW
@given(
    inputs=st.one_of(st.just(["content.png"]), st.lists(file_argument(), min_size=1,
                                                        max_size=2)),
    options=st.fixed_dictionaries({}, optional={
        "--geometry": file_argument(), "--texture": file_argument(),
        "--model": st.just("affine"), "--strength": st.just("1"), "--size": st.just("24"),
        "--levels": st.just("1"), "--iterations": st.just("1"), "--chunk": st.just("1"),
        "--smooth-frames": st.just("1"), "--smooth-kernel": st.just("box"),
        "--device": st.just("cpu"), "--seed": st.just("0"), "--preset": st.just("fast"),
        "--backbone": st.just("random"),
    }),
    hostile=st.sampled_from(["--workers", "--chunk", "--smooth-frames", "--size", "--levels",
                             "--strength", "--model", "--scheduler", "--device", "--geometry",
                             "--styles-csv", "--iterations", "--backbone", "--preset"]),
    hostile_value=st.data(),
)  # fmt: skip
def test_cli_batch_refuses_hostile_options(inputs, options, hostile, hostile_value):
    """Every drawn example carries one value that must be refused (a real run starts a
    cluster: test_batch.py runs those), and is refused with one line before anything runs.
    The one valid example (``hostile=None``) must run to the end."""
    refused = {
        "--workers": st.sampled_from(["0", "-1"]), "--chunk": st.sampled_from(["0", "-1"]),
        "--smooth-frames": st.sampled_from(["0", "2", "-3"]),
        "--size": st.sampled_from(["nan", "0", "-5", "x"]),
        "--levels": st.sampled_from(["0", "9", "x"]),
        "--strength": st.sampled_from(["nan", "2", "-0.5", "inf"]),
        "--model": st.sampled_from(["rigid", ""]),
        "--scheduler": st.sampled_from(["moon", "127.0.0.1"]),
        "--device": st.sampled_from(["tpu", "cuda:99"]),
        "--geometry": st.sampled_from(["missing.png", "images", ("", ".png")]),
        "--styles-csv": st.sampled_from(["missing.csv", ("a,b\n\xff", ".csv")]),
        "--iterations": st.sampled_from(["0", "-1"]),
        "--backbone": st.sampled_from(["missing.pth", "resnet"]),
        "--preset": st.sampled_from(["slow", ""]),
    }  # fmt: skip
    if hostile is None:  # the valid example: a tiny texture run on threads
        options = {**options, "--texture": "style.png", "--size": "24", "--levels": "1",
                   "--iterations": "1", "--backbone": "random"}  # fmt: skip
    else:
        options = {**options, hostile: hostile_value.draw(refused[hostile])}
    if hostile in ("--size", "--levels", "--iterations", "--backbone", "--preset"):
        options["--texture"] = "style.png"  # texture options are used (and checked) with one
    with cli_folder() as folder:
        paths = [materialise(i, folder) for i in inputs]
        for flag in ("--geometry", "--texture", "--styles-csv"):
            if flag in options:
                value = options[flag]
                if isinstance(value, tuple) and isinstance(value[0], str):
                    value = (value[0].encode("utf-8", "surrogateescape"), value[1])
                options[flag] = materialise(value, folder)
        out = folder / "out"
        status, _ = run_cli(["batch", *paths, "-o", out, "--threads", "--workers", "1",
                             *options_argv(options)], [])  # fmt: skip
        if hostile is None:
            assert status == 0 and (out / "content.png").is_file()
            return
        assert status == 2
        assert not out.exists() or not any(p.suffix != ".json" for p in out.iterdir())
