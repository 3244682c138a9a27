"""The options several commands take, each declared here once, with its one default.

One helper per option group: where to run (``add_device``), the warp estimate (``add_model``,
``add_method``, ``add_estimate``, ``add_strength``, ``add_hints``), the texture stage
(``add_texture_options``, read back by ``texture_options``) and the output (``add_output``,
``add_overwrite``). A command adds the groups it takes; its help may say when an option applies
(``when``), never another default. The defaults are those of the core functions the options
feed (``tests/cli/test_cli_options.py`` checks that they stay so).

Every ``add_*`` helper takes the command's parser first. ``when`` says when its options apply:
``" with --geometry"`` is appended to the help of ``--model`` and ``--method``,
``"with --geometry: "`` put before the help of ``--strength`` and ``--hints``.
"""

from __future__ import annotations

import argparse
from typing import Any

DEFAULT_DEVICE = "auto"
DEFAULT_MODEL = "affine+tps"  # estimate_warp's
DEFAULT_METHOD = "network"
DEFAULT_STRENGTH = 1.0
#: the texture schedule of ``transfer`` and ``batch`` alike: iter_texture_transfer's default
DEFAULT_PRESET = "balanced"
DEFAULT_LEVELS = 4
DEFAULT_BACKBONE = "auto"
DEFAULT_SEED = 0


# --------------------------------------------------------------------------- device
def add_device(parser: argparse.ArgumentParser, note: str = "") -> None:
    """``--device``: where the networks and the warp run.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The command's parser.
    note : str, default ""
        What ``auto`` means for this command, appended to the default.
    """
    parser.add_argument(
        "--device",
        default=DEFAULT_DEVICE,
        help=f"where to run: auto, cpu, cuda, cuda:N or mps (default: {DEFAULT_DEVICE}{note})",
    )


# --------------------------------------------------------------------------- geometry
#: ``--model`` and ``--method``: (the core's choices, default, what it is, what the choices are)
ESTIMATE_CHOICES = {
    "model": (
        "MODELS",
        DEFAULT_MODEL,
        "transform model of the estimated warp",
        "affine, tps (thin-plate spline) or affine+tps, an affine then a thin-plate spline",
    ),
    "method": (
        "METHODS",
        DEFAULT_METHOD,
        "how the warp is estimated",
        "network, or refine (the network's warp then optimised on feature correlations; slower)",
    ),
}


def _add_estimate_choice(parser: argparse.ArgumentParser, name: str, when: str) -> None:
    """``--<name>``, one of ``ESTIMATE_CHOICES``, its choices read from ``core.estimate``."""
    from ..core import estimate

    choices, default, what, meaning = ESTIMATE_CHOICES[name]
    parser.add_argument(
        f"--{name}",
        choices=getattr(estimate, choices),
        default=default,
        help=f"{what}{when}: {meaning} (default: {default})",
    )


def add_model(parser: argparse.ArgumentParser, when: str = "") -> None:
    """``--model``: the transform model of the estimated warp."""
    _add_estimate_choice(parser, "model", when)


def add_method(parser: argparse.ArgumentParser, when: str = "") -> None:
    """``--method``: how the warp is estimated (the network's, or refined)."""
    _add_estimate_choice(parser, "method", when)


def add_estimate(parser: argparse.ArgumentParser, when: str = "") -> None:
    """``--model`` and ``--method`` (``add_model``, ``add_method``)."""
    add_model(parser, when)
    add_method(parser, when)


def add_strength(parser: argparse.ArgumentParser, when: str = "") -> None:
    """``--strength``: the warp's dose, from the identity to the full warp."""
    parser.add_argument(
        "--strength",
        type=float,
        default=DEFAULT_STRENGTH,
        metavar="S",
        help=f"{when}0 (no warp) .. 1 (the full warp; default)",
    )


def hints_help(what: str = "the content") -> str:
    """What ``--hints`` holds, for the points of ``what``."""
    return (
        f"BigWarp landmark CSV of hints: points of {what} (moving) and where they lie on the "
        "geometry style (target, in its pixels); they pin the pose of the estimate, which "
        "honours them (one to a few clicks: eyes, mouth, corners)"
    )


