"""Errors: a missing file is a FileNotFoundError everywhere (and still bad input, a ValueError),
and a wrapped library error keeps its cause."""

import json

import numpy as np
import pytest

from napari_geostyle.core import texture
from napari_geostyle.core.session import read_session


@pytest.mark.parametrize("given", ["no/such/weights.pth", "__missing__.pth"])
def test_a_missing_weights_file_is_a_file_not_found_error_and_bad_input(given, tmp_path):
    image = np.zeros((32, 32, 3), np.float32)
    for backbone in (given, tmp_path / given):
        with pytest.raises(FileNotFoundError, match="no VGG-19 weights file") as caught:
            texture.iter_texture_transfer(image, image, backbone=backbone)
        assert isinstance(caught.value, ValueError)  # what widgets and the CLI report to users


def test_a_session_that_is_not_json_keeps_the_parser_error_as_its_cause(tmp_path):
    path = tmp_path / "session.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a GeoStyle session") as caught:
        read_session(path)
    assert isinstance(caught.value.__cause__, json.JSONDecodeError)


def test_a_missing_session_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_session(tmp_path / "absent.json")


def test_a_non_numeric_option_keeps_the_conversion_error_as_its_cause():
    image = np.zeros((32, 32, 3), np.float32)
    with pytest.raises(ValueError, match="style_weight must be a number") as caught:
        texture.iter_texture_transfer(image, image, style_weight="heavy", backbone="random")
    assert isinstance(caught.value.__cause__, ValueError)
