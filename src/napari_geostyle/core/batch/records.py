"""The records of a batch's outcomes: each output's manifest entry (its JSON form) and the
:class:`BatchResult` the caller iterates."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .. import media
    from .outcomes import ImageOutcome, SequenceOutcome
    from .plan import _Plan


@dataclass
class BatchResult:
    """One finished output. ``status``: "done", "skipped" (finished by an earlier run) or
    "failed" (``error`` says why). ``kind``: "item" (an image or frame) or "sequence" (an
    assembled video or stack). ``path`` is the output file."""

    output: str
    path: Path
    status: str
    kind: str = "item"
    source: str = ""
    frame: int | None = None
    key: str = ""
    transform: dict | None = None
    timings: dict = field(default_factory=dict)
    device: str | None = None
    error: str | None = None


def _item_entry(plan: _Plan, item: media.InputItem, outcome: ImageOutcome) -> dict:
    """An image's or frame's manifest entry (its JSON form, in the manifest's key order)."""
    geometry, texture = plan.item_styles[item.output]
    entry = {
        "output": item.output,
        "kind": "item",
        "source": item.source,
        "frame": item.frame,
        "status": outcome.status,
        "key": plan.keys[item.output],
        "geometry_style": plan.described.get(geometry),
        "texture_style": plan.described.get(texture),
        "transform": outcome.transform,
        "timings": outcome.timings,
        "device": outcome.device,
        "worker": outcome.worker,
        "error": outcome.error,
        "models_loaded": outcome.models_loaded,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if outcome.geometry_batch is not None:  # pairs in the forward that estimated it
        entry["geometry_batch"] = outcome.geometry_batch
    if outcome.estimated is not None:  # per-frame geometry: the frame's own estimate
        entry["estimated_transform"] = outcome.estimated
    if outcome.confidence is not None:  # the estimate's (``core/confidence.py``)
        entry["confidence"] = outcome.confidence
    return entry


def _sequence_entry(plan: _Plan, sequence: media.InputSequence, outcome: SequenceOutcome) -> dict:
    """A video's or stack's manifest entry (its JSON form, in the manifest's key order)."""
    entry = {
        "output": sequence.output,
        "kind": "sequence",
        "source": sequence.source,
        "frame": None,
        "status": outcome.status,
        "key": plan.keys[sequence.output],
        "transform": None,
        "error": outcome.error,
        "frames": outcome.frames,
    }
    if outcome.audio is not None:  # a written video
        entry["audio"] = outcome.audio
        entry["fps"] = outcome.fps
    entry["timings"] = outcome.timings
    return entry


def _not_done_entry(output: str, kind: str, key: str, reason: str) -> dict:
    """The entry of an output a stopped run left undone (``kind``: "item" or "sequence")."""
    return {"output": output, "kind": kind, "status": "failed", "key": key,
            "error": f"not done: {reason}"}  # fmt: skip


def _as_result(plan: _Plan, entry: dict) -> BatchResult:
    """The caller's view of a manifest entry."""
    return BatchResult(
        output=entry["output"],
        path=plan.folder / entry["output"],
        status=entry["status"],
        kind=entry.get("kind", "item"),
        source=entry.get("source", ""),
        frame=entry.get("frame"),
        key=entry.get("key", ""),
        transform=entry.get("transform"),
        timings=entry.get("timings") or {},
        device=entry.get("device"),
        error=entry.get("error"),
    )
