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
- The geometry stage is batched: the pairs still to estimate (images, a sequence's reference
  frame, per-frame estimates) are grouped into chunks of up to ``geometry_batch`` pairs, and
  one task estimates a chunk with ``estimate_warps`` (one network forward for the chunk); the
  item tasks (warp, texture, encoding) take their transform from their chunk's result. An
  input that cannot be read fails alone; when the batched call raises, that chunk is estimated
  pair by pair, so a bad pair fails only its own input. Default: ``GPU_GEOMETRY_BATCH`` pairs
  when every worker runs on CUDA, else 1 (then an image's task estimates its own geometry, as
  before: no extra task). Chunks shrink so that every worker gets one when there are few pairs.
- One style per input: ``styles`` (a CSV file or a mapping, :mod:`.style_table`) gives inputs
  their own geometry and/or texture style; the others take ``geometry_style`` /
  ``texture_style``. Each distinct style is read and sent to the workers once; an input's
  resume key holds its own styles' digests, and its manifest entry names them.
- Sequences (videos, stacks) in ``coherent`` mode: the geometry is estimated once, on the first
  frame, and used for every frame (no jitter), or with ``geometry_per_frame`` on every frame
  and smoothed over a centred window of ``smooth_frames`` frames
  (``temporal.smooth_transforms``: one task per frame gathers its window's estimates; a
  resumed run takes a finished neighbour's estimate from the manifest), so a moving subject
  is followed without jitter. The texture of frame t starts from the result
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
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import media, output_lock, style_table, temporal
from ..manifest import Manifest
from ..texture_trunks import resolve_backbone

if TYPE_CHECKING:  # pragma: no cover
    import distributed
    from numpy.typing import ArrayLike

    # what ``inputs`` takes: paths, globs, folders, a list of them or of arrays, one array
    BatchInputs = str | os.PathLike[str] | ArrayLike | Sequence[Any]

GEOMETRY_KEYS = ("model", "method", "strength")
NOT_IN_KEY = ("device", "preview_every")  # do not change the result's meaning
# Default pairs per geometry chunk when every worker runs on CUDA: the networks' 240 x 240
# forwards leave a GPU mostly idle one pair at a time, so a forward of 16 pairs costs little
# more than one, and 16 pairs' inputs are a few MB. On a CPU the forward is compute-bound (the
# same time per pair, batched or not), the search and the refinement run pair by pair anyway,
# and a chunk holds its pairs' warps back until all are estimated: measured no faster (slower
# with 1 worker, docs/PERFORMANCE.md), so CPU workers keep 1. The CUDA value is not measured
# yet: benchmarks/bench_batch.py --geometry-batch-only --geometry-batch 1 16 --device cuda.
GPU_GEOMETRY_BATCH = 16


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
    from ..estimate import estimate_warp

    options = settings["geometry"]
    return estimate_warp(
        image,
        geometry,
        model=options["model"],
        method=options["method"],
        strength=options["strength"],
        device=device,
        hints=_hints_of(settings, output),
    )


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


def _task_estimate_chunk(items: list, styles: dict, style_ids: list, settings: dict) -> list:
    """The transforms of a chunk of pairs (``items[i]`` with style ``styles[style_ids[i]]``),
    the networks batched: one ``{"output", "transform": dict or None, "error": str or None,
    "seconds": this pair's share of the time, "batch": pairs per forward}`` per pair.

    An input that cannot be read fails alone; when the batched call raises (a pair too small,
    out of memory, ...) the chunk is estimated pair by pair, so only the bad pair fails."""
    started = time.perf_counter()
    results = [
        {"output": item.output, "transform": None, "error": None, "seconds": 0.0, "batch": 1}
        for item in items
    ]
    images = {}
    device = _worker_device(settings["device"])
    for index, item in enumerate(items):
        try:
            images[index] = _read_item(item)
        except Exception as error:  # reported by the item that uses it
            results[index]["error"] = _describe(error)
    ready = list(images)
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
                results[index].update(
                    transform=transform.to_dict(), seconds=share, batch=len(ready),
                    confidence=getattr(transform, "confidence", None),
                )  # fmt: skip
            return results
    for index in ready:
        mark = time.perf_counter()
        try:
            transform = _estimate(
                images[index], styles[style_ids[index]], settings, device, items[index].output
            )
            results[index]["transform"] = transform.to_dict()
            results[index]["confidence"] = getattr(transform, "confidence", None)
        except Exception as error:
            results[index]["error"] = _describe(error)
        results[index]["seconds"] = time.perf_counter() - mark
    return results


def _resolve(estimate) -> dict:
    """One pair's estimate out of a reference: ``{"chunk": chunk result, "position": i}`` (a
    ``_task_estimate_chunk`` result), or ``{"estimate": dict}`` (known before the run)."""
    if "chunk" in estimate:
        return estimate["chunk"][estimate["position"]]
    return estimate["estimate"]


def _task_smooth(position: int, estimates: list, settings: dict, shape) -> dict:
    """Frame ``position`` of its window's per-frame estimates (references, ``_resolve``),
    smoothed over the window (a neighbour whose estimate failed is left out; the frame's own
    failure is its error)."""
    from ..transforms import transform_from_dict

    estimates = [_resolve(e) for e in estimates]
    own = estimates[position]
    cost = {k: own[k] for k in ("seconds", "batch") if k in own}  # its chunk's, for its entry
    if own["error"] is not None:
        return {"transform": None, "estimated": None, "error": own["error"], **cost}
    options = settings["per_frame"]
    try:
        transforms = [
            transform_from_dict(e["transform"]) if e["error"] is None else None for e in estimates
        ]
        smoothed = temporal.smooth_transforms(
            transforms, options["smooth_frames"], options["smooth_kernel"], shape
        )[position]
        return {
            "transform": smoothed.to_dict(),
            "estimated": own["transform"],
            "error": None,
            **cost,
        }
    except Exception as error:
        return {"transform": None, "estimated": own["transform"], "error": _describe(error), **cost}


def _task_item(
    item: media.InputItem, geometry, texture, settings: dict, transform=None, previous=None
) -> dict:
    """Process one image or frame; never raises (a failure is a result with its error).

    ``transform``: the item's geometry when it was estimated elsewhere, a reference to its
    chunk's result (``_resolve``) or ``_task_smooth``'s result (per-frame geometry), or None
    to estimate it here when there is a ``geometry`` style.
    ``previous``: the previous frame's result (coherent texture: its output is the warm start),
    or its output image read back from disk by a resumed run.
    """
    from ..transforms import transform_from_dict
    from ..warp import warp_image

    started = time.perf_counter()
    before = _models_cached()
    result = {
        "output": item.output,
        "status": "failed",
        "timings": {},
        "transform": None,
        "estimated": None,
        "error": None,
        "data": None,
        "device": None,
        "worker": _worker_name(),
    }
    timings = result["timings"]
    try:
        device = _worker_device(settings["device"])
        from ..devices import resolve_device

        result["device"] = str(resolve_device(device))
        if isinstance(previous, dict):
            if previous["status"] != "done":
                raise ValueError(f"the previous frame failed ({previous['error']})")
            previous = media.decode_image(previous["data"], previous["output"])
        image = _read_item(item)
        timings["read"] = time.perf_counter() - started
        if isinstance(transform, dict):
            own = True  # _task_smooth's result: the frame's own estimate, smoothed
            if "chunk" in transform or "estimate" in transform:
                transform = _resolve(transform)
                own = transform.get("output") == item.output  # not the sequence's reference
            if own and "batch" in transform:  # estimated in a chunk: its share of the time
                timings["geometry"] = transform["seconds"]
                result["geometry_batch"] = transform["batch"]
            if transform["error"] is not None:
                raise ValueError(f"the geometry could not be estimated ({transform['error']})")
            result["estimated"] = transform.get("estimated")
            result["confidence"] = transform.get("confidence")
            transform = transform_from_dict(transform["transform"])
        elif geometry is not None:
            mark = time.perf_counter()
            transform = _estimate(image, geometry, settings, device, item.output)
            result["confidence"] = getattr(transform, "confidence", None)
            timings["geometry"] = time.perf_counter() - mark
            result["geometry_batch"] = 1
        output = image
        if transform is not None:
            mark = time.perf_counter()
            output = warp_image(image, transform, device=device)
            timings["warp"] = time.perf_counter() - mark
            result["transform"] = transform.to_dict()
        if texture is not None:
            from ..texture import transfer_texture

            mark = time.perf_counter()
            output = transfer_texture(
                output,
                texture,
                device=device,
                init=("content" if previous is None else previous),
                **_texture_options(settings, previous is not None),
            )
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
    from ..images import validate_image

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
    styles: dict  # style id -> array (or list of arrays: several texture styles)
    item_styles: dict  # item output -> (geometry style id or None, texture style id or None)
    described: dict  # style id -> its path or a description of the array
    settings: dict
    keys: dict
    todo: list
    skipped: list
    manifest: Manifest
    coherent: bool
    chunk: int | None


def _check_texture_options(texture, options: dict) -> None:
    """Bad texture options fail now (the texture stage plans on a small stand-in content)."""
    from ..texture import iter_texture_transfer

    iter_texture_transfer(np.zeros((64, 64, 3), np.float32), texture, **options).close()


class _Styles:
    """Each distinct style read once: ``add`` gives its id; ``arrays``, ``digests``,
    ``described`` by id."""

    def __init__(self):
        self.arrays, self.digests, self.described, self._ids = {}, {}, {}, {}
        self._by_name: dict = {}  # (stage, path as given) -> id: one resolve per distinct name

    def add(self, style, stage: str, name: str) -> str:
        given = (stage, style) if isinstance(style, (str, Path)) else None
        if given in self._by_name:  # the default style of 100k inputs: resolved once
            return self._by_name[given]
        same = (
            stage,
            str(Path(style).resolve())
            if isinstance(style, (str, Path))
            else tuple(map(str, style))
            if isinstance(style, (list, tuple)) and all(isinstance(s, (str, Path)) for s in style)
            else id(style),
        )
        if same not in self._ids:
            from ..estimate import MIN_SIZE
            from ..images import validate_image

            array, digests, described = _load_style(style, name)
            if stage == "geometry":
                validate_image(array, name, min_size=MIN_SIZE)
            ident = f"{stage}{len(self._ids)}"
            self._ids[same] = ident
            self.arrays[ident], self.digests[ident] = array, digests
            self.described[ident] = described
        if given is not None:
            self._by_name[given] = self._ids[same]
        return self._ids[same]


def _targets(items, sequences) -> list:
    """What a style row can name: each image, and each video or stack as a whole."""
    return [style_table.Target(i.output, i.source) for i in items if i.sequence is None] + [
        style_table.Target(s.output, s.source) for s in sequences
    ]


def _assign_styles(items, sequences, geometry_style, texture_style, styles, store: _Styles):
    """``({item output: (geometry id, texture id)}, table description)``; every target gets its
    row's styles, else the defaults, and must end up with at least one stage."""
    rows, table = ([], None) if styles is None else style_table.load_rows(styles)
    matched = style_table.match_rows(rows, _targets(items, sequences))
    defaults = {"geometry_style": geometry_style, "texture_style": texture_style}
    chosen, bare = {}, []
    for target in _targets(items, sequences):
        row = matched.get(target.output)
        ids = []
        for column, stage in zip(style_table.STYLE_COLUMNS, ("geometry", "texture")):
            style = row.styles[column] if row is not None else None
            if style is None:
                style = defaults[column]
            if style is None or style is style_table.OFF:
                ids.append(None)
                continue
            where = (
                f"{stage} style"
                if row is None or row.styles[column] is None
                else (f"{stage} style of {target.source} ({row.where})")
            )
            ids.append(store.add(style, stage, where))
        if ids == [None, None]:
            bare.append(target.source)
        chosen[target.output] = tuple(ids)
    if bare:
        more = f" and {len(bare) - 3} more" if len(bare) > 3 else ""
        raise ValueError(
            f"no style for {', '.join(bare[:3])}{more}: name it in the styles table "
            "or give a default geometry style (--geometry-style) and/or texture "
            "style (--texture-style)"
        )
    by_sequence = {s.output: chosen[s.output] for s in sequences}
    item_styles = {
        i.output: by_sequence[i.sequence] if i.sequence is not None else chosen[i.output]
        for i in items
    }
    return item_styles, table


def _assign_hints(items, sequences, styles, hints) -> dict:
    """``{item output: [content_points, style_points] lists or None}``: each input's hints
    from the styles table's ``hints`` column, else ``hints`` (every input's); a video's or
    stack's frames share its hints. Checked now (a ``ValueError`` before any work), apart
    from lying inside the images, which each estimate checks."""
    from ..hints import check_hints

    rows = [] if styles is None else style_table.load_rows(styles)[0]
    matched = style_table.match_rows(rows, _targets(items, sequences))
    anywhere = (math.inf, math.inf)

    def checked(given, where):
        if given is None:
            return None
        try:
            valid = check_hints(given, anywhere, anywhere)
        except ValueError as error:
            raise ValueError(f"hints of {where}: {error}") from None
        return [valid.content_rc.tolist(), valid.style_rc.tolist()]

    default = checked(hints, "the batch")
    chosen = {}
    for target in _targets(items, sequences):
        row = matched.get(target.output)
        own = None if row is None else row.hints
        chosen[target.output] = checked(own, row.where) if own is not None else default
    return {
        i.output: chosen[i.sequence] if i.sequence is not None else chosen[i.output] for i in items
    }


def _refuse_links_out_of(folder: Path, names) -> None:
    """The batch writes only inside its output folder: a subfolder of it that is a link to
    somewhere else (a symlinked ``<stem>_frames``) is refused rather than written through."""
    root = folder.resolve()
    for parent in sorted({Path(name).parent for name in names} - {Path(".")}):
        resolved = (folder / parent).resolve()
        if not resolved.is_relative_to(root):
            raise ValueError(
                f"{folder / parent} leads to {resolved}, outside the output folder {folder} "
                "(a link): the batch writes only inside its output folder; remove the link or "
                "choose another output folder."
            )


def _refuse_outputs_on_inputs(folder: Path, items, sequences, style_files) -> None:
    """An output that is an input or a style (the same file after following links, or a hard
    link to it) is refused, with or without ``overwrite``: writing it would destroy the input.
    Files are compared by device and inode, so this is one ``stat`` per input and output."""
    from ..manifest import CSV_NAME, JOURNAL_NAME, MANIFEST_NAME

    # files only (an array's item is "array N"), each once (a video's frames share its path)
    sources = {i.source for i in items if i.array is None or i.sequence is not None}
    sources.update(s.source for s in sequences)
    for style in style_files:  # paths, or a list of them (a styles table may be a mapping)
        named = style if isinstance(style, list) else [style]
        sources.update(s for s in named if isinstance(s, (str, os.PathLike)))
    known = {}
    for source in sources:
        try:
            found = os.stat(source)
        except (OSError, ValueError):  # not a file
            continue
        known.setdefault((found.st_dev, found.st_ino), source)
    if not known:
        return
    names = [i.output for i in items] + [s.output for s in sequences]
    for name in [*names, MANIFEST_NAME, CSV_NAME, JOURNAL_NAME]:
        try:
            found = os.stat(folder / name)
        except (OSError, ValueError):  # not there yet: not an input either
            continue
        source = known.get((found.st_dev, found.st_ino))
        if source is not None:
            raise ValueError(
                f"the output {folder / name} is the input {source} (the same file, after "
                "following links): writing it would destroy the input, overwrite or not; "
                "choose an output folder outside the inputs."
            )


def _plan(
    inputs,
    output_dir,
    geometry_style,
    texture_style,
    *,
    styles,
    device,
    overwrite,
    coherent,
    chunk,
    model,
    method,
    strength,
    geometry_per_frame,
    smooth_frames,
    smooth_kernel,
    geometry_batch,
    texture_options,
    hints=None,
) -> _Plan:
    import importlib.util

    from ... import __version__
    from ..estimate import check_options
    from ..transforms import check_strength

    if geometry_style is None and texture_style is None and styles is None:
        raise ValueError(
            "give a geometry style (to warp), a texture style (to style), or both "
            "(or a styles table: one per input)."
        )
    if importlib.util.find_spec("distributed") is None:
        raise ValueError(
            "batch runs on Dask: pip install 'napari-geostyle[batch]' "
            "(dask.distributed and imageio-ffmpeg)."
        )
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"chunk must be a whole number of frames >= 1 or None; got {chunk!r}.")
    if geometry_batch is not None and (
        isinstance(geometry_batch, bool)
        or not isinstance(geometry_batch, int)
        or geometry_batch < 1
    ):
        raise ValueError(
            f"geometry_batch must be a whole number of pairs >= 1 or None (the "
            f"default for the workers' devices); got {geometry_batch!r}."
        )
    per_frame = temporal.per_frame_options(
        geometry_per_frame, smooth_frames, smooth_kernel, coherent
    )
    check_options(model, method, "embedded")
    strength = check_strength(strength)
    texture_options = {**texture_options, "preview_every": 0}
    items, sequences = media.collect_inputs(inputs)
    store = _Styles()
    item_styles, table = _assign_styles(
        items, sequences, geometry_style, texture_style, styles, store
    )
    uses_geometry = any(g is not None for g, _ in item_styles.values())
    textures = [store.arrays[t] for _, t in item_styles.values() if t is not None]
    # checked even when no input gets a texture: a bad option is a mistake to report, not ignore
    stand_in = np.full((64, 64, 3), 0.5, np.float32)
    _check_texture_options(textures[0] if textures else stand_in, texture_options)
    geometry_options = {"model": model, "method": method, "strength": strength}
    item_hints = _assign_hints(items, sequences, styles, hints)
    texture_key = {k: v for k, v in texture_options.items() if k not in NOT_IN_KEY}
    if textures:  # the network "auto" takes here: the manifest names it, and it is the result's
        texture_key["backbone_used"] = resolve_backbone(texture_options.get("backbone", "auto"),
                                                        download=False).name  # fmt: skip

    def parts(output: str) -> dict:  # what an output's result depends on, but the input
        geometry, texture = item_styles[output]
        result = {"version": 1}
        if geometry is not None:
            result["geometry"] = {"style": store.digests[geometry], **geometry_options}
            if item_hints.get(output) is not None:
                result["geometry"]["hints"] = item_hints[output]
        if texture is not None:
            result["texture"] = {"style": store.digests[texture], **texture_key}
        return result

    folder = Path(output_dir).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"output folder {folder} is a file: give a folder")
    _refuse_outputs_on_inputs(folder, items, sequences, [styles, *store.described.values()])
    _refuse_links_out_of(folder, [i.output for i in items] + [s.output for s in sequences])
    manifest = Manifest(folder)
    settings = {
        "device": device,
        "texture": texture_options if textures else None,
        "geometry": geometry_options if uses_geometry else None,
        "per_frame": per_frame,
        "geometry_batch": geometry_batch,
        "hints": {o: h for o, h in item_hints.items() if h is not None},
    }

    keys, previous_key = {}, {}
    for sequence in sequences:
        frames = sequence.items
        geometry, texture = item_styles[frames[0].output]
        for index, item in enumerate(frames):
            extra = {"coherent": bool(coherent)}
            if coherent and geometry is not None and per_frame is None:
                extra["reference"] = frames[0].digest
            elif coherent and geometry is not None:  # its window's frames and the smoothing
                window = temporal.window_range(index, len(frames), per_frame["smooth_frames"])
                extra["per_frame"] = {**per_frame, "window": [frames[j].digest for j in window]}
            if coherent and texture is not None and index % (chunk or len(frames)):
                extra["previous"] = previous_key[sequence.output]
            keys[item.output] = _key({**parts(item.output), "input": item.digest, **extra})
            previous_key[sequence.output] = keys[item.output]
    for item in items:
        keys.setdefault(item.output, _key({**parts(item.output), "input": item.digest}))
    for sequence in sequences:
        keys[sequence.output] = _key([keys[i.output] for i in sequence.items])

    todo = [i for i in items if not manifest.finished(i.output, keys[i.output])]
    skipped = [i for i in items if manifest.finished(i.output, keys[i.output])]
    pending = [i.output for i in todo] + [
        s.output for s in sequences if not manifest.finished(s.output, keys[s.output], "sequences")
    ]
    # a file that a killed run was moving into place (its hash journalled) is redone, not refused
    existing = [name for name in pending if (folder / name).exists() and not manifest.ours(name)]
    if existing and not overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise ValueError(
            f"{folder / existing[0]}{more} already exist(s) and were not made by this batch "
            "with the same inputs and options: pass overwrite=True (--overwrite) to replace "
            "them, or choose another output folder."
        )

    def default_digests(style, stage):
        return None if style is None else store.digests[store.add(style, stage, f"{stage} style")]

    manifest.header = {
        "package": {"name": "napari-geostyle", "version": __version__},
        "options": {
            "geometry": settings["geometry"],
            "texture": settings["texture"],
            "device": device,
            "coherent": bool(coherent),
            "chunk": chunk,
            "geometry_per_frame": per_frame is not None,
            "smooth_frames": (per_frame or {}).get("smooth_frames"),
            "smooth_kernel": (per_frame or {}).get("smooth_kernel"),
            "geometry_batch": geometry_batch,
        },
        "geometry_style": default_digests(geometry_style, "geometry"),
        "texture_style": default_digests(texture_style, "texture"),
        "styles_table": table,
        "inputs": [str(i) for i in inputs]
        if isinstance(inputs, (list, tuple)) and not any(isinstance(i, np.ndarray) for i in inputs)
        else (str(inputs) if isinstance(inputs, (str, Path)) else "arrays"),
    }
    return _Plan(
        folder,
        items,
        sequences,
        store.arrays,
        item_styles,
        store.described,
        settings,
        keys,
        todo,
        skipped,
        manifest,
        bool(coherent),
        chunk,
    )


