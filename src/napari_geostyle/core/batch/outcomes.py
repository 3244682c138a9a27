"""What a batch's tasks return: typed, frozen outcomes that cross from the Dask workers to the
calling process (pickled), where :mod:`.records` turns them into manifest entries. A failure is
an outcome with its ``error``, never an exception."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GeometryOutcome:
    """One pair's geometry: estimated in a chunk of pairs, known from a finished frame's
    manifest entry (a resumed run), or a frame's per-frame estimate smoothed over its window.

    Attributes
    ----------
    output : str
        The item (image or frame) whose content was estimated.
    transform : dict or None
        The transform to warp with (``Transform.to_dict``); None when ``error`` says why not.
    error : str or None
        Why there is no transform.
    seconds : float or None
        This pair's share of its chunk's time (None: known before the run).
    batch : int or None
        Pairs per network forward of its chunk (None: known before the run).
    confidence : float or None
        The estimate's confidence (``core/confidence.py``); None once smoothed.
    estimated : dict or None
        Smoothed per-frame geometry: the frame's own estimate before smoothing.
    """

    output: str
    transform: dict | None
    error: str | None = None
    seconds: float | None = None
    batch: int | None = None
    confidence: float | None = None
    estimated: dict | None = None


@dataclass(frozen=True)
class ImageOutcome:
    """What processing one image or frame gave.

    Attributes
    ----------
    output : str
        The item's output name.
    status : str
        "done" or "failed".
    data : bytes or None
        The encoded output file ("done" only); the calling process writes it.
    error : str or None
        Why it failed.
    transform : dict or None
        The transform it was warped with.
    estimated : dict or None
        Per-frame geometry: the frame's own estimate before smoothing.
    confidence : float or None
        The estimate's confidence.
    geometry_batch : int or None
        Pairs per network forward of the estimate that gave its own geometry.
    timings : dict
        Seconds by stage ("read", "geometry", "warp", "texture", "encode", "total").
    device : str or None
        The device it ran on.
    worker : str or None
        The Dask worker's address.
    models_loaded : int
        Networks it had to load (0 on a warm worker).
    """

    output: str
    status: str
    data: bytes | None
    error: str | None
    transform: dict | None
    estimated: dict | None
    confidence: float | None
    geometry_batch: int | None
    timings: dict
    device: str | None
    worker: str | None
    models_loaded: int


@dataclass(frozen=True)
class SequenceOutcome:
    """What assembling one video or stack from its frames gave.

    Attributes
    ----------
    output : str
        The video's or stack's output name.
    status : str
        "done" or "failed".
    error : str or None
        Why it failed (a frame failed, or the file could not be written).
    frames : int
        Its frame count.
    timings : dict
        Seconds ("total").
    audio : str or None
        A written video: the note on its audio; None for a stack or a video not written.
    fps : float or None
        A written video: its frame rate as read from the input.
    """

    output: str
    status: str
    error: str | None
    frames: int
    timings: dict
    audio: str | None = None
    fps: float | None = None
