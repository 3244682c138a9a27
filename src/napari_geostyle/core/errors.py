"""Exception types shared across the core."""

from __future__ import annotations


class MissingFileError(FileNotFoundError, ValueError):
    """A file the caller named is not there.

    A ``FileNotFoundError``, as every missing file in the package is, and a ``ValueError``
    because it is bad input: code that reports bad input to the user (the widgets, the CLI)
    catches it without a special case. (``io.UnsupportedOperation`` mixes the same two bases.)
    """
