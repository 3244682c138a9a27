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

The package, by job: ``plan`` (inputs, styles, hints, resume keys, refusals: the plan),
``tasks`` (what one task does for a chunk of pairs, a frame's smoothing, one image or frame, one
video or stack), ``submit`` (the client and the Dask submission, results as they complete),
``outcomes`` (what the tasks return: typed, frozen), ``records`` (outcomes as manifest entries
and ``BatchResult`` s), ``run`` (the entry point, its checks at the call, the folder's lock).

Dask is imported inside functions: importing this package stays cheap.
"""

from .records import BatchResult
from .run import WORKERS_PER_CORE, BatchRun, batch_geometric_style_transfer
from .submit import GPU_GEOMETRY_BATCH

__all__ = [
    "GPU_GEOMETRY_BATCH",
    "WORKERS_PER_CORE",
    "BatchResult",
    "BatchRun",
    "batch_geometric_style_transfer",
]
