"""BigWarp landmark CSV files (Fiji), so landmark work moves between Fiji and napari.

BigWarp writes one landmark per line, quoted, without a header::

    "Pt-0","true","12.5","40.0","15.0","42.5"

i.e. ``name, active, moving x, moving y, target x, target y``. The MOVING image is the content
(the one that gets warped), the TARGET is the output frame; x is the column, y the row. Rows whose
``active`` field is ``false`` are skipped (BigWarp writes ``Infinity`` for their unplaced points).
An optional first line whose coordinate fields are not numbers is a header.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import images

if TYPE_CHECKING:  # pragma: no cover
    from numpy.typing import ArrayLike

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def _parse_number(text: str, path, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(
            f"{path}, line {line}: {column} {text!r} is not a number (BigWarp columns: name, "
            "active, moving x, moving y, target x, target y)."
        ) from None
    if not math.isfinite(value):
        raise ValueError(
            f"{path}, line {line}: {column} is {text!r}; an active landmark needs finite "
            "coordinates (place the point in BigWarp, or mark the row inactive)."
        )
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_last_row_complete(text: str, path) -> None:
    """Refuse a file cut off in its last row (a full disk, an interrupted copy): it ends without
    a line end AND inside a quoted field, or without the closing quote every other row has.
    (A hand-made file of unquoted numbers without a final line end cannot be told apart from a
    cut-off one, and is read.)"""
    if not text or text.endswith(("\n", "\r")):
        return
    lines = text.splitlines()
    last = lines[-1].rstrip()
    others = [line.rstrip() for line in lines[:-1] if line.strip()]
    unclosed = last.count('"') % 2 == 1
    unlike_the_rest = bool(others) and all(line.endswith('"') for line in others)
    if unclosed or (unlike_the_rest and not last.endswith('"')):
        reason = "an unclosed quote" if unclosed else "no closing quote, unlike every other row"
        raise ValueError(
            f"{path}, line {len(lines)}: the last row is cut off ({reason}, and no line end): "
            "the file looks truncated (a full disk or an interrupted copy?); export the "
            "landmarks again or restore the file."
        )


def read_bigwarp_csv(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(content_points, target_points)``: float64 ``(N, 2)`` ``(row, col)``, active pairs.

    Parameters
    ----------
    path : str or os.PathLike
        A BigWarp landmarks CSV file.

    Returns
    -------
    content_points : numpy.ndarray
        float64 ``(N, 2)`` ``(row, col)`` moving (content) landmarks of the active pairs.
    target_points : numpy.ndarray
        float64 ``(N, 2)`` ``(row, col)`` target landmarks, paired with ``content_points``.

    Raises
    ------
    ValueError
        If there is no file at ``path``, or it is not a usable BigWarp landmarks file.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no landmark file at {path}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            text = handle.read()
        _check_last_row_complete(text, path)
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except (UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"{path} is not a readable CSV landmark file: {error}") from None
    except OSError as error:  # permissions, a folder, a vanished network drive
        reason = error.strerror or type(error).__name__
        raise ValueError(f"cannot read the landmark file {path}: {reason}.") from None
    content, target = [], []
    for line, row in enumerate(rows, start=1):
        fields = [field.strip() for field in row]
        if not any(fields):
            continue
        if len(fields) == 8:
            raise ValueError(
                f"{path}, line {line}: 8 columns is a 3D BigWarp file; only 2D landmarks "
                "(name, active, moving x, moving y, target x, target y) are supported."
            )
        if len(fields) != 6:
            raise ValueError(
                f"{path}, line {line}: expected 6 columns (name, active, moving x, moving y, "
                f"target x, target y); found {len(fields)}."
            )
        active = fields[1].lower()
        if line == 1 and not any(_is_number(field) for field in fields[2:]):
            continue  # a header line: its coordinate fields are names, not numbers
        if active not in _TRUE | _FALSE:
            raise ValueError(
                f"{path}, line {line}: active must be true or false; got {fields[1]!r}."
            )
        if active in _FALSE:
            continue
        names = ("moving x", "moving y", "target x", "target y")
        moving_x, moving_y, target_x, target_y = (
            _parse_number(text, path, line, name) for text, name in zip(fields[2:], names)
        )
        content.append((moving_y, moving_x))
        target.append((target_y, target_x))
    if not content:
        raise ValueError(f"{path} has no active landmark pairs.")
    content_points = images.validate_points(content, f"moving (content) landmarks in {path}")
    target_points = images.validate_points(target, f"target landmarks in {path}")
    return content_points, target_points


def write_bigwarp_csv(
    path: str | os.PathLike[str],
    content_points: ArrayLike,
    target_points: ArrayLike,
    names: Sequence[str] | None = None,
) -> None:
    """Write landmark pairs as BigWarp does (quoted, no header, all active, names ``Pt-0``...).

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file to write.
    content_points : array_like
        ``(N, 2)`` ``(row, col)`` moving (content) landmarks.
    target_points : array_like
        ``(N, 2)`` ``(row, col)`` target landmarks, paired with ``content_points``.
    names : sequence of str, optional
        One name per pair; default ``Pt-0``, ``Pt-1``, ...

    Returns
    -------
    None

    Raises
    ------
    ValueError
        If the points are not ``(N, 2)`` finite arrays of the same length, there are none, or
        ``names`` does not fit them.
    """
    content_points = images.validate_points(content_points, "content_points")
    target_points = images.validate_points(target_points, "target_points")
    if len(content_points) != len(target_points):
        raise ValueError(
            f"content_points has {len(content_points)} points but target_points has "
            f"{len(target_points)}; give one of each per landmark."
        )
    if len(content_points) == 0:  # read_bigwarp_csv refuses such a file
        raise ValueError("no landmark pairs to write.")
    if names is None:
        names = [f"Pt-{index}" for index in range(len(content_points))]
    names = [str(name) for name in names]
    if len(names) != len(content_points):
        raise ValueError(f"{len(names)} names given for {len(content_points)} landmarks.")
    from .media import write_user_file

    path = Path(path)
    if not path.parent.exists():
        raise ValueError(f"output folder {path.parent} does not exist")
    # the whole text first: a name that cannot be written fails before the file is touched
    text = io.StringIO()
    writer = csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\n")
    for name, (c_row, c_col), (t_row, t_col) in zip(names, content_points, target_points):
        # repr() round-trips floats exactly
        writer.writerow(
            [
                name,
                "true",
                repr(float(c_col)),
                repr(float(c_row)),
                repr(float(t_col)),
                repr(float(t_row)),
            ]
        )
    data = text.getvalue().encode("utf-8")
    # atomically: a full disk or a kill leaves the previous file, never a truncated one
    write_user_file(path, data, "landmark file")
