"""Qt-free pieces of the live warp: displacement fields, deformation grids, stack warps, the
landmark form of a transform and the undo history."""

import numpy as np
import pytest

from napari_geostyle.core.fields import deformation_grid, displacement_field, warp_planes
from napari_geostyle.core.landmark_history import LandmarkHistory
from napari_geostyle.core.landmark_models import landmarks_of
from napari_geostyle.core.transforms import AffineTransform, ComposedTransform, fit_tps
from napari_geostyle.core.warp import warp_image

SHIFT = AffineTransform([[1.0, 0.0, 3.0], [0.0, 1.0, -2.0], [0.0, 0.0, 1.0]])  # content -> output


def _drain(generator):
    counts = []
    try:
        while True:
            counts.append(next(generator))
    except StopIteration as stop:
        return counts, stop.value


def test_displacement_field_of_a_shift_is_the_constant_inverse_shift():
    field = displacement_field(SHIFT, (10, 14))
    assert field.shape == (10, 14, 2) and field.dtype == np.float32
    # output pixel p samples content p - (3, -2)
    np.testing.assert_allclose(field[..., 0], -3.0, atol=1e-6)
    np.testing.assert_allclose(field[..., 1], 2.0, atol=1e-6)


def test_displacement_field_reproduces_the_warp_on_pixel_samples():
    image = np.random.default_rng(0).random((20, 24)).astype(np.float32)
    transform = AffineTransform([[1.0, 0.0, 2.0], [0.0, 1.0, 5.0], [0.0, 0.0, 1.0]])
    field = displacement_field(transform, image.shape)
    warped = warp_image(image, transform)
    rows, cols = np.mgrid[5:15, 8:18]
    source = np.stack([rows, cols], -1) + np.round(field[5:15, 8:18]).astype(int)
    np.testing.assert_allclose(warped[5:15, 8:18], image[source[..., 0], source[..., 1]], atol=1e-5)


def test_deformation_grid_carries_grid_lines_through_the_transform():
    paths = deformation_grid(SHIFT, (30, 40), lines=5, samples=7)
    assert len(paths) == 10 and all(path.shape == (7, 2) for path in paths)
    np.testing.assert_allclose(paths[0][:, 0], 0.0 + 3.0)  # first row line, moved down by 3
    np.testing.assert_allclose(paths[-1][:, 1], 39.0 - 2.0)  # last column line, moved left by 2


def test_warp_planes_warps_a_2d_image_and_every_plane_of_a_stack():
    stack = np.random.default_rng(1).random((2, 3, 12, 16)).astype(np.float32)
    counts, single = _drain(warp_planes(stack[0, 0], SHIFT))
    assert counts == [1]
    np.testing.assert_allclose(single, warp_image(stack[0, 0], SHIFT))
    planes = ((index, stack[index]) for index in np.ndindex(2, 3))
    counts, warped = _drain(warp_planes(None, SHIFT, planes=planes, lead_shape=(2, 3)))
    assert counts == [1, 2, 3, 4, 5, 6] and warped.shape == stack.shape
    np.testing.assert_allclose(warped[1, 2], warp_image(stack[1, 2], SHIFT))


def test_warp_planes_of_an_empty_stack_is_a_value_error():
    with pytest.raises(ValueError, match="no planes"):
        _drain(warp_planes(None, SHIFT, planes=iter(()), lead_shape=(0,)))


def test_landmarks_of_a_tps_are_its_own_points_and_of_an_affine_reproduce_it():
    src = np.array([[2.0, 3.0], [20.0, 4.0], [5.0, 25.0], [18.0, 22.0]])
    dst = src + [[1.0, 0.0], [0.0, 2.0], [-1.0, 1.0], [0.5, -0.5]]
    control, target = landmarks_of(fit_tps(src, dst), (30, 30))
    np.testing.assert_allclose(control, src)
    np.testing.assert_allclose(target, dst)
    control, target = landmarks_of(SHIFT, (30, 30))
    assert len(control) == 16  # a 4 x 4 output grid
    np.testing.assert_allclose(control, target - [3.0, -2.0])
    query = np.array([[7.0, 9.0], [25.0, 1.0]])
    np.testing.assert_allclose(
        fit_tps(control, target).map_points(query), SHIFT.map_points(query), atol=1e-6
    )


def test_landmarks_of_a_composition_use_its_last_tps_grid():
    src = np.array([[2.0, 3.0], [20.0, 4.0], [5.0, 25.0], [18.0, 22.0]])
    tps = fit_tps(src, src + 1.0)
    control, target = landmarks_of(ComposedTransform([SHIFT, tps]), (30, 30))
    np.testing.assert_allclose(target, tps.output_points)
    np.testing.assert_allclose(control, ComposedTransform([SHIFT, tps]).sample_points(target))


def test_landmark_history_undoes_redoes_and_drops_the_undone_branch():
    history = LandmarkHistory()
    assert history.current is None and not history.can_undo and history.undo() is None
    first = np.zeros((1, 2))
    history.push(first, first)
    first[:] = 5.0  # the history keeps a copy
    history.push(np.ones((2, 2)), np.ones((2, 2)))
    assert history.can_undo and not history.can_redo
    control, _ = history.undo()
    np.testing.assert_array_equal(control, np.zeros((1, 2)))
    assert history.undo() is None  # the first state is the floor
    assert len(history.redo()[0]) == 2
    history.undo()
    history.push(np.full((3, 2), 7.0), np.full((3, 2), 7.0))
    assert len(history) == 2 and not history.can_redo
    np.testing.assert_array_equal(history.current[0], np.full((3, 2), 7.0))
