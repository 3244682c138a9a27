"""``napari-geostyle transfer``: texture transfer onto one image, optionally after the warp to
a geometry style (both stages)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, cast

from ..core.media import read_image
from .common import (
    CLIError,
    check_not_an_input,
    check_output_path,
    print_confidence,
    print_device_note,
    progress_bar,
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
    add_texture_options,
    texture_options,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..core.pipeline import GeometricStyleStep
    from ..core.texture import TextureStep


#: the command as ``build_parser`` adds it: its name, one-line help and description
NAME = "transfer"
HELP = (
    "transfer the texture of style image(s) onto a content image (Gatys et al.), "
    "optionally after warping it to a geometry style"
)
DESCRIPTION = (
    "Texture transfer, coarse to fine (Gatys et al.): a content loss and Gram "
    "style losses on an ImageNet network. auto takes VGG-19 (conv4_2; conv1_1..conv5_1) when "
    "its weights are here (`napari-geostyle weights`), else the installed EfficientNet-Lite0."
)


def run(args: argparse.Namespace) -> int:
    """Check every output, read the images, run the stages with a progress bar, write."""
    import time

    from ..core.texture import iter_texture_transfer

    if args.device in (None, "auto") or str(args.device).startswith("cuda"):
        print_device_note()
    # every output is checked before the (long) optimisation, not after it
    check_not_an_input([args.output, args.warped_output],
                       [args.content, *args.texture, args.geometry])  # fmt: skip
    check_output_path(args.output, args.overwrite)
    if args.hints and args.geometry is None:
        raise CLIError("--hints steer the warp to --geometry STYLE: give --geometry too")
    if args.warped_output:
        if Path(args.warped_output).resolve() == Path(args.output).resolve():
            raise CLIError("--warped-output and -o/--output are the same file")
        check_output_path(args.warped_output, args.overwrite)
    content = read_image(args.content)
    styles = [read_image(path) for path in args.texture]
    options = {**texture_options(args), "optimizer": args.optimizer,
               "style_weights": args.texture_weights, "device": args.device,
               "preview_every": 0}  # fmt: skip
    if args.style_weight is not None:
        options["style_weight"] = args.style_weight
    if args.content_weight is not None:
        options["content_weight"] = args.content_weight
    # the texture's steps, or the pipeline's: first its geometry step, then its texture steps
    steps: Generator[TextureStep | GeometricStyleStep, None, None]
    if args.geometry is None:
        steps = iter_texture_transfer(content, styles, **options)
    else:  # both stages: warp to the geometry style first
        from ..core.pipeline import iter_geometric_style_transfer

        hints = read_hints(args.hints) if args.hints else None
        steps = iter_geometric_style_transfer(
            content, geometry_style=read_image(args.geometry), texture_style=styles,
            model=args.model, method=args.method, strength=args.strength, hints=hints,
            **options,
        )  # fmt: skip
    result = None
    bar = None
    started = time.perf_counter()
    try:
        for step in steps:
            if getattr(step, "stage", None) == "geometry":
                geometry_step = cast("GeometricStyleStep", step)
                print_confidence(geometry_step.transform)
                if args.warped_output:
                    warped = geometry_step.warped
                    assert warped is not None, "the geometry step carries the warped content"
                    write_image(args.warped_output, warped, overwrite=args.overwrite)
                continue
            if bar is None:
                bar = progress_bar(step.total, f"texture ({step.backbone})")
            bar.update(1)
            bar.set_postfix(level=f"{step.level}/{step.levels}", loss=f"{step.loss:.4g}",
                            refresh=False)  # fmt: skip
            if step.done:
                result = step.image
    finally:
        steps.close()
        if bar is not None:
            bar.close()
    assert result is not None, "the last step is done and carries the image"
    write_image(args.output, result, overwrite=args.overwrite)
    height, width = result.shape[:2]
    print(f"wrote {args.output} ({width} x {height} px, {time.perf_counter() - started:.1f} s)",
          file=sys.stderr)  # fmt: skip
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``transfer``'s arguments (``run`` reads them)."""
    from ..core.texture import OPTIMIZERS

    parser.add_argument("content", metavar="CONTENT", help="content image")
    parser.add_argument("--texture", required=True, nargs="+", metavar="STYLE",
                        help="texture style image(s)")  # fmt: skip
    parser.add_argument("--texture-weights", type=float, nargs="+", metavar="W",
                        help="one weight per style image (default: equal)")  # fmt: skip
    add_output(parser)
    add_overwrite(parser)
    parser.add_argument("--geometry", metavar="STYLE",
                        help="geometry style image: warp the content to its geometry first "
                        "(geometric style transfer, both stages)")  # fmt: skip
    add_estimate(parser, when=" with --geometry")
    add_strength(parser, when="with --geometry: ")
    parser.add_argument("--warped-output", metavar="FILE",
                        help="with --geometry, also write the warped content here")  # fmt: skip
    add_hints(parser, when="with --geometry: ")
    add_texture_options(parser)
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="lbfgs",
                        help="texture optimiser (default: lbfgs)")  # fmt: skip
    parser.add_argument("--style-weight", type=float, metavar="W", help="style loss weight")
    parser.add_argument("--content-weight", type=float, metavar="W", help="content loss weight")
    add_device(parser)
