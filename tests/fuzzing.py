"""The fuzz tests' shared contract, settings and strategies (hypothesis).

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

The tests live next to what they fuzz (``tests/core/test_fuzz_*.py``,
``tests/core/batch/test_fuzz_batch.py``, ``tests/cli/test_fuzz_cli.py``) and import this module
as ``fuzzing``: tests/ is on sys.path because pytest prepends the folder of ``conftest.py``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import warnings

import numpy as np
from hypothesis import HealthCheck, event, example, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.extra import numpy as hnp

import napari_geostyle as gs

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
GOOD_CSV_PATH = "<a good BigWarp CSV file>"  # test_fuzz_landmarks.py writes it


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
