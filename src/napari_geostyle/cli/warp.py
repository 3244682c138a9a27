"""``napari-geostyle warp``: an image warped through BigWarp landmark pairs, or to the
geometry a style image has (the estimate, steered by hints)."""

from __future__ import annotations

import argparse
import sys

from ..core.media import read_image
from .common import (
    CLIError,
    check_not_an_input,
    check_output_path,
    print_confidence,
    read_hints,
    write_image,
)
from .options import (
    add_device,
    add_estimate,
    add_hints,
    add_output,
    add_overwrite,
    add_strength,
)

#: the command as ``build_parser`` adds it: its name, one-line help and description
NAME = "warp"
HELP = "warp an image with landmark pairs from a BigWarp CSV, or to a geometry style"
DESCRIPTION = (
    "Warp CONTENT so that each moving landmark lands on its target landmark "
    "(BigWarp CSV: name, active, moving x, moving y, target x, target y; x = column), or "
    "(--geometry STYLE) to the geometry the estimate finds, steered by --hints."
)


def run(args: argparse.Namespace) -> int:
    """Warp through the landmarks, or estimate the warp to the geometry style; write it."""
    from ..core.landmarks import read_bigwarp_csv
    from ..core.transforms import check_strength, fit_affine, fit_tps, with_strength
    from ..core.warp import warp_image

    strength = check_strength(args.strength)
    if (args.landmarks is None) == (args.geometry is None):
        raise CLIError(
            "give --landmarks FILE (warp through them) or --geometry STYLE (estimate the warp "
            "to its geometry, steered by --hints FILE.csv if given), not both"
        )
    if args.hints and args.geometry is None:
        raise CLIError("--hints steer the estimate to --geometry STYLE: give --geometry")
    inputs = [args.content, args.landmarks or args.geometry, *([args.hints] if args.hints else [])]
    check_not_an_input([args.output], inputs)
    check_output_path(args.output, args.overwrite)
    image = read_image(args.content)
    if args.geometry is not None:
        from ..core.estimate import estimate_warp

        hints = read_hints(args.hints) if args.hints else None
        transform = estimate_warp(
            image, read_image(args.geometry), model=args.model, method=args.method,
            device=args.device, strength=strength, hints=hints,
        )  # fmt: skip
        print_confidence(transform)
        warped = warp_image(image, transform, device=args.device, padding=args.padding)
        write_image(args.output, warped, overwrite=args.overwrite)
        used = f", {len(hints[0])} hints" if hints is not None else ""
        print(f"wrote {args.output} ({args.model} estimate{used})", file=sys.stderr)
        return 0
    content_points, target_points = read_bigwarp_csv(args.landmarks)
    if args.affine:
        transform = fit_affine(content_points, target_points)
    else:
        transform = fit_tps(content_points, target_points, regularization=args.regularization)
    transform = with_strength(transform, strength)
    warped = warp_image(image, transform, device=args.device, padding=args.padding)
    write_image(args.output, warped, overwrite=args.overwrite)
    kind = "affine" if args.affine else "thin-plate spline"
    print(f"wrote {args.output} ({kind}, {len(content_points)} landmark pairs)", file=sys.stderr)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``warp``'s arguments (``run`` reads them)."""
    from ..core.warp import PADDINGS

    parser.add_argument("content", metavar="CONTENT", help="image to warp (the moving image)")
    parser.add_argument("--landmarks", metavar="FILE", help="BigWarp landmark CSV")
    parser.add_argument("--geometry", metavar="STYLE",
                        help="instead of --landmarks: estimate the warp to this image's "
                        "geometry (prints its confidence)")  # fmt: skip
    add_hints(parser, when="with --geometry: ")
    add_estimate(parser, when=" with --geometry")
    add_output(parser)
    add_overwrite(parser, help="replace the output file if it exists (default: refuse)")
    parser.add_argument(
        "--regularization",
        type=float,
        default=0.0,
        metavar="R",
        help="thin-plate spline smoothing (0 = pass exactly through the landmarks)",
    )
    parser.add_argument("--affine", action="store_true", help="fit a least-squares affine instead")
    add_strength(parser)
    parser.add_argument(
        "--padding",
        choices=PADDINGS,
        default="border",
        help="what samples outside the image get (default: border)",
    )
    add_device(parser)
