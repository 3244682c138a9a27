"""Temporal coherence of frame sequences: flicker and jitter measures, smoothing over time.

- ``flicker_ratio(outputs, inputs)`` is the mean absolute frame-to-frame change of the output
  divided by that of the input (pixel values in 0..1). 1 means the output changes from frame to
  frame as much as its input does; a result that flickers (texture re-drawn differently on
  every frame, geometry that jitters) scores well above 1.
- ``smooth_series`` averages per-frame values over a centred window (Gaussian or box), and
  ``smooth_transforms`` does it for per-frame warps, refitted to their model form: the batch's
  per-frame geometry follows a moving subject without the jitter of frame-by-frame estimates.
  ``lattice_jitter`` measures that jitter (second differences of the sampled positions).

numpy only; the transform classes are imported inside the functions that use them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .transforms import Transform


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
        raise ValueError(
            f"flicker_ratio needs as many output frames as input frames; got "
            f"{len(outputs)} and {len(inputs)}."
        )
    reference = temporal_change(inputs)
    if reference <= 0:
        raise ValueError("the input frames do not change over time: flicker is undefined.")
    return temporal_change(outputs) / reference


# --------------------------------------------------------------------------- smoothing over time
KERNELS = ("gaussian", "box")


def check_window(window) -> int:
    """``window`` as an odd whole number of frames >= 1 (the frame and as many on each side)."""
    if (
        isinstance(window, bool)
        or not isinstance(window, (int, np.integer))
        or window < 1
        or window % 2 == 0
    ):
        raise ValueError(
            f"the smoothing window must be an odd whole number of frames >= 1 (the "
            f"frame itself and as many on each side; 1 = no smoothing); got "
            f"{window!r}."
        )
    return int(window)


def per_frame_options(geometry_per_frame, smooth_frames, smooth_kernel, coherent) -> dict | None:
    """The checked options of per-frame geometry for a sequence run, or None when it is off."""
    if not isinstance(geometry_per_frame, bool):
        raise ValueError(f"geometry_per_frame must be True or False; got {geometry_per_frame!r}.")
    smooth_frames = check_window(smooth_frames)
    if smooth_kernel not in KERNELS:
        raise ValueError(
            f"smooth_kernel must be one of {', '.join(KERNELS)}; got {smooth_kernel!r}."
        )
    if not geometry_per_frame:
        return None
    if not coherent:
        raise ValueError(
            "geometry_per_frame smooths the geometry over time, in coherent mode; "
            "independent mode (coherent=False, --independent) already estimates "
            "every frame on its own."
        )
    return {"smooth_frames": smooth_frames, "smooth_kernel": smooth_kernel}


def smoothing_weights(window: int, kernel: str = "gaussian") -> np.ndarray:
    """Weights of a centred window of ``window`` frames, summing to 1.

    "box": equal weights (a moving average). "gaussian": a Gaussian with sigma = window / 4, so
    the window holds +-2 sigma and the frame itself weighs most.
    """
    window = check_window(window)
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}; got {kernel!r}.")
    offsets = np.arange(window, dtype=np.float64) - window // 2
    if kernel == "box" or window == 1:
        weights = np.ones(window)
    else:
        weights = np.exp(-0.5 * (offsets / (window / 4.0)) ** 2)
    return weights / weights.sum()


def noise_gain(window: int, kernel: str = "gaussian") -> float:
    """How much the window scales independent frame-to-frame noise (standard deviation): the
    norm of its weights, ``1 / sqrt(window)`` for a box. Drift passes unchanged."""
    return float(np.sqrt((smoothing_weights(window, kernel) ** 2).sum()))


def window_range(index: int, count: int, window: int) -> range:
    """The frames that smoothing frame ``index`` of ``count`` reads: the centred window, cut at
    the sequence's ends."""
    half = check_window(window) // 2
    return range(max(0, index - half), min(count, index + half + 1))


