"""``batch_geometric_style_transfer``: everything checked at the call (options, devices, worker
count, scheduler, a writable output folder), then a :class:`BatchRun` that runs the plan under
the output folder's lock and stops cleanly when the disk cannot be written."""

from __future__ import annotations

import os
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import media, output_lock
from .plan import _Plan, _plan
from .records import BatchResult, _not_done_entry
from .submit import _run

if TYPE_CHECKING:  # pragma: no cover
    import distributed
    from numpy.typing import ArrayLike

    # what ``inputs`` takes: paths, globs, folders, a list of them or of arrays, one array
    BatchInputs = str | os.PathLike[str] | ArrayLike | Sequence[Any]


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
        try:
            manifest.record(_not_done_entry(name, kind, plan.keys[name], what))
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

    state: list[tuple[int, int] | None] = []
    for name in (MANIFEST_NAME, JOURNAL_NAME):
        try:
            found = (folder / name).stat()
            state.append((found.st_mtime_ns, found.st_size))
        except OSError:
            state.append(None)
    return state


def _locked(
    plan: _Plan, planned: list, results: Generator[BatchResult, None, None]
) -> Generator[BatchResult, None, None]:
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
