"""Cross-instance evaluation: PCK on landmark pairs, the protocol, the Proposal Flow reader."""

import json

import imageio.v3 as iio
import numpy as np
import pytest

from napari_geostyle.cli import main
from napari_geostyle.core import landmark_eval as le


def _textured(size=64, seed=0):
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:size, 0:size]
    image = 0.4 + 0.3 * np.sin(rows / 5.0) * np.cos(cols / 7.0) + 0.2 * rng.random((size, size))
    return (np.clip(np.stack([image, image.T, 1 - image], -1), 0, 1) * 255).astype(np.uint8)


def _landmarks(count=12, size=64, seed=1):
    return np.random.default_rng(seed).uniform(12, size - 12, (count, 2))


def test_pck_counts_points_within_alpha_of_the_style_box():
    style = np.array([[0.0, 0.0], [0.0, 100.0], [50.0, 50.0], [100.0, 0.0]])  # box side 100
    predicted = style + np.array([[0.0, 9.9], [10.1, 0.0], [5.0, 5.0], [0.0, 0.0]])
    assert le.pck_threshold(style) == 100.0
    assert le.correct_keypoints(predicted, style, 0.1).tolist() == [True, False, True, True]
    assert le.correct_keypoints(predicted, style, 0.05).tolist() == [False, False, False, True]


def test_a_pure_similarity_pair_gives_pck_1_with_the_oracle_and_identity_matches_by_hand():
    style = _textured()
    style_points = _landmarks()
    # the content is the style moved by a known similarity: rotation 10 deg, scale 1.1, shift
    matrix = le._similarity_matrix(style.shape, 10.0, 1.1, (3.0, -2.0))
    content, content_points = le._moved(style, style_points, matrix)
    pair = le.LandmarkPair(content, style, content_points, style_points, "similarity")
    report = le.evaluate_landmark_pairs([pair], methods=(), alphas=(0.05, 0.1))
    assert report.scores["oracle"].pck == {0.05: 1.0, 0.1: 1.0}
    # identity: same-size images, so the content's points are compared where they are
    distance = np.linalg.norm(content_points - style_points, axis=1)
    unit = (style_points.max(0) - style_points.min(0)).max()
    for alpha in (0.05, 0.1):
        assert report.scores["identity"].pck[alpha] == pytest.approx(
            (distance <= alpha * unit).mean()
        )


def test_identity_of_different_sizes_compares_in_the_style_frame():
    content, style = np.zeros((40, 80, 3)), np.zeros((80, 40, 3))
    points = np.array([[10.0, 20.0], [30.0, 60.0], [20.0, 40.0]])
    # the same normalised place in a style twice as tall and half as wide
    expected = np.stack([points[:, 0] * 2 + 0.5, points[:, 1] / 2 - 0.25], 1)
    assert np.allclose(le.to_style_frame(points, content.shape, style.shape), expected)


def test_perturbation_moves_content_points_with_the_content():
    image = _textured(seed=3)
    points = _landmarks(seed=4)
    pair = le.LandmarkPair(image, image, points, points)
    (moved,) = le.perturb_pairs([pair], le.Perturbation(zoom=1.4), seed=5)
    # the style is zoomed 1.4x about its centre: its points move away from the centre
    centre = (np.array(image.shape[:2]) - 1) / 2
    assert np.allclose(moved.style_points - centre, 1.4 * (points - centre))
    # the content moved differently (the random similarity), and its points went with it:
    # the oracle affine still maps them exactly
    assert not np.allclose(moved.content_points, moved.style_points, atol=1.0)
    report = le.evaluate_landmark_pairs([moved], methods=(), alphas=(0.01,))
    assert report.scores["oracle"].pck[0.01] == 1.0


def test_pairs_are_ordered_pairs_of_different_items():
    items = [(np.zeros((8, 8)), np.zeros((3, 2)) + i, f"item{i}") for i in range(4)]
    pairs = le.pairs_from_set(items)
    assert len(pairs) == 12
    assert all(p.name.split(" -> ")[0] != p.name.split(" -> ")[1] for p in pairs)
    assert len(le.pairs_from_set(items, count=5, seed=1)) == 5
    assert [p.name for p in le.pairs_from_set(items, 5, 1)] == [
        p.name for p in le.pairs_from_set(items, 5, 1)
    ]


