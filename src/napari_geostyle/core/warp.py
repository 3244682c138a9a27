"""Warp images with a transform: ``out[p] = image[transform.sample_points(p)]``.

Sampling is torch ``grid_sample`` with ``images.ALIGN_CORNERS`` on the chosen device. The output is
produced in row tiles, each with an exact evaluation of the sample map, and each tile converts
only the content crop it reads to float, so memory beyond the input and output arrays stays
bounded (a few hundred MB) whatever the image size.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from . import images
from .devices import resolve_device, supports_float64
from .transforms import Transform

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from numpy.typing import ArrayLike

MODES = ("bilinear", "nearest", "bicubic")
PADDINGS = ("border", "zeros", "reflection")

_TILE_PIXELS = 1 << 20  # output pixels per tile
_TILE_KERNEL_ELEMENTS = 1 << 24  # (pixels x control points) per tile: bounds the TPS temporaries
_CROP_PIXELS = 1 << 22  # content pixels one tile converts to float (64 MB for RGB float32)
# float64 interpolation reproduces integers up to here (coordinate rounding x value < 0.5)
_FLOAT64_EXACT_INTEGER = 2**32
_FLOAT32_SAFE_MAGNITUDE = 1e30  # float64 data up to this is warped in float32 (bicubic overshoot)
_TORCH_NATIVE = frozenset(
    np.dtype(t)
    for t in (np.uint8, np.int8, np.int16, np.int32, np.int64, np.float16, np.float32, np.float64)
)


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
    tensor: torch.Tensor,
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
    image: ArrayLike,
    transform: Transform,
    output_shape: tuple[int, int] | None = None,
    device: str | torch.device | None = None,
    mode: str = "bilinear",
    padding: str = "border",
) -> np.ndarray:
    """Warp ``image`` so that a content feature at ``q`` appears at ``transform.map_points(q)``.

    - Channels (alpha included) and dtype are kept.
    - Values are exact for every dtype: wide integers (int32, uint32, ...) and float64 beyond
      float32's range are interpolated in float64 (on the CPU where the device has no float64);
      int64/uint64 values beyond 2**32 can only be warped with ``mode="nearest"`` (else
      ``ValueError``).
    - A bool mask stays a bool mask (interpolated, then thresholded at one half).
    - Memory: the output is made in tiles, and each tile converts only the part of the content
      it reads to float (about ``_CROP_PIXELS`` pixels at most), never the whole image.

    Parameters
    ----------
    image : array_like
        ``(H, W)`` or ``(H, W, C)`` content image (any numeric dtype, or a bool mask).
    transform : Transform
        An ``AffineTransform``, ``TPSTransform`` or ``ComposedTransform`` (content -> output).
    output_shape : tuple of int, optional
        ``(H, W)`` of the result; defaults to the image's.
    device : str or torch.device, optional
        ``None``/``"auto"`` picks cuda > mps > cpu (see ``resolve_device``).
    mode : {"bilinear", "nearest", "bicubic"}, default "bilinear"
        "nearest" moves the original values (exact for every dtype: label images stay label
        images, whatever their IDs).
    padding : {"border", "zeros", "reflection"}, default "border"
        For samples that fall outside the content image: "border" (edge pixels continue, no
        black borders), "zeros" or "reflection".

    Returns
    -------
    numpy.ndarray
        The warped image: ``output_shape`` plus the image's channels, in its dtype.

    Raises
    ------
    ValueError
        If the image, transform, ``mode``, ``padding``, ``output_shape`` or device is not
        usable, wide integers need ``mode="nearest"``, or the transform sends output pixels to
        infinite or NaN content coordinates.
    """
    import torch

    raw = images.as_array(image)
    is_mask = raw.dtype == bool
    array = images.validate_image(raw)  # a bool mask comes back as uint8 0/255
    _check_options(transform, mode, padding)
    output_shape = images.validate_shape(array.shape[:2] if output_shape is None else output_shape)
    device = resolve_device(device)
    compute = torch.float32 if mode == "nearest" else _compute_dtype(array, mode)
    if compute == torch.float64 and not supports_float64(device):
        device = torch.device("cpu")
    try:
        result = np.empty(output_shape + array.shape[2:], dtype=array.dtype)
    except (MemoryError, ValueError) as error:  # numpy's message does not name the argument
        raise ValueError(f"output_shape {output_shape} is too large: {error}") from error
    height, width = output_shape
    with torch.no_grad():
        columns = torch.arange(width, dtype=compute, device=device)
        rows_per_tile = _tile_rows(width, transform.kernel_size)
        for start in range(0, height, rows_per_tile):
            stop = min(height, start + rows_per_tile)
            rows = torch.arange(start, stop, dtype=compute, device=device)
            output_rc = torch.stack(torch.meshgrid(rows, columns, indexing="ij"), -1)
            coords = transform.sample_points_torch(output_rc.reshape(-1, 2))
            if not bool(torch.isfinite(coords).all()):
                raise ValueError(
                    "the transform sends some output pixels to infinite or NaN content "
                    "coordinates; check its parameters (a degenerate fit?)."
                )
            result[start:stop] = _warp_block(
                array, coords.reshape(stop - start, width, 2), mode, padding, compute, device
            )
    return result >= 128 if is_mask else result


def _compute_dtype(array: np.ndarray, mode: str):
    """torch.float32 or torch.float64: the narrowest float that interpolates ``array`` exactly.

    uint8/uint16/int8/int16 and float16/float32 are exact in float32. Wider integers (int32
    2**31 - 1, uint32 label IDs > 2**24) need float64, and so does float64 data beyond what
    float32 holds. Integers beyond 2**32 (int64, uint64) cannot be interpolated exactly even in
    float64 (the sample coordinates' rounding, times the value, passes one half):
    refused (``mode="nearest"`` moves the original values and needs no float at all).
    """
    import torch

    kind, size = array.dtype.kind, array.dtype.itemsize
    if kind in "ui":
        if size <= 2:
            return torch.float32
        if size >= 8:
            largest = max(abs(int(array.min())), abs(int(array.max())))
            if largest > _FLOAT64_EXACT_INTEGER:
                raise ValueError(
                    f"image ({array.dtype}) has values up to {largest}, beyond 2**32, which "
                    f"{mode} interpolation cannot reproduce exactly; use mode='nearest' (it "
                    "moves the values unchanged) or convert the image first."
                )
        return torch.float64
    if size <= 4:
        return torch.float32
    peak = max(float(array.max()), -float(array.min()))  # no full-size temporary
    return torch.float32 if peak <= _FLOAT32_SAFE_MAGNITUDE else torch.float64


def _reflect(coords, size: int):
    """Pixel coordinates reflected about the image's outer edges (-0.5 and size - 0.5), then
    clipped into [0, size - 1]: what ``grid_sample``'s reflection padding does
    (``align_corners=False``)."""
    import torch

    offset = (coords + 0.5).abs()
    extra = offset.remainder(size)
    even = offset.div(size).floor().remainder(2) == 0
    reflected = torch.where(even, extra - 0.5, size - extra - 0.5)
    return reflected.clamp(0, size - 1)


def _tap_range(coords, size: int, mode: str, padding: str) -> tuple[int, int]:
    """First and last content index along one axis that sampling at ``coords`` reads.

    Where a read falls outside the image the range reaches that edge, so the crop's own
    padding behaves as the image's would.
    """
    import torch

    low, high = (float(v) for v in coords.aminmax())
    reach_low, reach_high = (1, 2) if mode == "bicubic" else (0, 1)
    first_tap, last_tap = math.floor(low) - reach_low, math.floor(high) + reach_high
    if mode == "bicubic" and padding == "reflection":
        # bicubic reflects each of its 4 taps on its own: take the range of the reflected taps
        base = coords.floor()
        taps = torch.stack([base + k for k in (-1.0, 0.0, 1.0, 2.0)])
        reflected_low, reflected_high = (int(v) for v in _reflect(taps, size).aminmax())
        first = 0 if first_tap < 0 else reflected_low
        last = size - 1 if last_tap > size - 1 else reflected_high
        return first, last
    return min(max(first_tap, 0), size - 1), max(min(last_tap, size - 1), 0)


def _crop_tensor(array: np.ndarray, rows: tuple[int, int], cols: tuple[int, int], dtype, device):
    """``(1, C, h, w)`` tensor of ``array[rows[0]:rows[1] + 1, cols[0]:cols[1] + 1]`` in the
    compute dtype: only this crop is ever converted to float."""
    import torch

    crop = array[rows[0] : rows[1] + 1, cols[0] : cols[1] + 1]
    if crop.ndim == 2:
        crop = crop[..., None]
    crop = np.ascontiguousarray(crop.transpose(2, 0, 1))
    if crop.dtype not in _TORCH_NATIVE:  # e.g. uint16, uint32: convert on the host
        crop = crop.astype(np.float64 if dtype == torch.float64 else np.float32)
    # upload in the image's own dtype (a quarter of the bytes for uint8), convert on the device
    return torch.from_numpy(crop)[None].to(device).to(dtype)


def _to_host(tile, dtype: np.dtype, squeeze_gray: bool) -> np.ndarray:
    """``(1, C, h, w)`` float tile -> ``(h, w[, C])`` numpy in ``dtype``: integers rounded and
    clipped to the dtype on the device, floats clipped to the dtype's finite range."""
    import torch

    tile = tile[0]
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        tile = tile.round().clamp_(float(info.min), float(info.max))
        if dtype == np.uint8:
            tile = tile.to(torch.uint8)
        else:  # exact: integers within the compute dtype's exact range
            tile = tile.to(torch.int32 if dtype.itemsize <= 2 else torch.int64)
    elif dtype.itemsize < tile.element_size():  # e.g. float16 computed in float32
        info = np.finfo(dtype)
        tile = tile.clamp(float(info.min), float(info.max))
    block = np.ascontiguousarray(tile.permute(1, 2, 0).cpu().numpy()).astype(dtype, copy=False)
    return block[..., 0] if squeeze_gray else block


def _nearest_indices(coords, size: int, padding: str):
    """The index ``grid_sample(mode="nearest")`` reads along one axis (round half to even),
    and whether it lies inside the image (``padding="zeros"`` reads 0 elsewhere)."""
    if padding == "reflection":
        coords = _reflect(coords, size)
    elif padding == "border":
        coords = coords.clamp(0, size - 1)
    index = coords.round()
    inside = (index >= 0) & (index <= size - 1)
    return index.clamp(0, size - 1).long().cpu().numpy(), inside.cpu().numpy()


def _warp_block(array, coords, mode, padding, dtype, device):
    """Warp the output block whose content coordinates are ``coords`` ``(h, w, 2)``; split it in
    halves while the content crop it reads is larger than ``_CROP_PIXELS``."""
    import torch
    import torch.nn.functional as F

    height, width = array.shape[:2]
    if mode == "nearest":  # gather the original values: exact for every dtype
        rows, rows_inside = _nearest_indices(coords[..., 0], height, padding)
        cols, cols_inside = _nearest_indices(coords[..., 1], width, padding)
        block = array[rows, cols]
        if padding == "zeros":
            block[~(rows_inside & cols_inside)] = 0
        return block
    if padding == "reflection" and mode == "bilinear":
        # grid_sample reflects the coordinate, then interpolates: reflecting here first keeps
        # the crop to what is read, and border padding on it then gives the same values
        coords = torch.stack(
            [_reflect(coords[..., 0], height), _reflect(coords[..., 1], width)], -1
        )
        padding = "border"
    rows = _tap_range(coords[..., 0], height, mode, padding)
    cols = _tap_range(coords[..., 1], width, mode, padding)
    crop_pixels = (rows[1] - rows[0] + 1) * (cols[1] - cols[0] + 1)
    block_h, block_w = coords.shape[:2]
    if crop_pixels > _CROP_PIXELS and block_h * block_w > 1:
        axis = 0 if block_h >= block_w else 1
        half = coords.shape[axis] // 2
        parts = coords.split([half, coords.shape[axis] - half], dim=axis)
        return np.concatenate(
            [_warp_block(array, part, mode, padding, dtype, device) for part in parts], axis=axis
        )
    crop = _crop_tensor(array, rows, cols, dtype, device)
    crop_h, crop_w = crop.shape[-2:]
    # pixel (row, col) in the crop -> the crop's normalised (x, y), as images.ALIGN_CORNERS
    grid_x = (2.0 * (coords[..., 1] - cols[0]) + 1.0) / crop_w - 1.0
    grid_y = (2.0 * (coords[..., 0] - rows[0]) + 1.0) / crop_h - 1.0
    tile = F.grid_sample(
        crop,
        torch.stack([grid_x, grid_y], dim=-1)[None],
        mode=mode,
        padding_mode=padding,
        align_corners=images.ALIGN_CORNERS,
    )
    return _to_host(tile, array.dtype, squeeze_gray=array.ndim == 2)


def sampling_map(transform, output_shape) -> np.ndarray:
    """``(H, W, 2)`` float64 content ``(row, col)`` that each output pixel samples (a displacement
    field is this minus the pixel's own coordinates)."""
    if not isinstance(transform, Transform):
        raise ValueError(f"transform must be a Transform; got {type(transform).__name__}.")
    height, width = images.validate_shape(output_shape)
    return transform.sample_points(images.pixel_grid((height, width))).reshape(height, width, 2)
