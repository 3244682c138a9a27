"""One style per input for a batch: a CSV table (or a mapping) from inputs to their styles.

The CSV has a header row with an ``input`` column and a ``geometry_style`` and/or
``texture_style`` column (names are matched without regard to case or surrounding spaces)::

    input,geometry_style,texture_style
    cat.png,shapes/cat_pose.png,textures/fur.jpg
    clips/walk.mp4,shapes/walker.png,
    dog.png,none,textures/brick.jpg

- ``input`` names an input by its file name (``cat.png``) or its path (absolute, relative to the
  CSV's folder, or relative to the working folder). A video or stack is one input: its frames
  share its styles. Array inputs are named by their output name (``image_0000.png``).
- Style paths are relative to the CSV's folder (absolute paths and ``~`` work too). An empty
  cell takes the batch's default style for that stage; ``none`` turns the stage off for that
  input (``dog.png`` above is styled, not warped).
- An optional ``hints`` column names a BigWarp landmark CSV per input: points of the input
  (moving) and where they lie on its geometry style (target), which steer its warp
  (``estimate_warp``'s ``hints``); an empty cell takes the batch's hints.

Everything is checked before any work: a bad header, an empty or repeated input, a name that
matches no input (or several), a missing style file. In Python, ``styles`` may also be a mapping
``{input name: {"geometry_style": path or array, "texture_style": ...}}`` with the same rules
(paths relative to the working folder).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

INPUT_COLUMN = "input"
STYLE_COLUMNS = ("geometry_style", "texture_style")
HINTS_COLUMN = "hints"  # optional: a BigWarp landmark CSV of hints per input
NONE_WORDS = ("none",)


@dataclass
class StyleRow:
    """One row: ``input`` as written, and each stage's style (a path, an array, ``None`` for
    "use the default", or :data:`OFF` for "no such stage for this input")."""

    input: str
    styles: dict
    where: str  # "FILE line N" or "styles[NAME]", for messages
    folder: Path  # relative input paths are also tried from here
    hints: tuple | None = None  # (content_points, style_points) of its warp, or None


class _Off:
    def __repr__(self) -> str:
        return "OFF"


OFF = _Off()  # a stage turned off for one input


def read_styles_csv(path) -> list[StyleRow]:
    """The rows of a styles CSV; ``ValueError`` naming the file and line for anything wrong."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no styles CSV at {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's byte-order mark is fine
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read the styles CSV {path}: {error}") from error
    try:  # a field past csv's size limit is its own error type: one ValueError for all
        reader = iter(list(csv.reader(text.splitlines())))
    except csv.Error as error:
        raise ValueError(f"cannot read the styles CSV {path}: {error}") from error
    header = next(reader, None)
    if header is None:
        raise ValueError(
            f"the styles CSV {path} is empty: it needs a header row "
            f"'{INPUT_COLUMN},{','.join(STYLE_COLUMNS)}' and one row per input"
        )
    names = [h.strip().lower() for h in header]
    unknown = [h for h in names if h not in (INPUT_COLUMN, *STYLE_COLUMNS, HINTS_COLUMN)]
    repeated = sorted({h for h in names if names.count(h) > 1})
    if INPUT_COLUMN not in names or not set(STYLE_COLUMNS) & set(names) or unknown or repeated:
        problem = (
            f"unknown column(s) {', '.join(map(repr, unknown))}"
            if unknown
            else f"repeated column(s) {', '.join(repeated)}"
            if repeated
            else f"no '{INPUT_COLUMN}' column"
            if INPUT_COLUMN not in names
            else "no style column"
        )
        raise ValueError(
            f"bad header in the styles CSV {path} ({problem}; got "
            f"{','.join(header)}): the columns are '{INPUT_COLUMN}' and "
            f"'{STYLE_COLUMNS[0]}' and/or '{STYLE_COLUMNS[1]}'"
        )
    rows = []
    folder = path.parent
    for line, cells in enumerate(reader, start=2):
        if not any(c.strip() for c in cells):
            continue  # blank line
        where = f"{path} line {line}"
        if len(cells) > len(names):
            raise ValueError(f"{where} has {len(cells)} cells; the header has {len(names)}")
        record = dict(zip(names, [c.strip() for c in cells]))
        styles: dict[str, Path | _Off | None] = {}
        for column in STYLE_COLUMNS:
            value = record.get(column, "")
            if not value:
                styles[column] = None
            elif value.lower() in NONE_WORDS:
                styles[column] = OFF
            else:
                styles[column] = _style_path(value, folder, where, column)
        hints_cell = record.get(HINTS_COLUMN, "")
        hints = (
            _read_hints(_style_path(hints_cell, folder, where, HINTS_COLUMN), where)
            if hints_cell
            else None
        )
        rows.append(StyleRow(record.get(INPUT_COLUMN, ""), styles, where, folder, hints))
    if not rows:
        raise ValueError(f"the styles CSV {path} has a header but no rows")
    return rows


