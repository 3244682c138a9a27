"""Temporal coherence of frame sequences: a flicker measure.

``flicker_ratio(outputs, inputs)`` is the mean absolute frame-to-frame change of the output
divided by that of the input (pixel values in 0..1). 1 means the output changes from frame to
frame as much as its input does; a result that flickers (texture re-drawn differently on every
frame, geometry that jitters) scores well above 1.
"""

from __future__ import annotations

import numpy as np


def _frames_float(frames, name: str) -> np.ndarray:
    from .images import to_float, validate_image

    frames = [to_float(validate_image(f, f"{name} frame {i}")) for i, f in enumerate(frames)]
    if len(frames) < 2:
        raise ValueError(f"{name}: at least 2 frames are needed to measure change over time.")
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise ValueError(f"{name}: frames differ in shape ({sorted(shapes)}); give equal frames.")
    return np.stack(frames)


def temporal_change(frames) -> float:
    """Mean absolute change between consecutive frames (values in 0..1)."""
    stack = _frames_float(frames, "frames")
    return float(np.abs(np.diff(stack, axis=0)).mean())


def flicker_ratio(outputs, inputs) -> float:
    """``temporal_change(outputs) / temporal_change(inputs)``: how much more the output changes
    from frame to frame than its input. Outputs and inputs may differ in size and channels."""
    if len(outputs) != len(inputs):
        raise ValueError(f"flicker_ratio needs as many output frames as input frames; got "
                         f"{len(outputs)} and {len(inputs)}.")
    reference = temporal_change(inputs)
    if reference <= 0:
        raise ValueError("the input frames do not change over time: flicker is undefined.")
    return temporal_change(outputs) / reference
