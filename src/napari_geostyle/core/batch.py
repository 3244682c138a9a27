"""Batch geometric style transfer on Dask: folders, videos and stacks, resumable.

``batch_geometric_style_transfer`` plans on the calling process (inputs, resume keys, output
conflicts: all checked before any work) and runs one Dask task per image or frame on a
``LocalCluster`` it starts, on a cluster at an address, or on a ``Client`` it is given.

- Only a geometry style: each input is warped. Only a texture style: styled. Both: both stages.
- Resume: an output's key is the SHA-256 of its input's bytes, the style images' bytes and the
  options; a rerun skips an output whose manifest entry has the same key and whose file exists.
  Files are written atomically (``media.write_atomic``) by the calling process, so a kill never
  leaves a half-written output under an output's name.
- A failing input is recorded (status ``failed`` and its error) and the others go on.
- Workers keep their networks: the core caches the geometry networks and the VGG trunk per
  process (``geonet._CACHE``, ``features._CACHE``); ``_warm_up`` fills them on every worker
  before the first task, and each task reports how many models it had to load (0 once warm).
  The geometry network runs one pair per forward pass (``estimate_warp`` as is).
- Sequences (videos, stacks) in ``coherent`` mode: the geometry is estimated once, on the first
  frame, and used for every frame (no jitter); the texture of frame t starts from the result
  of frame t-1 (``iter_texture_transfer(init=...)``) at the finest level only. Frame t's task
  depends on frame t-1's, so the chain runs in order while other chains (``chunk``) and other
  inputs run in parallel. Frames at a chunk start begin from the content, as in
  independent mode. Outputs go to ``<stem>_frames/`` as PNG, then the video (with the input's
  audio) or the stack is assembled.

Dask is imported inside functions: importing this module stays cheap.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import media
from .manifest import Manifest

GEOMETRY_KEYS = ("model", "method", "strength")
NOT_IN_KEY = ("device", "preview_every")  # do not change the result's meaning


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


# --------------------------------------------------------------------------- worker side
def _models_cached() -> int:
    from . import features, geonet

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

    from .devices import resolve_device
    from .features import build_trunk
    from .geonet import load_geometry_model

    device = resolve_device(_worker_device(settings["device"]))
    if device.type == "cpu" and os.getpid() != client_pid:
        torch.set_num_threads(1)  # one core per worker process; never the caller's threads
    started = time.perf_counter()
    geometry = settings["geometry"]
    if geometry is not None:
        kinds = {"affine": ["affine"], "tps": ["tps"], "affine+tps": ["affine", "tps"]}
        for kind in kinds[geometry["model"]]:
            load_geometry_model(kind, "embedded", None, device)
    if settings["texture"] is not None:
        build_trunk(settings["texture"].get("backbone", "auto"), device)
    return {"device": str(device), "seconds": time.perf_counter() - started}


def _read_item(item: media.InputItem) -> np.ndarray:
    if item.array is not None:
        return item.array
    return media.decode_image(item.data, item.source)


def _estimate(image, geometry, settings, device):
    from .estimate import estimate_warp

    options = settings["geometry"]
    return estimate_warp(image, geometry, model=options["model"], method=options["method"],
                         strength=options["strength"], device=device)


def _texture_options(settings: dict, warm: bool) -> dict:
    """Texture options; a warm start (previous frame's result) solves at the finest level only
    (the same rule as the napari "all frames" runs: ``stack_transfer.warm_start_options``)."""
    from .stack_transfer import warm_start_options

    return warm_start_options(settings["texture"], warm)


def _task_estimate(item: media.InputItem, geometry, settings: dict) -> dict:
    """The transform of a sequence's reference frame (coherent mode)."""
    device = _worker_device(settings["device"])
    return _estimate(_read_item(item), geometry, settings, device).to_dict()


def _task_item(item: media.InputItem, geometry, texture, settings: dict, transform=None,
               previous=None) -> dict:
    """Process one image or frame; never raises (a failure is a result with its error).

    ``transform``: a transform dict shared by a sequence (coherent mode), or None to estimate.
    ``previous``: the previous frame's result (coherent texture: its output is the warm start),
    or its output image read back from disk by a resumed run.
    """
    from .transforms import transform_from_dict
    from .warp import warp_image

    started = time.perf_counter()
    before = _models_cached()
    result = {"output": item.output, "status": "failed", "timings": {}, "transform": None,
              "error": None, "data": None, "device": None, "worker": _worker_name()}
    timings = result["timings"]
    try:
        device = _worker_device(settings["device"])
        from .devices import resolve_device

        result["device"] = str(resolve_device(device))
        if isinstance(previous, dict):
            if previous["status"] != "done":
                raise ValueError(f"the previous frame failed ({previous['error']})")
            previous = media.decode_image(previous["data"], previous["output"])
        image = _read_item(item)
        timings["read"] = time.perf_counter() - started
        if isinstance(transform, dict):
            transform = transform_from_dict(transform)
        elif settings["geometry"] is not None:
            mark = time.perf_counter()
            transform = _estimate(image, geometry, settings, device)
            timings["geometry"] = time.perf_counter() - mark
        output = image
        if transform is not None:
            mark = time.perf_counter()
            output = warp_image(image, transform, device=device)
            timings["warp"] = time.perf_counter() - mark
            result["transform"] = transform.to_dict()
        if texture is not None:
            from .texture import transfer_texture

            mark = time.perf_counter()
            output = transfer_texture(output, texture, device=device, init=(
                "content" if previous is None else previous), **_texture_options(
                settings, previous is not None))
            timings["texture"] = time.perf_counter() - mark
        mark = time.perf_counter()
        result["data"] = media.encode_image(output, item.output)
        timings["encode"] = time.perf_counter() - mark
        result["status"] = "done"
    except Exception as error:  # recorded in the manifest; the other inputs go on
        result["error"] = f"{type(error).__name__}: {' '.join(str(error).split())}"
    timings["total"] = time.perf_counter() - started
    result["models_loaded"] = _models_cached() - before
    return result


def _worker_name():
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return None


class BatchRun:
    """The iterator ``batch_geometric_style_transfer`` returns: :class:`BatchResult` s as they
    complete. ``total``: images and frames in the batch; ``pending``: those to compute (the
    rest were finished by an earlier run); ``close()`` stops the run and its local cluster."""

    def __init__(self, plan, results):
        self.total, self.pending = len(plan.items), len(plan.todo)
        self.output_dir = plan.folder
        self._results = results

    def __iter__(self):
        return self

    def __next__(self) -> BatchResult:
        return next(self._results)

    def close(self) -> None:
        self._results.close()


# --------------------------------------------------------------------------- planning
def _load_style(style, name: str):
    """``(array or list of arrays, digests, description)`` for a path, an array or a list."""
    from .images import validate_image

    if isinstance(style, (list, tuple)):
        loaded = [_load_style(s, f"{name} {i + 1}") for i, s in enumerate(style)]
        return [s[0] for s in loaded], [d for s in loaded for d in s[1]], [s[2] for s in loaded]
    if isinstance(style, (str, Path)):
        array, digest = media.read_image_file(style)
        return validate_image(array, name), [digest], str(style)
    array = validate_image(style, name)
    return array, [media.digest_array(array)], f"array {array.shape} {array.dtype}"


def _key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class _Plan:
    folder: Path
    items: list
    sequences: list
    geometry: object
    texture: object
    settings: dict
    keys: dict
    todo: list
    skipped: list
    manifest: Manifest
    coherent: bool
    chunk: int | None


def _check_texture_options(texture, options: dict) -> None:
    """Bad texture options fail now (the texture stage plans on a small stand-in content)."""
    from .texture import iter_texture_transfer

    iter_texture_transfer(np.zeros((64, 64, 3), np.float32), texture, **options).close()


def _plan(inputs, output_dir, geometry_style, texture_style, *, device, overwrite, coherent,
          chunk, model, method, strength, texture_options) -> _Plan:
    import importlib.util

    from .. import __version__
    from .estimate import MIN_SIZE, check_options
    from .transforms import check_strength

    if geometry_style is None and texture_style is None:
        raise ValueError("give a geometry style (to warp), a texture style (to style), or both.")
    if importlib.util.find_spec("distributed") is None:
        raise ValueError("batch runs on Dask: pip install 'napari-geostyle[batch]' "
                         "(dask.distributed and imageio-ffmpeg).")
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"chunk must be a whole number of frames >= 1 or None; got {chunk!r}.")
    geometry = texture = None
    parts = {"version": 1}
    if geometry_style is not None:
        check_options(model, method, "embedded")
        geometry, digests, _described = _load_style(geometry_style, "geometry style")
        from .images import validate_image

        validate_image(geometry, "geometry style", min_size=MIN_SIZE)
        parts["geometry"] = {"style": digests, "model": model, "method": method,
                             "strength": check_strength(strength)}
    if texture_style is not None:
        texture, digests, _ = _load_style(texture_style, "texture style")
        texture_options = {**texture_options, "preview_every": 0}
        _check_texture_options(texture, texture_options)
        parts["texture"] = {"style": digests, **{k: v for k, v in texture_options.items()
                                                 if k not in NOT_IN_KEY}}
    items, sequences = media.collect_inputs(inputs)
    folder = Path(output_dir).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"output folder {folder} is a file: give a folder")
    manifest = Manifest(folder)
    settings = {"device": device, "texture": texture_options if texture is not None else None,
                "geometry": ({"model": model, "method": method, "strength": strength}
                             if geometry is not None else None)}

    keys, previous_key = {}, {}
    for sequence in sequences:
        reference = sequence.items[0].digest
        for index, item in enumerate(sequence.items):
            extra = {"coherent": bool(coherent)}
            if coherent and geometry is not None:
                extra["reference"] = reference
            if coherent and texture is not None and index % (chunk or len(sequence.items)):
                extra["previous"] = previous_key[sequence.output]
            keys[item.output] = _key({**parts, "input": item.digest, **extra})
            previous_key[sequence.output] = keys[item.output]
    for item in items:
        keys.setdefault(item.output, _key({**parts, "input": item.digest}))
    for sequence in sequences:
        keys[sequence.output] = _key([keys[i.output] for i in sequence.items])

    todo = [i for i in items if not manifest.finished(i.output, keys[i.output])]
    skipped = [i for i in items if manifest.finished(i.output, keys[i.output])]
    pending = [i.output for i in todo] + [
        s.output for s in sequences if not manifest.finished(s.output, keys[s.output], "sequences")]
    existing = [name for name in pending if (folder / name).exists()]
    if existing and not overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise ValueError(
            f"{folder / existing[0]}{more} already exist(s) and were not made by this batch "
            "with the same inputs and options: pass overwrite=True (--overwrite) to replace "
            "them, or choose another output folder.")
    manifest.header = {
        "package": {"name": "napari-geostyle", "version": __version__},
        "options": {"geometry": settings["geometry"], "texture": settings["texture"],
                    "device": device, "coherent": bool(coherent), "chunk": chunk},
        "geometry_style": parts.get("geometry", {}).get("style"),
        "texture_style": parts.get("texture", {}).get("style"),
        "inputs": [str(i) for i in inputs] if isinstance(inputs, (list, tuple)) and not any(
            isinstance(i, np.ndarray) for i in inputs) else (
            str(inputs) if isinstance(inputs, (str, Path)) else "arrays"),
    }
    return _Plan(folder, items, sequences, geometry, texture, settings, keys, todo, skipped,
                 manifest, bool(coherent), chunk)


