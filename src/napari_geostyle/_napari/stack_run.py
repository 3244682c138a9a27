""" "All frames" runs: every slice of a stack or time series through the core stack engine.

``stack_texture_run`` / ``stack_pipeline_run`` read the content layer lazily, one 2D slice at
a time in the worker (:class:`LayerFrames`), and run
:func:`napari_geostyle.core.stack_transfer.iter_stack_transfer` (coherent: one geometry
estimate, each frame's texture warm-started from the previous frame) in a :class:`StackRun`.
The result is one stack layer with the content's leading axes, created with the first preview
and filled in on the main thread as frames finish; progress says which frame is being done.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np

from .layer_data import (
    layer_present,
    leading_shape,
    provenance,
    read_layer_image,
)
from .runs import (
    RunLayers,
    StyleRun,
    pipeline_layers,
    split_run_hooks,
    start_run,
    texture_layers,
)


def has_frames(layer) -> bool:
    """Whether ``layer`` is an Image layer with axes beyond (rows, cols[, RGB])."""
    try:
        return bool(leading_shape(layer))
    except (AttributeError, IndexError, TypeError):
        return False


class LayerFrames:
    """The 2D slices of an nD Image layer as a lazy sequence (leading axes in C order), read
    as the core reads a layer image (through the contrast limits captured now)."""

    def __init__(self, layer, first):
        self.layer = layer
        self.indices = list(np.ndindex(*leading_shape(layer)))
        self._first = first  # slice 0, read already to check the input

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> np.ndarray:
        if position == 0:
            return self._first.normalized
        return read_layer_image(
            self.layer, slice_index=self.indices[position], notify=False
        ).normalized


class StackRun(StyleRun):
    """A :class:`StyleRun` over every frame: ``output`` is one stack layer filled in frame by
    frame (previews included); ``frames_done`` of ``frames`` are finished."""

    def __init__(self, viewer, steps, *, content_layer, indices, **kwargs):
        super().__init__(viewer, steps, content_layer=content_layer, **kwargs)
        self.indices = indices
        self.frames = len(indices)
        self.frames_done = 0
        scale = np.asarray(content_layer.scale, float)
        translate = np.asarray(content_layer.translate, float)
        self._lead_scale, self._lead_translate = scale[:-2], translate[:-2]
        self._frame = 0

    def _position_text(self, step) -> str:
        text = f"frame {step.frame + 1}/{step.frames}"
        if step.stage == "texture":
            text += f", {super()._position_text(step)}"
        return text

    def _on_step(self, step) -> None:
        self.steps_seen += 1
        if self.abandoned:
            return
        self._frame = step.frame
        if step.transform is not None:
            self.transform = step.transform
        if step.total:
            self._report_progress(step, step.progress, step.total)
        if step.frame_done:
            self.frames_done = step.frame + 1
        if step.image is not None:
            self._show_frame(step.frame, step.image)

    def _meta(self) -> dict:
        return provenance(
            self.stage,
            self.inputs,
            self.options,
            self.transform,
            complete=self.frames_done == self.frames,
            cancelled=self.cancelled,
            frames=self.frames,
            frames_done=self.frames_done,
            coherent=True,
            device=str(self.device) if self.device is not None else "auto",
        )

    def _show_frame(self, frame: int, image) -> None:
        """Put frame ``frame``'s image (a preview or its result) into the stack layer."""
        image, limits = self._in_content_kind(image)
        index = self.indices[frame]
        output = self.output
        if (
            output is None
            or not layer_present(self.viewer, output)
            or output.data.shape[len(index) :] != image.shape
        ):
            stack = np.zeros((*leading_shape_of(self.indices), *image.shape), image.dtype)
            stack[index] = image
            placement = self._output_scale(image)
            output = self.output = self._result_layer(
                self.output_name,
                stack,
                rgb=image.ndim == 3,
                metadata={"geostyle": self._meta()},
                scale=(*self._lead_scale, *placement["scale"]),
                translate=(*self._lead_translate, *placement["translate"]),
            )
            self.output_name = output.name
            if image.ndim == 2:
                output.contrast_limits = limits
            return
        output.data[index] = image  # in place: the layer keeps its array; refresh re-slices
        output.metadata = {"geostyle": self._meta()}
        output.refresh()

    def _on_returned(self, image) -> None:
        if self.output is not None and not self.abandoned:
            self._final_shown = True
            self.output.metadata = {"geostyle": self._meta()}


def leading_shape_of(indices) -> tuple[int, ...]:
    """The leading-axes shape that ``np.ndindex`` walked to give ``indices``."""
    return tuple(int(n) + 1 for n in indices[-1])


def _start(
    viewer, layers: RunLayers, *, model="affine+tps", method="network", **options
) -> StackRun:
    """Read the first frame and the styles, build the core stack generator (a bad option is a
    ``ValueError`` here) and start a :class:`StackRun` of every frame of ``layers.content``;
    ``options`` may hold the run's hooks (``RUN_HOOKS``), ``model`` and ``method`` are the
    geometry's (when ``layers`` has a geometry style)."""
    from ..core.stack_transfer import iter_stack_transfer

    hooks, options = split_run_hooks(options)
    content = layers.content
    if not has_frames(content):
        raise ValueError(
            f"{content.name!r} is a single 2D image: untick 'all frames' (it is "
            "for stacks and time series)."
        )
    lead = leading_shape(content)
    first = read_layer_image(content, viewer, slice_index=(0,) * len(lead))
    frames = LayerFrames(content, first)
    texture_input = layers.texture_input(viewer)
    geometry = {}
    if layers.geometry is not None:
        geometry = {
            "geometry_style": read_layer_image(layers.geometry, viewer).normalized,
            "model": model,
            "method": method,
        }
    # Built here, not in the worker, so a bad option is a ValueError for the caller.
    # LayerFrames is a sequence of 2D images by duck typing (len and indexing)
    steps = iter_stack_transfer(
        cast("Sequence[np.ndarray]", frames), texture_input, **geometry, **options
    )
    if layers.geometry is not None:  # recorded in the provenance
        options = {**options, "model": model, "method": method}
    run = start_run(
        viewer,
        steps,
        layers,
        first,
        {**options, "all_frames": True},
        **hooks,
        run_class=StackRun,
        indices=frames.indices,
        slice_index=(),  # the result has every slice
    )
    return cast(StackRun, run)  # start_run makes a run of run_class


def stack_texture_run(viewer, content, style, **options) -> StackRun:
    """Texture transfer of ``style`` (a layer or a list) onto every frame of ``content``; the
    stack result lands in ``<content> textured``. ``options`` may hold the run's hooks
    (``RUN_HOOKS``)."""
    return _start(viewer, texture_layers(viewer, content, style), **options)


def stack_pipeline_run(
    viewer, content, style, geometry_style=None, texture_style=None, **options
) -> StackRun:
    """Both stages on every frame of ``content`` (the geometry estimated on the first frame);
    the stack result lands in ``<content> geostyle``. ``options`` may hold the run's hooks
    (``RUN_HOOKS``), ``model`` and ``method``."""
    layers = pipeline_layers(viewer, content, style, geometry_style, texture_style)
    return _start(viewer, layers, **options)
