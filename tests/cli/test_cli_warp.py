"""``napari-geostyle warp``: landmarks from a BigWarp CSV warp an image file."""

import imageio.v3 as iio
import numpy as np
import pytest

from napari_geostyle.cli import main
from napari_geostyle.core.landmarks import write_bigwarp_csv
from napari_geostyle.core.transforms import fit_affine, fit_tps
from napari_geostyle.core.warp import warp_image

CONTENT = np.array([[10.0, 10.0], [10.0, 50.0], [50.0, 12.0], [52.0, 54.0], [30.0, 30.0]])
TARGET = CONTENT + np.array([[1.0, -2.0], [0.5, 1.5], [-1.0, 0.0], [2.0, 1.0], [1.5, 1.5]])


@pytest.fixture
def files(tmp_path, content_image):
    image_path = tmp_path / "content.png"
    iio.imwrite(image_path, content_image)
    landmarks_path = tmp_path / "landmarks.csv"
    write_bigwarp_csv(landmarks_path, CONTENT, TARGET)
    return image_path, landmarks_path, tmp_path / "warped.png"


@pytest.mark.parametrize("affine", [False, True])
def test_warp_command_writes_the_warped_image(files, content_image, affine):
    image_path, landmarks_path, out_path = files
    argv = [
        "warp",
        str(image_path),
        "--landmarks",
        str(landmarks_path),
        "-o",
        str(out_path),
        "--device",
        "cpu",
    ]
    assert main(argv + (["--affine"] if affine else [])) == 0
    written = iio.imread(out_path)
    transform = fit_affine(CONTENT, TARGET) if affine else fit_tps(CONTENT, TARGET)
    np.testing.assert_array_equal(written, warp_image(content_image, transform))
    assert not np.array_equal(written, content_image)


def test_regularization_changes_the_result(files):
    image_path, landmarks_path, out_path = files
    base = ["warp", str(image_path), "--landmarks", str(landmarks_path), "-o", str(out_path)]
    assert main(base) == 0
    exact = iio.imread(out_path)
    assert main(base + ["--regularization", "5"]) == 2  # the output exists
    np.testing.assert_array_equal(iio.imread(out_path), exact)
    assert main(base + ["--regularization", "5", "--overwrite"]) == 0
    assert not np.array_equal(iio.imread(out_path), exact)


def test_user_mistakes_give_one_line_and_exit_2(files, tmp_path, capsys):
    image_path, landmarks_path, out_path = files
    colinear = tmp_path / "colinear.csv"
    write_bigwarp_csv(colinear, [[0, 0], [1, 1], [2, 2]], [[0, 1], [1, 2], [2, 3]])
    cases = [
        (
            [
                "warp",
                str(tmp_path / "none.png"),
                "--landmarks",
                str(landmarks_path),
                "-o",
                str(out_path),
            ],
            "no image file",
        ),
        (
            [
                "warp",
                str(image_path),
                "--landmarks",
                str(tmp_path / "none.csv"),
                "-o",
                str(out_path),
            ],
            "no landmark file",
        ),
        (["warp", str(image_path), "--landmarks", str(colinear), "-o", str(out_path)], "one line"),
        (
            [
                "warp",
                str(image_path),
                "--landmarks",
                str(landmarks_path),
                "-o",
                str(out_path),
                "--device",
                "tpu",
            ],
            "device",
        ),
        (
            [
                "warp",
                str(image_path),
                "--landmarks",
                str(landmarks_path),
                "-o",
                str(tmp_path / "no" / "o.png"),
            ],
            "does not exist",
        ),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("error:") and message in error and "\n" not in error


def test_usage_mistakes_and_unreadable_files_are_one_line_exit_2(files, tmp_path, capsys):
    image_path, landmarks_path, out_path = files
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not an image")
    base = ["warp", str(image_path), "--landmarks", str(landmarks_path), "-o", str(out_path)]
    cases = [
        (base + ["--regularization", "abc"], "invalid float value"),
        (base + ["--padding", "mirror"], "invalid choice"),
        (["warp", str(image_path)], "required"),
        (["no-such-command"], "invalid choice"),
        (["warp", str(not_an_image), *base[2:]], "cannot read"),
    ]
    for argv, message in cases:
        assert main(argv) == 2  # a status, not a SystemExit from argparse
        error = capsys.readouterr().err.strip()
        assert error.startswith("error:") and message in error and "\n" not in error
    for command in ("warp", "transfer", "weights", "train-geometry", "eval-geometry", "demo"):
        assert main([command, "--help"]) == 0
        assert "usage:" in capsys.readouterr().out
