"""Long runs in napari thread workers, shown live in layers (shared by widgets and viewer_api).

- ``texture_run`` / ``pipeline_run``: resolve and read the layers (``texture_layers`` /
  ``pipeline_layers``: a ``RunLayers``), build the core generator (so a bad option is a
  ``ValueError`` for the caller) and start a ``StyleRun`` (``start_run``); the widgets pass
  their hooks (``on_done``, ``on_progress``, ``reuse``, ``color_output``), ``viewer_api``
  returns the run's worker. The all-frames runs (``stack_run``) share ``RunLayers`` and
  ``start_run``.
- ``estimate_and_warp``: the geometric stage as a generator (estimate, then warp every plane);
  an ``EstimateMonitor`` shows the GUI how far the estimate is (refine reports every step) and
  stops it when cancelled.
- ``StyleRun``: a texture-transfer or both-stage run. The core generator runs in a napari
  ``GeneratorWorker``; every step reaches the main thread through ``yielded``, where the output
  layer is updated from previews (float32, contrast limits reset) and a napari progress bar shows
  level and iteration. Cancelling keeps the last preview and frees cached GPU memory. Errors
  become napari notifications that say what to do.
- Results go to new layers (``<content> textured``, ``... [2]``, ...) unless ``reuse`` asks to
  update the layer of the same name; they keep the content's kind (gray stays gray, uint16 stays
  uint16) and sit under the landmark Points layers.
- ``abandon()`` (the widget is gone, the viewer closed) stops the work and touches no layer.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .layer_data import (
    add_or_update_image,
    free_shift_beside,
    layer_present,
    place_below_points,
    provenance,
    read_layer_image,
    resolve_image_layer,
    same_layer,
    slice_suffix,
    spatial_scale_translate,
    unique_layer_name,
)
from .warp_renderer import warp_layer_planes

if TYPE_CHECKING:  # pragma: no cover
    from napari.layers import Image


class EstimateCancelled(Exception):
    """The user cancelled the estimate (raised inside it by ``EstimateMonitor``)."""


class EstimateMonitor:
    """``estimate_warp``'s ``progress`` callback, read by the GUI thread: ``done``, ``total``
    and ``stage`` of the running estimate. After ``cancel()`` its next report raises
    ``EstimateCancelled``, which stops the estimate there (refine reports every step)."""

    def __init__(self):
        self._report = (0, 1, "starting")
        self._cancelled = threading.Event()

    def __call__(self, done: int, total: int, stage: str) -> None:
        if self._cancelled.is_set():
            raise EstimateCancelled("the estimate was cancelled.")
        # one assignment, so the GUI thread never sees one report's count with another's stage
        self._report = (int(done), int(total), stage)

    @property
    def report(self) -> tuple[int, int, str]:
        """``(done, total, stage)`` of the latest report, read together."""
        return self._report

    @property
    def done(self) -> int:
        return self._report[0]

    @property
    def total(self) -> int:
        return self._report[1]

    @property
    def stage(self) -> str:
        return self._report[2]

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()


def _import_points_dependencies() -> None:
    """Import what napari imports when the first Points layer is made (pandas, for the layer's
    features: about 0.2 s). Called in the worker, so the main thread does not stall on it
    while it makes the live layers."""
    import importlib

    try:
        importlib.import_module("pandas")
    except ImportError:  # napari would then fail on its own, with its own message
        pass


def estimate_and_warp(
    content, style, model, method, device=None, stack=None, monitor=None, hints=None
):
    """Generator: estimate ``content`` -> geometry of ``style``, then warp.

    ``content``/``style`` are :class:`LayerImage`; the estimate sees what the user sees (contrast
    limits applied), the warp transforms the raw data. ``monitor``: an ``EstimateMonitor``.
    ``hints``: ``(content_points, style_points)`` in each layer's data pixels, which steer the
    estimate (``estimate_warp``). Yields progress counts, returns ``(transform, warped)``.
    """
    from ..core.estimate import estimate_warp

    _import_points_dependencies()
    transform = estimate_warp(
        content.normalized,
        style.normalized,
        model=model,
        method=method,
        device=device,
        progress=monitor,
        hints=hints,
    )  # the full warp: the live warp doses it with the widget's strength; fmt: skip
    yield 0
    source = content.raw if stack is None else None
    warped = yield from warp_layer_planes(source, transform, device, stack)
    return transform, warped


def friendly_error(error, device=None) -> str:
    """A message that says what went wrong and what to do about it."""
    text = str(error)
    name = type(error).__name__
    if "out of memory" in text.lower() or name == "OutOfMemoryError":
        return (
            f"Out of memory on {device or 'the device'}: use a smaller size, the 'fast' preset, "
            "or choose device 'cpu' (slower, but uses system memory)."
        )
    if isinstance(error, ImportError):
        return f"PyTorch could not be loaded ({text}). Install it: pip install torch torchvision."
    if isinstance(error, (ValueError, FileNotFoundError)):
        return text
    return f"{name}: {text}"


def free_device_memory() -> None:
    """Give cached GPU memory back (a second run rebuilds what it needs)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


