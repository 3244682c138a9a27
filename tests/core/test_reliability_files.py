"""Bad and hostile files: every loader answers ValueError, every export is atomic, names and
videos that cannot be handled fail alone (issue 24, section 2)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from types import SimpleNamespace

import numpy as np
import pytest

from napari_geostyle.core import media
from napari_geostyle.core import transforms as T
from napari_geostyle.core.landmark_eval import load_landmark_set, read_pf_pairs
from napari_geostyle.core.landmarks import read_bigwarp_csv, write_bigwarp_csv
from napari_geostyle.core.session import SESSION_FORMAT, read_session, write_session

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


# --------------------------------------------------------------------------- 4: atomic writes
@contextlib.contextmanager
def _disk_full_after(limit: int):
    """Files cannot grow past ``limit`` bytes (RLIMIT_FSIZE): a write past it fails with EFBIG,
    as on a full disk; files already larger stay as they are."""
    resource = pytest.importorskip("resource")
    if not hasattr(signal, "SIGXFSZ"):
        pytest.skip("needs POSIX file size limits")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def _pairs(count=20):
    rng = np.random.default_rng(3)
    content = rng.uniform(0, 500, (count, 2))
    return content, content + rng.normal(0, 4, (count, 2))


def _only_file(folder, name):
    assert sorted(p.name for p in folder.iterdir()) == [name]  # no temporary file left either


def test_a_full_disk_leaves_the_previous_bigwarp_csv_intact(tmp_path):
    path = tmp_path / "landmarks.csv"
    write_bigwarp_csv(path, *_pairs(4))
    before = path.read_bytes()
    full = _disk_full_after(len(before) // 2)
    with full, pytest.raises(ValueError, match="cannot write the landmark file"):
        write_bigwarp_csv(path, *_pairs(20))
    assert path.read_bytes() == before
    _only_file(tmp_path, "landmarks.csv")


def test_a_full_disk_leaves_the_previous_session_intact_with_a_clear_error(tmp_path):
    path = tmp_path / "session.json"
    session = {k: v for k, v in _session().items() if k not in ("format", "version")}
    write_session(path, session)
    before = path.read_bytes()
    big = {**session, "options": {"note": "x" * 4000}}
    full = _disk_full_after(len(before))
    with full, pytest.raises(ValueError, match="cannot write the session file .*session.json"):
        write_session(path, big)
    assert path.read_bytes() == before
    _only_file(tmp_path, "session.json")
    assert read_session(path)["inputs"] == {"content": "photo"}


def test_write_session_errors_are_clear_value_errors(tmp_path):
    session = {k: v for k, v in _session().items() if k not in ("format", "version")}
    with pytest.raises(ValueError, match="does not exist"):
        write_session(tmp_path / "absent" / "s.json", session)
    with pytest.raises(ValueError, match="is a folder"):
        write_session(tmp_path, session)
    with pytest.raises(ValueError, match="cannot save the session"):
        write_session(tmp_path / "s.json", {**session, "options": {"x": object()}})
    with pytest.raises(ValueError, match="cannot save the session"):
        write_session(tmp_path / "s.json", {**session, "strength": float("nan")})
    assert not list(tmp_path.iterdir())


def test_a_full_disk_leaves_previous_transform_json_and_npy_exports_intact(tmp_path):
    from napari_geostyle._napari.live_warp import LiveWarp

    transform = T.fit_tps(*_pairs(20))
    live = SimpleNamespace(
        transform=T.AffineTransform(np.eye(3)),
        displacement_field=lambda: np.zeros((4, 4, 2), np.float32),
    )
    json_path, npy_path = tmp_path / "transform.json", tmp_path / "field.npy"
    assert LiveWarp.export_transform_json(live, json_path) == json_path
    assert LiveWarp.export_displacement_npy(live, npy_path) == npy_path
    before = {p: p.read_bytes() for p in (json_path, npy_path)}
    live.transform = transform
    live.displacement_field = lambda: np.ones((64, 64, 2), np.float32)
    with _disk_full_after(max(len(b) for b in before.values()) + 10):
        with pytest.raises(ValueError, match="cannot write the transform file"):
            LiveWarp.export_transform_json(live, json_path)
        with pytest.raises(ValueError, match="cannot write the displacement field"):
            LiveWarp.export_displacement_npy(live, npy_path)
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["field.npy", "transform.json"]
    LiveWarp.export_transform_json(live, json_path)  # and with room, the new ones
    assert T.transform_from_dict(json.loads(json_path.read_text())).to_dict() == transform.to_dict()
    # np.save's convention: a name without .npy gets it
    assert LiveWarp.export_displacement_npy(live, tmp_path / "bare") == tmp_path / "bare.npy"
    assert np.load(tmp_path / "bare.npy").shape == (64, 64, 2)


def test_the_one_atomic_writer_fsyncs_and_cleans_up(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    target = media.write_atomic(tmp_path / "a.bin", b"abc")
    assert target.read_bytes() == b"abc" and synced
    synced.clear()
    media.write_atomic(target, lambda temp: temp.write_bytes(b"xyz"))
    assert target.read_bytes() == b"xyz" and synced

    def broken(temp):
        temp.write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        media.write_atomic(target, broken)
    assert target.read_bytes() == b"xyz"
    _only_file(tmp_path, "a.bin")


def test_the_cli_writes_through_the_one_atomic_writer(tmp_path, monkeypatch):
    from napari_geostyle import cli

    calls = []
    real = media.write_atomic
    monkeypatch.setattr(media, "write_atomic", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    cli.write_text(tmp_path / "report.json", "{}")
    cli.write_image(tmp_path / "image.png", np.zeros((4, 4), np.uint8))
    assert calls == [tmp_path / "report.json", tmp_path / "image.png"]


# --------------------------------------------------------------------------- 4: truncated CSV
def test_a_truncated_bigwarp_csv_is_refused_never_read_with_a_cut_off_number(tmp_path):
    content, target = _pairs(3)
    path = tmp_path / "landmarks.csv"
    write_bigwarp_csv(path, content, target)
    text = path.read_text()
    rows = text.splitlines(keepends=True)
    for cut in range(len(rows[0]) + 1, len(text)):
        path.write_text(text[:cut])
        try:
            read_content, _ = read_bigwarp_csv(path)
        except ValueError:
            continue
        # read: only at a row boundary, and then exactly the complete rows
        count = len(read_content)
        assert text[:cut].rstrip("\n") == "".join(rows[:count]).rstrip("\n"), cut
        np.testing.assert_array_equal(read_content, content[:count])
    path.write_text(text[: len(text) - 3])  # '..."42.' : an unclosed quote at the end
    with pytest.raises(ValueError, match="line 3: the last row is cut off"):
        read_bigwarp_csv(path)


def test_an_unquoted_hand_made_csv_without_a_final_line_end_still_reads(tmp_path):
    path = tmp_path / "landmarks.csv"
    path.write_text("a,true,1,2,3,4\nb,true,5,6,7,8\nc,true,9,1,3,5")
    assert len(read_bigwarp_csv(path)[0]) == 3
    path.write_text(
        '"a","true","1","2","3","4"\n"b","true","5","6","7","8"\n"c","true","9","1","3","5"'
    )
    assert len(read_bigwarp_csv(path)[0]) == 3


def test_styles_csv_with_an_oversized_field_is_a_value_error(tmp_path):
    from napari_geostyle.core.style_table import read_styles_csv

    path = tmp_path / "styles.csv"
    path.write_text("input,geometry_style,texture_style\na.png," + "x" * 200_000 + ",\n")
    with pytest.raises(ValueError, match="cannot read the styles CSV"):
        read_styles_csv(path)
