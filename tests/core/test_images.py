import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_geostyle.core import images


@pytest.mark.parametrize(
    "array, dtype",
    [
        (np.array([[0, 255]], np.uint8), np.uint8),
        (np.array([[0, 65535]], np.uint16), np.uint16),
        (np.array([[0.0, 1.0]], np.float32), np.float32),
    ],
)
def test_to_float_reads_full_range_as_zero_to_one(array, dtype):
    as_float = images.to_float(array)
    assert as_float.dtype == np.float32
    np.testing.assert_allclose(as_float, [[0.0, 1.0]])
    np.testing.assert_array_equal(images.from_float(as_float, dtype), array)


def test_rgb_float_replicates_gray_and_drops_alpha():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    rgb = images.to_rgb_float(gray)
    assert rgb.shape == (3, 4, 3)
    np.testing.assert_allclose(rgb[..., 0], rgb[..., 2])
    rgba = np.zeros((3, 4, 4), np.uint8)
    rgba[..., 3] = 255
    assert images.to_rgb_float(rgba).shape == (3, 4, 3)
    assert images.to_rgb_float(rgba).max() == 0.0


def test_tensor_round_trip_keeps_channels():
    image = np.random.default_rng(0).random((5, 7, 4)).astype(np.float32)
    tensor = images.image_to_tensor(image)
    assert tuple(tensor.shape) == (1, 4, 5, 7)
    np.testing.assert_allclose(images.tensor_to_image(tensor), image)
    gray = images.tensor_to_image(images.image_to_tensor(image[..., 0]))
    assert gray.shape == (5, 7)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((0, 5)), "empty"),
        (np.zeros((4, 4, 2)), "channels"),
        (np.zeros((2, 3, 4, 5)), "2D image"),
        (np.array([[np.nan, 0.0]]), "NaN"),
        (np.array([["a"]]), "dtype"),
        (None, "missing"),
    ],
)
def test_bad_images_raise_actionable_value_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        images.validate_image(bad)


def test_too_small_image_names_the_minimum():
    with pytest.raises(ValueError, match="32 x 32"):
        images.validate_image(np.zeros((8, 40)), "content", min_size=32)


def test_points_validation():
    assert images.validate_points([1, 2]).shape == (1, 2)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        images.validate_points(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        images.validate_points([[0, np.inf]])
    with pytest.raises(ValueError, match="at least 3"):
        images.validate_points(np.zeros((2, 2)), min_count=3)


def test_normalized_coordinates_follow_grid_sample_align_corners_false():
    import torch
    import torch.nn.functional as F

    image = torch.arange(20, dtype=torch.float64).reshape(1, 1, 4, 5)
    rc = np.array([[1.0, 3.0], [0.0, 0.0], [3.0, 4.0], [2.5, 1.5]])
    xy = images.pixel_to_normalized(rc, (4, 5))
    grid = torch.from_numpy(xy).reshape(1, 1, -1, 2)
    sampled = F.grid_sample(image, grid, align_corners=images.ALIGN_CORNERS).ravel().numpy()
    expected = rc[:, 0] * 5 + rc[:, 1]  # the image is linear in (row, col)
    np.testing.assert_allclose(sampled, expected)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-50, 500), st.floats(-50, 500)), min_size=1, max_size=10),
    st.integers(1, 400),
    st.integers(1, 400),
)
def test_normalized_round_trip(points, height, width):
    rc = np.array(points)
    back = images.normalized_to_pixel(
        images.pixel_to_normalized(rc, (height, width)), (height, width)
    )
    np.testing.assert_allclose(back, rc, atol=1e-9)
    np.testing.assert_array_equal(images.xy_to_rc(images.rc_to_xy(rc)), rc)


def test_regular_grid_spans_the_image_edges():
    grid = images.regular_grid_points((10, 20), 3)
    assert grid.shape == (9, 2)
    np.testing.assert_allclose(grid[0], [-0.5, -0.5])
    np.testing.assert_allclose(grid[-1], [9.5, 19.5])
    np.testing.assert_allclose(grid[1], [-0.5, 9.5])  # row-major: x varies fastest


def test_fit_longest_side_keeps_aspect():
    assert images.fit_longest_side((300, 600), 256) == (128, 256)
    assert images.fit_longest_side((300, 600), None) == (300, 600)


def test_floats_outside_zero_to_one_are_rescaled_with_a_warning():
    # a float image in 0..255 read as 0..1 would clip to a blank white image
    gray = np.linspace(0.0, 255.0, 12, dtype=np.float32).reshape(3, 4)
    with pytest.warns(UserWarning, match="dividing by 255"):
        rgb = images.to_rgb_float(gray, "content")
    np.testing.assert_allclose(rgb[..., 0], gray / 255.0, atol=1e-6)
    with pytest.warns(UserWarning, match="stretching its min..max"):
        rgb = images.to_rgb_float(gray - 1000.0)
    assert rgb.min() == 0.0 and rgb.max() == pytest.approx(1.0)
    # rounding just past 0..1 is clipped without a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rgb = images.to_rgb_float(np.array([[-1e-4, 1.0 + 1e-4]], np.float32))
    assert rgb.min() == 0.0 and rgb.max() == 1.0


def test_tensor_that_requires_grad_is_a_clear_value_error():
    import torch

    from napari_geostyle.core import images

    with pytest.raises(ValueError, match="requires grad.*detach"):
        images.validate_image(torch.rand(8, 8, 3, requires_grad=True))
    array = images.validate_image(torch.rand(8, 8, 3))
    assert isinstance(array, np.ndarray) and array.shape == (8, 8, 3)


def test_empty_point_lists_are_no_points():
    from napari_geostyle.core import images

    assert images.validate_points([]).shape == (0, 2)
    assert images.validate_points(np.empty((0, 2))).shape == (0, 2)
