"""Command line: ``napari-geostyle <command> ...`` (also ``python -m napari_geostyle.cli``).

Each command is a module with ``NAME``, ``HELP`` and ``DESCRIPTION`` (its parser's),
``add_arguments(parser)`` and ``run(args)``, which returns the exit status; ``build_parser``
adds them all the same way: ``transfer``, ``weights``, ``warp``, ``train``
(``train-geometry``), ``evaluate`` (``eval-geometry``), ``demo`` and ``batch``. The options
several commands take are declared once, in ``options``; the helpers they share (errors, file
checks, image and text files through ``core.media``) are in ``common``.

A user mistake (bad file, bad option, ``ValueError`` from the core) prints one ``error:`` line
and exits 2; it never shows a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..core.media import read_image
from . import batch, demo, evaluate, train, transfer, warp, weights
from .common import (
    CLIError,
    Parser,
    check_not_an_input,
    check_output_path,
    one_line,
    print_confidence,
    print_device_note,
    progress_bar,
    read_hints,
    write_image,
    write_text,
)
from .options import hints_help

__all__ = [
    "CLIError",
    "check_not_an_input",
    "check_output_path",
    "hints_help",
    "main",
    "print_confidence",
    "print_device_note",
    "progress_bar",
    "read_hints",
    "read_image",
    "write_image",
    "write_text",
]

#: the commands, in the order ``--help`` lists them
COMMANDS = (transfer, weights, warp, train, evaluate, demo, batch)


def build_parser() -> argparse.ArgumentParser:
    """The ``napari-geostyle`` parser with every command's.

    Returns
    -------
    argparse.ArgumentParser
        The parser; a parsed command's ``func`` runs it.
    """
    from .. import __version__
    from ..core.media import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV

    parser = Parser(
        prog="napari-geostyle",
        description="Geometric style transfer: warp content to a style's geometry, then "
        "transfer the style's texture.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--max-pixels",
        type=float,
        metavar="N",
        help=f"most pixels (height x width) an input image, frame or page may have (default "
        f"{DEFAULT_MAX_PIXELS:.0e}, or ${MAX_PIXELS_ENV}); give it before the command",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for command in COMMANDS:
        command_parser = sub.add_parser(
            command.NAME, help=command.HELP, description=command.DESCRIPTION
        )
        command.add_arguments(command_parser)
        command_parser.set_defaults(func=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``napari-geostyle`` with ``argv`` (default: the process's arguments).

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program's name.

    Returns
    -------
    int
        The exit status: 0 done, 1 done with failed items (``batch``) or nothing found
        (``weights --path``), 2 a user error (one ``error:`` line on stderr), 130 interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version (0) or a usage error (2): a status, as below
        return 0 if stop.code is None else int(stop.code)
    try:
        if args.max_pixels is not None:
            from ..core.media import set_max_pixels

            set_max_pixels(args.max_pixels)
        result = args.func(args)
    except (CLIError, ValueError, FileNotFoundError) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)
