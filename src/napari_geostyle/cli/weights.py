"""``napari-geostyle weights``: where the VGG-19 weights are looked for and whether they are
there (``--download`` fetches them), and the state of the installed EfficientNet-Lite0."""

from __future__ import annotations

import argparse
import sys

from .common import CLIError, one_line, print_device_note

#: the command as ``build_parser`` adds it: its name, one-line help and description
NAME = "weights"
HELP = "where the VGG-19 weights are looked for, whether present; --download fetches them"
DESCRIPTION = None


def run(args: argparse.Namespace) -> int:
    """Print where the weights are looked for (or only the path in use, ``--path``)."""
    from ..core import weights

    if args.download:
        if weights.offline():  # refuse here, before anything could touch the network
            raise CLIError(
                f"{weights.ENV_OFFLINE} is set, so nothing is downloaded; unset it to run "
                f"`{weights.DOWNLOAD_COMMAND}`, or set {weights.ENV_WEIGHTS} to a local file."
            )
        path = weights.resolve_vgg19_weights(download=True)
        print(f"VGG-19 weights: {path}", file=sys.stderr)
    info = weights.describe_vgg19_weights(check=True)  # a corrupt file is not "present"
    print_device_note()
    if args.path:
        if not info["found"]:
            print("not found", file=sys.stderr)
            return 1
        print(info["path"])
        return 0
    print("VGG-19 (ImageNet) weights are looked for, in order:")
    for entry in info["looked"]:
        state = "found" if entry["exists"] else "missing"
        if entry.get("problem"):
            state = f"unusable: {one_line(entry['problem'])}"
        where = entry["path"] or "(not set)"
        print(f"  {entry['where']:<40} {where}  [{state if entry['path'] else '-'}]")
    print(
        f"  download from {info['url']}"
        + (
            "  (disabled: GEOSTYLE_OFFLINE)"
            if info["offline"]
            else f"  (run `{info['download_command']}`)"
        )
    )
    if info["found"]:
        print(f"present: {info['path']}")
    else:
        print(
            "not present: texture transfer uses the installed ImageNet EfficientNet-Lite0; "
            "VGG-19 is an upgrade (Gatys et al.'s own network)."
        )
        print(info["help"])
    _print_geometry_features()
    return 0


def _print_geometry_features() -> None:
    """The ImageNet EfficientNet-Lite0 weights the geometry search and refinement use."""
    from ..core import weights

    try:
        path = weights.resolve_efficientnet_weights()
        state = f"present: {path}" if path is not None else "not installed"
    except ValueError as error:
        path, state = None, f"unusable: {one_line(str(error))}"
    print(f"geometry features, EfficientNet-Lite0 (ImageNet), installed with the package: {state}")
    if path is None:
        print("  the geometry search falls back to edge layouts. "
              + weights.how_to_get_efficientnet_weights())  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``weights``'s arguments (``run`` reads them)."""
    parser.add_argument("--download", action="store_true",
                        help="download torchvision's VGG-19 (548 MB once; a trimmed 80 MB trunk "
                        "is kept)")  # fmt: skip
    parser.add_argument(
        "--path",
        action="store_true",
        help="print only the path of the weights in use (exit 1 if none)",
    )
