"""Command line: ``napari-geostyle <command> ...``.

Each command is a ``_cmd_<name>(args)`` function registered in ``_build_parser``. A user mistake
(bad file, bad option, ``ValueError`` from the core) prints one ``error:`` line and exits 2; it
never shows a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


# --------------------------------------------------------------------------- shared helpers
def read_image(path) -> np.ndarray:
    """Read an image file (anything scikit-image / imageio read)."""
    path = Path(path)
    if not path.is_file():
        raise CLIError(f"no image file at {path}")
    import imageio.v3 as iio

    try:
        return np.asarray(iio.imread(path))
    except Exception as error:  # imageio raises many types for unreadable files
        raise CLIError(f"cannot read {path} as an image: {error}") from None


def write_image(path, image: np.ndarray) -> None:
    """Write ``image``; floats (0..1) become uint8 for 8-bit formats, uint16 is kept for TIFF/PNG."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise CLIError(f"output folder {path.parent} does not exist")
    import imageio.v3 as iio

    from .core.images import from_float

    array = np.asarray(image)
    if array.dtype.kind == "f":
        array = from_float(np.clip(array, 0.0, 1.0), np.uint8)
    if array.dtype == np.uint16 and path.suffix.lower() in (".jpg", ".jpeg"):
        array = (array >> 8).astype(np.uint8)
    try:
        iio.imwrite(path, array)
    except Exception as error:
        raise CLIError(f"cannot write {path}: {error}") from None


def progress_bar(total: int, desc: str):
    """A tqdm progress bar on stderr."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="it", file=sys.stderr, dynamic_ncols=True)


# --------------------------------------------------------------------------- parser and entry
def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-geostyle",
        description="Geometric style transfer: warp content to a style's geometry, then "
        "transfer the style's texture.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for register in _REGISTRY:
        register(sub)
    return parser


# Each entry adds one sub-command to the parser (and sets ``func`` on it).
_REGISTRY: list = []


def main(argv=None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except (CLIError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
