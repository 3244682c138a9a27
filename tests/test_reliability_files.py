"""Bad and hostile files: every loader answers ValueError, every export is atomic, names and
videos that cannot be handled fail alone (issue 24, section 2)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_geostyle.core import transforms as T
from napari_geostyle.core.landmark_eval import load_landmark_set, read_pf_pairs
from napari_geostyle.core.landmarks import read_bigwarp_csv
from napari_geostyle.core.session import SESSION_FORMAT, read_session

SQUARE = [[0.0, 0.0], [0.0, 10.0], [10.0, 0.0], [10.0, 10.0]]


# --------------------------------------------------------------------------- 17: loaders
@pytest.mark.parametrize(
    "data",
    [
        {"type": "affine", "matrix": [[1e200, 0, 0], [0, 1e200, 0], [0, 0, 1]]},  # det overflows
        {"type": "affine", "matrix": [[10**400, 0, 0], [0, 1, 0], [0, 0, 1]]},
        {
            "type": "tps",
            "output_points": SQUARE,
            "content_points": SQUARE,
            "regularization": 10**400,
        },
        {
            "type": "tps",
            "output_points": SQUARE,
            "content_points": SQUARE,
            "frame": {"center": [0, 0], "scale": [10**400, 1]},
        },
        {
            "type": "tps",
            "output_points": [[0, 0], [1e300, 0], [0, 1e300]],
            "content_points": SQUARE[:3],
        },
        {"type": "tps", "output_points": [[10**400, 0]] * 3, "content_points": SQUARE[:3]},
        {
            "type": "composed",
            "transforms": [{"type": "affine", "matrix": [[1e300, 0, 0], [0, 1, 0]]}],
        },
    ],
)
def test_transform_from_dict_raises_only_value_error(data):
    with pytest.raises(ValueError):
        T.transform_from_dict(data)


def test_a_singular_tps_system_is_a_value_error_not_a_torch_linalg_error():
    # tiny but distinct landmarks in a fixed frame: torch.linalg.solve finds the system singular
    data = {
        "type": "tps",
        "output_points": [[0, 0], [1e-300, 0], [0, 1e-300]],
        "content_points": SQUARE[:3],
        "frame": {"center": [0, 0], "scale": [1, 1]},
    }
    with pytest.raises(ValueError):
        T.transform_from_dict(data)


def _session(**fields) -> dict:
    return {
        "format": SESSION_FORMAT,
        "version": 1,
        "inputs": {"content": "photo"},
        "control_points": SQUARE,
        "target_points": SQUARE,
        **fields,
    }


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,  # RecursionError in the JSON parser
        json.dumps(_session(version=[1])),  # TypeError in int()
        json.dumps(_session(version="x")),
        json.dumps(_session()).replace('"version": 1', '"version": 1e400'),  # int(inf)
        json.dumps(_session(control_points=[[10**400, 0]] * 4)),  # OverflowError
        json.dumps(_session(strength=10**400)),
        json.dumps(_session(active={"a": 1})),
        json.dumps(_session(inputs={"content": 5})),
        json.dumps(_session(sources=[1])),
        json.dumps(_session(options="x")),
        json.dumps(_session(slice_index="ab")),
        json.dumps(_session(slice_index=[1.5])),
    ],
)
def test_read_session_raises_only_value_error(tmp_path, text):
    path = tmp_path / "session.json"
    path.write_text(text)
    with pytest.raises(ValueError, match="session"):
        read_session(path)


def test_read_session_of_non_utf8_bytes_is_a_value_error(tmp_path):
    path = tmp_path / "session.json"
    path.write_bytes(b'{"format": "\xff\xfe"}')
    with pytest.raises(ValueError, match="not a GeoStyle session"):
        read_session(path)


def test_a_good_session_still_reads(tmp_path):
    path = tmp_path / "session.json"
    path.write_text(json.dumps(_session(slice_index=[0, 2], active=[True, True, False, True])))
    record = read_session(path)
    assert record["active"].tolist() == [True, True, False, True]


@pytest.mark.parametrize(
    "arrays",
    [
        {"images": np.array(1), "landmarks": np.array(1)},  # 0-d: len() TypeError
        {"images": np.zeros((2, 8, 8)), "landmarks": np.array(1)},
        {"images": np.zeros((2, 8, 8)), "landmarks": np.zeros((2, 3, 2)), "names": np.array(1)},
        {"images": np.zeros((2, 8, 8)), "landmarks": np.zeros((2, 3, 2)), "names": np.array(["a"])},
        {"images": np.zeros((2, 8, 8)), "landmarks": np.zeros((2, 3, 2), complex)},
    ],
)
def test_landmark_set_raises_only_value_error(tmp_path, arrays):
    path = tmp_path / "set.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="landmark"):
        load_landmark_set(path)


def test_pf_pair_csv_raises_only_value_error(tmp_path):
    import imageio.v3 as iio

    iio.imwrite(tmp_path / "a.png", np.zeros((8, 8), np.uint8))
    (tmp_path / "bad.png").write_bytes(b"\x89PNG not really")
    header = "imageA,imageB,XA,YA,XB,YB\n"
    bodies = {
        "huge.csv": header + "a.png,a.png,1,1,1," + "1" * 200_000 + "\n",  # csv.Error
        "image.csv": header + "bad.png,a.png,1,1,1,1\n",  # imageio's own error types
    }
    for name, text in bodies.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=name):
            read_pf_pairs(tmp_path / name)
    (tmp_path / "latin.csv").write_bytes(header.encode() + b"\xff,a.png,1,1,1,1\n")
    with pytest.raises(ValueError, match="latin.csv"):
        read_pf_pairs(tmp_path / "latin.csv")


def test_bigwarp_csv_with_overflowing_numbers_is_a_value_error(tmp_path):
    path = tmp_path / "landmarks.csv"
    path.write_text('"Pt-0","true","1e400","0","0","0"\n')
    with pytest.raises(ValueError, match="finite"):
        read_bigwarp_csv(path)


# --------------------------------------------------------------------------- 18: duplicates
def test_a_far_landmark_is_named_rather_than_calling_close_ones_duplicates():
    src = np.array([[0.0, 0.0], [80.0, 0.0], [0.0, 80.0], [1e308, 0.0]])
    with pytest.raises(ValueError) as caught:
        T.fit_tps(src, src + 1.0)
    message = str(caught.value)
    assert "same position" not in message
    assert "3 is at" in message and "px from the origin" in message
    # the same for the affine fits and for a transform read from a file
    with pytest.raises(ValueError, match="3 is at"):
        T.fit_affine(src, src)
    with pytest.raises(ValueError, match="is at"):
        T.transform_from_dict(
            {"type": "tps", "output_points": src.tolist(), "content_points": SQUARE}
        )


def test_close_but_distinct_landmarks_are_reported_with_their_distance():
    src = np.array([[0.0, 0.0], [0.0, 5e-7], [0.0, 100.0], [100.0, 0.0]])
    with pytest.raises(ValueError, match=r"0 and 1 are 5e-07 px apart.*span 100 px"):
        T.fit_tps(src, src + 1.0)
    exact = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 100.0], [100.0, 0.0]])
    with pytest.raises(ValueError, match="0 and 1 are at the same position"):
        T.fit_tps(exact, exact + 1.0)