def _write_pf_dataset(folder):
    """A tiny Proposal Flow layout: images and a pair CSV with 1-based XA;YA;XB;YB."""
    (folder / "images").mkdir()
    iio.imwrite(folder / "images" / "a.png", _textured(48, 1))
    iio.imwrite(folder / "images" / "b.png", _textured(40, 2)[:, :36])
    rows = [
        "imageA,imageB,XA,YA,XB,YB",
        'images/a.png,images/b.png,"11;21;31","6;16;26","2;12;-1","3;13;23"',
        'images/b.png,images/a.png,"1;2;3","4;5;6","7;8;9","10;11;12"',
    ]
    csv_path = folder / "test_pairs_pf.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    return csv_path


def test_proposal_flow_csv_reader(tmp_path):
    pairs = le.read_pf_pairs(_write_pf_dataset(tmp_path))
    assert len(pairs) == 2
    first = pairs[0]
    assert first.content.shape == (48, 48, 3) and first.style.shape == (40, 36, 3)
    # 1-based (x, y) -> 0-based (row, col); the keypoint with a negative coordinate is dropped
    assert np.allclose(first.content_points, [[5, 10], [15, 20]])
    assert np.allclose(first.style_points, [[2, 1], [12, 11]])
    assert first.name == "images/a.png -> images/b.png"


def test_proposal_flow_pascal_columns_and_errors(tmp_path):
    iio.imwrite(tmp_path / "a.png", _textured(32))
    good = tmp_path / "pascal.csv"
    good.write_text(
        "source_image,target_image,class,XA,YA,XB,YB\na.png,a.png,1,1;5;9,1;9;5,1;5;9,1;9;5\n"
    )
    (pair,) = le.read_pf_pairs(good, one_based=False)
    assert np.allclose(pair.content_points, [[1, 1], [9, 5], [5, 9]])
    bad = tmp_path / "bad.csv"
    bad.write_text("left,right\nx,y\n")
    with pytest.raises(ValueError, match="XA,YA,XB,YB"):
        le.read_pf_pairs(bad)
    missing = tmp_path / "missing.csv"
    missing.write_text("imageA,imageB,XA,YA,XB,YB\nnope.png,a.png,1,1,1,1\n")
    with pytest.raises(FileNotFoundError, match="line 2"):
        le.read_pf_pairs(missing)
    uneven = tmp_path / "uneven.csv"
    uneven.write_text("imageA,imageB,XA,YA,XB,YB\na.png,a.png,1;2,1,1,1\n")
    with pytest.raises(ValueError, match="line 2"):
        le.read_pf_pairs(uneven)


def _write_landmark_set(path, count=3):
    images = np.stack([_textured(64, seed) for seed in range(count)])
    landmarks = np.stack([_landmarks(8, 64, seed) for seed in range(count)]).astype(np.float32)
    np.savez(
        path, images=images, landmarks=landmarks, names=np.array([f"f{i}" for i in range(count)])
    )
    return path


@pytest.mark.slow
def test_cli_eval_geometry_on_a_landmark_set(tmp_path, capsys):
    source = _write_landmark_set(tmp_path / "set.npz")
    report, figure = tmp_path / "report.json", tmp_path / "pairs.png"
    code = main(
        [
            "eval-geometry",
            "--pairs",
            str(source),
            "--model",
            "affine",
            "--method",
            "network",
            "--count",
            "2",
            "--device",
            "cpu",
            "--json",
            str(report),
            "--figure",
            str(figure),
            "--figure-pairs",
            "2",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "| identity |" in out and "| network |" in out and "| oracle |" in out
    data = json.loads(report.read_text())
    assert data["pairs"] == 2 and data["protocol"] == "perturbed"
    assert set(data["methods"]) == {"identity", "network", "oracle"}
    assert 0.0 <= data["methods"]["network"]["pck@0.1"] <= 1.0
    assert iio.imread(figure).shape[1] > 3 * 100  # content | style | network, side by side
    # outputs are never replaced silently
    assert (
        main(["eval-geometry", "--pairs", str(source), "--count", "1", "--json", str(report)]) == 2
    )
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_eval_geometry_reads_proposal_flow_as_is(tmp_path, capsys):
    csv_path = _write_pf_dataset(tmp_path)
    assert (
        main(
            [
                "eval-geometry",
                "--pairs",
                str(csv_path),
                "--model",
                "affine",
                "--method",
                "network",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "2 pairs" in out and "protocol as-is" in out


def test_cli_eval_geometry_needs_one_source(capsys):
    assert main(["eval-geometry"]) == 2
    assert "--pairs" in capsys.readouterr().err
