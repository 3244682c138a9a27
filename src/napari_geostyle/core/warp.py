"""Warp images with a transform: ``out[p] = image[transform.sample_points(p)]``.

Sampling is torch ``grid_sample`` with ``images.ALIGN_CORNERS`` on the chosen device. The output is
produced in row tiles, each with an exact evaluation of the sample map, so memory stays bounded
(a 4096 x 4096 RGB thin-plate-spline warp needs well under 2 GB) whatever the image size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import images
from .devices import resolve_device
from .transforms import Transform

if TYPE_CHECKING:  # pragma: no cover
    import torch

MODES = ("bilinear", "nearest", "bicubic")
PADDINGS = ("border", "zeros", "reflection")

_TILE_PIXELS = 1 << 20  # output pixels per tile
_TILE_KERNEL_ELEMENTS = 1 << 24  # (pixels x control points) per tile: bounds the TPS temporaries


def _check_options(transform, mode: str, padding: str) -> None:
    if not isinstance(transform, Transform):
        raise ValueError(
            f"transform must be an AffineTransform, TPSTransform or ComposedTransform; got "
            f"{type(transform).__name__}."
        )
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}.")
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}; got {padding!r}.")


def _tile_rows(width: int, kernel_size: int) -> int:
    pixels = min(_TILE_PIXELS, _TILE_KERNEL_ELEMENTS // max(1, kernel_size))
    return max(1, pixels // width)


def _iter_warped_tiles(tensor, transform, output_shape, mode, padding):
    """Yield ``(row_start, row_stop, tile)``; ``tile``: ``(B, C, rows, W_out)``, tensor's device."""
    import torch
    import torch.nn.functional as F

    height, width = output_shape
    options = {"dtype": tensor.dtype, "device": tensor.device}
    to_normalized = torch.as_tensor(images.pixel_to_normalized_matrix(tensor.shape[-2:]), **options)
    columns = torch.arange(width, **options)
    rows_per_tile = _tile_rows(width, transform.kernel_size)
    for start in range(0, height, rows_per_tile):
        stop = min(height, start + rows_per_tile)
        rows = torch.arange(start, stop, **options)
        output_rc = torch.stack(torch.meshgrid(rows, columns, indexing="ij"), dim=-1).reshape(-1, 2)
        content_rc = transform.sample_points_torch(output_rc)
        content_xy = content_rc @ to_normalized[:2, :2].T + to_normalized[:2, 2]
        grid = content_xy.reshape(1, stop - start, width, 2).expand(tensor.shape[0], -1, -1, -1)
        tile = F.grid_sample(
            tensor, grid, mode=mode, padding_mode=padding, align_corners=images.ALIGN_CORNERS
        )
        yield start, stop, tile


def warp_tensor(
    tensor: "torch.Tensor",
    transform,
    output_shape=None,
    mode: str = "bilinear",
    padding: str = "border",
):
    """Warp a ``(B, C, H, W)`` float tensor on its own device; differentiable in ``tensor``.

    ``output_shape`` (H, W) defaults to the tensor's. Returns ``(B, C, H_out, W_out)``.
    """
    import torch

    _check_options(transform, mode, padding)
    if not isinstance(tensor, torch.Tensor) or tensor.ndim != 4 or not tensor.is_floating_point():
        raise ValueError("warp_tensor needs a float tensor of shape (B, C, H, W).")
    output_shape = images.validate_shape(
        tensor.shape[-2:] if output_shape is None else output_shape
    )
    tiles = [
        tile for _, _, tile in _iter_warped_tiles(tensor, transform, output_shape, mode, padding)
    ]
    return torch.cat(tiles, dim=2)


def warp_image(
    image,
    transform,
    output_shape=None,
    device=None,
    mode: str = "bilinear",
    padding: str = "border",
):
    """Warp ``image`` so that a content feature at ``q`` appears at ``transform.map_points(q)``.

    - ``output_shape`` (H, W) defaults to the image's; channels (alpha included) and dtype are kept.
    - ``padding``: "border" (default: edge pixels continue, no black borders), "zeros" or
      "reflection" for samples that fall outside the content image.
    - ``mode``: "bilinear" (default), "nearest" or "bicubic".
    - A bool mask stays a bool mask (interpolated, then thresholded at one half).
    """
    import torch

    is_mask = np.asarray(image).dtype == bool
    array = images.validate_image(image)  # a bool mask comes back as uint8 0/255
    _check_options(transform, mode, padding)
    output_shape = images.validate_shape(array.shape[:2] if output_shape is None else output_shape)
    device = resolve_device(device)
    if array.dtype.kind in "ui" and array.dtype not in (np.uint8, np.uint16):
        # images.to_float scales such integers by their maximum; warping is linear in the
        # values, so sample the raw values instead and round back.
        values = array.astype(np.float32)
    else:
        values = array
    result = np.empty(output_shape + array.shape[2:], dtype=array.dtype)
    with torch.no_grad():
        tensor = images.image_to_tensor(values, device=device)
        for start, stop, tile in _iter_warped_tiles(tensor, transform, output_shape, mode, padding):
            if values is array:
                block = images.tensor_to_image_as(tile, array.dtype, squeeze_gray=array.ndim == 2)
            else:
                block = images.tensor_to_image(tile, squeeze_gray=array.ndim == 2)
                block = images.from_float(
                    np.clip(np.rint(block), *_integer_limits(array.dtype)), array.dtype
                )
            result[start:stop] = block
    return result >= 128 if is_mask else result


def _integer_limits(dtype) -> tuple[int, int]:
    info = np.iinfo(dtype)
    return info.min, info.max


def sampling_map(transform, output_shape) -> np.ndarray:
    """``(H, W, 2)`` float64 content ``(row, col)`` that each output pixel samples (a displacement
    field is this minus the pixel's own coordinates)."""
    if not isinstance(transform, Transform):
        raise ValueError(f"transform must be a Transform; got {type(transform).__name__}.")
    height, width = images.validate_shape(output_shape)
    return transform.sample_points(images.pixel_grid((height, width))).reshape(height, width, 2)
