"""What one task does: warm a worker up, estimate a chunk of pairs' geometry, smooth a frame's
per-frame geometry, process one image or frame (on a Dask worker); assemble one video or stack
from its frames (on the calling process). A task never raises: a failure is its outcome's
error, and the other inputs go on."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import numpy as np

from .. import media, temporal
from ..texture_trunks import resolve_backbone
from .outcomes import GeometryOutcome, ImageOutcome, SequenceOutcome

if TYPE_CHECKING:  # pragma: no cover
    from .plan import _Plan


def _models_cached() -> int:
    from .. import features, geonet

    return len(geonet._CACHE) + len(features._CACHE)


def _worker_device(requested):
    """The device of this worker: the one asked for, else on a GPU machine one GPU per worker
    (by the worker's name, which a LocalCluster numbers 0, 1, ...), else the best available."""
    if requested not in (None, "", "auto"):
        return requested
    import torch

    if not torch.cuda.is_available():
        return "auto"
    index = 0
    try:
        from distributed import get_worker

        name = str(get_worker().name)
        index = int(name) if name.isdigit() else 0
    except (ImportError, ValueError):  # not running in a Dask worker
        pass
    return f"cuda:{index % torch.cuda.device_count()}"


def _warm_up(settings: dict, client_pid: int) -> dict:
    """Load the networks this batch uses into the worker's process caches (run on each worker)."""
    import torch

    from ..devices import resolve_device
    from ..geonet import load_geometry_model, resolve_trunk
    from ..texture_trunks import build_texture_trunk

    device = resolve_device(_worker_device(settings["device"]))
    if device.type == "cpu" and os.getpid() != client_pid:
        torch.set_num_threads(1)  # one core per worker process; never the caller's threads
    started = time.perf_counter()
    geometry = settings["geometry"]
    if geometry is not None:
        kinds = {"affine": ["affine"], "tps": ["tps"], "affine+tps": ["affine", "tps"]}
        for kind in kinds[geometry["model"]]:
            load_geometry_model(kind, resolve_trunk("auto"), None, device)
    if settings["texture"] is not None:
        backbone = resolve_backbone(settings["texture"].get("backbone", "auto"), download=False)
        build_texture_trunk(backbone, device)
    return {"device": str(device), "seconds": time.perf_counter() - started}


def _read_item(item: media.InputItem) -> np.ndarray:
    return media.load_item(item)


def _hints_of(settings: dict, output: str):
    """The hints of the item ``output`` (its own, or its video's or stack's), or None."""
    return settings.get("hints", {}).get(output)


def _estimate(image, geometry, settings, device, output=None):
    from ..estimate import estimate_transform
    from ..geometry_options import GeometryOptions

    options = GeometryOptions(**settings["geometry"])  # the plan's model, method, strength
    hints = _hints_of(settings, output)
    return estimate_transform(image, geometry, options, device, hints=hints)


def _texture_options(settings: dict, warm: bool) -> dict:
    """Texture options; a warm start (previous frame's result) solves at the finest level only
    (the same rule as the napari "all frames" runs: ``stack_transfer.warm_start_options``)."""
    from ..stack_transfer import warm_start_options

    return warm_start_options(settings["texture"], warm)


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


def _estimate_many(images, geometries, settings, device, outputs=None) -> list:
    from ..estimate import estimate_warps

    options = settings["geometry"]
    hints = [_hints_of(settings, o) for o in outputs or [None] * len(images)]
    return estimate_warps(
        images,
        geometries,
        model=options["model"],
        method=options["method"],
        strength=options["strength"],
        device=device,
        batch_size=len(images),
        hints=hints,
    )


def _task_estimate_chunk(
    items: list, styles: dict, style_ids: list, settings: dict
) -> list[GeometryOutcome]:
    """The transforms of a chunk of pairs (``items[i]`` with style ``styles[style_ids[i]]``),
    the networks batched: one :class:`GeometryOutcome` per pair (``seconds``: its share of the
    chunk's time; ``batch``: pairs per forward).

    An input that cannot be read fails alone; when the batched call raises (a pair too small,
    out of memory, ...) the chunk is estimated pair by pair, so only the bad pair fails."""
    started = time.perf_counter()
    results: dict[int, GeometryOutcome] = {}
    images = {}
    device = _worker_device(settings["device"])
    for index, item in enumerate(items):
        try:
            images[index] = _read_item(item)
        except Exception as error:  # reported by the item that uses it
            results[index] = GeometryOutcome(
                item.output, None, _describe(error), seconds=0.0, batch=1
            )
    ready = list(images)
    transforms = None
    if len(ready) > 1:
        try:
            transforms = _estimate_many(
                [images[i] for i in ready], [styles[style_ids[i]] for i in ready], settings,
                device, [items[i].output for i in ready],
            )  # fmt: skip
        except Exception:  # which pair failed is unknown: each pair on its own below
            transforms = None
    if transforms is not None:
        share = (time.perf_counter() - started) / len(ready)
        for index, transform in zip(ready, transforms, strict=True):
            results[index] = GeometryOutcome(
                items[index].output, transform.to_dict(), seconds=share, batch=len(ready),
                confidence=getattr(transform, "confidence", None),
            )  # fmt: skip
    else:
        for index in ready:
            mark = time.perf_counter()
            try:
                transform = _estimate(
                    images[index], styles[style_ids[index]], settings, device, items[index].output
                )
                estimate, problem = transform.to_dict(), None
                confidence = getattr(transform, "confidence", None)
            except Exception as failure:
                estimate, problem, confidence = None, _describe(failure), None
            results[index] = GeometryOutcome(
                items[index].output, estimate, problem, seconds=time.perf_counter() - mark,
                batch=1, confidence=confidence,
            )  # fmt: skip
    return [results[index] for index in range(len(items))]


def _resolve(estimate: dict | GeometryOutcome) -> GeometryOutcome:
    """One pair's estimate: a reference ``{"chunk": chunk result, "position": i}`` (a
    ``_task_estimate_chunk`` result, its future resolved by Dask), or the outcome itself
    (known before the run)."""
    if isinstance(estimate, GeometryOutcome):
        return estimate
    return estimate["chunk"][estimate["position"]]


def _task_smooth(position: int, estimates: list, settings: dict, shape) -> GeometryOutcome:
    """Frame ``position`` of its window's per-frame estimates (references, ``_resolve``),
    smoothed over the window (a neighbour whose estimate failed is left out; the frame's own
    failure is its error). Its ``seconds`` and ``batch`` are its own estimate's chunk's."""
    from ..transforms import transform_from_dict

    estimates = [_resolve(e) for e in estimates]
    own = estimates[position]
    cost = {"seconds": own.seconds, "batch": own.batch}  # its chunk's, for its entry
    if own.error is not None:
        return GeometryOutcome(own.output, None, own.error, **cost)
    options = settings["per_frame"]
    try:
        transforms = [
            transform_from_dict(e.transform) if e.error is None else None for e in estimates
        ]
        smoothed = temporal.smooth_transforms(
            transforms, options["smooth_frames"], options["smooth_kernel"], shape
        )[position]
        return GeometryOutcome(own.output, smoothed.to_dict(), estimated=own.transform, **cost)
    except Exception as error:
        return GeometryOutcome(own.output, None, _describe(error), estimated=own.transform, **cost)


def _task_item(
    item: media.InputItem, geometry, texture, settings: dict, transform=None, previous=None
) -> ImageOutcome:
    """Process one image or frame; never raises (a failure is an outcome with its error).

    ``transform``: the item's geometry when it was estimated elsewhere, a reference to its
    chunk's result (``_resolve``) or ``_task_smooth``'s outcome (per-frame geometry), or None
    to estimate it here when there is a ``geometry`` style.
    ``previous``: the previous frame's outcome (coherent texture: its output is the warm
    start), or its output image read back from disk by a resumed run.
    """
    from ..stages import texture_result, warp_stage
    from ..transforms import transform_from_dict

    started = time.perf_counter()
    before = _models_cached()
    worker = _worker_name()
    timings: dict = {}
    # what the outcome reports; each is known as far as the work got before a failure
    used_device = warped_with = estimated = confidence = geometry_batch = data = failure = None
    try:
        device = _worker_device(settings["device"])
        from ..devices import resolve_device

        used_device = str(resolve_device(device))
        if isinstance(previous, ImageOutcome):
            if previous.status != "done":
                raise ValueError(f"the previous frame failed ({previous.error})")
            assert previous.data is not None, "a done frame carries its encoded image"
            previous = media.decode_image(previous.data, previous.output)
        image = _read_item(item)
        timings["read"] = time.perf_counter() - started
        if isinstance(transform, dict):  # a reference to its chunk's result
            transform = _resolve(transform)
        if isinstance(transform, GeometryOutcome):
            # its own estimate (not the sequence's reference frame's), from a chunk: its share
            if transform.output == item.output and transform.batch is not None:
                timings["geometry"] = transform.seconds
                geometry_batch = transform.batch
            if transform.error is not None:
                raise ValueError(f"the geometry could not be estimated ({transform.error})")
            estimated = transform.estimated
            confidence = transform.confidence
            assert transform.transform is not None, "an estimate without error carries it"
            transform = transform_from_dict(transform.transform)
        elif geometry is not None:
            mark = time.perf_counter()
            transform = _estimate(image, geometry, settings, device, item.output)
            confidence = getattr(transform, "confidence", None)
            timings["geometry"] = time.perf_counter() - mark
            geometry_batch = 1
        output = image
        if transform is not None:
            mark = time.perf_counter()
            output, _ = warp_stage(image, None, None, device, transform=transform)
            timings["warp"] = time.perf_counter() - mark
            warped_with = transform.to_dict()
        if texture is not None:
            mark = time.perf_counter()
            output = texture_result(
                output,
                texture,
                device,
                _texture_options(settings, previous is not None),
                init=("content" if previous is None else previous),
            )
            timings["texture"] = time.perf_counter() - mark
        mark = time.perf_counter()
        data = media.encode_image(output, item.output)
        timings["encode"] = time.perf_counter() - mark
    except Exception as error:  # recorded in the manifest; the other inputs go on
        failure = _describe(error)
    timings["total"] = time.perf_counter() - started
    return ImageOutcome(
        output=item.output,
        status="failed" if failure is not None else "done",
        data=data,
        error=failure,
        transform=warped_with,
        estimated=estimated,
        confidence=confidence,
        geometry_batch=geometry_batch,
        timings=timings,
        device=used_device,
        worker=worker,
        models_loaded=_models_cached() - before,
    )


def _worker_name():
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return None


def _assemble(plan: _Plan, sequence: media.InputSequence) -> SequenceOutcome:
    """Assemble a video (with its input's audio) or a stack from its frames' files, on the
    calling process; never raises (a failed frame, or a file that cannot be written, is the
    outcome's error)."""
    started = time.perf_counter()
    status, failure, audio, fps = "failed", None, None, None
    states = [plan.manifest.entries.get(i.output, {}).get("status") for i in sequence.items]
    if any(state != "done" for state in states):
        failure = f"{states.count('failed')} frame(s) failed: see their entries"
    else:
        try:
            frames = [
                media.decode_image((plan.folder / i.output).read_bytes(), i.output)
                for i in sequence.items
            ]
            path = plan.folder / sequence.output
            if sequence.kind == "video":
                audio = media.write_video(
                    path, frames, sequence.fps or media.DEFAULT_FPS, audio_from=sequence.source
                )
                fps = sequence.fps
            else:
                media.write_stack(path, frames)
            status = "done"
        except Exception as error:
            failure = _describe(error)
    return SequenceOutcome(
        output=sequence.output,
        status=status,
        error=failure,
        frames=len(sequence.items),
        timings={"total": time.perf_counter() - started},
        audio=audio,
        fps=fps,
    )