PROGRESS_INTERVAL_S = 0.1


def progress_position(step) -> tuple[int, int]:
    """``(done, total)`` iterations over all pyramid levels for a texture step."""
    if getattr(step, "total", 0):
        return int(step.progress), int(step.total)
    levels = max(1, int(step.levels or 1))
    iterations = max(1, int(step.iterations or 1))
    level = int(step.level or 0)
    level_index = level - 1 if level >= 1 else 0
    done = min(levels * iterations, level_index * iterations + int(step.iteration or 0))
    return done, levels * iterations


class StyleRun:
    """Runs ``steps`` (a core generator of texture-like steps, not yet started) in a napari worker.

    ``stage`` is "texture" or "geometric style" (which also gets a first step with ``warped``
    and ``transform``). The result lands in the Image layer ``output_name`` with
    ``metadata["geostyle"]`` provenance. ``worker`` is the started napari worker.
    """

    def __init__(
        self,
        viewer,
        steps,
        *,
        content_layer,
        output_name: str,
        stage: str,
        inputs: dict,
        options: dict,
        reference_shape,
        stride: int = 1,
        device=None,
        on_done=None,
        on_progress=None,
        content_like=None,
        value_range=None,
        keep_color: bool = False,
        slice_index=(),
        reuse: bool = False,
        monitor=None,
    ):
        self.viewer = viewer
        self.monitor = monitor  # the estimate's EstimateMonitor: Cancel stops a refinement
        self._steps = steps
        self.output_name = output_name + slice_suffix(slice_index)
        self.stage = stage
        self.inputs = inputs
        self.options = options
        self.device = device
        self.on_done = on_done
        self.on_progress = on_progress  # (done, total, text) for a widget's own progress bar
        self.content_like = content_like  # the content's raw 2D slice: the result's kind
        self.warped_like = None  # both stages: the warped content (its alpha, in its frame)
        self.value_range = value_range
        self.keep_color = keep_color
        self.reuse = reuse
        self.abandoned = False
        self.started_at = None
        self.reference_shape = tuple(int(n) for n in reference_shape[:2])
        self.output: Image | None = None
        self.warped: Image | None = None
        self.transform = None
        self.backbone = None  # the texture network that ran, as the steps report it
        self.error = None
        self.cancelled = False
        self.done = False
        self._final_shown = False
        self.steps_seen = 0
        scale, translate = spatial_scale_translate(content_layer)
        self._content_name = content_layer.name
        self._content_scale = scale * stride
        self._content_translate = translate + scale * (stride - 1) / 2.0
        if stage == "geometric style":  # the warp and result beside the content, as the warp's
            shift = free_shift_beside(viewer, content_layer)  # output: over nothing else
            self._content_translate = self._content_translate + np.array([0.0, shift])
        self._progress = None
        self.worker = None

    # ----------------------------------------------------------------- running
    def _generate(self):
        """Runs in the worker thread. Forwards every step that carries something to show
        (the warp, a preview, the result) and plain progress at most every
        ``PROGRESS_INTERVAL_S``: each forwarded step repaints the window on the main thread,
        which at hundreds of iterations a second slowed the whole run several times."""
        last = None
        forwarded_at = float("-inf")
        for step in self._steps:
            last = step
            now = time.monotonic()
            worth_showing = (
                step.image is not None
                or getattr(step, "done", False)
                or getattr(step, "stage", None) == "geometry"
            )
            if worth_showing or now - forwarded_at >= PROGRESS_INTERVAL_S:
                forwarded_at = now
                yield step
        return None if last is None else last.image

    def _close_steps(self) -> None:
        """Close the core generator: it drops its device tensors at once."""
        steps, self._steps = getattr(self, "_steps", None), None
        if steps is not None and hasattr(steps, "close"):
            steps.close()

    def start(self):
        from napari.qt.threading import create_worker

        worker = create_worker(self._generate, _start_thread=False, _ignore_errors=True)
        worker.yielded.connect(self._on_step)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_error)
        worker.aborted.connect(self._on_aborted)
        worker.finished.connect(self._on_finished)
        worker.geostyle_run = self  # keep this object alive as long as the worker
        self.worker = worker
        self.started_at = time.monotonic()
        worker.start()
        return worker

    def cancel(self) -> None:
        """Stop after the current step; the last preview stays in the output layer."""
        if self.worker is not None:
            self.cancelled = True
            if self.monitor is not None:
                self.monitor.cancel()
            self.worker.quit()

    def abandon(self) -> None:
        """The viewer or widget is gone: stop, touch no layer, call nobody back. (A result
        layer still in an open viewer keeps its last preview, recorded as cancelled.)"""
        output = self.output
        if self.running and not self.abandoned and layer_present(self.viewer, output):
            assert output is not None, "present in the viewer"
            record = output.metadata.get("geostyle")
            if isinstance(record, dict):
                record.update(cancelled=True, complete=False)
        self.abandoned = True
        self.on_done = self.on_progress = None
        self.cancel()

    @property
    def running(self) -> bool:
        """True from ``start()`` until every result handler has run."""
        return self.worker is not None and not self.done

    # ----------------------------------------------------------------- main-thread handlers
    def _on_step(self, step) -> None:
        self.steps_seen += 1
        if self.abandoned:
            return
        if getattr(step, "stage", None) == "geometry":
            self._show_warped(step)
            return
        self.backbone = getattr(step, "backbone", None) or self.backbone
        done, total = progress_position(step)
        self._report_progress(step, done, total)
        if step.image is not None and not self._final_shown:
            self._show_output(step.image, final=False)

    def _report_progress(self, step, done: int, total: int) -> None:
        """napari's progress bar and the widget's (``on_progress``)."""
        if self.done:
            return
        bar = self._progress  # napari's progress bar may process events: hold a local reference
        if bar is None:
            from napari.utils import progress

            bar = self._progress = progress(total=total, desc=f"GeoStyle {self.stage}")
        if bar.total != total:
            bar.total = total
        bar.set_description(f"GeoStyle {self.stage}: {self._position_text(step)}")
        bar.n = done
        bar.refresh()
        if self.on_progress is not None:
            self.on_progress(done, total, self._progress_text(step, done, total))

    def _position_text(self, step) -> str:
        return f"level {step.level}/{step.levels}, iteration {step.iteration}/{step.iterations}"

    def _progress_text(self, step, done: int, total: int) -> str:
        text = self._position_text(step)
        elapsed = time.monotonic() - (self.started_at or time.monotonic())
        if done > 0 and total > done:
            text += f", about {elapsed * (total - done) / done:.0f} s left"
        return text

    def _result_layer(self, name: str, data, **kwargs):
        """A new layer called ``name`` (made unique), or with ``reuse`` the layer of that name."""
        active = self.viewer.layers.selection.active
        if self.reuse:
            layer = add_or_update_image(self.viewer, name, data, **kwargs)
        else:
            layer = self.viewer.add_image(data, name=unique_layer_name(self.viewer, name), **kwargs)
        place_below_points(self.viewer, layer)
        if active is not None and active is not layer:
            self.viewer.layers.selection.active = active  # a drag still moves the point
        return layer

    def _show_warped(self, step) -> None:
        self.transform = step.transform
        self.warped_like = step.warped
        self.warped = self._result_layer(
            f"{self._content_name} warped",
            step.warped,
            scale=self._content_scale,
            translate=self._content_translate,
            rgb=step.warped.ndim == 3 and step.warped.shape[-1] in (3, 4),
            metadata={"geostyle": provenance("warp", self.inputs, self.options, step.transform)},
        )

    def _output_scale(self, image) -> dict:
        """Place the output over the content (texture may run at a smaller size)."""
        shape = self.warped.data.shape if self.warped is not None else self.reference_shape
        factor = np.asarray(shape[:2], float) / np.asarray(image.shape[:2], float)
        return {
            "scale": self._content_scale * factor,
            "translate": self._content_translate + self._content_scale * (factor - 1) / 2.0,
        }

    def _in_content_kind(self, image):
        """The result as the content's kind (gray / colour, dtype), and its contrast limits."""
        from ..core.images import match_kind

        image = np.asarray(image, dtype=np.float32)
        if self.content_like is None:
            return image, (0.0, 1.0)
        # the warp's output (both stages) carries the content's alpha in the output's frame
        like = self.warped_like if self.warped_like is not None else self.content_like
        result = match_kind(image, like, self.value_range, self.keep_color)
        if result.dtype.kind in "ui" or self.value_range is not None:
            low, high = self.value_range or (0, np.iinfo(result.dtype).max)
            return result, (float(low), float(high))
        return result, (0.0, 1.0)

    def _show_output(self, image, final: bool) -> None:
        image, limits = self._in_content_kind(image)
        meta = provenance(
            self.stage,
            self.inputs,
            self.options,
            self.transform,
            complete=final,
            cancelled=self.cancelled,
            device=str(self.device) if self.device is not None else "auto",
            backbone=self.backbone,
        )
        placement = self._output_scale(image)
        rgb = image.ndim == 3
        output = self.output
        if output is not None and output.rgb == rgb and layer_present(self.viewer, output):
            output.data = image
            output.metadata = {"geostyle": meta}
            for key, value in placement.items():
                setattr(output, key, value)
        else:
            output = self.output = self._result_layer(
                self.output_name, image, rgb=rgb, metadata={"geostyle": meta}, **placement
            )
            self.output_name = output.name
        if not rgb:
            output.contrast_limits = limits
        output.refresh()

    def _on_returned(self, image) -> None:
        if image is not None and not self.abandoned:
            self._final_shown = True
            self._show_output(image, final=True)

    def _on_error(self, error) -> None:
        from napari.utils.notifications import show_error

        self._close_steps()
        cancelled = isinstance(error, EstimateCancelled)  # the user's Cancel, not a failure
        if not cancelled:
            self.error = error
        if self.abandoned or cancelled:
            self.cancelled = self.cancelled or cancelled
            free_device_memory()
            return
        if "out of memory" in str(error).lower():
            from ..core.features import clear_trunk_cache

            clear_trunk_cache()  # the next run rebuilds the network on the chosen device
        free_device_memory()
        show_error(f"GeoStyle {self.stage} failed: {friendly_error(error, self.device)}")

    def _on_aborted(self) -> None:
        self.cancelled = True
        if self.output is not None and not self.abandoned:
            self.output.metadata["geostyle"]["cancelled"] = True
            self.output.metadata["geostyle"]["complete"] = False
        self._close_steps()
        free_device_memory()

    def _on_finished(self) -> None:
        self.done = True
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        self._close_steps()
        if self.abandoned:  # drop what the closed viewer's layers would have held
            self.output = self.warped = None
            free_device_memory()
        if self.on_done is not None:
            self.on_done(self)


