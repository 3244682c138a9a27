"""The estimate's confidence map (core/confidence.py) and its fit (scripts/fit_confidence.py)."""

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from napari_geostyle.core import confidence

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _judge(score=0.6, others=(0.4, 0.3), spread=(0.05, 0.3)):
    scores = {"kept": score, **{f"start {i}": s for i, s in enumerate(others)}}
    return {
        "scores": scores,
        "kept": "kept",
        "spread": {f"start {i}": d for i, d in enumerate(spread)},
        "log_scale": 0.2,
        "rotation_deg": 10.0,
    }


def test_the_shipped_map_reads_a_selection_of_the_recorded_features():
    data = confidence.load_coefficients()
    assert set(data["features"]) <= set(confidence.FEATURES)
    assert len(data["weights"]) == len(data["features"]) == len(data["mean"])


def test_confidence_reads_only_the_maps_features(tmp_path, monkeypatch):
    stored = {"features": ["score", "hinted"], "weights": [2.0, 1.0], "bias": -1.0,
              "mean": [0.5, 0.0], "scale": [0.1, 1.0]}  # fmt: skip
    path = tmp_path / "map.json"
    path.write_text(json.dumps(stored))
    monkeypatch.setattr(confidence, "COEFFICIENTS_PATH", path)
    confidence.load_coefficients.cache_clear()
    try:
        value, named = confidence.estimate_confidence(SimpleNamespace(judge=_judge(0.6)), True)
    finally:
        confidence.load_coefficients.cache_clear()
    expected = 1 / (1 + np.exp(-(-1.0 + 2.0 * (0.6 - 0.5) / 0.1 + 1.0)))
    assert value == pytest.approx(expected)
    assert set(named) == set(confidence.FEATURES)  # every feature is still recorded
    assert named["spread"] == pytest.approx(0.175)


def test_a_map_of_unknown_features_is_refused(tmp_path):
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"features": ["score", "colour"], "weights": [1.0, 1.0],
                                "bias": 0.0}))  # fmt: skip
    with pytest.raises(ValueError, match="refit with scripts/fit_confidence.py"):
        confidence.load_coefficients.__wrapped__(path)


def test_fit_confidence_fits_the_chosen_features(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))
    sys.modules.pop("fit_confidence", None)
    import fit_confidence

    rng = np.random.default_rng(0)
    records = []
    for index in range(60):
        right = index % 2 == 0
        features = rng.normal(0.0, 0.1, len(confidence.FEATURES))
        features[0] += 0.6 if right else 0.3  # the score tells them apart
        records.append({"kind": "same image", "hinted": False, "right": right,
                        "features": features.tolist(), "seconds": 0.1})  # fmt: skip
    data = tmp_path / "data.json"
    data.write_text(json.dumps({"args": {"images": "photos", "seed": 1}, "records": records}))
    code = fit_confidence.main(["--images", "photos", "--reuse-data", "--data", str(data),
                                "--features", "score", "spread"])  # fmt: skip
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["features"] == ["score", "spread"] and len(result["weights"]) == 2
    assert result["weights"][0] > 0 and result["in_sample_auroc"] > 0.9
    assert set(result["per_feature_auroc"]) == set(confidence.FEATURES)
    with pytest.raises(SystemExit):
        fit_confidence.main(["--images", "p", "--reuse-data", "--data", str(data),
                             "--features", "colour"])  # fmt: skip
