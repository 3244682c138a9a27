"""``napari-geostyle train-geometry``: the geometry network trained on synthetic pairs, a
checkpoint and a validation figure written."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import CLIError, check_output_path, progress_bar, write_image
from .options import add_device, add_overwrite

#: the command as ``build_parser`` adds it: its name, one-line help and description
NAME = "train-geometry"
HELP = "train the geometry network on synthetic pairs from image folders"
DESCRIPTION = (
    "Self-supervised training (random affine/TPS pairs with appearance "
    "randomisation) of the geometry network; writes a checkpoint and a validation figure."
)

#: the options that go to ``training.train_geometry`` as they are, under the same names
TRAINING_OPTIONS = ("steps", "seconds", "batch_size", "lr", "device", "resume",
                    "checkpoint_every", "loss", "backbone", "seed")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Check --out and its figure, train with a progress bar, validate, draw the figure."""
    import json

    from ..core import training

    out = Path(args.out)
    # --resume continues --out (and replaces its validation figure); else it must be new
    replace = args.overwrite or args.resume
    check_output_path(out, replace, image=False)
    figure = out.with_suffix(".validation.png")
    check_output_path(figure, replace)
    if args.steps is None and args.seconds is None:
        raise CLIError("give --steps or --seconds (or both)")
    if args.val_count < 1:
        raise CLIError(f"--val-count must be at least 1; got {args.val_count}")
    images = training.load_images(args.images)
    # the validation images are read now: a bad --val-images fails before training, not after
    validation = training.load_images(args.val_images or args.images, min_size=32)
    print(f"{len(images)} training images", file=sys.stderr)
    bar = None  # drawn at the first step: the arguments are checked before it
    last = None
    try:
        for progress in training.train_geometry(
            images,
            args.model,
            args.trunk,
            out=out,
            **{name: getattr(args, name) for name in TRAINING_OPTIONS},
        ):
            if bar is None:
                bar = progress_bar(args.steps, f"train {args.model}")
            bar.n = progress.step
            bar.set_postfix(loss=f"{progress.loss:.5f}", lr=f"{progress.lr:.1e}")
            if progress.checkpoint:
                bar.write(f"checkpoint {progress.checkpoint} (step {progress.step})")
            last = progress
    finally:  # an error message then starts on a line of its own
        if bar is not None:
            bar.close()
    assert last is not None, "training reports at least its last step"
    print(
        f"wrote {out} after {last.step} steps, {last.elapsed:.0f} s, loss {last.loss:.5f}",
        file=sys.stderr,
    )
    report = training.evaluate_geometry(
        validation[: args.val_count],
        args.model,
        ("identity", "network"),
        pairs_per_image=2,
        trunk=args.trunk,
        checkpoint=out,
        device=args.device,
        keep_pairs=4,
    )
    write_image(figure, training.validation_figure(report.pop("examples"), ("network",)))
    print(json.dumps(report, indent=1))
    print(f"validation figure {figure}", file=sys.stderr)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``train-geometry``'s arguments (``run`` reads them)."""
    from ..core.geonet import MODEL_KINDS, TRUNKS
    from ..core.training import LOSSES

    parser.add_argument("--images", nargs="+", required=True, help="image folders or files")
    parser.add_argument("--model", choices=MODEL_KINDS, default="affine")
    parser.add_argument("--trunk", choices=TRUNKS, default="embedded")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None, help="wall-clock budget")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--loss", choices=LOSSES, default="grid")
    add_device(parser)
    parser.add_argument("--backbone", default="auto", help="VGG-19 weights for --trunk vgg19")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="checkpoint file to write (.pt)")
    parser.add_argument("--resume", action="store_true", help="continue from --out's weights")
    add_overwrite(parser, help="start afresh even if --out exists (replaces it and its figure)")
    parser.add_argument("--checkpoint-every", type=float, default=60.0, help="seconds")
    parser.add_argument(
        "--val-images",
        nargs="+",
        default=None,
        help="held-out images for the validation figure (default: --images)",
    )
    parser.add_argument("--val-count", type=int, default=4)
