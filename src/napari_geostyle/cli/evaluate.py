"""``napari-geostyle eval-geometry``: the geometry stage's accuracy, across different objects
(``--pairs``: landmark sets, Proposal Flow CSVs) or on synthetic warps (``--images``)."""

from __future__ import annotations

import argparse
import sys

from .common import CLIError, check_output_path, write_image, write_text
from .options import add_device, add_model, add_overwrite

#: the command as ``build_parser`` adds it: its name, one-line help and description
NAME = "eval-geometry"
HELP = (
    "accuracy of the geometry stage: across different objects (--pairs) or on "
    "synthetic warps (--images)"
)
DESCRIPTION = (
    "--pairs FILE: pairs of DIFFERENT images with corresponding landmarks (a "
    ".npz landmark set, or a Proposal Flow PF-WILLOW/PF-PASCAL pair CSV with XA;YA;XB;YB "
    "columns); prints PCK@0.05/0.1/0.15 (alpha x the longest side of the style's landmark "
    "box) of identity, the chosen methods and the affine fitted on the true landmarks, all "
    "in the same run. --images: mean lattice error (%% of the side) and PCK on synthetic "
    "warps of the same image."
)


def _checkpoint_argument(args: argparse.Namespace) -> str | dict[str, str] | None:
    """``--checkpoint`` as ``estimate_warp`` takes it (one path, or AFFINE TPS for affine+tps)."""
    if not args.checkpoint:
        return None
    if args.model == "affine+tps":
        if len(args.checkpoint) != 2:
            raise CLIError("--model affine+tps needs two checkpoints: AFFINE TPS")
        return {"affine": args.checkpoint[0], "tps": args.checkpoint[1]}
    if len(args.checkpoint) != 1:
        raise CLIError(f"--model {args.model} takes one checkpoint")
    return args.checkpoint[0]


def run(args: argparse.Namespace) -> int:
    """Evaluate on landmark pairs (--pairs) or synthetic warps (--images); print, write."""
    import json

    from ..core import training

    if (args.images is None) == (args.pairs is None):
        raise CLIError(
            "give --pairs FILE (images with corresponding landmarks: different "
            "objects) or --images (synthetic warps of the same image), not both"
        )
    if args.figure and args.pairs is None:  # else it would be checked, then never drawn
        raise CLIError("--figure draws landmark pairs: it goes with --pairs, not --images")
    for path in (args.json, args.figure):
        if path:
            check_output_path(path, args.overwrite, image=path == args.figure)
    checkpoint = _checkpoint_argument(args)
    if args.pairs is not None:
        return _eval_landmark_pairs(args, checkpoint)
    report = training.evaluate_geometry(
        training.load_images(args.images, min_size=32), args.model,
        ("identity", *args.method), pairs_per_image=args.pairs_per_image,
        seed=1234 if args.seed is None else args.seed, trunk=args.trunk, checkpoint=checkpoint,
        device=args.device, estimate_options={"init": args.init},
    )  # fmt: skip
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        write_text(args.json, text, overwrite=args.overwrite)
    return 0


def _print_pair(index: int, rows: dict) -> None:
    """One line on stderr per evaluated pair: PCK@0.1 (and confidence) of each row."""
    cells = [
        f"{row} {pck:.2f}" + ("" if confidence is None else f" (confidence {confidence:.2f})")
        for row, (pck, confidence) in rows.items()
    ]
    print(f"pair {index + 1}: " + "; ".join(cells), file=sys.stderr, flush=True)


def _eval_landmark_pairs(args: argparse.Namespace, checkpoint: str | dict[str, str] | None) -> int:
    import json

    from ..core import landmark_eval

    count = None if args.count == 0 else args.count
    report = landmark_eval.run_protocol(
        args.pairs, model=args.model, methods=tuple(args.method), count=count,
        seed=0 if args.seed is None else args.seed,
        protocol=args.protocol, image_root=args.image_root,
        keep_examples=args.figure_pairs if args.figure else 0, device=args.device,
        trunk=args.trunk, checkpoint=checkpoint, init=args.init, clicks=tuple(args.clicks),
        on_pair=_print_pair,
    )  # fmt: skip
    print(
        f"{report.pairs} pairs, model {report.model}, protocol {report.protocol}, init {args.init}"
    )
    print(report.table())
    if args.json:
        write_text(args.json, json.dumps(report.to_dict(), indent=1), overwrite=args.overwrite)
    if args.figure:
        write_image(
            args.figure,
            landmark_eval.landmark_figure(report.examples, args.method),
            overwrite=args.overwrite,
        )
        print(f"wrote {args.figure}", file=sys.stderr)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``eval-geometry``'s arguments (``run`` reads them)."""
    from ..core.estimate import INITS, METHODS
    from ..core.geonet import TRUNK_CHOICES
    from ..core.landmark_eval import PROTOCOLS

    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--pairs", metavar="FILE", help=".npz landmark set or PF pair .csv")
    source.add_argument("--images", nargs="+", help="held-out image folders or files")
    add_model(parser)
    parser.add_argument(
        "--method",
        nargs="+",
        choices=METHODS,
        default=list(METHODS),
        help=f"the estimate methods to compare, in one run (default: all: {' '.join(METHODS)})",
    )
    parser.add_argument(
        "--init", choices=INITS, default="search", help="where the networks start (default: search)"
    )
    parser.add_argument(
        "--trunk",
        choices=TRUNK_CHOICES,
        default="auto",
        help="whose networks: auto (the EfficientNet-Lite0 ones when they ship and its ImageNet "
        "weights are installed, else embedded)",
    )
    parser.add_argument(
        "--checkpoint",
        nargs="+",
        default=None,
        help="checkpoint file(s); affine+tps takes AFFINE TPS; default: shipped",
    )
    parser.add_argument(
        "--count", type=int, default=40, help="--pairs: number of pairs (0 = all; default: 40)"
    )
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default=None,
        help="--pairs: 'perturbed' (zoom 1.4, random similarity on the content; "
        "default for .npz) or 'as-is' (default for PF CSVs)",
    )
    parser.add_argument(
        "--image-root", default=None, help="PF CSV: image folder (default: its folder)"
    )
    parser.add_argument(
        "--clicks",
        type=int,
        nargs="+",
        default=[0],
        metavar="K",
        help="--pairs: simulated clicks per pair, as hints (several values in one run, e.g. "
        "--clicks 0 2 3): click k is the mean of the landmarks in the set's click group k "
        "(farthest-point samples without click_groups), with noise; PCK counts only the "
        "landmarks outside the clicked groups (default: 0, the automatic mode)",
    )
    parser.add_argument("--pairs-per-image", type=int, default=4, help="--images: pairs per image")
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="pair choice and perturbations (default: 0 for --pairs, 1234 for --images)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    parser.add_argument("--figure", metavar="PNG", help="--pairs: a figure of the first pairs")
    parser.add_argument("--figure-pairs", type=int, default=4)
    add_overwrite(
        parser, help="replace the --json and --figure files if they exist (default: refuse)"
    )
    add_device(parser)
