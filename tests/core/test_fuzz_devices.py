"""Fuzzing ``resolve_device``: any device name.

The contract, the settings and the strategies are in tests/fuzzing.py.
"""

from __future__ import annotations

from fuzzing import (
    FUZZ,
    accepts,
    half,
    junk,
    option_text,
    outcome,
)
from hypothesis import given
from hypothesis import strategies as st

import napari_geostyle as gs


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
