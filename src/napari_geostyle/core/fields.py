"""What a transform does to an image's pixels, as arrays: displacement fields, deformation grids
and the warp of every plane of a stack (Qt-free; the live warp and its exports use these)."""

from __future__ import annotations

import numpy as np

from . import images


def displacement_field(transform, shape) -> np.ndarray:
    """``(H, W, 2)`` float32: for each output pixel, the content ``(row, col)`` it samples minus
    its own ``(row, col)``. ``warped[p] = content[p + field[p]]``: where the warp pulls from."""
    from .warp import sampling_map

    height, width = images.validate_shape(shape)
    sample = np.asarray(sampling_map(transform, (height, width)), np.float64)
    own = images.pixel_grid((height, width)).reshape(height, width, 2)
    return (sample - own).astype(np.float32)


def deformation_grid(transform, shape, lines: int = 12, samples: int = 48) -> list[np.ndarray]:
    """``2 * lines`` paths of ``samples`` ``(row, col)`` points: a regular grid over a content
    image of ``shape`` carried into the output frame (where the warp moves each part)."""
    height, width = images.validate_shape(shape)
    paths = []
    for row in np.linspace(0, height - 1, lines):
        paths.append(np.stack([np.full(samples, row), np.linspace(0, width - 1, samples)], 1))
    for col in np.linspace(0, width - 1, lines):
        paths.append(np.stack([np.linspace(0, height - 1, samples), np.full(samples, col)], 1))
    mapped = transform.map_points(np.concatenate(paths))
    return list(np.asarray(mapped).reshape(len(paths), samples, 2))


def warp_planes(source, transform, device=None, planes=None, lead_shape=()):
    """Generator: warp one 2D image, or every plane of a stack.

    With ``planes`` None, ``source`` is warped. Otherwise ``planes`` yields ``(index, plane)``
    for every index of ``lead_shape`` (the stack's leading axes) and the result has shape
    ``lead_shape + warped plane shape``. Yields the number of planes done (for progress) and
    returns the warped array.
    """
    from .warp import warp_image

    if planes is None:
        warped = warp_image(source, transform, device=device)
        yield 1
        return warped
    out = None
    for count, (index, plane) in enumerate(planes, start=1):
        warped = warp_image(plane, transform, device=device)
        if out is None:
            out = np.empty(tuple(lead_shape) + warped.shape, dtype=warped.dtype)
        out[index] = warped
        yield count
    if out is None:
        raise ValueError("the stack has no planes to warp.")
    return out
