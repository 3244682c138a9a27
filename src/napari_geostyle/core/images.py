"""The one place that converts and validates images, tensors and coordinates.

Conventions (docs/ARCHITECTURE.md has the whole picture):
- Images are numpy arrays ``(H, W)`` or ``(H, W, C)`` with C in 1, 3, 4; uint8, uint16 or float
  (floats are read as 0..1). Gray is replicated to RGB for networks; alpha rides along untouched.
- Points are ``(N, 2)`` float arrays of ``(row, col)`` pixel coordinates (napari's order).
- Normalised coordinates are ``(x, y)`` in ``[-1, 1]`` with torch's ``align_corners=False``
  convention: -1 and +1 are the outer *edges* of the first and last pixel, so the same physical
  point keeps its normalised coordinate when an image is resized. Every ``grid_sample`` and
  ``affine_grid`` call in the package uses ``ALIGN_CORNERS``.

torch is imported inside the functions that need it, so numpy-only callers stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

ALIGN_CORNERS = False

_INTEGER_RANGES = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


# --------------------------------------------------------------------------- validation
def validate_image(image, name: str = "image", min_size: int = 1) -> np.ndarray:
    """Return ``image`` as a numpy array after checking it is a usable 2D image.

    Raises ``ValueError`` with a message a user can act on for anything else.
    """
    if image is None:
        raise ValueError(f"{name} is missing: give a 2D image array (H, W) or (H, W, C).")
    array = as_array(image, name)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.dtype.kind not in "uif":
        raise ValueError(
            f"{name} has dtype {array.dtype}; expected uint8, uint16 or float pixel values."
        )
    if array.ndim not in (2, 3):
        raise ValueError(
            f"{name} has shape {array.shape}; expected a 2D image (H, W) or (H, W, C) with C in "
            "1, 3, 4. For a stack or time series, pick one slice."
        )
    if array.ndim == 3 and array.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"{name} has {array.shape[2]} channels (shape {array.shape}); expected 1 (gray), "
            "3 (RGB) or 4 (RGBA) in the last axis."
        )
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape}).")
    height, width = array.shape[:2]
    if min(height, width) < min_size:
        raise ValueError(
            f"{name} is {height} x {width} pixels; at least {min_size} x {min_size} is needed."
        )
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values; replace them first.")
    return array


def as_array(image, name: str = "image") -> np.ndarray:
    """``image`` as a numpy array; a torch tensor is copied off its device, but one that
    requires grad is refused (these functions are not differentiable: detach it)."""
    if type(image).__module__.partition(".")[0] == "torch" and hasattr(image, "detach"):
        if image.requires_grad:
            raise ValueError(
                f"{name} is a torch tensor that requires grad; the result would not be "
                "differentiable. Pass tensor.detach() (or a numpy array) instead."
            )
        return image.cpu().numpy()
    return np.asarray(image)


def validate_points(points, name: str = "points", min_count: int = 0) -> np.ndarray:
    """Return ``points`` as a float64 ``(N, 2)`` array of finite ``(row, col)`` coordinates."""
    try:
        array = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as error:
        raise ValueError(f"{name} must be numbers of shape (N, 2): {error}") from None
    if array.ndim == 1 and array.size == 2:
        array = array[None, :]
    if array.ndim == 1 and array.size == 0:  # [] is no points, as np.empty((0, 2)) is
        array = array.reshape(0, 2)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"{name} has shape {array.shape}; expected (N, 2) (row, col) pairs.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite coordinates.")
    if len(array) < min_count:
        raise ValueError(f"{name} has {len(array)} points; at least {min_count} are needed.")
    return array


def validate_shape(shape, name: str = "output_shape") -> tuple[int, int]:
    """Return ``(H, W)`` from a shape-like value (extra trailing axes are ignored)."""
    try:
        height, width = (int(v) for v in tuple(shape)[:2])
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{name} must be (height, width); got {shape!r}.") from None
    if height < 1 or width < 1:
        raise ValueError(f"{name} must be positive; got {shape!r}.")
    return height, width


# --------------------------------------------------------------------------- dtypes and channels
def to_float(image) -> np.ndarray:
    """Pixel values as float32 in 0..1 (integers scaled by their range, floats kept)."""
    array = np.asarray(image)
    scale = _INTEGER_RANGES.get(array.dtype)
    if scale is not None:
        return array.astype(np.float32) / np.float32(scale)
    if array.dtype.kind in "ui":  # other integer types: scale by the values present
        peak = float(array.max()) if array.size else 1.0
        return array.astype(np.float32) / np.float32(max(peak, 1.0))
    if array.dtype == bool:
        return array.astype(np.float32)
    return array.astype(np.float32, copy=False)


def from_float(image: np.ndarray, dtype) -> np.ndarray:
    """Convert 0..1 floats back to ``dtype`` (integers are rounded and clipped)."""
    dtype = np.dtype(dtype)
    scale = _INTEGER_RANGES.get(dtype)
    if scale is not None:
        return np.clip(np.rint(np.asarray(image, np.float64) * scale), 0, scale).astype(dtype)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return np.clip(np.rint(image), info.min, info.max).astype(dtype)
    return np.asarray(image).astype(dtype, copy=False)


def split_alpha(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """``(color, alpha)``: alpha is the 4th channel of an RGBA image, else None."""
    if image.ndim == 3 and image.shape[2] == 4:
        return image[..., :3], image[..., 3:]
    return image, None


_UNIT_RANGE_SLACK = 1e-3  # float rounding past 0..1 (resampling, colour conversion) is clipped


def to_unit_range(array: np.ndarray, name: str = "image") -> np.ndarray:
    """Float pixel values clipped into 0..1, for inputs whose values must mean 0..1 (networks).

    Floats are read as 0..1; values well outside it (floats in 0..255, signed or raw sensor
    data) would otherwise be clipped to a blank image, so they are rescaled with a warning:
    0..255 by 1/255, anything else by its own min..max.
    """
    import warnings

    low, high = float(array.min()), float(array.max())
    if low >= -_UNIT_RANGE_SLACK and high <= 1.0 + _UNIT_RANGE_SLACK:
        return np.clip(array, 0.0, 1.0)
    if low >= 0.0 and high <= 255.0:
        warnings.warn(
            f"{name} has float values up to {high:g}, but float images are read as 0..1; "
            "treating it as 0..255 and dividing by 255. Pass uint8, or floats in 0..1, to "
            "silence this.",
            UserWarning,
            stacklevel=3,
        )
        return array / np.float32(255.0)
    warnings.warn(
        f"{name} has values from {low:g} to {high:g}, outside 0..1 (the range float images are "
        "read in); stretching its min..max to 0..1. Rescale it yourself to silence this.",
        UserWarning,
        stacklevel=3,
    )
    # in float64 and by halves: the span of finite values (float32's max and beyond) overflows
    half_span = high / 2 - low / 2
    stretched = (np.asarray(array, np.float64) / 2 - low / 2) / (
        half_span if half_span > 0 else 1.0
    )
    return stretched.astype(np.float32)


def to_rgb_float(image, name: str = "image", min_size: int = 1) -> np.ndarray:
    """Validated ``(H, W, 3)`` float32 RGB in 0..1: gray replicated, alpha dropped.

    Values outside 0..1 (e.g. floats in 0..255) are rescaled with a warning (``to_unit_range``).
    """
    array = validate_image(image, name, min_size)
    if array.dtype.kind != "f":  # floats keep their precision: float64 beyond float32's range
        array = to_float(array)  # would become inf before to_unit_range rescales them
    if array.ndim == 2:
        array = array[..., None]
    array, _ = split_alpha(array)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(to_unit_range(array, name), dtype=np.float32)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of an ``(..., 3)`` RGB array."""
    return rgb @ np.asarray([0.299, 0.587, 0.114], dtype=rgb.dtype)