@dataclass
class RunLayers:
    """The layers a texture or two-stage run reads, resolved and checked, and what the run
    records of them: shared by the one-image runs here and the all-frames runs
    (``stack_run``)."""

    content: Any  # the content's Image layer
    textures: list  # the texture-style layers
    geometry: Any  # the geometry-style layer; None for a texture run
    stage: str  # "texture" or "geometric style"
    output_name: str  # the result layer's name
    inputs: dict  # the input layers' names by role, for the provenance

    def texture_input(self, viewer) -> Any:
        """The texture styles as the core takes them: one image, or a list of them."""
        images = [read_layer_image(layer, viewer).normalized for layer in self.textures]
        return images[0] if len(images) == 1 else images


def texture_layers(viewer, content, style) -> RunLayers:
    """The layers of a texture run of ``style`` (a layer, a name, or a list of them) onto
    ``content``; the result goes to ``<content> textured``."""
    content_layer = resolve_image_layer(viewer, content, "content")
    style_layers = resolve_texture_layers(viewer, content_layer, style)
    return RunLayers(
        content=content_layer,
        textures=style_layers,
        geometry=None,
        stage="texture",
        output_name=f"{content_layer.name} textured",
        inputs={"content": content_layer.name, "texture_style": [s.name for s in style_layers]},
    )


