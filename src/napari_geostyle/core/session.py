"""A landmark-warp session as one JSON file: the layers' names and sources, the landmark pairs
(with their on/off switches), the fit model, the strength and the options.

Qt-free so scripts and tests can read and write sessions; the Geometric Warp widget rebuilds the
live warp from one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SESSION_FORMAT = "napari-geostyle session"
SESSION_VERSION = 1


def write_session(path, session: dict) -> Path:
    """Write ``session`` (what ``LiveWarp.session()`` returns) as JSON, atomically; returns the
    path. A session that is not JSON, or a file that cannot be written, is a ``ValueError``
    that says why (the previous file is left intact)."""
    from .media import write_user_file

    record = {"format": SESSION_FORMAT, "version": SESSION_VERSION, **session}
    try:  # allow_nan=False: read_session would refuse NaN / infinite points
        text = json.dumps(record, indent=1, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as error:
        raise ValueError(
            f"cannot save the session: {' '.join(str(error).split())[:200]} (a session holds "
            "JSON values: names, finite numbers, lists)."
        ) from error
    return write_user_file(path, text, "session file")


def read_session(path) -> dict:
    """Read and check a session file: points become ``(N, 2)`` arrays, ``active`` a bool array.

    A file that is not a GeoStyle session, or whose fields are not what a session holds, is a
    ``ValueError`` that says what is wrong (a missing file stays a ``FileNotFoundError``).
    """
    try:
        return _read_session(path)
    except (TypeError, OverflowError, RecursionError, KeyError, IndexError) as error:
        # a hand-edited field of the wrong type or size that the checks below did not name
        raise ValueError(
            f"{path} is not a valid GeoStyle session ({type(error).__name__}: "
            f"{' '.join(str(error).split())[:200]}); save the session again from the widget."
        ) from error


def _read_session(path) -> dict:
    from .images import validate_points
    from .landmark_models import FIT_MODELS
    from .transforms import check_strength

    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not a GeoStyle session (not JSON: {error}).") from error
    except RecursionError:
        raise ValueError(f"{path} is not a GeoStyle session (JSON nested too deeply).") from None
    if not isinstance(record, dict) or record.get("format") != SESSION_FORMAT:
        raise ValueError(f"{path} is not a GeoStyle session file (no '{SESSION_FORMAT}' format).")
    version = record.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError(f"{path}: the session's version must be a whole number; got {version!r}.")
    if version > SESSION_VERSION:
        raise ValueError(
            f"{path} is a session of format version {record['version']}; this napari-geostyle "
            f"reads up to version {SESSION_VERSION}: update it."
        )
    control, target = (
        validate_points(record.get(key) or np.zeros((0, 2)), f"session {key.replace('_', ' ')}")
        for key in ("control_points", "target_points")
    )
    if len(control) != len(target):
        raise ValueError(f"{path}: {len(control)} control points but {len(target)} target points.")
    active = record.get("active", [True] * len(control))
    if not isinstance(active, list) or not all(isinstance(a, (bool, int)) for a in active):
        raise ValueError(f"{path}: 'active' must be a list of true / false, one per pair.")
    active = np.asarray(active, bool).reshape(-1)
    if active.shape != (len(control),):
        raise ValueError(f"{path}: 'active' must have one entry per landmark pair.")
    if record.get("fit_model", "tps") not in FIT_MODELS:
        raise ValueError(f"{path}: unknown fit model {str(record.get('fit_model'))[:40]!r}.")
    inputs = record.get("inputs")
    if not isinstance(inputs, dict) or not isinstance(inputs.get("content"), str):
        raise ValueError(f"{path}: the session does not name its content layer.")
    for key in ("sources", "options"):
        if not isinstance(record.get(key, {}), dict):
            raise ValueError(f"{path}: the session's {key!r} must be a mapping (a JSON object).")
    index = record.get("slice_index")
    if index is not None and (
        not isinstance(index, list)
        or not all(isinstance(i, int) and not isinstance(i, bool) for i in index)
    ):
        raise ValueError(f"{path}: the session's 'slice_index' must be a list of whole numbers.")
    try:
        strength = check_strength(record.get("strength", 1.0))
    except ValueError as error:
        raise ValueError(f"{path}: the session's {error}") from None
    record.update(
        control_points=control,
        target_points=target,
        active=active,
        fit_model=record.get("fit_model", "tps"),
        strength=strength,
    )
    return record