_RGB_TO_YIQ = np.asarray(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]]
)


def rgb_to_yiq(rgb: np.ndarray) -> np.ndarray:
    """``(..., 3)`` RGB -> YIQ (Y = BT.601 luma, I/Q = chroma), same dtype."""
    return rgb @ _RGB_TO_YIQ.T.astype(rgb.dtype)


def yiq_to_rgb(yiq: np.ndarray) -> np.ndarray:
    """Inverse of ``rgb_to_yiq`` (not clipped)."""
    return yiq @ np.linalg.inv(_RGB_TO_YIQ).T.astype(yiq.dtype)


# --------------------------------------------------------------------------- arrays <-> tensors
def image_to_tensor(image, device=None, dtype=None) -> torch.Tensor:
    """``(1, C, H, W)`` float tensor in 0..1 from a validated image (channels kept as they are)."""
    import torch

    array = to_float(image)
    if array.ndim == 2:
        array = array[..., None]
    tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))[None]
    return tensor.to(device=device, dtype=dtype or torch.float32)


def rgb_tensor(image, device=None, name: str = "image", min_size: int = 1) -> torch.Tensor:
    """``(1, 3, H, W)`` float32 RGB tensor in 0..1, as networks want it."""
    return image_to_tensor(to_rgb_float(image, name, min_size), device=device)


