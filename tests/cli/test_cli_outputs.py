"""Every CLI command that writes files: outputs are checked before any work, never replaced
without --overwrite, and written atomically (nothing partial left behind)."""

import imageio.v3 as iio
import numpy as np
import pytest

from napari_geostyle import cli
from napari_geostyle.core import media, texture
from napari_geostyle.core.landmarks import write_bigwarp_csv

CONTENT = np.array([[10.0, 10.0], [10.0, 50.0], [50.0, 12.0], [52.0, 54.0], [30.0, 30.0]])


@pytest.fixture(autouse=True)
def _tiny_pyramid(monkeypatch):
    monkeypatch.setattr(texture, "MIN_LEVEL_SIDE", 32)


@pytest.fixture
def inputs(tmp_path, content_image):
    image = tmp_path / "content.png"
    iio.imwrite(image, content_image)
    landmarks = tmp_path / "landmarks.csv"
    write_bigwarp_csv(landmarks, CONTENT, CONTENT + 1.5)
    return image, landmarks


def _leftovers(folder):
    """Temporary files of atomic writes (``media.write_atomic``, the output checks)."""
    return sorted(p.name for p in folder.iterdir() if media.TEMP_MARK in p.name)


def _one_error_line(capsys, *fragments):
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def _transfer_argv(image, out, *extra):
    return ["transfer", str(image), "--texture", str(image), "-o", str(out), "--size", "40",
            "--levels", "1", "--iterations", "1", "--backbone", "random", "--device", "cpu",
            *extra]  # fmt: skip


@pytest.mark.parametrize(
    "bad, message",
    [
        ("missing_folder/out.png", "does not exist"),
        ("out.unknownext", "cannot write"),
        ("a_folder", "is a folder"),
    ],
)
def test_transfer_checks_outputs_before_computing(
    tmp_path, inputs, monkeypatch, capsys, bad, message
):
    image, _ = inputs
    (tmp_path / "a_folder").mkdir()
    started = []
    monkeypatch.setattr(texture, "_solve", lambda plan: started.append(plan) or iter(()))
    assert cli.main(_transfer_argv(image, tmp_path / bad)) == 2
    _one_error_line(capsys, message)
    # --warped-output is checked too, before anything runs
    assert (
        cli.main(
            _transfer_argv(
                image,
                tmp_path / "ok.png",
                "--geometry",
                str(image),
                "--warped-output",
                str(tmp_path / bad),
            )
        )
        == 2
    )
    _one_error_line(capsys, message)
    assert started == [] and _leftovers(tmp_path) == []


def test_transfer_refuses_an_existing_output_without_overwrite(tmp_path, inputs, capsys):
    image, _ = inputs
    out = tmp_path / "out.png"
    out.write_bytes(b"precious")
    assert cli.main(_transfer_argv(image, out)) == 2
    _one_error_line(capsys, "exists", "--overwrite")
    assert out.read_bytes() == b"precious"
    assert cli.main(_transfer_argv(image, out, "--overwrite")) == 0
    assert iio.imread(out).shape[:2] == (40, 40)
    assert _leftovers(tmp_path) == []


def test_warp_refuses_existing_and_bad_outputs_before_reading(tmp_path, inputs, capsys):
    image, landmarks = inputs
    base = ["warp", str(image), "--landmarks", str(landmarks)]
    out = tmp_path / "warped.png"
    assert cli.main([*base, "-o", str(out)]) == 0
    capsys.readouterr()
    before = out.read_bytes()
    assert cli.main([*base, "-o", str(out), "--regularization", "3"]) == 2
    _one_error_line(capsys, "exists")
    assert out.read_bytes() == before
    # the output is checked first: a bad output path is reported even with bad landmarks
    assert (
        cli.main(
            [
                "warp",
                str(image),
                "--landmarks",
                str(tmp_path / "none.csv"),
                "-o",
                str(tmp_path / "x.nope"),
            ]
        )
        == 2
    )
    _one_error_line(capsys, "x.nope")