def pipeline_layers(viewer, content, style, geometry_style, texture_style) -> RunLayers:
    """The layers of a two-stage run (``resolve_style_layers``); the result goes to
    ``<content> geostyle``."""
    content_layer = resolve_image_layer(viewer, content, "content")
    layers = resolve_style_layers(viewer, content_layer, style, geometry_style, texture_style)
    return RunLayers(
        content=content_layer,
        textures=[layers["texture_style"]],
        geometry=layers["geometry_style"],
        stage="geometric style",
        output_name=f"{content_layer.name} geostyle",
        inputs={"content": content_layer.name, **{k: v.name for k, v in layers.items()}},
    )


#: the keyword options of a run that are its hooks (``start_run``'s), not the core generator's
RUN_HOOKS = ("on_done", "on_progress", "reuse", "color_output")


def split_run_hooks(options: dict) -> tuple[dict, dict]:
    """``(hooks, core options)``: ``options`` split into the run's hooks (``RUN_HOOKS``, for
    ``start_run``) and the rest (for the core generator and the provenance)."""
    hooks = {name: options[name] for name in RUN_HOOKS if name in options}
    return hooks, {name: value for name, value in options.items() if name not in hooks}


def start_run(
    viewer,
    steps,
    layers: RunLayers,
    content_image,
    options: dict,
    *,
    on_done=None,
    on_progress=None,
    reuse: bool = False,
    color_output: bool = False,
    run_class: type = StyleRun,
    **run_options,
) -> StyleRun:
    """Start a ``run_class`` (a :class:`StyleRun`) of ``steps``, its result shown like
    ``content_image`` (``_result_kind``) and placed over ``layers.content``.

    ``options`` are recorded in the provenance (its ``device`` is where the run goes);
    ``run_options`` go to ``run_class`` as they are (and override the result kind's).
    """
    kind = _result_kind(layers.content, content_image, layers.textures, color_output)
    run = run_class(
        viewer,
        steps,
        content_layer=layers.content,
        output_name=layers.output_name,
        stage=layers.stage,
        inputs=layers.inputs,
        options=options,
        reference_shape=content_image.shape,
        stride=content_image.stride,
        device=options.get("device"),
        on_done=on_done,
        on_progress=on_progress,
        reuse=reuse,
        **{**kind, **run_options},
    )
    run.start()
    return run


