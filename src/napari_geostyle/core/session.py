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
    """Write ``session`` (what ``LiveWarp.session()`` returns) as JSON; returns the path."""
    record = {"format": SESSION_FORMAT, "version": SESSION_VERSION, **session}
    path = Path(path)
    path.write_text(json.dumps(record, indent=1))
    return path


def read_session(path) -> dict:
    """Read and check a session file: points become ``(N, 2)`` arrays, ``active`` a bool array.

    A file that is not a GeoStyle session, or whose point lists do not pair up, is a
    ``ValueError`` that says what is wrong.
    """
    from .images import validate_points
    from .landmark_models import FIT_MODELS
    from .transforms import check_strength

    try:
        record = json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not a GeoStyle session (not JSON: {error}).") from error
    if not isinstance(record, dict) or record.get("format") != SESSION_FORMAT:
        raise ValueError(f"{path} is not a GeoStyle session file (no '{SESSION_FORMAT}' format).")
    if int(record.get("version", 0)) > SESSION_VERSION:
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
    active = np.asarray(record.get("active", [True] * len(control)), bool)
    if active.shape != (len(control),):
        raise ValueError(f"{path}: 'active' must have one entry per landmark pair.")
    if record.get("fit_model", "tps") not in FIT_MODELS:
        raise ValueError(f"{path}: unknown fit model {record.get('fit_model')!r}.")
    if not isinstance(record.get("inputs"), dict) or "content" not in record["inputs"]:
        raise ValueError(f"{path}: the session does not name its content layer.")
    record.update(
        control_points=control,
        target_points=target,
        active=active,
        fit_model=record.get("fit_model", "tps"),
        strength=check_strength(record.get("strength", 1.0)),
    )
    return record
