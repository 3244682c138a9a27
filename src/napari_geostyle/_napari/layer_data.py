"""Reading napari Image layers as 2D images for the core, and resolving layer choices.

Shared by the widgets and :mod:`napari_geostyle.viewer_api` so both read layers the same way:
- only non-empty Image layers are ever offered (never Labels, Shapes, Points, ...);
- non-RGB data is read through the layer's contrast limits (what the user sees becomes 0..1);
- multiscale layers use the finest level that fits ``max_pixels`` (a notification says which);
- very large single-scale images are strided down to fit (with a warning), and results are placed
  with a correspondingly larger ``scale`` so they overlay the content;
- nD layers (stacks, time series) give one 2D slice: the one the viewer shows, or one asked for.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np

# Images above this many pixels (per 2D slice) are computed at a reduced size.
MAX_PIXELS = 4096 * 4096


def _image_type():
    from napari.layers import Image

    return Image


def is_offerable_image(layer) -> bool:
    """True for a non-empty Image layer (what the pickers offer)."""
    if not isinstance(layer, _image_type()):
        return False
    data = layer.data[0] if layer.multiscale else layer.data
    shape = tuple(getattr(data, "shape", ()))
    spatial = shape[:-1] if layer.rgb else shape
    return len(spatial) >= 2 and all(int(n) > 0 for n in shape)


def image_layers(viewer) -> list:
    """The viewer's non-empty Image layers, in layer-list order."""
    return [layer for layer in viewer.layers if is_offerable_image(layer)]


def same_layer(first, second) -> bool:
    """Whether two layer references are the same layer of a viewer (names are unique there;
    identity is not used because napari may hand out wrapped layer objects)."""
    if first is None or second is None:
        return first is second
    return first.name == second.name


def resolve_image_layer(viewer, layer, role: str):
    """``layer`` given as an Image layer object or a layer name -> that layer.

    A name that is not in the viewer, or a layer that is not a non-empty Image, is a ValueError
    that lists the layers that can be used.
    """
    usable = [candidate.name for candidate in image_layers(viewer)]
    if isinstance(layer, str):
        if layer not in viewer.layers:
            raise ValueError(
                f"{role}: there is no layer named {layer!r}; Image layers here: {usable}."
            )
        layer = viewer.layers[layer]
    if layer is None:
        raise ValueError(f"{role} is missing: give an Image layer or its name; options: {usable}.")
    if not is_offerable_image(layer):
        kind = layer.__class__.__name__  # not type(): layers may come wrapped in a proxy
        raise ValueError(
            f"{role}: layer {getattr(layer, 'name', layer)!r} is a {kind} layer or empty; "
            f"give a non-empty Image layer, e.g. one of {usable}."
        )
    return layer


def spatial_scale_translate(layer) -> tuple[np.ndarray, np.ndarray]:
    """The layer's ``scale`` and ``translate`` of its last two (row, col) axes."""
    return np.asarray(layer.scale, float)[-2:], np.asarray(layer.translate, float)[-2:]


def leading_shape(layer) -> tuple[int, ...]:
    """Shape of the non-spatial leading axes (slices, time points) of the layer's level 0."""
    data = layer.data[0] if layer.multiscale else layer.data
    shape = tuple(int(n) for n in data.shape)
    spatial_end = len(shape) - (1 if layer.rgb else 0)
    return shape[: spatial_end - 2]


def current_slice_index(viewer, layer) -> tuple[int, ...]:
    """Index of the slice of ``layer``'s leading axes that the viewer shows now."""
    lead = leading_shape(layer)
    if not lead or viewer is None:
        return tuple(0 for _ in lead)
    position = layer.world_to_data(viewer.dims.point)
    index = []
    for axis, size in enumerate(lead):
        index.append(int(np.clip(np.round(position[axis]), 0, size - 1)))
    return tuple(index)


@dataclass
class LayerImage:
    """One 2D image read from a layer, and how it relates to the layer's full-resolution pixels.

    ``raw`` keeps the layer's dtype and channels (what a warp transforms); ``normalized`` is
    float 0..1 read through the contrast limits for non-RGB data (what the networks see).
    A pixel ``p`` of ``raw`` is at full-resolution pixel ``(p + 0.5) * stride - 0.5``.
    """

    name: str
    raw: np.ndarray
    normalized: np.ndarray
    stride: int = 1
    level: int = 0
    plane_step: int = 1
    slice_index: tuple = ()
    notes: list = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.raw.shape[:2])


def _notify_info(message: str) -> None:
    from napari.utils.notifications import show_info

    show_info(message)


def _notify_warning(message: str) -> None:
    from napari.utils.notifications import show_warning

    show_warning(message)


def _normalize(raw: np.ndarray, layer) -> np.ndarray:
    """0..1 float32 as the user sees it (contrast limits) for non-RGB; RGB as the core reads it."""
    from ..core.images import to_float

    if layer.rgb:
        return raw
    low, high = (float(v) for v in layer.contrast_limits)
    if not np.isfinite(low) or not np.isfinite(high) or high <= low:
        return to_float(raw)
    scaled = (np.asarray(raw, np.float32) - np.float32(low)) / np.float32(high - low)
    return np.clip(scaled, 0.0, 1.0, out=scaled)