def tensor_to_image(tensor: torch.Tensor, squeeze_gray: bool = True) -> np.ndarray:
    """``(H, W, C)`` float32 numpy array from a ``(1, C, H, W)`` or ``(C, H, W)`` tensor."""
    if tensor.ndim == 4:
        if tensor.shape[0] != 1:
            raise ValueError(f"expected a batch of one image, got shape {tuple(tensor.shape)}")
        tensor = tensor[0]
    array = tensor.detach().to("cpu", dtype=_float32()).numpy().transpose(1, 2, 0)
    if squeeze_gray and array.shape[2] == 1:
        array = array[..., 0]
    return np.ascontiguousarray(array)


def tensor_to_image_as(tensor: torch.Tensor, dtype, squeeze_gray: bool = True) -> np.ndarray:
    """``from_float(tensor_to_image(tensor), dtype)``, with uint8/uint16 scaled, rounded and
    clipped on the tensor's device: one pass, and a quarter of the bytes to copy off a GPU."""
    import torch

    dtype = np.dtype(dtype)
    scale = _INTEGER_RANGES.get(dtype)
    if scale is None:
        return from_float(tensor_to_image(tensor, squeeze_gray), dtype)
    if tensor.ndim == 4:
        if tensor.shape[0] != 1:
            raise ValueError(f"expected a batch of one image, got shape {tuple(tensor.shape)}")
        tensor = tensor[0]
    scaled = tensor.detach().mul(scale).round_().clamp_(0.0, scale)
    # torch has no full uint16 support: go through int32 for it
    stored = scaled.to(torch.uint8 if dtype == np.uint8 else torch.int32).permute(1, 2, 0)
    array = np.ascontiguousarray(stored.cpu().numpy()).astype(dtype, copy=False)
    if squeeze_gray and array.shape[2] == 1:
        array = array[..., 0]
    return array


def _float32():
    import torch

    return torch.float32


# --------------------------------------------------------------------------- coordinates
def rc_to_xy(points) -> np.ndarray:
    """``(row, col)`` -> ``(x, y)`` (x is the column)."""
    return np.asarray(points, dtype=np.float64)[..., ::-1].copy()


def xy_to_rc(points) -> np.ndarray:
    """``(x, y)`` -> ``(row, col)``."""
    return np.asarray(points, dtype=np.float64)[..., ::-1].copy()


def pixel_to_normalized(points_rc, shape) -> np.ndarray:
    """Pixel ``(row, col)`` -> normalised ``(x, y)`` in [-1, 1] of an image of ``shape`` (H, W)."""
    height, width = shape[:2]
    rc = np.asarray(points_rc, dtype=np.float64)
    x = (2.0 * rc[..., 1] + 1.0) / width - 1.0
    y = (2.0 * rc[..., 0] + 1.0) / height - 1.0
    return np.stack([x, y], axis=-1)


