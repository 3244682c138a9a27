"""Geometric style transfer of every frame of a stack or time series, as one generator.

``iter_stack_transfer`` is the in-process form of the batch engine's sequence mode
(:mod:`napari_geostyle.core.batch`), for the napari widgets' "all frames" runs:

- ``coherent`` (default): the geometry is estimated once, on the first frame, and used for
  every frame (no jitter); the texture of frame t starts from frame t-1's result
  (``iter_texture_transfer(init=...)``) and solves the finest level only
  (:func:`warm_start_options`), so the result does not flicker and later frames are cheaper.
- ``coherent`` with ``geometry_per_frame``: the geometry is estimated on every frame and
  smoothed over a centred window of ``smooth_frames`` frames
  (:func:`napari_geostyle.core.temporal.smooth_transforms`; frames up to half a window ahead
  are read and estimated early), so a moving subject is followed without jitter.
- not ``coherent``: every frame is estimated and styled on its own.

Frames are read one at a time (``frames[i]``), so a lazily read stack never sits in memory
whole. Steps report per-frame and whole-stack progress; closing the generator stops at once.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence, Sized
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from numpy.typing import ArrayLike


@dataclass
class StackStep:
    """One progress step of a stack run.

    ``frame`` (0-based) of ``frames`` is the frame being worked on. ``stage``: "geometry" (the
    frame is warped: ``warped``, ``transform``) or "texture" (one iteration: ``level``,
    ``iteration``, ``loss``; ``image`` None or a preview of this frame). ``frame_done``: this
    frame is finished and ``image`` is its result; ``done``: the whole stack is.
    ``progress`` / ``total`` count texture iterations over the whole stack (``total`` is 0
    until the first frame's schedule is known; a geometry-only run counts frames).

    Parameters
    ----------
    frame, frames : int
        The frame being worked on (0-based), of ``frames``.
    stage : {"geometry", "texture"}
        The frame is warped, or one texture iteration ran.
    level, levels, iteration, iterations : int
        The texture stage's pyramid level and iteration (as :class:`TextureStep`).
    loss : float, optional
        The texture stage's latest loss.
    image : numpy.ndarray, optional
        A preview of this frame, or its result when ``frame_done``.
    progress, total : int
        Texture iterations over the whole stack.
    frame_done : bool
        This frame is finished.
    done : bool
        The whole stack is finished.
    warped : numpy.ndarray, optional
        The warped frame (geometry steps).
    transform : Transform, optional
        The frame's transform, content -> output (geometry steps).
    """

    frame: int
    frames: int
    stage: str
    level: int = 0
    levels: int = 0
    iteration: int = 0
    iterations: int = 0
    loss: float | None = None
    image: np.ndarray | None = None
    progress: int = 0
    total: int = 0
    frame_done: bool = False
    done: bool = False
    warped: np.ndarray | None = None
    transform: object = None


def warm_start_options(options: dict, warm: bool) -> dict:
    """Texture options for one frame: a warm start (from the previous frame's result) solves
    the finest level only, with that level's iterations; ``init`` is set by the caller."""
    from .texture import _iterations

    options = dict(options)
    options.pop("init", None)
    if warm:
        schedule = _iterations(
            options.get("iterations"), options.get("preset", "balanced"), options.get("levels", 4)
        )
        options.update(levels=1, iterations=schedule[-1])
    return options


def _frame(frames, index: int) -> np.ndarray:
    from .images import validate_image

    return validate_image(frames[index], f"frame {index}")


def iter_stack_transfer(
    frames: ArrayLike | Sequence[ArrayLike],
    texture_style: ArrayLike | Sequence[ArrayLike] | None = None,
    geometry_style: ArrayLike | None = None,
    *,
    coherent: bool = True,
    geometry_per_frame: bool = False,
    smooth_frames: int = 5,
    smooth_kernel: str = "gaussian",
    model: str = "affine+tps",
    method: str = "network",
    strength: float = 1.0,
    device: str | torch.device | None = None,
    **texture_options: Any,
) -> Generator[StackStep, None, None]:
    """Warp (``geometry_style``) and/or style (``texture_style``) every frame of ``frames``.

    Everything is checked now on the first frame (``ValueError``); the work starts on the first
    ``next()``.

    Parameters
    ----------
    frames : array_like or sequence of array_like
        A ``(T, H, W[, C])`` array or any sequence of 2D images of one shape (indexed lazily,
        one frame at a time).
    texture_style : array_like or sequence of array_like, optional
        The texture style (or a list of them).
    geometry_style : array_like, optional
        The geometry style.
    coherent : bool, default True
        Estimate the geometry once and warm-start each frame's texture from the previous
        frame's result.
    geometry_per_frame, smooth_frames, smooth_kernel
        As :func:`napari_geostyle.batch_geometric_style_transfer`.
    model, method, strength
        As :func:`napari_geostyle.estimate_warp`.
    device : str or torch.device, optional
        ``None``/``"auto"`` picks cuda > mps > cpu.
    **texture_options
        :func:`napari_geostyle.iter_texture_transfer`'s options (``init`` is chosen per frame).

    Yields
    ------
    StackStep
        Progress steps; the last has ``done=True``.

    Raises
    ------
    ValueError
        At the call, if neither style is given, ``init`` is given, ``frames`` is not a
        non-empty stack of 2D images, or an option or the first frame is invalid.
    """
    from .temporal import per_frame_options

    if texture_style is None and geometry_style is None:
        raise ValueError("give a texture style, a geometry style, or both.")
    per_frame = per_frame_options(geometry_per_frame, smooth_frames, smooth_kernel, coherent)
    if "init" in texture_options:
        raise ValueError(
            "init is chosen per frame in a stack run (the previous frame's "
            "result when coherent); leave it out."
        )
    try:
        if isinstance(frames, (str, bytes, Mapping)):  # sized, but not images by position
            raise TypeError
        count = len(cast(Sized, frames))  # a TypeError for anything unsized
    except TypeError as error:
        raise ValueError("frames must be a (T, H, W[, C]) array or a list of 2D images.") from error
    if count < 1:
        raise ValueError("frames is empty: give at least one 2D image.")
    first = _frame(frames, 0)
    geometry = None
    if geometry_style is not None:
        from .estimate import MIN_SIZE
        from .geometry_options import GeometryOptions
        from .images import validate_image

        geometry = GeometryOptions(model=model, method=method, strength=strength)
        validate_image(first, "frame 0", min_size=MIN_SIZE)
        geometry_style = validate_image(geometry_style, "geometry style", min_size=MIN_SIZE)
    if texture_style is not None:
        from .stages import check_texture_stage

        # the warped frames keep the frame's shape: planning on frame 0 checks the options now
        check_texture_stage(first, texture_style, device, texture_options)
    return _run(
        frames,
        count,
        texture_style,
        geometry_style,
        geometry,
        bool(coherent),
        per_frame,
        device,
        texture_options,
    )


class _SmoothedGeometry:
    """Per-frame estimates smoothed over a centred window; estimates are kept only while a
    later frame's window still reads them. ``geometry``: the estimate's ``GeometryOptions``."""

    def __init__(self, frames, count, geometry_style, geometry, options, device):
        self.frames, self.count, self.style = frames, count, geometry_style
        self.geometry, self.options, self.device = geometry, options, device
        self.estimates = {}

    def transform(self, index: int, frame: np.ndarray):
        from .estimate import estimate_transform
        from .temporal import smooth_transforms, window_range

        window = window_range(index, self.count, self.options["smooth_frames"])
        for j in window:
            if j not in self.estimates:
                image = frame if j == index else _frame(self.frames, j)
                self.estimates[j] = estimate_transform(
                    image, self.style, self.geometry, self.device
                )
        for j in [j for j in self.estimates if j < window.start]:
            del self.estimates[j]
        return smooth_transforms(
            [self.estimates[j] for j in window],
            self.options["smooth_frames"],
            self.options["smooth_kernel"],
            frame.shape[:2],
        )[index - window.start]


def _run(
    frames,
    count,
    texture_style,
    geometry_style,
    geometry,
    coherent,
    per_frame,
    device,
    texture_options,
) -> Generator[StackStep, None, None]:
    """The stages (``core.stages``) frame by frame: ``geometry`` (``GeometryOptions``, or None
    without a geometry style) estimates, or the coherent run's one transform is reused."""
    from .stages import texture_stage, warp_stage

    smoothed = None
    if geometry_style is not None and per_frame is not None:
        smoothed = _SmoothedGeometry(frames, count, geometry_style, geometry, per_frame, device)
    transform = None
    previous = None
    done_before = 0  # texture iterations of the finished frames
    total = 0 if texture_style is not None else count
    for index in range(count):
        frame = _frame(frames, index)
        last = index == count - 1
        if geometry_style is not None:
            if smoothed is not None:
                transform = smoothed.transform(index, frame)
            elif not coherent:
                transform = None  # each frame estimated on its own, by the warp stage
            # (coherent: the first frame's estimate, made by the warp stage, serves every frame)
            frame, transform = warp_stage(
                frame, geometry_style, geometry, device, transform=transform
            )
            if texture_style is None:  # a warp-only run: the warped frame is the result
                yield StackStep(
                    index,
                    count,
                    "geometry",
                    image=frame,
                    warped=frame,
                    transform=transform,
                    progress=index + 1,
                    total=total,
                    frame_done=True,
                    done=last,
                )
                continue
            yield StackStep(
                index,
                count,
                "geometry",
                warped=frame,
                transform=transform,
                progress=done_before,
                total=total,
            )
        warm = coherent and previous is not None
        options = warm_start_options(texture_options, warm)
        steps = texture_stage(
            frame, texture_style, device, options, init=previous if warm else "content"
        )
        try:
            for step in steps:
                if not total:  # the first frame's schedule is known now
                    later = warm_start_options(texture_options, True)["iterations"]
                    total = step.total + (count - 1) * (later if coherent else step.total)
                yield StackStep(
                    index,
                    count,
                    "texture",
                    level=step.level,
                    levels=step.levels,
                    iteration=step.iteration,
                    iterations=step.iterations,
                    loss=step.loss,
                    image=step.image,
                    progress=done_before + step.progress,
                    total=total,
                    frame_done=step.done,
                    done=step.done and last,
                    transform=transform,
                )
                if step.done:
                    previous = step.image
                    done_before += step.total
        finally:  # closing this generator stops the frame's solve at once
            steps.close()
