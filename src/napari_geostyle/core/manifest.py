"""The batch manifest: what was done to each output, so a rerun can skip finished work.

``manifest.json`` in the output folder holds the run's options and provenance and one entry per
output file (status, resume key, styles, transform, timings, device, error). It is rewritten now and
then and at the end; between rewrites each finished output is appended to a small journal
(``.manifest-journal.jsonl``), so a killed run loses at most the output being written.
``manifest.csv`` is a flat copy of the entries for spreadsheets (a cell that a spreadsheet would
read as a formula starts with ``'``).

File names are kept losslessly: a name that is not UTF-8 (a surrogate-escaped str) is written
with JSON's ``\\udcNN`` escapes in ``manifest.json`` and with ``\\xNN`` for each undecodable
byte in ``manifest.csv``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from pathlib import Path

from .media import write_atomic

MANIFEST_NAME = "manifest.json"
CSV_NAME = "manifest.csv"
JOURNAL_NAME = ".manifest-journal.jsonl"
FORMAT = "napari-geostyle batch manifest"
CSV_COLUMNS = (
    "output",
    "kind",
    "status",
    "source",
    "frame",
    "key",
    "seconds",
    "device",
    "worker",
    "error",
    "geometry_style",
    "texture_style",
    "transform",
)
SAVE_EVERY_S = 2.0


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class Manifest:
    """Entries by output name (relative to the folder) plus the run's header."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.path = self.folder / MANIFEST_NAME
        self.header: dict = {}
        self.entries: dict = {}
        self.sequences: dict = {}
        self._saved_at = 0.0
        self._load()

    def _load(self) -> None:
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:  # cut short, hand-edited, not text
                raise self._unreadable(self.path, " ".join(str(error).split())) from error
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise self._unreadable(self.path, "not a napari-geostyle batch manifest")
            self.entries = self._table(data.get("items", {}), "items")
            self.sequences = self._table(data.get("sequences", {}), "sequences")
        journal = self.folder / JOURNAL_NAME
        if journal.is_file():
            try:
                text = journal.read_text(encoding="utf-8")
            except (OSError, ValueError) as error:
                raise self._unreadable(journal, " ".join(str(error).split())) from error
            lines = text.splitlines()
            for number, line in enumerate(lines, 1):
                try:
                    record = json.loads(line)
                except ValueError:
                    if number == len(lines) and not text.endswith("\n"):
                        continue  # the last line, cut short by a kill
                    raise self._unreadable(journal, f"line {number} is not JSON") from None
                if not isinstance(record, dict) or not isinstance(record.get("output"), str):
                    raise self._unreadable(journal, f"line {number} is not an output's entry")
                self._check_entry(record, journal, f"line {number}")
                target = self.sequences if record.get("kind") == "sequence" else self.entries
                target[record["output"]] = record

    def _table(self, table, name: str) -> dict:
        """The ``items`` or ``sequences`` of the manifest, checked: output name -> entry."""
        if not isinstance(table, dict):
            raise self._unreadable(self.path, f"{name!r} is not a table of outputs")
        entries = {}
        for output, entry in table.items():
            if not isinstance(entry, dict):
                raise self._unreadable(self.path, f"the entry of {output!r} is not a table")
            self._check_entry(entry, self.path, f"the entry of {output!r}")
            entries[output] = {**entry, "output": output}
        return entries

    def _check_entry(self, entry: dict, path: Path, where: str) -> None:
        """The fields a rerun reads must have their types (a hand edit may have changed them)."""
        for field, kinds in (("status", str), ("key", str), ("kind", str), ("timings", dict)):
            value = entry.get(field)
            if value is not None and not isinstance(value, kinds):
                raise self._unreadable(path, f"{where}: {field!r} is {value!r}")

    def _unreadable(self, path: Path, reason: str) -> ValueError:
        return ValueError(
            f"the manifest is unreadable: {path}: {reason}. To recover, move {MANIFEST_NAME} "
            f"and {JOURNAL_NAME} out of {self.folder} and run the batch again with "
            "--overwrite (overwrite=True: every output is made again), or choose another "
            "output folder."
        )

    def finished(self, output: str, key: str, table: str = "items") -> bool:
        """True when ``output`` was written with ``key`` and the file is there."""
        entry = (self.entries if table == "items" else self.sequences).get(output)
        return (
            entry is not None
            and entry.get("status") == "done"
            and entry.get("key") == key
            and (self.folder / output).is_file()
        )

    def pending(self, output: str, key: str, data: bytes | None, kind: str = "item") -> None:
        """Journal that ``output`` is about to be moved into place, with the hash of its bytes
        (``data``; None for a video or stack, written by its encoder): a kill between the write
        and ``record`` then leaves a file that a rerun knows as its own."""
        digest = None if data is None else hashlib.sha256(data).hexdigest()
        self.record({"output": output, "kind": kind, "status": "pending", "key": key,
                     "sha256": digest})  # fmt: skip

    def ours(self, output: str) -> bool:
        """True when ``output`` is the file a batch was moving into place when it was stopped:
        its entry is pending and the file's bytes have the journalled hash (any file, for an
        entry journalled without one). Such a file is redone, not refused."""
        entry = self.entries.get(output) or self.sequences.get(output)
        if not isinstance(entry, dict) or entry.get("status") != "pending":
            return False
        expected = entry.get("sha256")
        if expected is None:
            return True
        try:
            data = (self.folder / output).read_bytes()
        except OSError:
            return False
        return hashlib.sha256(data).hexdigest() == expected

    def record(self, entry: dict) -> None:
        """Add one finished (or failed) output: journal now, full manifest now and then."""
        target = self.sequences if entry.get("kind") == "sequence" else self.entries
        target[entry["output"]] = entry
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / JOURNAL_NAME, "a") as journal:
            journal.write(json.dumps(entry) + "\n")
            journal.flush()
        if time.monotonic() - self._saved_at > SAVE_EVERY_S:
            self.save()

    def save(self) -> None:
        data = {
            "format": FORMAT,
            "version": 1,
            "updated": _now(),
            **self.header,
            "items": self.entries,
            "sequences": self.sequences,
        }
        write_atomic(self.path, json.dumps(data, indent=1).encode())
        write_atomic(self.folder / CSV_NAME, self._csv().encode())
        (self.folder / JOURNAL_NAME).unlink(missing_ok=True)
        self._saved_at = time.monotonic()

    def _csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for entry in [*self.entries.values(), *self.sequences.values()]:
            row = dict(entry)
            row["seconds"] = (entry.get("timings") or {}).get("total")
            row["transform"] = json.dumps(entry["transform"]) if entry.get("transform") else ""
            for column in ("geometry_style", "texture_style"):  # several texture styles: a list
                if isinstance(entry.get(column), list):
                    row[column] = ";".join(map(str, entry[column]))
            writer.writerow({column: _csv_text(value) for column, value in row.items()})
        return buffer.getvalue()


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what spreadsheets read as a formula


def _csv_text(value):
    """A CSV cell as UTF-8 can hold it, and never a formula. A file name that is not UTF-8
    reaches Python as a str with surrogate escapes (``os.listdir``'s); each of its undecodable
    bytes is written as ``\\xNN`` (a lone surrogate of another kind as ``\\uXXXX``).
    ``manifest.json`` keeps the exact name (JSON escapes the surrogates), so nothing is lost.
    A text cell that starts with ``= + - @``, a tab or a carriage return gets a leading ``'``
    (OWASP's advice against CSV injection): a spreadsheet shows it as text, not a formula."""
    if not isinstance(value, str):
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        try:
            data = value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "backslashreplace").decode("utf-8")
        else:
            value = data.decode("utf-8", "backslashreplace")
    return "'" + value if value.startswith(FORMULA_STARTS) else value
