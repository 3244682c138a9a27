"""Running a plan on Dask: the client (a local cluster, an address or the caller's), the
geometry chunks, every pending task submitted with its dependencies, and the results taken as
they complete (written, journalled, recorded), then the videos and stacks assembled.

Dask is imported inside functions: importing this module stays cheap."""

from __future__ import annotations

import math
import os
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from .. import media, temporal
from .outcomes import GeometryOutcome
from .plan import _Plan
from .records import BatchResult, _as_result, _item_entry, _sequence_entry
from .tasks import _assemble, _task_estimate_chunk, _task_item, _task_smooth, _warm_up

# Default pairs per geometry chunk when every worker runs on CUDA: the networks' 240 x 240
# forwards leave a GPU mostly idle one pair at a time, so a forward of 16 pairs costs little
# more than one, and 16 pairs' inputs are a few MB. On a CPU the forward is compute-bound (the
# same time per pair, batched or not), the search and the refinement run pair by pair anyway,
# and a chunk holds its pairs' warps back until all are estimated: measured no faster (slower
# with 1 worker, docs/PERFORMANCE.md), so CPU workers keep 1. The CUDA value is not measured
# yet: benchmarks/bench_batch.py --geometry-batch-only --geometry-batch 1 16 --device cuda.
GPU_GEOMETRY_BATCH = 16


def _start_client(scheduler, workers, processes, device):
    """``(client, cluster or None)``; the cluster is ours to close."""
    from distributed import Client, LocalCluster

    if scheduler in (None, "", "local"):
        import torch

        wants_gpu = device in (None, "", "auto") or str(device).startswith("cuda")
        gpus = torch.cuda.device_count() if wants_gpu else 0
        count = workers or gpus or os.cpu_count() or 1
        cluster = LocalCluster(
            n_workers=count, threads_per_worker=1, processes=processes, dashboard_address=None
        )
        return Client(cluster), cluster
    if isinstance(scheduler, str) and "://" in scheduler:
        from ..scheduler import SCHEDULER_TIMEOUT_S

        try:  # check_scheduler asked it first: it answers
            return Client(scheduler, timeout=f"{SCHEDULER_TIMEOUT_S:g}s"), None
        except OSError as error:
            raise ValueError(f"cannot reach the Dask scheduler at {scheduler}: {error}") from error
    raise ValueError(
        f"scheduler must be 'local' or an address such as tcp://HOST:8786; got {scheduler!r}."
    )


def _geometry_batch(requested, warm: dict) -> int:
    """Pairs per geometry chunk: ``requested``, else ``GPU_GEOMETRY_BATCH`` when every worker
    that warmed up runs on CUDA, else 1 (``warm``: ``_warm_up``'s result by worker)."""
    if requested is not None:
        return requested
    devices = [
        value["device"] for value in warm.values() if isinstance(value, dict) and "device" in value
    ]
    on_cuda = bool(devices) and all(device.startswith("cuda") for device in devices)
    return GPU_GEOMETRY_BATCH if on_cuda else 1


class _GeometryChunks:
    """The geometry estimates of a run: ``add`` gives a pair's reference (see ``_resolve``),
    ``submit`` groups the pairs in order into chunks, one ``_task_estimate_chunk`` each, and
    fills the references with their chunk's future and position."""

    def __init__(self):
        self.pairs, self.references = [], []

    def add(self, item: media.InputItem, style_id: str) -> dict:
        # a plain dict: Dask resolves the futures it finds in the arguments' dicts and lists,
        # not in other objects, so the task that takes it gets the chunk's outcomes
        reference = {"chunk": None, "position": None}
        self.pairs.append((item, style_id))
        self.references.append(reference)
        return reference

    def submit(self, client, scattered: dict, settings: dict, size: int, workers: int) -> int:
        """Submit the chunks (up to ``size`` pairs each); returns the chunk size used."""
        if not self.pairs:
            return size
        # few pairs: smaller chunks, so that every worker gets one rather than one worker all
        size = max(1, min(size, math.ceil(len(self.pairs) / max(workers, 1))))
        for start in range(0, len(self.pairs), size):
            pairs = self.pairs[start : start + size]
            style_ids = [style_id for _, style_id in pairs]
            future = client.submit(
                _task_estimate_chunk,
                [item for item, _ in pairs],
                {i: scattered[i] for i in sorted(set(style_ids))},
                style_ids,
                settings,
                pure=False,
            )
            for position, reference in enumerate(self.references[start : start + size]):
                reference.update(chunk=future, position=position)
        return size


@dataclass
class _Smoothing:
    """A frame's per-frame geometry: its position in its window and the window's estimates."""

    position: int
    estimates: list
    shape: tuple


def _known_estimate(plan: _Plan, frame: media.InputItem) -> GeometryOutcome | None:
    """A finished frame's own per-frame estimate, from the manifest (its key holds the style,
    options and window): a resumed run does not estimate it again for its neighbours."""
    if not plan.manifest.finished(frame.output, plan.keys[frame.output]):
        return None
    known = plan.manifest.entries[frame.output].get("estimated_transform")
    return None if known is None else GeometryOutcome(frame.output, known)


