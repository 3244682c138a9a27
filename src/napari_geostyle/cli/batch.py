"""``napari-geostyle batch``: a folder, glob, video or stack warped and/or styled on Dask,
with a resumable manifest."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import CLIError, progress_bar, read_hints
from .options import (
    add_device,
    add_estimate,
    add_hints,
    add_output,
    add_overwrite,
    add_strength,
    add_texture_options,
    texture_options,
)

#: the command as ``build_parser`` adds it: its name, one-line help and description
NAME = "batch"
HELP = "warp and/or style a folder, glob, video or stack of images, on Dask; resumable"
DESCRIPTION = (
    "Every input is warped to --geometry, styled with --texture, or both "
    "(--styles-csv: a style per input). Outputs keep the inputs' names in OUTDIR, with "
    "manifest.json/.csv; a rerun skips outputs finished with the same inputs and options."
)


def run(args: argparse.Namespace) -> int:
    """Plan the batch (everything checked now), run it with a progress bar, sum it up."""
    import importlib.util

    from ..core.batch import batch_geometric_style_transfer

    if args.geometry is None and not args.texture and args.styles_csv is None:
        raise CLIError(
            "give --geometry (warp), --texture (style), both, or --styles-csv (a style per input)"
        )
    if importlib.util.find_spec("distributed") is None:
        raise CLIError("batch runs on Dask: pip install 'napari-geostyle[batch]'")
    results = batch_geometric_style_transfer(
        args.input, args.output, geometry_style=args.geometry,
        texture_style=(args.texture if len(args.texture or ()) > 1 else
                       (args.texture[0] if args.texture else None)),
        styles=args.styles_csv, scheduler=args.scheduler, workers=args.workers,
        processes=not args.threads, device=None if args.device == "auto" else args.device,
        overwrite=args.overwrite, coherent=args.coherent, chunk=args.chunk,
        geometry_per_frame=args.geometry_per_frame, smooth_frames=args.smooth_frames,
        smooth_kernel=args.smooth_kernel, geometry_batch=args.geometry_batch,
        model=args.model, method=args.method, strength=args.strength,
        hints=read_hints(args.hints) if args.hints else None, **texture_options(args),
    )  # fmt: skip
    counts = {"done": 0, "skipped": 0, "failed": 0}
    bar = progress_bar(results.pending, "batch")  # skipped outputs stay out of the ETA
    bar.unit = "image"
    try:
        for result in results:
            counts[result.status] += 1
            if result.kind == "item" and result.status != "skipped":
                bar.update(1)
            bar.set_postfix(counts, refresh=False)
            if result.status == "failed":
                bar.write(f"failed: {result.output}: {result.error}", file=sys.stderr)
    finally:
        results.close()
        bar.close()
    print(f"{counts['done']} done, {counts['skipped']} skipped (finished before), "
          f"{counts['failed']} failed; manifest: {Path(args.output) / 'manifest.json'}",
          file=sys.stderr)  # fmt: skip
    return 1 if counts["failed"] else 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``batch``'s arguments (``run`` reads them)."""
    parser.add_argument("input", metavar="INPUT", nargs="+",
                        help="folder, glob (quoted), image, video or multi-page TIFF")  # fmt: skip
    add_output(parser, metavar="OUTDIR", help="output folder")
    parser.add_argument(
        "--geometry",
        "--geometry-style",
        dest="geometry",
        metavar="IMG",
        help="geometry style image (warp the inputs; the default with --styles-csv)",
    )
    parser.add_argument(
        "--texture",
        "--texture-style",
        dest="texture",
        nargs="+",
        metavar="IMG",
        help="texture style image(s) (the default with --styles-csv)",
    )
    parser.add_argument("--styles-csv", metavar="FILE",
                        help="a style per input: a CSV with columns input, geometry_style, "
                        "texture_style (style paths relative to the CSV; an empty cell takes the "
                        "default, 'none' skips that stage) and optionally hints (a BigWarp CSV of "
                        "hints for that input's warp)")  # fmt: skip
    add_hints(parser, what="every input", note="; the manifest records each estimate's confidence")
    add_estimate(parser)
    add_strength(parser)
    parser.add_argument(
        "--geometry-batch",
        type=int,
        metavar="N",
        help="estimate the geometry of up to N inputs per task, the network batched "
        "(default: 16 when the workers run on CUDA, else 1: a CPU gains nothing)",
    )
    add_texture_options(parser)
    parser.add_argument(
        "--scheduler",
        default="local",
        metavar="local|tcp://HOST:PORT",
        help="a local Dask cluster (default) or a running scheduler's tcp:// address, which "
        "must answer within 30 s (checked before the output folder is made)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="local workers (default: one per GPU, else one per CPU core)",
    )
    parser.add_argument(
        "--threads",
        action="store_true",
        help="local workers as threads of this process (quicker start)",
    )
    add_device(parser, note=": a GPU per worker where there are GPUs")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--coherent", dest="coherent", action="store_true", default=True,
                       help="videos/stacks: one geometry for all frames, texture warm-started "
                       "from the previous frame (default)")  # fmt: skip
    group.add_argument(
        "--independent",
        dest="coherent",
        action="store_false",
        help="videos/stacks: every frame on its own",
    )
    parser.add_argument("--geometry-per-frame", action="store_true",
                        help="videos/stacks, coherent mode: estimate the geometry on every frame and "
                        "smooth it over time, to follow a moving subject without jitter")  # fmt: skip
    parser.add_argument("--smooth-frames", type=int, default=5, metavar="N",
                        help="--geometry-per-frame: centred smoothing window in frames, odd "
                        "(default: 5; 1 = no smoothing)")  # fmt: skip
    parser.add_argument(
        "--smooth-kernel",
        choices=("gaussian", "box"),
        default="gaussian",
        help="--geometry-per-frame: window weights (default: gaussian, sigma = N/4)",
    )
    parser.add_argument("--chunk", type=int, metavar="N",
                        help="coherent mode: restart the warm start every N frames, so chunks of one "
                        "video run in parallel (default: one chain per video)")  # fmt: skip
    add_overwrite(
        parser, help="replace outputs in OUTDIR not made by this batch with these options"
    )
