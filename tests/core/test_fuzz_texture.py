"""Fuzzing texture transfer: hostile content, styles and options.

The contract, the settings and the strategies are in tests/fuzzing.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from fuzzing import (
    CONTENT,
    FUZZ,
    HUGE_INTS,
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
from hypothesis.extra import numpy as hnp

import napari_geostyle as gs


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