# --------------------------------------------------------------------------- running
def _start_client(scheduler, workers, processes, device):
    """``(client, cluster or None)``; the cluster is ours to close."""
    from distributed import Client, LocalCluster

    if scheduler in (None, "", "local"):
        import torch

        wants_gpu = device in (None, "", "auto") or str(device).startswith("cuda")
        gpus = torch.cuda.device_count() if wants_gpu else 0
        count = workers or gpus or os.cpu_count() or 1
        cluster = LocalCluster(n_workers=count, threads_per_worker=1, processes=processes,
                               dashboard_address=None)
        return Client(cluster), cluster
    if isinstance(scheduler, str) and "://" in scheduler:
        try:
            return Client(scheduler, timeout="30s"), None
        except OSError as error:
            raise ValueError(f"cannot reach the Dask scheduler at {scheduler}: {error}") from error
    raise ValueError(f"scheduler must be 'local' or an address such as tcp://HOST:8786; "
                     f"got {scheduler!r}.")


def _submit(plan: _Plan, client) -> list:
    """Submit every pending item; the futures, in input order."""
    geometry = client.scatter(plan.geometry, broadcast=True) if plan.geometry is not None else None
    texture = client.scatter(plan.texture, broadcast=True) if plan.texture is not None else None
    settings = plan.settings
    todo = {item.output for item in plan.todo}
    futures, by_output = [], {}
    for sequence in plan.sequences:
        frames = sequence.items
        if not any(f.output in todo for f in frames):
            continue
        transform = None
        if plan.coherent and plan.geometry is not None:
            transform = client.submit(_task_estimate, frames[0], geometry, settings, pure=False)
        chunk = plan.chunk or len(frames)
        for index, frame in enumerate(frames):
            if frame.output not in todo:
                continue
            previous = None
            if plan.coherent and plan.texture is not None and index % chunk:
                before = frames[index - 1]
                previous = by_output.get(before.output)
                if previous is None:  # finished by an earlier run: start from its file
                    previous = media.decode_image(
                        (plan.folder / before.output).read_bytes(), before.output)
            future = client.submit(_task_item, frame, geometry, texture, settings, transform,
                                   previous, pure=False)
            by_output[frame.output] = future
            futures.append(future)
    for item in plan.todo:
        if item.sequence is None:
            futures.append(client.submit(_task_item, item, geometry, texture, settings,
                                         pure=False))
    return futures