# --------------------------------------------------------------------------- running
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


def _known_estimate(plan: _Plan, frame: media.InputItem) -> dict | None:
    """A finished frame's own per-frame estimate, from the manifest (its key holds the style,
    options and window): a resumed run does not estimate it again for its neighbours."""
    if not plan.manifest.finished(frame.output, plan.keys[frame.output]):
        return None
    known = plan.manifest.entries[frame.output].get("estimated_transform")
    return None if known is None else {"estimate": {"transform": known, "error": None}}


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
    futures, by_output = [], {}
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


def _assemble(plan: _Plan, sequence: media.InputSequence) -> dict:
    started = time.perf_counter()
    entry = {
        "output": sequence.output,
        "kind": "sequence",
        "source": sequence.source,
        "frame": None,
        "status": "failed",
        "key": plan.keys[sequence.output],
        "transform": None,
        "error": None,
        "frames": len(sequence.items),
    }
    states = [plan.manifest.entries.get(i.output, {}).get("status") for i in sequence.items]
    if any(state != "done" for state in states):
        entry["error"] = f"{states.count('failed')} frame(s) failed: see their entries"
    else:
        try:
            frames = [
                media.decode_image((plan.folder / i.output).read_bytes(), i.output)
                for i in sequence.items
            ]
            path = plan.folder / sequence.output
            if sequence.kind == "video":
                entry["audio"] = media.write_video(
                    path, frames, sequence.fps or media.DEFAULT_FPS, audio_from=sequence.source
                )
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
                result = future.result()
                item = by_output[result["output"]]
                if result["status"] == "done":  # journalled first: a kill in between resumes
                    manifest.pending(item.output, plan.keys[item.output], result["data"])
                    media.write_atomic(plan.folder / item.output, result["data"])
                entry = _item_entry(plan, item, result)
                manifest.record(entry)
                yield _as_result(plan, entry)
        for sequence in plan.sequences:
            if manifest.finished(sequence.output, plan.keys[sequence.output], "sequences"):
                yield _as_result(plan, {**manifest.sequences[sequence.output], "status": "skipped"})
                continue
            manifest.pending(sequence.output, plan.keys[sequence.output], None, "sequence")
            entry = _assemble(plan, sequence)
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


