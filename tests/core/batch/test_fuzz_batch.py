"""Fuzzing the batch (``batch_geometric_style_transfer``): hostile inputs, styles and options,
refused before anything starts.

The contract, the settings and the strategies are in tests/fuzzing.py.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import imageio.v3 as iio
from fuzzing import (
    CONTENT,
    FUZZ,
    accepts,
    half,
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
