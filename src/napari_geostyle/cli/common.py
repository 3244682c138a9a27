"""What every command shares: the one-line user error, output checks, images and text files
written (converted and written atomically through ``core.media``; the commands read images with
``core.media.read_image`` itself), the progress bar, the device note, hints and the confidence
line.

It imports nothing of the CLI, so every command module (and ``cli/__init__``) can import it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn

import numpy as np


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def one_line(error: object) -> str:
    """An exception's message on one line (imageio's, for one, span several)."""
    return " ".join(str(error).split())


class Parser(argparse.ArgumentParser):
    """Usage mistakes print one ``error:`` line (and where to get help) instead of the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {one_line(message)} (see {self.prog} --help)\n")


# --------------------------------------------------------------------------- files
def check_not_an_input(
    outputs: Iterable[str | os.PathLike[str] | None],
    inputs: Iterable[str | os.PathLike[str] | None],
) -> None:
    """Refuse an output file that is one of the inputs (the same file after following links,
    or a hard link to it), with or without --overwrite: writing it would destroy the input.

    Parameters
    ----------
    outputs, inputs : iterable of path or None
        The files a command writes and those it reads (None: an option not given).

    Raises
    ------
    CLIError
        An output is an input.
    """
    inputs = list(inputs)
    for output in outputs:
        for source in inputs:
            if output is None or source is None:
                continue
            try:
                same = os.path.samefile(output, source)
            except (OSError, ValueError):  # one of them is not there: not the same file
                continue
            if same:
                raise CLIError(
                    f"output {output} is the input {source} (the same file, after following "
                    "links): choose another output file; --overwrite never replaces an input"
                )


def check_output_path(
    path: str | os.PathLike[str], overwrite: bool = False, image: bool = True
) -> Path:
    """Check an output path before any work is done.

    Parameters
    ----------
    path : str or os.PathLike
        The file a command will write.
    overwrite : bool, default False
        Whether an existing file may be replaced.
    image : bool, default True
        Whether it is an image: then its extension must be a format an image is written as.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    CLIError
        A folder, a missing or unwritable folder, an existing file without ``overwrite``, or
        (for ``image``) a name no image can be written under.
    """
    from ..core import media

    path = Path(path)
    if path.is_dir():
        raise CLIError(f"output {path} is a folder; give a file name")
    if not path.parent.is_dir():
        raise CLIError(f"output folder {path.parent} does not exist")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise CLIError(f"{path} exists; pass --overwrite to replace it")
    if image:
        try:
            media.check_image_name(path)
        except ValueError as error:
            raise CLIError(str(error)) from None
    try:
        media.check_writable(path)  # a temporary file, removed at once
    except OSError as error:
        what = f"a {path.suffix} image" if image else "a file"
        raise CLIError(f"cannot write {path} as {what}: {one_line(error)}") from None
    return path


def write_image(path: str | os.PathLike[str], image: np.ndarray, overwrite: bool = True) -> None:
    """Write ``image`` atomically (``core.media``: ``encode_image``, then ``write_atomic``).

    Floats (0..1) become uint8; uint16 is kept where the format holds it (PNG, TIFF).

    Parameters
    ----------
    path : str or os.PathLike
        The image file; its folder must exist.
    image : numpy.ndarray
        The pixels.
    overwrite : bool, default True
        ``False`` refuses to replace an existing file.

    Raises
    ------
    CLIError
        No folder, an existing file without ``overwrite``, or a failed encode or write (the
        previous file is left intact, nothing partial on disk).
    """
    from ..core import media

    path = Path(path)
    if not path.parent.is_dir():
        raise CLIError(f"output folder {path.parent} does not exist")
    if path.exists() and not overwrite:
        raise CLIError(f"{path} exists; pass --overwrite to replace it")
    try:
        media.write_atomic(path, media.encode_image(image, path.name), make_folder=False)
    except Exception as error:  # imageio raises many types for an image it cannot encode
        raise CLIError(f"cannot write {path}: {one_line(error)}") from None


def write_text(path: str | os.PathLike[str], text: str, overwrite: bool = True) -> None:
    """Write ``text`` atomically, as UTF-8 (``core.media.write_atomic``).

    Parameters
    ----------
    path : str or os.PathLike
        The file; its folder must exist.
    text : str
        The contents.
    overwrite : bool, default True
        ``False`` refuses to replace an existing file.

    Raises
    ------
    CLIError
        An existing file without ``overwrite``, or a failed write.
    """
    from ..core import media

    path = Path(path)
    if path.exists() and not overwrite:
        raise CLIError(f"{path} exists; pass --overwrite to replace it")
    try:
        media.write_atomic(path, text, make_folder=False)
    except OSError as error:
        raise CLIError(f"cannot write {path}: {one_line(error)}") from None


# --------------------------------------------------------------------------- terminal
_DEVICE_NOTE_PRINTED = False


def print_device_note() -> None:
    """Print, once per process, why a CUDA build of torch runs on the CPU (an old driver)."""
    global _DEVICE_NOTE_PRINTED
    if _DEVICE_NOTE_PRINTED:
        return
    _DEVICE_NOTE_PRINTED = True
    from ..core import devices

    note = devices.cuda_build_note()
    if note:
        print(note, file=sys.stderr)


def progress_bar(total: int | None, desc: str) -> Any:
    """A tqdm progress bar on stderr."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="it", file=sys.stderr, dynamic_ncols=True)


# --------------------------------------------------------------------------- hints
def read_hints(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(content_points, style_points)`` of a BigWarp landmark CSV read as hints: the moving
    points on the content, the target points on the geometry style (its own pixels)."""
    from ..core.landmarks import read_bigwarp_csv

    try:
        return read_bigwarp_csv(path)
    except ValueError as error:
        raise CLIError(f"--hints: {error}") from None


def print_confidence(transform: object, label: str = "geometry") -> None:
    """One line on stderr: the estimate's confidence, and what to do when it is low."""
    from ..core.confidence import LOW_CONFIDENCE

    value = getattr(transform, "confidence", None)
    if value is None:
        return
    note = " (the shapes may not match: add a hint, --hints)" if value < LOW_CONFIDENCE else ""
    print(f"{label} confidence {value:.2f}{note}", file=sys.stderr)