def batch_geometric_style_transfer(
    inputs: BatchInputs,
    output_dir: str | os.PathLike[str],
    geometry_style: str | os.PathLike[str] | ArrayLike | None = None,
    texture_style: str | os.PathLike[str] | ArrayLike | Sequence[Any] | None = None,
    client: distributed.Client | None = None,
    *,
    styles: Sequence[Any] | str | os.PathLike[str] | Mapping[str, Any] | None = None,
    scheduler: str | None = "local",
    workers: int | None = None,
    processes: bool = True,
    device: str | None = None,
    overwrite: bool = False,
    coherent: bool = True,
    chunk: int | None = None,
    geometry_per_frame: bool = False,
    smooth_frames: int = 5,
    smooth_kernel: str = "gaussian",
    geometry_batch: int | None = None,
    model: str = "affine+tps",
    method: str = "network",
    strength: float = 1.0,
    hints: Any = None,
    **texture_options: Any,
) -> BatchRun:
    """Warp (``geometry_style``) and/or style (``texture_style``) every input into
    ``output_dir``; an iterator (:class:`BatchRun`) of :class:`BatchResult`, one per output as
    it completes (skipped ones first, assembled videos and stacks last).

    Everything is checked now (``ValueError``), including the styles table and existing output
    files that this batch did not finish with the same inputs and options (refused unless
    ``overwrite``); the work starts on the first ``next()``. ``output_dir/manifest.json`` (and
    ``manifest.csv``) record each output's status, resume key, styles, transform, options,
    timings, device and error.

    One batch at a time writes to a folder: a batch holds the folder's lock
    (:mod:`.output_lock`) from its first ``next()`` to its end, and another batch on that folder
    is refused (``ValueError``), at the call or at its first ``next()``.

    Parameters
    ----------
    inputs : path, str, array_like or list
        A folder, a glob, an image / video / multi-page TIFF file, a list of those, a list of
        image arrays or one ``(T, H, W[, C])`` array.
    output_dir : str or os.PathLike
        The folder the outputs, ``manifest.json`` and ``manifest.csv`` go to.
    geometry_style : path or array_like, optional
        The geometry style: an image file or array.
    texture_style : path, array_like or list, optional
        The texture style: an image file or array, or a list of them.
    client : distributed.Client, optional
        A Dask client to run on; else ``scheduler`` says where.
    styles : sequence, path or dict, optional
        One style per input, a CSV file (columns ``input``, ``geometry_style``,
        ``texture_style``; paths relative to its folder) or a dict ``{input name:
        {"geometry_style": ..., "texture_style": ...}}``; inputs it does not name take
        ``geometry_style`` / ``texture_style`` (see :mod:`napari_geostyle.core.style_table`).
    scheduler : str, default "local"
        "local" starts a ``LocalCluster`` (``workers`` processes with one thread each on CPU;
        one worker per GPU), or an address ``"tcp://host:port"`` joins a cluster.
    workers : int, optional
        A local cluster's worker count (a whole number >= 1).
    processes : bool, default True
        False runs a local cluster's workers as threads.
    device : str, optional
        None/"auto" (each worker takes its own GPU when there are GPUs) or a device name.
    overwrite : bool, default False
        Replace existing output files that this batch did not finish with the same inputs and
        options (else they are refused).
    coherent : bool, default True
        For videos and stacks, estimate the geometry once and warm-start each frame's texture
        from the previous frame.
    chunk : int, optional
        Restart the warm-start chain every ``chunk`` frames (chunks run in parallel; None: one
        chain per sequence).
    geometry_per_frame : bool, default False
        Coherent mode: estimate the geometry on every frame and smooth it over a centred window
        of ``smooth_frames`` frames, so the warp follows a moving subject without jitter
        (:func:`napari_geostyle.core.temporal.smooth_transforms`).
    smooth_frames : int, default 5
        The window, odd; 1 = no smoothing.
    smooth_kernel : {"gaussian", "box"}, default "gaussian"
        The window's shape ("gaussian": sigma = window / 4).
    geometry_batch : int, optional
        At most this many pairs per geometry task, their networks batched
        (:func:`napari_geostyle.estimate_warps`; None: ``GPU_GEOMETRY_BATCH`` when every worker
        runs on CUDA, else 1, where batching gains little).
    model, method, strength
        As :func:`napari_geostyle.estimate_warp`.
    hints : optional
        Every input's ``(content_points, style_points)`` for its warp (as ``estimate_warp``'s;
        the styles table's ``hints`` column gives one per input); each manifest entry records
        its estimate's ``confidence``.
    **texture_options
        :func:`napari_geostyle.iter_texture_transfer`'s options.

    Returns
    -------
    BatchRun
        An iterator of :class:`BatchResult`, one per output as it completes.

    Raises
    ------
    ValueError
        At the call, if an input, style, option or device is invalid, an output file would be
        overwritten, the folder is not writable, or another batch holds it.
    """
    if isinstance(output_dir, (str, os.PathLike)):  # a running batch there: say so first
        output_lock.check_free(output_dir)
    _check_device(device, local=client is None and scheduler in (None, "", "local"))
    plan = _plan(
        inputs,
        output_dir,
        geometry_style,
        texture_style,
        styles=styles,
        device=device,
        overwrite=overwrite,
        coherent=coherent,
        chunk=chunk,
        model=model,
        method=method,
        strength=strength,
        geometry_per_frame=geometry_per_frame,
        smooth_frames=smooth_frames,
        smooth_kernel=smooth_kernel,
        geometry_batch=geometry_batch,
        texture_options=texture_options,
        hints=hints,
    )
    if scheduler not in (None, "", "local"):
        from ..scheduler import check_scheduler, parse_address

        # asked now, before the output folder exists: a bad address ends within the timeout
        # as one ValueError and leaves nothing behind
        needed = client is None and bool(plan.todo)
        scheduler = check_scheduler(scheduler) if needed else parse_address(scheduler)
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
    ):
        raise ValueError(f"workers must be a whole number >= 1; got {workers!r}.")
    if workers is not None and client is None and scheduler in (None, "", "local"):
        _check_local_workers(workers)
    _make_writable_folder(plan.folder)
    planned = _folder_state(plan.folder)
    return BatchRun(plan, _locked(plan, planned, _run(plan, client, scheduler, workers, processes)))