def read_layer_image(
    layer,
    viewer=None,
    slice_index=None,
    max_pixels: int = MAX_PIXELS,
    notify: bool = True,
) -> LayerImage:
    """Read one 2D image (a slice of nD data) from an Image layer; see the module docstring."""
    if not is_offerable_image(layer):
        raise ValueError(f"layer {layer.name!r} is not a non-empty Image layer.")
    notes = []
    lead = leading_shape(layer)
    if slice_index is None:
        slice_index = current_slice_index(viewer, layer)
    slice_index = tuple(int(i) for i in slice_index)
    if len(slice_index) != len(lead) or any(not 0 <= i < n for i, n in zip(slice_index, lead)):
        raise ValueError(
            f"slice index {slice_index} does not fit layer {layer.name!r} with leading axes {lead}."
        )

    level = 0
    if layer.multiscale:
        levels = list(layer.data)
        level = len(levels) - 1
        for candidate, data in enumerate(levels):
            height, width = _spatial_hw(data.shape, layer.rgb)
            if height * width <= max_pixels:
                level = candidate
                break
        source = levels[level]
        level_hw = _spatial_hw(source.shape, layer.rgb)
        full_hw = _spatial_hw(levels[0].shape, layer.rgb)
        stride = max(1, round(full_hw[0] / level_hw[0]))
        if level > 0:
            notes.append(
                f"{layer.name!r} is multiscale: using level {level} "
                f"({level_hw[0]} x {level_hw[1]} px, 1/{stride} of full resolution)."
            )
        # leading axes of coarser levels may be downsampled too: scale the slice index
        lead_here = _spatial_lead(source.shape, layer.rgb)
        index = tuple(
            min(n - 1, i * n // max(1, full)) for i, n, full in zip(slice_index, lead_here, lead)
        )
    else:
        source = layer.data
        stride = 1
        index = slice_index

    plane = source[index] if index else source
    height, width = _spatial_hw(plane.shape, layer.rgb)
    extra = 1
    if height * width > max_pixels:
        extra = int(np.ceil(np.sqrt(height * width / max_pixels)))
        notes.append(
            f"{layer.name!r} is {height} x {width} px per slice; computing at 1/{extra} "
            f"resolution ({-(-height // extra)} x {-(-width // extra)} px) to fit in memory."
        )
        plane = plane[::extra, ::extra]
    raw = np.asarray(plane)
    if raw.ndim == 3 and not layer.rgb:  # pragma: no cover - leading axes are sliced above
        raise ValueError(f"layer {layer.name!r}: could not reduce the data to one 2D slice.")
    if notify:
        for note in notes:
            (_notify_warning if "memory" in note else _notify_info)(note)
    return LayerImage(
        name=layer.name,
        raw=raw,
        normalized=_normalize(raw, layer),
        stride=stride * extra,
        level=level,
        plane_step=extra,
        slice_index=slice_index,
        notes=notes,
    )


def slices_shape(layer, level: int = 0) -> tuple[int, ...]:
    """Shape of the leading (slice) axes at a level of the layer."""
    source = layer.data[level] if layer.multiscale else layer.data
    return _spatial_lead(source.shape, layer.rgb)


def iter_slices(layer, level: int = 0, stride: int = 1):
    """Every 2D plane of an nD layer: yields ``(index, raw_plane)`` at the given level/stride."""
    source = layer.data[level] if layer.multiscale else layer.data
    for index in np.ndindex(*slices_shape(layer, level)):
        plane = source[index] if index else source
        yield index, np.asarray(plane[::stride, ::stride] if stride > 1 else plane)


def _spatial_lead(shape, rgb: bool) -> tuple[int, ...]:
    shape = tuple(int(n) for n in shape)
    end = len(shape) - (1 if rgb else 0)
    return shape[: end - 2]


def _spatial_hw(shape, rgb: bool) -> tuple[int, int]:
    shape = tuple(int(n) for n in shape)
    end = len(shape) - (1 if rgb else 0)
    return shape[end - 2], shape[end - 1]


def versions() -> dict:
    """Versions worth recording with a result (torch only if it is already loaded)."""
    from .. import __version__

    found = {"napari_geostyle": __version__}
    for name in ("napari", "torch", "numpy"):
        module = sys.modules.get(name)
        if module is not None:
            found[name] = getattr(module, "__version__", "unknown")
    return found


def provenance(stage: str, inputs: dict, options: dict, transform=None, **extra) -> dict:
    """What ``layer.metadata["geostyle"]`` holds: how a result was made."""
    record = {
        "stage": stage,
        "inputs": dict(inputs),
        "options": {key: _jsonable(value) for key, value in options.items()},
        "versions": versions(),
        "version": versions()["napari_geostyle"],
    }
    if transform is not None:
        record["transform"] = transform.to_dict()
    record.update(extra)
    return record


def _jsonable(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def full_resolution_points(points, stride: int) -> np.ndarray:
    """Pixel ``(row, col)`` of a strided image -> the same places in full-resolution pixels."""
    points = np.asarray(points, float)
    return points if stride == 1 else (points + 0.5) * stride - 0.5


def strided_points(points, stride: int) -> np.ndarray:
    """Inverse of :func:`full_resolution_points`."""
    points = np.asarray(points, float)
    return points if stride == 1 else (points + 0.5) / stride - 0.5


def add_or_update_image(viewer, name: str, data, **kwargs):
    """Update the Image layer called ``name`` (same kind of data) or add a new one."""
    Image = _image_type()
    if name in viewer.layers:
        existing = viewer.layers[name]
        if isinstance(existing, Image) and existing.rgb == kwargs.get("rgb", existing.rgb):
            existing.data = data
            for key in ("scale", "translate", "metadata"):
                if key in kwargs:
                    setattr(existing, key, kwargs[key])
            return existing
    return viewer.add_image(data, name=name, **kwargs)


def unique_layer_name(viewer, base: str) -> str:
    """``base`` if no layer has that name, else ``base [2]``, ``base [3]``, ...: results never
    replace a layer the user has (and may have edited)."""
    taken = {layer.name for layer in viewer.layers}
    if base not in taken:
        return base
    number = 2
    while f"{base} [{number}]" in taken:
        number += 1
    return f"{base} [{number}]"


def slice_suffix(slice_index) -> str:
    """`` (slice 3)`` / `` (slice 1, 4)`` for a slice of a stack; empty for a 2D image."""
    if not slice_index:
        return ""
    return " (slice " + ", ".join(str(int(i)) for i in slice_index) + ")"


def place_below_points(viewer, layer) -> None:
    """Move ``layer`` (usually just added, on top) under the lowest Points/Shapes layer it
    covers, so new images never hide the landmarks a user is editing."""
    from napari.layers import Points, Shapes

    names = [candidate.name for candidate in viewer.layers]
    if layer.name not in names:
        return
    index = names.index(layer.name)
    covered = [
        i for i, c in enumerate(viewer.layers) if isinstance(c, (Points, Shapes)) and i < index
    ]
    if covered:
        viewer.layers.move(index, min(covered))


BESIDE_GAP = 0.1  # results placed beside their content: the gap, a fraction of its width


def _world_box(layer):
    """``(low, high)`` world (row, col) corners of what ``layer`` draws (an image's outer
    pixel edges included), or None when it draws nothing."""
    try:
        low, high = (np.asarray(corner, float)[-2:] for corner in layer.extent.world)
    except (AttributeError, ValueError, IndexError):
        return None
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        return None
    if isinstance(layer, _image_type()):
        half = np.abs(np.asarray(layer.scale, float)[-2:]) / 2.0
        low, high = low - half, high + half
    return low, high


def _draws_nothing(layer) -> bool:
    """Points or shapes layers without any (their extent is a placeholder)."""
    data = layer.data
    if isinstance(data, np.ndarray):
        return data.size == 0
    return isinstance(data, list) and len(data) == 0


def free_shift_beside(viewer, layer, max_slots: int = 32) -> float:
    """The column shift (world units) that puts a copy of ``layer``'s picture beside it, to
    the right, where no other shown layer draws: one width and a gap right, or further right
    past what is there (a live warp's output, earlier results). Results placed there hide
    nothing, and are hidden by nothing."""
    box = _world_box(layer)
    if box is None:
        return 0.0
    low, high = box
    width = high[1] - low[1]
    step = width * (1.0 + BESIDE_GAP)
    others = [
        _world_box(other)
        for other in viewer.layers
        if other.visible and not same_layer(other, layer) and not _draws_nothing(other)
    ]
    others = [other for other in others if other is not None]
    for slot in range(1, max_slots + 1):
        shift = np.array([0.0, step * slot])
        slot_low, slot_high = low + shift, high + shift
        if not any(
            np.all(slot_low < other_high) and np.all(other_low < slot_high)
            for other_low, other_high in others
        ):
            return float(step * slot)
    return float(step * (max_slots + 1))


def layer_present(viewer, layer) -> bool:
    """Whether ``layer`` (not merely a layer of the same name) is still in the viewer."""
    if layer is None:
        return False
    for candidate in viewer.layers:
        if candidate is layer or _unwrapped(candidate) is _unwrapped(layer):
            return True
    return False


def _unwrapped(layer):
    # napari's test proxies wrap layers; the wrapped object is what identity should compare
    return getattr(layer, "__wrapped__", layer)


def applicable_layers(viewer) -> list:
    """Image and Labels layers a transform can be applied to, in layer-list order."""
    from napari.layers import Image, Labels

    return [layer for layer in viewer.layers if isinstance(layer, (Image, Labels))]