def _result_kind(content_layer, content_image, style_layers, color_output: bool) -> dict:
    """How a texture result is shown: in the content's kind (gray stays gray, integers keep
    their dtype and the contrast range the user saw), colour only when asked and a style has
    colour."""
    value_range = None if content_layer.rgb else tuple(content_layer.contrast_limits)
    return {
        "content_like": content_image.raw,
        "value_range": value_range,
        "keep_color": bool(color_output) and any(layer.rgb for layer in style_layers),
        "slice_index": content_image.slice_index,
    }


def resolve_texture_layers(viewer, content_layer, style) -> list:
    """The texture-style layers of ``style`` (a layer, a name, or a list of them); none may be
    the content layer (``ValueError``)."""
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    if not styles:
        raise ValueError("give at least one texture-style layer.")
    style_layers = [resolve_image_layer(viewer, s, "texture style") for s in styles]
    if any(same_layer(layer, content_layer) for layer in style_layers):
        raise ValueError("the content layer is also a texture style; pick a different style layer.")
    return style_layers


def texture_run(viewer, content, style, **options) -> StyleRun:
    """Start a texture transfer of ``style`` (a layer or a list of layers) onto ``content``;
    the result lands in ``<content> textured``. See ``viewer_api.start_texture_transfer``;
    ``options`` may hold the run's hooks (``RUN_HOOKS``)."""
    from ..core.texture import iter_texture_transfer

    hooks, options = split_run_hooks(options)
    layers = texture_layers(viewer, content, style)
    content_image = read_layer_image(layers.content, viewer)
    # Built here, not in the worker, so a bad option is a ValueError for the caller; the
    # generator does no work until the worker's first next().
    steps = iter_texture_transfer(content_image.normalized, layers.texture_input(viewer), **options)
    return start_run(viewer, steps, layers, content_image, options, **hooks)