def normalized_to_pixel(points_xy, shape) -> np.ndarray:
    """Normalised ``(x, y)`` in [-1, 1] -> pixel ``(row, col)`` of an image of ``shape`` (H, W)."""
    height, width = shape[:2]
    xy = np.asarray(points_xy, dtype=np.float64)
    col = ((xy[..., 0] + 1.0) * width - 1.0) / 2.0
    row = ((xy[..., 1] + 1.0) * height - 1.0) / 2.0
    return np.stack([row, col], axis=-1)


def pixel_grid(shape) -> np.ndarray:
    """All pixel centres of an image of ``shape`` as ``(H*W, 2)`` ``(row, col)``, row-major."""
    height, width = shape[:2]
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return np.stack([rows.ravel(), cols.ravel()], axis=1).astype(np.float64)


def regular_grid_points(shape, grid_size: int, margin: float = 0.0) -> np.ndarray:
    """A ``grid_size`` x ``grid_size`` lattice of ``(row, col)`` points spanning the image.

    ``margin`` is a fraction of the side kept free at each border; 0 puts the outer points on the
    image edges (normalised -1 and +1), as CNNGeometric's TPS control grid.
    """
    return normalized_to_pixel(regular_grid_xy(grid_size, margin), shape)


def regular_grid_xy(grid_size: int, margin: float = 0.0) -> np.ndarray:
    """The same lattice in normalised ``(x, y)``, ``(grid_size**2, 2)``, row-major (y outer)."""
    lin = np.linspace(-1.0 + 2.0 * margin, 1.0 - 2.0 * margin, grid_size)
    ys, xs = np.meshgrid(lin, lin, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def pixel_to_normalized_matrix(shape) -> np.ndarray:
    """3 x 3 homogeneous ``pixel_to_normalized``: pixel ``(row, col, 1)`` -> ``(x, y, 1)``."""
    height, width = shape[:2]
    return np.array(
        [
            [0.0, 2.0 / width, 1.0 / width - 1.0],
            [2.0 / height, 0.0, 1.0 / height - 1.0],
            [0.0, 0.0, 1.0],
        ]
    )


def normalized_to_pixel_matrix(shape) -> np.ndarray:
    """3 x 3 homogeneous ``normalized_to_pixel``: normalised ``(x, y, 1)`` -> ``(row, col, 1)``."""
    height, width = shape[:2]
    return np.array(
        [
            [0.0, height / 2.0, (height - 1.0) / 2.0],
            [width / 2.0, 0.0, (width - 1.0) / 2.0],
            [0.0, 0.0, 1.0],
        ]
    )


# --------------------------------------------------------------------------- resizing
def fit_longest_side(shape, size: int | None) -> tuple[int, int]:
    """``(H, W)`` scaled so the longest side is ``size`` (aspect kept, at least 1 px)."""
    height, width = shape[:2]
    if size is None:
        return int(height), int(width)
    scale = float(size) / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_tensor(tensor: torch.Tensor, shape) -> torch.Tensor:
    """Resize a ``(B, C, H, W)`` tensor to ``shape`` (H, W); antialiased when shrinking."""
    import torch.nn.functional as F

    height, width = int(shape[0]), int(shape[1])
    if tuple(tensor.shape[-2:]) == (height, width):
        return tensor
    shrinking = height < tensor.shape[-2] or width < tensor.shape[-1]
    return F.interpolate(
        tensor,
        size=(height, width),
        mode="bilinear",
        align_corners=ALIGN_CORNERS,
        antialias=shrinking,
    )


def resize_plane(image, shape) -> np.ndarray:
    """A float ``(H, W)`` or ``(H, W, C)`` image resized to ``shape[:2]`` (as ``resize_tensor``),
    float32, clipped to the input's own range."""
    import torch

    array = np.asarray(image, np.float32)
    planes = array if array.ndim == 3 else array[..., None]
    tensor = torch.from_numpy(np.ascontiguousarray(planes.transpose(2, 0, 1)))[None]
    resized = resize_tensor(tensor, shape[:2])[0].permute(1, 2, 0).numpy()
    resized = np.clip(resized, float(array.min()), float(array.max()))
    return resized.astype(np.float32) if array.ndim == 3 else resized[..., 0].astype(np.float32)


def match_kind(result, like, value_range=None, keep_color: bool = False) -> np.ndarray:
    """A 0..1 float ``(H, W, 3)`` result in the kind of the image ``like`` it was made from.

    Gray ``like`` (2D or one channel) gives a gray 2D result (its luminance) unless
    ``keep_color``; the dtype is ``like``'s, and 0..1 is filled to ``value_range``, the
    ``(low, high)`` that 0..1 stood for (integers: by default the dtype's range; floats as
    float32, by default 0..1). RGB(A) ``like`` keeps the result's colour channels, and RGBA
    ``like`` gives its alpha back, resized to the result's size.
    """
    result = np.clip(np.asarray(result, np.float32), 0.0, 1.0)
    like = np.asarray(like)
    gray = like.ndim == 2 or (like.ndim == 3 and like.shape[-1] == 1)
    if gray and not keep_color and result.ndim == 3:
        result = np.clip(luminance(result[..., :3]), 0.0, 1.0)
    _, alpha = split_alpha(like)
    if alpha is not None and result.ndim == 3 and result.shape[-1] == 3:
        result = np.concatenate([result, resize_plane(to_float(alpha), result.shape)], axis=-1)
    if like.dtype.kind not in "ui":
        if value_range is None or (result.ndim == 3 and result.shape[-1] == 4):
            return result.astype(np.float32, copy=False)
        low, high = (float(v) for v in value_range)
        return (low + result.astype(np.float64) * (high - low)).astype(np.float32)
    if value_range is None:
        return from_float(result, like.dtype)
    low, high = (float(v) for v in value_range)
    info = np.iinfo(like.dtype)
    scaled = low + np.asarray(result, np.float64) * (high - low)
    return np.clip(np.rint(scaled), info.min, info.max).astype(like.dtype)


def match_colour_statistics(image, references, weights=None) -> np.ndarray:
    """``image`` (float RGB, 0..1) recoloured so that its colour mean and covariance are those
    of ``references`` (float RGB images, mixed by ``weights``): the affine colour map
    ``x -> C_r^(1/2) C_i^(-1/2) (x - m_i) + m_r`` with symmetric square roots. float32, 0..1."""
    weights = np.full(len(references), 1.0 / len(references)) if weights is None else weights
    pixels = image.reshape(-1, 3).astype(np.float64)
    mean_i = pixels.mean(0)
    cov_i = np.cov(pixels.T)
    mean_r = np.zeros(3)
    second = np.zeros((3, 3))  # the mixture's E[x x^T]
    for reference, weight in zip(references, weights):
        ref = reference.reshape(-1, 3).astype(np.float64)
        mean = ref.mean(0)
        mean_r += weight * mean
        second += weight * (np.cov(ref.T) + np.outer(mean, mean))
    cov_r = second - np.outer(mean_r, mean_r)

    def sqrt_and_inverse(cov):
        values, vectors = np.linalg.eigh(cov + 1e-5 * np.eye(3))  # flat images: no division by 0
        values = np.sqrt(np.clip(values, 1e-5, None))
        return (vectors * values) @ vectors.T, (vectors / values) @ vectors.T

    root_r, _ = sqrt_and_inverse(cov_r)
    _, inverse_root_i = sqrt_and_inverse(cov_i)
    mapped = (pixels - mean_i) @ (root_r @ inverse_root_i).T + mean_r
    return np.clip(mapped, 0.0, 1.0).reshape(image.shape).astype(np.float32)