WORKERS_PER_CORE = 4  # a local cluster beyond this many workers per core (or GPU) only thrashes


def _check_local_workers(workers: int) -> None:
    """A local cluster's worker count, bounded: 2000 threads had not finished 3 images in 90 s."""
    import torch

    cores, gpus = os.cpu_count() or 1, torch.cuda.device_count()
    limit = WORKERS_PER_CORE * max(cores, gpus)
    if workers > limit:
        raise ValueError(
            f"workers={workers} is more than this machine runs usefully: at most {limit} "
            f"({WORKERS_PER_CORE} per CPU core or GPU; {cores} cores, {gpus} GPUs here). Use "
            "fewer workers, or a cluster (scheduler='tcp://HOST:PORT')."
        )


def _check_device(device, local: bool) -> None:
    """A device name is checked at the call, not by every task: on a local cluster it must
    exist here (its workers run on this machine); a remote cluster's workers have their own
    devices, so there it must only be a device name (cpu, cuda, cuda:N, mps)."""
    if device in (None, "", "auto"):
        return
    from ..devices import resolve_device

    if local:
        resolve_device(device)
        return
    import torch

    try:
        kind = torch.device(device.strip().lower()).type if isinstance(device, str) else None
    except RuntimeError:
        kind = None
    if kind not in ("cpu", "cuda", "mps"):
        raise ValueError(
            f"unknown device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'."
        )