def resolve_style_layers(viewer, content_layer, style, geometry_style, texture_style) -> dict:
    """``{"geometry_style": layer, "texture_style": layer}``: each given one, else ``style``;
    neither may be the content layer (``ValueError``)."""
    roles = {
        "geometry_style": geometry_style if geometry_style is not None else style,
        "texture_style": texture_style if texture_style is not None else style,
    }
    layers = {}
    for role, given in roles.items():
        layers[role] = resolve_image_layer(viewer, given, role.replace("_", " "))
        if same_layer(layers[role], content_layer):
            raise ValueError(
                f"the content layer is also the {role.replace('_', ' ')}; pick another."
            )
    return layers


def pipeline_run(
    viewer, content, style, geometry_style=None, texture_style=None, **options
) -> StyleRun:
    """Start both stages; the warp lands in ``<content> warped``, the result in
    ``<content> geostyle``. See ``viewer_api.start_geometric_style_transfer``; ``options`` may
    hold the run's hooks (``RUN_HOOKS``)."""
    from ..core.pipeline import iter_geometric_style_transfer

    hooks, options = split_run_hooks(options)
    layers = pipeline_layers(viewer, content, style, geometry_style, texture_style)
    content_image = read_layer_image(layers.content, viewer)
    geometry_image = read_layer_image(layers.geometry, viewer).normalized

    # Built here so that bad options (model, method, texture) are a ValueError for the caller.
    monitor = EstimateMonitor()
    steps = iter_geometric_style_transfer(
        content_image.normalized,
        geometry_style=geometry_image,
        texture_style=layers.texture_input(viewer),
        progress=monitor,
        **options,
    )
    return start_run(viewer, steps, layers, content_image, options, **hooks, monitor=monitor)
