"""The records of a batch's outcomes: each output's manifest entry (its JSON form) and the
:class:`BatchResult` the caller iterates."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .. import media
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


def _item_entry(plan: _Plan, item: media.InputItem, result: dict) -> dict:
    geometry, texture = plan.item_styles[item.output]
    entry = {
        "output": item.output,
        "kind": "item",
        "source": item.source,
        "frame": item.frame,
        "status": result["status"],
        "key": plan.keys[item.output],
        "geometry_style": plan.described.get(geometry),
        "texture_style": plan.described.get(texture),
        "transform": result["transform"],
        "timings": result["timings"],
        "device": result["device"],
        "worker": result["worker"],
        "error": result["error"],
        "models_loaded": result.get("models_loaded"),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if result.get("geometry_batch") is not None:  # pairs in the forward that estimated it
        entry["geometry_batch"] = result["geometry_batch"]
    if result.get("estimated") is not None:  # per-frame geometry: the frame's own estimate
        entry["estimated_transform"] = result["estimated"]
    if result.get("confidence") is not None:  # the estimate's (``core/confidence.py``)
        entry["confidence"] = result["confidence"]
    return entry


def _as_result(plan: _Plan, entry: dict) -> BatchResult:
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