def _make_writable_folder(folder: Path) -> None:
    """Create the output folder and write a probe file there, before any work: a read-only
    folder or parent is one ``ValueError``, and the folders made for it are removed again."""
    import tempfile

    missing = [path for path in (folder, *folder.parents) if not path.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".write-probe.", suffix=media.TEMP_MARK,
                                         dir=folder)  # fmt: skip
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        for path in missing:  # the deepest first
            try:
                path.rmdir()
            except OSError:
                pass
        raise ValueError(
            f"cannot write to the output folder {folder}: {error.strerror or error}; choose a "
            "folder you can write to."
        ) from error


def _stopped_writing(plan: _Plan, error: OSError) -> ValueError:
    """A run that could not write (a full disk, a folder made read-only): every output not
    done is recorded as failed, as far as the disk allows, and one line says what to do."""
    import errno

    full = error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
    reason = f"cannot write to {plan.folder}: {error.strerror or error}"
    what = f"no space left on the disk of {plan.folder}" if full else reason
    manifest = plan.manifest
    tables = {i.output: "items" for i in plan.todo}
    tables.update({s.output: "sequences" for s in plan.sequences})
    left = [name for name, table in tables.items()
            if not manifest.finished(name, plan.keys[name], table)]  # fmt: skip
    for name in left:
        kind = "item" if tables[name] == "items" else "sequence"
        entry = {"output": name, "kind": kind, "status": "failed", "key": plan.keys[name],
                 "error": f"not done: {what}"}  # fmt: skip
        try:
            manifest.record(entry)
        except OSError:  # the journal cannot grow either: kept for the save below
            pass
    try:
        manifest.save()
    except OSError:
        pass
    advice = "free some space" if full else "make the folder writable"
    return ValueError(
        f"stopped: {what}; {len(left)} of {len(tables)} outputs not done (recorded as failed in "
        f"the manifest, as far as the disk allowed): {advice}, then run the batch again to "
        "finish them."
    )


def _folder_state(folder: Path) -> list:
    """What a plan read from the folder (the manifest and its journal), to notice a change."""
    from ..manifest import JOURNAL_NAME, MANIFEST_NAME

    state = []
    for name in (MANIFEST_NAME, JOURNAL_NAME):
        try:
            found = (folder / name).stat()
            state.append((found.st_mtime_ns, found.st_size))
        except OSError:
            state.append(None)
    return state


def _locked(plan: _Plan, planned: list, results: Iterator[BatchResult]) -> Iterator[BatchResult]:
    """``results`` under the output folder's exclusive lock, taken at the first ``next()`` (where
    the work starts) and released at the end. Only the lock's holder removes a killed run's
    temporary files; a batch planned before another one wrote to the folder starts again."""
    lock = output_lock.FolderLock(plan.folder)
    lock.acquire()
    try:
        if _folder_state(plan.folder) != planned:
            raise ValueError(
                f"another batch wrote to {plan.folder} after this one was planned: start this "
                "batch again (it resumes from what is there now)."
            )
        media.remove_stale_temporaries(plan.folder)
        try:
            yield from results
        except OSError as error:  # an output or the manifest could not be written
            raise _stopped_writing(plan, error) from error
    finally:
        results.close()
        lock.release()