@pytest.mark.parametrize("where", ["encoding", "moving into place"])
def test_interrupted_write_keeps_the_old_file_and_leaves_nothing(
    tmp_path, inputs, monkeypatch, capsys, where
):
    image, landmarks = inputs
    out = tmp_path / "warped.png"
    out.write_bytes(b"previous result")
    if where == "encoding":
        real_write = iio.imwrite

        def interrupted(path, array, **kwargs):
            real_write(path, array[: len(array) // 2], **kwargs)  # half an image...
            raise KeyboardInterrupt  # ...then Ctrl-C

        monkeypatch.setattr(iio, "imwrite", interrupted)
    else:  # the temporary file is written in full, then Ctrl-C before os.replace

        def interrupted(source, target):
            raise KeyboardInterrupt

        monkeypatch.setattr(media.os, "replace", interrupted)
    code = cli.main(["warp", str(image), "--landmarks", str(landmarks), "-o", str(out),
                     "--overwrite"])  # fmt: skip
    assert code == 130
    assert out.read_bytes() == b"previous result"
    assert _leftovers(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == [
        "content.png",
        "landmarks.csv",
        "warped.png",
    ]


def test_write_image_failure_is_one_line_and_leaves_nothing(tmp_path, capsys):
    out = tmp_path / "o.jpg"
    with pytest.raises(cli.CLIError, match="cannot write"):
        cli.write_image(out, np.zeros((4, 4, 5), np.uint8))  # 5 channels: no JPEG
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_train_geometry_checks_out_and_figure_and_resume_reuses_out(tmp_path, capsys):
    import skimage

    folder = tmp_path / "images"
    folder.mkdir()
    iio.imwrite(folder / "chelsea.png", skimage.data.chelsea()[::2, ::2])
    out = tmp_path / "net.pt"
    argv = [
        "train-geometry",
        "--images",
        str(folder),
        "--model",
        "affine",
        "--steps",
        "1",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--val-count",
        "1",
    ]
    assert (
        cli.main([*argv[:-4], "--out", str(tmp_path / "nowhere" / "n.pt"), "--val-count", "1"]) == 2
    )
    _one_error_line(capsys, "does not exist")
    assert cli.main(argv) == 0
    first = out.read_bytes()
    capsys.readouterr()
    assert cli.main(argv) == 2  # a second fresh run would destroy the first
    _one_error_line(capsys, "exists", "--overwrite")
    assert out.read_bytes() == first
    assert cli.main([*argv, "--resume", "--steps", "2"]) == 0
    from napari_geostyle.core import geonet

    assert geonet.read_checkpoint(out)["extra"]["step"] == 2
    assert _leftovers(tmp_path) == []


def test_demo_screenshot_is_checked_before_napari_starts(tmp_path, capsys):
    shot = tmp_path / "shot.png"
    shot.write_bytes(b"old")
    assert cli.main(["demo", "--screenshot", str(shot)]) == 2
    _one_error_line(capsys, "exists", "--overwrite")
    assert cli.main(["demo", "--screenshot", str(tmp_path / "none" / "s.png")]) == 2
    _one_error_line(capsys, "does not exist")


# --------------------------------------------------------------------------- through core.media
def test_media_read_image_is_the_clis_reader(tmp_path, content_image):
    path = tmp_path / "c.png"
    iio.imwrite(path, content_image)
    assert np.array_equal(media.read_image(path), iio.imread(path))
    assert np.array_equal(cli.read_image(path), iio.imread(path))
    with pytest.raises(ValueError, match="no image file at"):
        media.read_image(tmp_path / "none.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read .*junk.png as an image"):
        media.read_image(tmp_path / "junk.png")


def test_media_check_image_name_refuses_what_cannot_be_encoded(tmp_path):
    for name in ("o.png", "o.TIF", "o.jpg"):
        media.check_image_name(tmp_path / name)  # nothing written
    for name, message in (("o", "no extension is not an image format"),
                          ("o.unknownext", ".unknownext is not an image format")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            media.check_image_name(tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_media_check_writable_leaves_nothing_and_raises_where_no_file_can_be_made(tmp_path):
    media.check_writable(tmp_path / "out.png")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OSError):
        media.check_writable(tmp_path / "missing" / "out.png")


def test_write_image_converts_as_media_encodes(tmp_path):
    """Floats become uint8 and uint16 stays 16-bit in a PNG: the batch's converter."""
    ramp = np.linspace(0.0, 1.0, 48).reshape(6, 8)
    cli.write_image(tmp_path / "f.png", ramp)
    assert (tmp_path / "f.png").read_bytes() == media.encode_image(ramp, "f.png")
    deep = (ramp * 65535).astype(np.uint16)
    cli.write_image(tmp_path / "d.png", deep)
    assert np.array_equal(iio.imread(tmp_path / "d.png"), deep)
    cli.write_image(tmp_path / "d.jpg", deep)
    assert iio.imread(tmp_path / "d.jpg").dtype == np.uint8
    assert _leftovers(tmp_path) == []
