"""``confidence``: the estimated probability that an estimate is right, in [0, 1].

"Right" means what the landmark evaluation counts: PCK@0.1 >= 0.5 (half the points within a
tenth of the object's size). The estimate already holds what the confidence is made from
(``estimate.WarpParameters.judge``): how well the kept start's warped content matches the
style on the ImageNet features (the judge's score), and how far the other starts it weighed
landed from it (agreement). A logistic map of those, whose coefficients are fitted by
``scripts/fit_confidence.py`` on synthetic pairs made from TRAINING photos (same-image pairs
with known warps, and pairs of unrelated photos, which are wrong by construction), never on the
evaluation sets, and stored with how they were made in ``models/confidence.json``.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import numpy as np

COEFFICIENTS_PATH = Path(__file__).resolve().parent.parent / "models" / "confidence.json"
# below this the estimate says so: "the shapes may not match: add a hint"
LOW_CONFIDENCE = 0.5
# the features every estimate records (``confidence_features``, in this order); the stored map
# names the ones it reads
FEATURES = ("score", "score_margin", "spread", "abs_log_scale", "abs_rotation", "hinted")
# what ``scripts/fit_confidence.py`` fits by default: not the kept pose's |log scale| and
# |rotation|, which on the synthetic calibration pairs tell right from wrong only because the
# networks fail more often on the generator's larger warps (its ranges, not the estimate's
# quality); across real pairs the true pose can be anything
MAP_FEATURES = ("score", "score_margin", "spread", "hinted")


def confidence_features(judge: dict | None, hinted: bool = False) -> np.ndarray:
    """The features of one estimate's ``judge`` record (``estimate_network.best_layout``):

    - ``score``: the kept start's similarity to the style (the judge's, before any bonus);
    - ``score_margin``: how much it beats the best of the other starts (0 with one start);
    - ``spread``: the mean RMS lattice distance (normalised units) from the kept start to the
      others (0 with one start): starts that land apart disagree about the pose;
    - ``abs_log_scale``, ``abs_rotation``: how far the kept start magnifies or shrinks the
      content (|log| of its linear scale) and turns it (degrees): where the search fails across
      different objects it mostly magnifies or turns the content to its range's limit;
    - ``hinted``: 1 when hints pinned the pose.
    """
    if not judge:
        return np.array([0.0, 0.0, 0.0, 0.0, 0.0, float(hinted)])
    scores, kept = judge["scores"], judge["kept"]
    others = [n for n in scores if n != kept]
    score = scores[kept]
    margin = score - max(scores[n] for n in others) if others else 0.0
    spread = float(np.mean([judge["spread"][n] for n in others])) if others else 0.0
    pose = [abs(judge.get("log_scale", 0.0)), abs(judge.get("rotation_deg", 0.0))]
    return np.array([score, margin, spread, *pose, float(hinted)])


@lru_cache(maxsize=1)
def load_coefficients(path=None) -> dict:
    """The stored logistic map: ``{"features", "weights", "bias", ...}``."""
    data = json.loads(Path(path or COEFFICIENTS_PATH).read_text(encoding="utf-8"))
    unknown = [name for name in data["features"] if name not in FEATURES]
    if unknown or len(data["weights"]) != len(data["features"]):
        raise ValueError(
            f"{path or COEFFICIENTS_PATH} holds coefficients for {data['features']}, not a "
            f"selection of {list(FEATURES)}: refit with scripts/fit_confidence.py."
        )
    return data


def logistic(features, weights, bias, mean=None, scale=None) -> float:
    """``sigmoid(bias + weights . (features - mean) / scale)``."""
    x = np.asarray(features, np.float64)
    if mean is not None:
        x = (x - np.asarray(mean)) / np.asarray(scale)
    z = float(bias + np.dot(weights, x))
    return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0


def estimate_confidence(params, hinted: bool = False) -> tuple[float, dict]:
    """``(confidence in [0, 1], {feature: value})`` of one ``estimate.WarpParameters``."""
    data = load_coefficients()
    features = confidence_features(params.judge, hinted)
    used = [FEATURES.index(name) for name in data["features"]]
    value = logistic(
        features[used],
        data["weights"],
        data["bias"],
        data.get("mean"),
        data.get("scale"),
    )
    named = {name: float(v) for name, v in zip(FEATURES, features)}
    return float(min(max(value, 0.0), 1.0)), named