def _read_hints(path: Path, where: str) -> tuple:
    from .landmarks import read_bigwarp_csv

    try:
        return read_bigwarp_csv(path)
    except ValueError as error:
        raise ValueError(f"{where}: hints: {error}") from None


def _style_path(value: str, folder: Path, where: str, column: str) -> Path:
    path = Path(value).expanduser()
    path = path if path.is_absolute() else folder / path
    if not path.is_file():
        raise FileNotFoundError(f"{where}: {column} {value} is not a file (looked for {path})")
    return path


def rows_from_mapping(mapping) -> list[StyleRow]:
    """Rows from ``{input name: {"geometry_style": ..., "texture_style": ...}}``."""
    rows = []
    folder = Path.cwd()
    for name, entry in mapping.items():
        where = f"styles[{name!r}]"
        if not isinstance(entry, dict):
            raise ValueError(
                f"{where} must be a dict with '{STYLE_COLUMNS[0]}' and/or "
                f"'{STYLE_COLUMNS[1]}'; got {type(entry).__name__}"
            )
        unknown = sorted(set(entry) - {*STYLE_COLUMNS, HINTS_COLUMN})
        if unknown or not set(entry) - {HINTS_COLUMN}:
            raise ValueError(
                f"{where} has key(s) {unknown or '(none)'}: the keys are "
                f"'{STYLE_COLUMNS[0]}' and/or '{STYLE_COLUMNS[1]}'"
            )
        styles = {}
        for column in STYLE_COLUMNS:
            value = entry.get(column)
            if isinstance(value, str) and value.strip().lower() in NONE_WORDS:
                value = OFF
            elif isinstance(value, (str, Path)):
                value = _style_path(str(value), folder, where, column)
            styles[column] = value
        hints = entry.get(HINTS_COLUMN)
        if isinstance(hints, (str, Path)):
            hints = _read_hints(_style_path(str(hints), folder, where, HINTS_COLUMN), where)
        rows.append(StyleRow(str(name), styles, where, folder, hints))
    return rows


def load_rows(styles) -> tuple[list[StyleRow], str]:
    """Rows from a CSV path or a mapping, and a description for the manifest."""
    if isinstance(styles, (str, Path)):
        return read_styles_csv(styles), str(Path(styles).expanduser())
    if isinstance(styles, dict):
        return rows_from_mapping(styles), "mapping"
    raise ValueError(
        f"styles must be a CSV file path or a dict of input name -> styles; got "
        f"{type(styles).__name__}"
    )


@dataclass
class Target:
    """An input a row can name: an image, or a whole video or stack."""

    output: str  # the item's or sequence's output name
    source: str  # its file path ("array N" for arrays)


def match_rows(rows: list[StyleRow], targets: list[Target]) -> dict:
    """``{target output: row}``; every row must name exactly one target, and no target twice.
    Linear in the targets; their paths are resolved only when a row names a path."""
    if not rows:
        return {}
    by_name: dict = {}
    by_path: dict = {}
    paths = any("/" in (row.input or "") or "\\" in (row.input or "") for row in rows)
    for target in targets:
        for name in {Path(target.source).name, target.output}:
            by_name.setdefault(name, []).append(target)
        if paths and not target.source.startswith("array "):
            by_path.setdefault(Path(target.source).expanduser().resolve(), []).append(target)
    matched: dict[str, StyleRow] = {}
    unknown: list[str] = []
    for row in rows:
        name = row.input
        if not name:
            raise ValueError(f"{row.where}: the input cell is empty")
        if "/" in name or "\\" in name:
            candidates = {
                (row.folder / name).expanduser().resolve(),
                Path(name).expanduser().resolve(),
            }
            by_id = {id(t): t for c in candidates for t in by_path.get(c, [])}
            found = list(by_id.values())
        else:
            found = list({id(t): t for t in by_name.get(name, [])}.values())
        if not found:
            unknown.append(f"{name} ({row.where})")
            continue
        if len(found) > 1:
            raise ValueError(
                f"{row.where}: {name} names several inputs "
                f"({', '.join(t.source for t in found)}): give its path"
            )
        target = found[0]
        if target.output in matched:
            raise ValueError(
                f"{row.where}: {target.source} already has styles from "
                f"{matched[target.output].where}"
            )
        matched[target.output] = row
    if unknown:
        more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        raise ValueError(
            f"the styles name input(s) that are not among the batch's inputs: "
            f"{'; '.join(unknown[:3])}{more}"
        )
    return matched
