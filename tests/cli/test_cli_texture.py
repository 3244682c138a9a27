"""``napari-geostyle transfer`` and ``napari-geostyle weights``."""

import imageio.v3 as iio
import numpy as np
import pytest

from napari_geostyle import cli
from napari_geostyle.core import texture


@pytest.fixture(autouse=True)
def _tiny_pyramid(monkeypatch):
    monkeypatch.setattr(texture, "MIN_LEVEL_SIDE", 32)


def _write(path, seed):
    rng = np.random.default_rng(seed)
    iio.imwrite(path, (rng.random((40, 56, 3)) * 255).astype(np.uint8))
    return str(path)


def test_transfer_writes_the_result_with_a_progress_bar(tmp_path, capsys):
    content, style = _write(tmp_path / "c.png", 0), _write(tmp_path / "s.png", 1)
    out = tmp_path / "out.png"
    code = cli.main(["transfer", content, "--texture", style, style, "-o", str(out),
                     "--size", "64", "--iterations", "3", "2", "--levels", "2",
                     "--backbone", "random", "--device", "cpu", "--preserve-color"])  # fmt: skip
    assert code == 0
    image = iio.imread(out)
    assert image.shape == (46, 64, 3) and image.dtype == np.uint8
    err = capsys.readouterr().err
    assert "texture" in err and "5/5" in err and "wrote" in err


def test_transfer_bad_input_is_one_error_line(tmp_path, capsys):
    content = _write(tmp_path / "c.png", 0)
    code = cli.main(["transfer", content, "--texture", content, "-o", str(tmp_path / "o.png"),
                     "--backbone", "nonsense", "--device", "cpu"])  # fmt: skip
    assert code == 2
    assert "error: unknown backbone" in capsys.readouterr().err
    code = cli.main(["transfer", str(tmp_path / "none.png"), "--texture", content,
                     "-o", str(tmp_path / "o.png")])  # fmt: skip
    assert code == 2


def test_weights_lists_where_it_looks(capsys):
    assert cli.main(["weights"]) == 0
    out = capsys.readouterr().out
    assert "torch hub cache" in out and "vgg19-dcbb9e9d.pth" in out
    assert "not present" in out and "GEOSTYLE_VGG19_WEIGHTS" in out
    assert cli.main(["weights", "--path"]) == 1