def _item_entry(plan: _Plan, item: media.InputItem, result: dict) -> dict:
    return {"output": item.output, "kind": "item", "source": item.source, "frame": item.frame,
            "status": result["status"], "key": plan.keys[item.output],
            "transform": result["transform"], "timings": result["timings"],
            "device": result["device"], "worker": result["worker"], "error": result["error"],
            "models_loaded": result.get("models_loaded"), "finished": time.strftime(
                "%Y-%m-%dT%H:%M:%S%z")}


def _as_result(plan: _Plan, entry: dict) -> BatchResult:
    return BatchResult(output=entry["output"], path=plan.folder / entry["output"],
                       status=entry["status"], kind=entry.get("kind", "item"),
                       source=entry.get("source", ""), frame=entry.get("frame"),
                       key=entry.get("key", ""), transform=entry.get("transform"),
                       timings=entry.get("timings") or {}, device=entry.get("device"),
                       error=entry.get("error"))


def _assemble(plan: _Plan, sequence: media.InputSequence) -> dict:
    started = time.perf_counter()
    entry = {"output": sequence.output, "kind": "sequence", "source": sequence.source,
             "frame": None, "status": "failed", "key": plan.keys[sequence.output],
             "transform": None, "error": None, "frames": len(sequence.items)}
    states = [plan.manifest.entries.get(i.output, {}).get("status") for i in sequence.items]
    if any(state != "done" for state in states):
        entry["error"] = f"{states.count('failed')} frame(s) failed: see their entries"
    else:
        try:
            frames = [media.decode_image((plan.folder / i.output).read_bytes(), i.output)
                      for i in sequence.items]
            path = plan.folder / sequence.output
            if sequence.kind == "video":
                entry["audio"] = media.write_video(path, frames, sequence.fps or media.DEFAULT_FPS,
                                                   audio_from=sequence.source)
                entry["fps"] = sequence.fps
            else:
                media.write_stack(path, frames)
            entry["status"] = "done"
        except Exception as error:
            entry["error"] = f"{type(error).__name__}: {' '.join(str(error).split())}"
    entry["timings"] = {"total": time.perf_counter() - started}
    return entry