def _sequence_geometry(
    plan: _Plan, chunks: _GeometryChunks, sequence, geometry_id: str, pending: list
) -> dict:
    """``{frame output: its geometry}`` for a coherent sequence's pending frames: a reference
    to one estimate (the first frame's) for all, or (per frame) a ``_Smoothing`` of the
    estimates of its window."""
    frames, settings = sequence.items, plan.settings
    if settings["per_frame"] is None:
        once = chunks.add(frames[0], geometry_id)
        return {frames[index].output: once for index in pending}
    estimates, smoothed = {}, {}
    shape = frames[0].array.shape[:2]
    for index in pending:
        window = temporal.window_range(index, len(frames), settings["per_frame"]["smooth_frames"])
        for j in window:
            if j not in estimates:
                estimates[j] = _known_estimate(plan, frames[j]) or chunks.add(
                    frames[j], geometry_id
                )
        smoothed[frames[index].output] = _Smoothing(
            index - window.start, [estimates[j] for j in window], shape
        )
    return smoothed


def _submit(plan: _Plan, client, geometry_batch: int, workers: int) -> tuple[list, int]:
    """Submit every pending item and the geometry chunks they need: ``(the items' futures in
    input order, the chunk size used)``."""
    used = {s for pair in plan.item_styles.values() for s in pair if s is not None}
    scattered = {
        ident: client.scatter(plan.styles[ident], broadcast=True) for ident in sorted(used)
    }
    settings = plan.settings
    todo = {item.output for item in plan.todo}
    pending = {
        sequence.output: [
            index for index, frame in enumerate(sequence.items) if frame.output in todo
        ]
        for sequence in plan.sequences
    }
    # first every geometry estimate, so that the chunks exist before the tasks that use them
    chunks, transforms = _GeometryChunks(), {}
    for sequence in plan.sequences:
        geometry_id = plan.item_styles[sequence.items[0].output][0]
        if pending[sequence.output] and plan.coherent and geometry_id is not None:
            transforms.update(
                _sequence_geometry(plan, chunks, sequence, geometry_id, pending[sequence.output])
            )
    if geometry_batch > 1:  # at 1, an image's own task estimates it (no extra task)
        for item in plan.todo:
            geometry_id = plan.item_styles[item.output][0]
            if item.output not in transforms and geometry_id is not None:
                transforms[item.output] = chunks.add(item, geometry_id)
    size = chunks.submit(client, scattered, settings, geometry_batch, workers)
    for output, geometry in transforms.items():
        if isinstance(geometry, _Smoothing):
            transforms[output] = client.submit(
                _task_smooth,
                geometry.position,
                geometry.estimates,
                settings,
                geometry.shape,
                pure=False,
            )
    futures: list = []
    by_output: dict[str, Any] = {}  # an output's future
    for sequence in plan.sequences:
        frames = sequence.items
        geometry_id, texture_id = plan.item_styles[frames[0].output]
        geometry, texture = scattered.get(geometry_id), scattered.get(texture_id)
        chunk = plan.chunk or len(frames)
        for index in pending[sequence.output]:
            frame = frames[index]
            previous = None
            if plan.coherent and texture is not None and index % chunk:
                before = frames[index - 1]
                previous = by_output.get(before.output)
                if previous is None:  # finished by an earlier run: start from its file
                    previous = media.decode_image(
                        (plan.folder / before.output).read_bytes(), before.output
                    )
            future = client.submit(
                _task_item,
                frame,
                geometry,
                texture,
                settings,
                transforms.get(frame.output),
                previous,
                pure=False,
            )
            by_output[frame.output] = future
            futures.append(future)
    for item in plan.todo:
        if item.sequence is None:
            geometry_id, texture_id = plan.item_styles[item.output]
            futures.append(
                client.submit(
                    _task_item,
                    item,
                    scattered.get(geometry_id),
                    scattered.get(texture_id),
                    settings,
                    transforms.get(item.output),
                    pure=False,
                )
            )
    return futures, size


def _run(plan: _Plan, client, scheduler, workers, processes) -> Generator[BatchResult, None, None]:
    manifest = plan.manifest
    own_client = cluster = None
    try:
        for item in plan.skipped:
            yield _as_result(plan, {**manifest.entries[item.output], "status": "skipped"})
        if plan.todo:
            from distributed import as_completed

            if client is None:
                own_client, cluster = _start_client(
                    scheduler, workers, processes, plan.settings["device"]
                )
                client = own_client
            warm = client.run(_warm_up, plan.settings, os.getpid(), on_error="return")
            manifest.header["workers"] = {
                address: (value if isinstance(value, dict) else {"error": repr(value)})
                for address, value in warm.items()
            }
            by_output = {item.output: item for item in plan.todo}
            futures, size = _submit(
                plan, client, _geometry_batch(plan.settings["geometry_batch"], warm), len(warm)
            )
            manifest.header["options"]["geometry_batch"] = size  # the size used
            for future in as_completed(futures):
                outcome = future.result()
                item = by_output[outcome.output]
                if outcome.status == "done":  # journalled first: a kill in between resumes
                    manifest.pending(item.output, plan.keys[item.output], outcome.data)
                    media.write_atomic(plan.folder / item.output, outcome.data)
                entry = _item_entry(plan, item, outcome)
                manifest.record(entry)
                yield _as_result(plan, entry)
        for sequence in plan.sequences:
            if manifest.finished(sequence.output, plan.keys[sequence.output], "sequences"):
                yield _as_result(plan, {**manifest.sequences[sequence.output], "status": "skipped"})
                continue
            manifest.pending(sequence.output, plan.keys[sequence.output], None, "sequence")
            entry = _sequence_entry(plan, sequence, _assemble(plan, sequence))
            manifest.record(entry)
            yield _as_result(plan, entry)
    finally:
        try:
            manifest.save()
        finally:  # a manifest that cannot be saved (a full disk) still stops the cluster
            if own_client is not None:
                own_client.close()
            if cluster is not None:
                cluster.close()
