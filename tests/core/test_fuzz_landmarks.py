"""Fuzzing BigWarp landmark files: any text, odd paths, round trips.

The contract, the settings and the strategies are in tests/fuzzing.py.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from fuzzing import (
    FUZZ,
    GOOD_CSV,
    GOOD_CSV_PATH,
    GOOD_PAIR,
    GOOD_SRC,
    accepts,
    half,
    junk,
    outcome,
    point_pairs,
)
from hypothesis import example, given
from hypothesis import strategies as st

import napari_geostyle as gs


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
@example(pair=([0, 0], [0, 0]), names=None)  # one point as a pair, not a (1, 2) array
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
    # one point may be given as a (2,) pair (images.validate_points): it reads back as (1, 2)
    np.testing.assert_array_equal(
        read_content, np.asarray(content_points, np.float64).reshape(-1, 2)
    )
    np.testing.assert_array_equal(read_target, np.asarray(target_points, np.float64).reshape(-1, 2))