def smooth_series(values, window: int, kernel: str = "gaussian", valid=None) -> np.ndarray:
    """Each frame of ``values`` (``(T, ...)``) replaced by the weighted mean of the frames in its
    centred window.

    Near the ends, and around frames marked False in ``valid`` (missing: their values are not
    read), the weights of the frames that remain are renormalised. A symmetric window keeps a
    constant and a linear drift exactly wherever it fits whole; independent noise shrinks by
    :func:`noise_gain`. A frame with no valid frame in its window comes back as NaN.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim < 1 or len(values) == 0:
        raise ValueError("smooth_series needs a (T, ...) array with at least one frame.")
    count = len(values)
    valid = np.ones(count, bool) if valid is None else np.asarray(valid, bool).reshape(count)
    weights = smoothing_weights(window, kernel)
    half = len(weights) // 2
    filled = np.where(valid.reshape(-1, *[1] * (values.ndim - 1)), values, 0.0)
    out = np.full_like(values, np.nan)
    for index in range(count):
        lo, hi = max(0, index - half), min(count, index + half + 1)
        local = weights[lo - index + half : hi - index + half] * valid[lo:hi]
        if local.sum() <= 0:
            continue
        out[index] = np.tensordot(local / local.sum(), filled[lo:hi], axes=1)
    return out


def _parts(transform) -> list:
    from .transforms import ComposedTransform

    return list(transform.transforms) if isinstance(transform, ComposedTransform) else [transform]


def _form(transform) -> tuple | None:
    """The model form of a transform whose parameters can be averaged: affine parts followed by
    at most one TPS (with its control points, frame and regularization); None for others."""
    from .transforms import AffineTransform, TPSTransform

    form: list[tuple] = []
    parts = _parts(transform)
    for number, part in enumerate(parts):
        if isinstance(part, AffineTransform):
            form.append(("affine",))
        elif isinstance(part, TPSTransform) and number == len(parts) - 1:
            form.append(
                (
                    "tps",
                    part.output_points.round(6).tobytes(),
                    np.concatenate(part.frame).round(9).tobytes(),
                    part.regularization,
                )
            )
        else:
            return None
    return tuple(form)


def smooth_transforms(transforms, window: int, kernel: str = "gaussian", shape=None) -> list:
    """Per-frame transforms smoothed over time (:func:`smooth_series`), refitted to their form.

    ``transforms``: one per frame; None marks a frame whose estimate failed (skipped, its
    neighbours fill in). Transforms of one of the estimator's forms (affine, TPS on a control
    grid, affine then TPS) keep that form: affine matrices are averaged; the positions the whole
    warp samples for the TPS's control points are averaged, and the TPS is refitted so that,
    after the (averaged) affine part, the warp samples exactly those positions there. Other
    transforms, or a mix of forms, are sampled on a 5 x 5 lattice of ``shape`` (needed then),
    averaged and refitted as a TPS. A frame whose window holds no transform stays None.
    """
    from .transforms import AffineTransform, ComposedTransform, TPSTransform

    transforms = list(transforms)
    valid = np.array([t is not None for t in transforms], bool)
    if not valid.any():
        raise ValueError("no frame has a transform to smooth.")
    stand_in = next(t for t in transforms if t is not None)  # read for missing frames, weight 0
    frames = [t if t is not None else stand_in for t in transforms]
    forms = {_form(t) for t in frames}
    form = forms.pop() if len(forms) == 1 else None
    if form is None:
        if shape is None:
            raise ValueError(
                "these transforms differ in form: give the frame shape to smooth them on a lattice."
            )
        from .images import regular_grid_points

        lattice = regular_grid_points(shape, 5)
        samples = smooth_series(
            np.stack([t.sample_points(lattice) for t in frames]), window, kernel, valid
        )
        return [TPSTransform(lattice, s) if np.isfinite(s).all() else None for s in samples]

    parts = [_parts(t) for t in frames]
    matrices = {
        k: smooth_series(np.stack([p[k].matrix for p in parts]), window, kernel, valid)
        for k, kind in enumerate(form)
        if kind[0] == "affine"
    }
    spline = parts[0][-1] if form[-1][0] == "tps" else None
    if spline is not None:
        grid = spline.output_points
        samples = smooth_series(
            np.stack([t.sample_points(grid) for t in frames]), window, kernel, valid
        )
    covered = np.isfinite(smooth_series(valid.astype(float), window, kernel, valid))
    result: list[Transform | None] = []
    for index in range(len(frames)):
        if not covered[index]:  # no valid frame in this one's window
            result.append(None)
            continue
        built: list[Transform] = []
        for k in matrices:
            try:
                built.append(AffineTransform(matrices[k][index]))
            except ValueError as error:
                raise ValueError(
                    f"frame {index}: the smoothed affine is unusable ({error}); "
                    "use a shorter window."
                ) from None
        if spline is not None:
            # the spline samples, at its control points, where the affine parts send the
            # averaged content positions: the whole warp then samples those positions there
            points = samples[index]
            for affine in built:
                points = affine.map_points(points)
            built.append(TPSTransform(grid, points, spline.regularization, spline.frame))
        result.append(built[0] if len(built) == 1 else ComposedTransform(built))
    return result


def lattice_jitter(transforms, shape, grid_size: int = 5) -> float:
    """Frame-to-frame jitter of a sequence of warps, in pixels: the mean length of the second
    difference over time (``x[t+1] - 2 x[t] + x[t-1]``) of the positions each warp samples for
    a ``grid_size`` x ``grid_size`` lattice of output points. A still or steadily moving warp
    scores 0; a warp that jumps back and forth scores high."""
    from .images import regular_grid_points

    transforms = list(transforms)
    if len(transforms) < 3:
        raise ValueError("lattice_jitter needs at least 3 frames.")
    lattice = regular_grid_points(shape, grid_size)
    samples = np.stack([t.sample_points(lattice) for t in transforms])
    return float(np.linalg.norm(samples[2:] - 2 * samples[1:-1] + samples[:-2], axis=-1).mean())