def _run(plan: _Plan, client, scheduler, workers, processes) -> Iterator[BatchResult]:
    manifest = plan.manifest
    own_client = cluster = None
    try:
        for item in plan.skipped:
            yield _as_result(plan, {**manifest.entries[item.output], "status": "skipped"})
        if plan.todo:
            from distributed import as_completed

            if client is None:
                own_client, cluster = _start_client(scheduler, workers, processes,
                                                    plan.settings["device"])
                client = own_client
            warm = client.run(_warm_up, plan.settings, os.getpid(), on_error="return")
            manifest.header["workers"] = {address: (value if isinstance(value, dict) else
                                                    {"error": repr(value)})
                                          for address, value in warm.items()}
            by_output = {item.output: item for item in plan.todo}
            futures = _submit(plan, client)
            for future in as_completed(futures):
                result = future.result()
                item = by_output[result["output"]]
                if result["status"] == "done":
                    media.write_atomic(plan.folder / item.output, result["data"])
                entry = _item_entry(plan, item, result)
                manifest.record(entry)
                yield _as_result(plan, entry)
        for sequence in plan.sequences:
            if manifest.finished(sequence.output, plan.keys[sequence.output], "sequences"):
                yield _as_result(plan, {**manifest.sequences[sequence.output],
                                        "status": "skipped"})
                continue
            entry = _assemble(plan, sequence)
            manifest.record(entry)
            yield _as_result(plan, entry)
    finally:
        manifest.save()
        if own_client is not None:
            own_client.close()
        if cluster is not None:
            cluster.close()