def add_hints(
    parser: argparse.ArgumentParser, what: str = "the content", when: str = "", note: str = ""
) -> None:
    """``--hints FILE.csv``: correspondences that steer the estimate (read with
    ``common.read_hints``).

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The command's parser.
    what : str, default "the content"
        Whose points the moving column holds.
    when : str, default ""
        When the option applies ("with --geometry: "), put before its help.
    note : str, default ""
        More for this command, appended to the help.
    """
    parser.add_argument("--hints", metavar="FILE.csv", help=when + hints_help(what) + note)


# --------------------------------------------------------------------------- texture
def add_texture_options(parser: argparse.ArgumentParser) -> None:
    """The texture stage's schedule and network: ``--preset``, ``--size``, ``--levels``,
    ``--iterations``, ``--preserve-color``, ``--backbone``, ``--seed`` (read back with
    ``texture_options``).

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The command's parser.
    """
    from ..core.texture import PRESET_NAMES, PRESET_SIZES

    sizes = ", ".join(f"{name} {size}" for name, size in PRESET_SIZES.items())
    parser.add_argument(
        "--preset",
        choices=PRESET_NAMES,
        default=DEFAULT_PRESET,
        help=f"texture iteration schedule and default size (default: {DEFAULT_PRESET})",
    )
    parser.add_argument(
        "--size",
        type=int,
        metavar="PX",
        help=f"longest side of the styled output (default: from the preset: {sizes})",
    )
    parser.add_argument(
        "--levels",
        type=int,
        default=DEFAULT_LEVELS,
        help=f"texture pyramid levels (default: {DEFAULT_LEVELS})",
    )
    parser.add_argument(
        "--iterations",
        type=int,
        nargs="+",
        metavar="N",
        help="texture iterations per level: one number, or one per level coarsest first "
        "(default: from the preset)",
    )
    parser.add_argument(
        "--preserve-color",
        action="store_true",
        help="transfer luminance only and keep the content's colours",
    )
    parser.add_argument(
        "--backbone",
        default=DEFAULT_BACKBONE,
        help="auto (VGG-19 if its weights are here, else efficientnet), vgg19, efficientnet, "
        f"random (a test device: loses the content) or a VGG-19 weights file (default: "
        f"{DEFAULT_BACKBONE})",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help=f"random seed of the texture's noise (default: {DEFAULT_SEED})",
    )


def texture_options(args: argparse.Namespace) -> dict[str, Any]:
    """The texture options of ``add_texture_options`` as the core's keyword arguments.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed arguments.

    Returns
    -------
    dict
        ``size``, ``levels``, ``preset``, ``backbone``, ``seed``, ``preserve_color``, and
        ``iterations`` when given (one number as an int, several as a list).
    """
    options = {
        "size": args.size,
        "levels": args.levels,
        "preset": args.preset,
        "backbone": args.backbone,
        "seed": args.seed,
        "preserve_color": args.preserve_color,
    }
    if args.iterations is not None:
        options["iterations"] = args.iterations[0] if len(args.iterations) == 1 else args.iterations
    return options


# --------------------------------------------------------------------------- output
def add_output(
    parser: argparse.ArgumentParser, metavar: str = "OUT", help: str = "output image file"
) -> None:
    """``-o/--output``, required.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The command's parser.
    metavar : str, default "OUT"
        Its name in the usage.
    help : str, default "output image file"
        What it names.
    """
    parser.add_argument("-o", "--output", required=True, metavar=metavar, help=help)


def add_overwrite(
    parser: argparse.ArgumentParser,
    help: str = "replace output files that exist (default: refuse)",
) -> None:
    """``--overwrite``: off by default, so no command replaces a file unasked.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The command's parser.
    help : str, default "replace output files that exist (default: refuse)"
        Which files it lets the command replace.
    """
    parser.add_argument("--overwrite", action="store_true", help=help)