def batch_geometric_style_transfer(inputs, output_dir, geometry_style=None, texture_style=None,
                                   client=None, *, scheduler="local", workers=None,
                                   processes=True, device=None, overwrite=False, coherent=True,
                                   chunk=None, model="affine+tps", method="network",
                                   strength=1.0, **texture_options) -> BatchRun:
    """Warp (``geometry_style``) and/or style (``texture_style``) every input into
    ``output_dir``; an iterator (:class:`BatchRun`) of :class:`BatchResult`, one per output as
    it completes (skipped ones first, assembled videos and stacks last).

    ``inputs``: a folder, a glob, an image / video / multi-page TIFF file, a list of those, a
    list of image arrays or one ``(T, H, W[, C])`` array. Styles: image files or arrays (the
    texture style may be a list). ``client``: a ``distributed.Client`` to run on; else
    ``scheduler`` "local" starts a ``LocalCluster`` (``workers`` processes with one thread
    each on CPU; one worker per GPU), or an address ``"tcp://host:port"`` joins a cluster.
    ``processes=False`` runs a local cluster's workers as threads. ``device``: None/"auto"
    (each worker takes its own GPU when there are GPUs) or a device name. ``coherent``: for
    videos and stacks, estimate the geometry once and warm-start each frame's texture from
    the previous frame; ``chunk``: restart the warm-start chain every ``chunk`` frames (chunks
    run in parallel; None: one chain per sequence). ``model``, ``method``, ``strength``: as
    :func:`napari_geostyle.estimate_warp`; other keywords are
    :func:`napari_geostyle.iter_texture_transfer`'s options.

    Everything is checked now (``ValueError``), including existing output files that this batch
    did not finish with the same inputs and options (refused unless ``overwrite``); the work
    starts on the first ``next()``. ``output_dir/manifest.json`` (and ``manifest.csv``) record
    each output's status, resume key, transform, options, timings, device and error.
    """
    plan = _plan(inputs, output_dir, geometry_style, texture_style, device=device,
                 overwrite=overwrite, coherent=coherent, chunk=chunk, model=model, method=method,
                 strength=strength, texture_options=texture_options)
    if scheduler not in (None, "", "local") and not (isinstance(scheduler, str)
                                                     and "://" in scheduler):
        raise ValueError(f"scheduler must be 'local' or an address such as tcp://HOST:8786; "
                         f"got {scheduler!r}.")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise ValueError(f"workers must be a whole number >= 1; got {workers!r}.")
    plan.folder.mkdir(parents=True, exist_ok=True)
    media.remove_stale_temporaries(plan.folder)
    return BatchRun(plan, _run(plan, client, scheduler, workers, processes))
