"""Geometric Warp widget: warp a content layer to a geometry-style layer, then edit the landmarks."""

from __future__ import annotations

import time

import numpy as np
from magicgui.widgets import ComboBox, FloatSlider, Label
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar

from .._napari.layer_data import leading_shape, read_layer_image, resolve_image_layer
from ..core.estimate import METHODS
from ..core.estimate import MODELS as _CORE_MODELS
from ..core.landmark_models import FIT_MODELS
from ._common import (
    FormWidget,
    LayerCombo,
    Section,
    WidgetLife,
    bind_console,
    choose_file,
    device_names,
    follow_layer_list,
    form,
    keep_different,
    row,
    run_or_cancel,
    scroll_body,
)
from ._controls import button, check, combo, qt_button, tooltip
from .hint_section import HintSection

DEFAULT_MODEL = "affine+tps"
# display order: the default first, then core's order
MODELS = (DEFAULT_MODEL, *(model for model in _CORE_MODELS if model != DEFAULT_MODEL))
SLICE_MODES = ("current slice", "all slices")
# display order: the most flexible fit first (core lists them from the most rigid)
LANDMARK_FITS = tuple(reversed(FIT_MODELS))
STRENGTH_STEPS = 100  # slider positions from no warp (0) to the full warp (1)


def describe_warp(model: str) -> str:
    """ "an affine+TPS warp", "a TPS warp": the model named for people, with its article."""
    name = model.replace("tps", "TPS")
    article = "an" if name[0].lower() in "aeio" else "a"
    return f"{article} {name} warp"


class GeometricWarpWidget(FormWidget):
    """Plugins > GeoStyle > Geometric Warp.

    Run estimates the warp in a thread worker; the result is a live :class:`LiveWarp`
    (``self.live``) whose control / target points can be dragged, added, deleted, undone.
    While it estimates, the status counts the seconds, a bar shows the refinement's steps, and
    Run reads Cancel: a cancelled estimate is abandoned at once (the widget is free for the next
    Run); refine stops at its next step, the search and network passes (well under a second)
    finish in the background, and the result is dropped.
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.live = None
        self.worker = None  # the running estimate's thread worker
        self.last_error = None
        self._estimate = None  # the running WarpEstimate (a cancelled one is abandoned)
        self._started_at = float("-inf")  # time.monotonic() of the last Run
        self._running_text = ""
        # The status and the bar are updated once a second from the monitor. No animated busy
        # bar: under software OpenGL each of its frames repaints the whole window, which took
        # CPU from the estimate on 2 cores (the estimate of the 1024 px interactivity
        # benchmark: 1.2-1.6 s without it, 1.8-3.9 s with).
        self._elapsed_timer = QTimer(self)
        self._elapsed_timer.setInterval(1000)
        self._elapsed_timer.timeout.connect(self._show_elapsed)
        self.life = WidgetLife(self)
        self.life.on_destroyed(self._stop_everything)
        self.life.on_panel_closed(self._panel_closed)

        self.content_combo = LayerCombo(napari_viewer, prefer=("content",), label="content")
        self.style_combo = LayerCombo(
            napari_viewer, prefer=("geometry style", "geometry", "style"), label="geometry style"
        )
        keep_different(self.content_combo, self.style_combo)
        self.model_combo = combo(MODELS, label="model")
        self.method_combo = combo(METHODS, "method", label="method")
        self.device_combo = combo(device_names(), label="device")
        self.slice_combo = combo(SLICE_MODES, "stacks", label="stacks")
        self.strength_slider = FloatSlider(
            min=0.0, max=1.0, step=1 / STRENGTH_STEPS, value=1.0, label="strength",
            tooltip=tooltip("strength"),
        )  # fmt: skip
        self.strength_slider.changed.connect(self._on_strength_changed)
        self.landmarks_button = button(
            "Start from landmarks", self.start_from_landmarks, "start_from_landmarks"
        )
        # Qt: magicgui has no Run/Cancel button with a progress bar and a word-wrapped status
        self.run_button = qt_button("Run", self.run_or_cancel)
        self.status_label = QLabel("Pick a content and a geometry-style layer, then Run.")
        self.status_label.setWordWrap(True)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setVisible(False)
        self.fit_combo = combo(LANDMARK_FITS, "landmark_fit", label="landmark fit")
        self.fit_combo.changed.connect(self._on_fit_changed)
        self.content_combo.changed.connect(self._clear_stale_status)
        self.style_combo.changed.connect(self._clear_stale_status)

        self.undo_button = button("Undo", self.undo)
        self.redo_button = button("Redo", self.redo)
        self.undo_button.native.setShortcut("Ctrl+Z")
        self.redo_button.native.setShortcut("Ctrl+Shift+Z")
        self.import_button = button("Import BigWarp CSV…", self.import_csv)
        self.export_button = button("Export BigWarp CSV…", self.export_csv)
        self.json_button = button("Export transform JSON…", self.export_transform)
        self.field_button = button(
            "Export displacement .npy…", self.export_displacement, "export_displacement"
        )
        self.grid_check = check("Show deformation grid", on_toggled=self._on_grid_toggled)
        self.side_check = check("side by side", "side_by_side", self._on_side_toggled, True)
        self.table_button = button("Landmark table", self.show_landmark_table)
        self.apply_button = button("Apply to layer…", self.apply_to_layer, "apply_to_layer")
        self.apply_combo = ComboBox(
            choices=self._apply_choices, label="", tooltip=tooltip("apply_layer")
        )
        self.inverse_check = check("inverse", "inverse")
        self.save_session_button = button("Save session…", self.save_session)
        self.load_session_button = button("Load session…", self.load_session)
        self.table_dock = None

        self.form = form(
            self.content_combo, self.style_combo, self.model_combo, self.strength_slider
        )
        self.advanced_box = Section(
            "advanced", [self.method_combo, self.device_combo, self.slice_combo]
        )
        self.landmarks_box = Section(
            "landmarks",
            [
                row(Label(value="landmark fit"), self.fit_combo),
                row(self.undo_button, self.redo_button),
                row(self.table_button, self.grid_check),
                row(self.side_check),
                row(self.apply_combo, self.apply_button, self.inverse_check),
            ],
            expanded=True,
            labels=False,
        )
        self.files_box = Section(
            "files",
            [
                row(self.import_button, self.export_button),
                row(self.json_button, self.field_button),
                row(self.save_session_button, self.load_session_button),
            ],
            labels=False,
        )
        self.hints = HintSection(self)  # hints steer the estimate (``hint_section``)
        self.sections = form(self.advanced_box, spacing=0, labels=False)
        self.edits = form(
            self.hints.box, self.landmarks_box, self.files_box, spacing=0, labels=False
        )
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button, 1)
        buttons.addWidget(self.landmarks_button.native)
        layout = scroll_body(self)
        layout.setSpacing(4)
        layout.addWidget(self.form.native)
        layout.addWidget(self.sections.native)
        layout.addLayout(buttons)
        layout.addWidget(self.status_label)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.edits.native)
        layout.addStretch(1)
        follow_layer_list(self, self.life)
        self.content_combo.changed.connect(self._update_enabled)
        self._update_enabled()
        bind_console(napari_viewer)

    def choice_forms(self) -> tuple:
        """The form's layer choices and the edit section's (its other layers to warp)."""
        return (self.form, self.edits)

    # ----------------------------------------------------------------- state
    def _update_enabled(self, *_):
        content = self.content_combo.layer()
        self.slice_combo.enabled = bool(content is not None and leading_shape(content))
        has_live = self.live is not None and not self.live.closed
        for control in (
            self.import_button,
            self.export_button,
            self.json_button,
            self.field_button,
            self.grid_check,
            self.table_button,
            self.apply_button,
            self.save_session_button,
        ):
            control.enabled = has_live
        self.undo_button.enabled = bool(has_live and self.live.can_undo)
        self.redo_button.enabled = bool(has_live and self.live.can_redo)

    def set_status(self, text: str) -> None:
        if not self.life.alive:
            return
        self.status_label.setText(text)
        self._update_enabled()

    def _clear_stale_status(self, *_):
        """A 'not started' / 'failed' message is about the old choice: drop it."""
        text = self.status_label.text()
        if text.startswith(("not started", "failed")):
            self.status_label.setText("Pick a content and a geometry-style layer, then Run.")

    def _stop_everything(self) -> None:
        """The widget is gone (viewer closed): stop the estimate, drop its result, stop live.
        (The elapsed-time timer is the widget's child: it went with it.)"""
        if self._estimate is not None:
            self._estimate.abandon()
        if self.live is not None:
            self.live.close()
        self.live = None

    def _panel_closed(self) -> None:
        """The panel was closed (or its viewer): drop a running estimate and stop the live
        warp (its points stop following edits; nothing touches the viewer later)."""
        from napari.utils.notifications import show_info

        self.cancel()
        retired = self.live.retire(replaced=False) if self.live is not None else ""
        self.live = None
        self._update_enabled()
        if retired:
            show_info(f"GeoStyle warp panel closed: {retired}")

    def _on_strength_changed(self, *_) -> None:
        if self.live is not None and not self.live.closed:
            self.live.set_strength(self.strength)

    @property
    def strength(self) -> float:
        """The slider's strength, on its steps (0.01)."""
        return round(self.strength_slider.value * STRENGTH_STEPS) / STRENGTH_STEPS

    def _on_fit_changed(self, model: str) -> None:
        if self.live is not None and not self.live.closed:
            self.live.set_fit_model(model)

    def _apply_choices(self, _widget=None) -> list[str]:
        """The layers 'Apply to layer' offers: Image and Labels layers but the live warp's."""
        from .._napari.layer_data import applicable_layers

        live_names = {self.live.warped.name} if self.live is not None else set()
        return [
            layer.name for layer in applicable_layers(self.viewer) if layer.name not in live_names
        ]

    def _refresh_apply_choices(self, *_):
        self.apply_combo.reset_choices()

    @property
    def busy(self) -> bool:
        """True while the estimate or a re-warp runs."""
        return self.worker is not None or (self.live is not None and self.live.busy)

    # ----------------------------------------------------------------- run
    def run_or_cancel(self) -> None:
        """The Run button: start, or cancel a running estimate (not on a double click's
        second click)."""
        run_or_cancel(self.worker is not None, self._started_at, self.run, self.cancel)

    def cancel(self) -> None:
        """Abandon the running estimate: the widget is free at once (Run starts a new one);
        the abandoned estimate finishes in the background and its result is discarded."""
        if self.worker is None:
            return
        refining = self._estimate.abandon()  # refine stops at its next step
        self.worker = None
        self._end_busy()
        self.set_status(
            "cancelled: the refinement stopped." if refining else
            "cancelled: the estimate's result will be discarded (it finishes in the background)."
        )  # fmt: skip

    def _end_busy(self) -> None:
        self._elapsed_timer.stop()
        self._estimate = None
        self.progress_bar.setVisible(False)
        self.run_button.setText("Run")

    def _show_elapsed(self) -> None:
        if not self.life.alive or self.worker is None:
            return
        seconds = time.monotonic() - self._started_at
        estimate = self._estimate
        done, total, stage = estimate.monitor.report if estimate is not None else (0, 1, "")
        if total > 1:  # refine: its steps are known
            self.progress_bar.setRange(0, total)
            self.progress_bar.setValue(done)
            self.progress_bar.setFormat(f"{stage} %v/%m")
            self.progress_bar.setVisible(True)
        self.status_label.setText(f"{self._running_text} {seconds:.0f} s (Cancel stops it)")

    def run(self) -> None:
        """Estimate the warp (in a thread worker) and show it as live, editable layers."""
        from napari.utils.notifications import show_error

        from .._napari.warp_runs import WarpEstimate, read_warp_inputs

        if self.worker is not None:
            return
        try:
            inputs = read_warp_inputs(
                self.viewer, self.content_combo.layer(), self.style_combo.layer(), validate=True
            )
        except ValueError as error:
            self.last_error = error
            show_error(f"GeoStyle warp: {error}")
            self.set_status(f"not started: {error}")
            return
        model, method = self.model_combo.value, self.method_combo.value
        life = self.life  # handlers below outlive the widget when the viewer closes

        def done(transform, warped):
            if life.alive:  # else the viewer was closed: drop the result
                self._show_live(
                    inputs.content_layer, inputs.content, transform, warped, inputs.names,
                    estimate.options, estimate.stack, estimate.device,
                )  # fmt: skip

        def failed(message, error):
            if not life.alive:
                return
            self.last_error = error
            self.set_status(f"failed: {message}")
            show_error(f"GeoStyle warp failed: {message}")

        def finished():
            if not life.alive or self.worker is not estimate.worker:
                return  # cancelled: the widget was freed then (and may run another)
            self.worker = None
            self._end_busy()

        estimate = WarpEstimate(
            inputs, model, method, self.device_combo.value,
            self.slice_combo.value == "all slices", done, failed, finished,
        )  # fmt: skip
        self.worker = estimate.worker
        self._estimate = estimate
        self._started_at = time.monotonic()
        self.run_button.setText("Cancel")
        self._running_text = f"estimating {describe_warp(model)} ({method})…"
        self.set_status(self._running_text)
        self._elapsed_timer.start()
        estimate.start()

    def _show_live(
        self,
        content_layer,
        content,
        transform,
        warped,
        inputs,
        options,
        stack=None,
        device=None,
        landmarks=None,
        active=None,
    ):
        from .._napari.warp_runs import take_over_live_warp

        # the previous warp's layers are taken over (updated in place: quicker than new ones)
        previous, self.live = self.live, None
        options = dict(options, strength=self.strength)
        self.live, retired = take_over_live_warp(
            self.viewer,
            previous,
            content_layer,
            content,
            transform,
            warped,
            inputs=inputs,
            options=options,
            stack=stack,
            device=device,
            on_status=self.set_status,
            strength=self.strength,
            fit_model=self.fit_combo.value,
            landmarks=landmarks,
            side_by_side=self.side_check.value,
            active=active,
        )
        if retired:  # an edited warp is never lost silently
            from napari.utils.notifications import show_info

            show_info(f"GeoStyle warp: {retired}")
            self.set_status(f"{self.live.status}; {retired}")
        self.grid_check.value = False
        self._refresh_apply_choices()
        if self.table_dock is not None:
            self.table_dock.widget().set_live(self.live)
        self._update_enabled()
        return self.live

    def start_from_landmarks(self):
        """A live warp of the content with no landmarks yet (identity): click pairs to warp."""
        from napari.utils.notifications import show_error

        from ..core.transforms import identity_transform

        try:
            content_layer = resolve_image_layer(self.viewer, self.content_combo.layer(), "content")
            content = read_layer_image(content_layer, self.viewer)
        except ValueError as error:
            show_error(f"GeoStyle warp: {error}")
            self.set_status(f"not started: {error}")
            return None
        empty = np.zeros((0, 2))
        live = self._show_live(
            content_layer,
            content,
            identity_transform(),
            content.raw,
            {"content": content_layer.name},
            {"model": "landmarks"},
            device=self.device_combo.value,
            landmarks=(empty, empty),
        )
        live.alternate_pairs(True)
        return live

    # ----------------------------------------------------------------- edits and files
    def undo(self) -> None:
        if self.live is not None:
            self.live.undo()
        self._update_enabled()

    def redo(self) -> None:
        if self.live is not None:
            self.live.redo()
        self._update_enabled()

    def _file_action(self, action, path, caption, filters, save):
        from napari.utils.notifications import show_error, show_info

        if self.live is None:
            return None
        path = path or choose_file(self, caption, filters, save)
        if not path:
            return None
        try:
            result = action(path)
        except (ValueError, OSError) as error:
            show_error(f"GeoStyle: {error}")
            return None
        show_info(f"GeoStyle: {'saved' if save else 'loaded'} {path}")
        self._update_enabled()
        return result

    def import_csv(self, path=None):
        return self._file_action(
            lambda p: self.live.import_bigwarp_csv(p),
            path,
            "Import BigWarp landmarks",
            "CSV (*.csv)",
            False,
        )

    def export_csv(self, path=None):
        return self._file_action(
            lambda p: self.live.export_bigwarp_csv(p),
            path,
            "Export BigWarp landmarks",
            "CSV (*.csv)",
            True,
        )

    def export_transform(self, path=None):
        return self._file_action(
            lambda p: self.live.export_transform_json(p),
            path,
            "Export transform",
            "JSON (*.json)",
            True,
        )

    def export_displacement(self, path=None):
        return self._file_action(
            lambda p: self.live.export_displacement_npy(p),
            path,
            "Export displacement field",
            "NumPy (*.npy)",
            True,
        )

    def save_session(self, path=None):
        """Write the live warp (layers' names and sources, landmarks, fit, strength) as JSON."""
        from ..core.session import write_session

        return self._file_action(
            lambda p: write_session(p, self.live.session()),
            path,
            "Save GeoStyle session",
            "GeoStyle session (*.json)",
            True,
        )

    def load_session(self, path=None):
        """Rebuild a live warp from a session file; the content layer is found by name, or
        opened from its recorded source."""
        from napari.utils.notifications import show_error, show_info

        path = path or choose_file(
            self, "Load GeoStyle session", "GeoStyle session (*.json)", False
        )
        if not path:
            return None
        try:
            live = self._load_session(path)
        except (ValueError, OSError) as error:
            show_error(f"GeoStyle: {error}")
            return None
        show_info(f"GeoStyle: loaded {path}")
        return live

    def _load_session(self, path):
        from .._napari.warp_runs import restore_session

        session = restore_session(self.viewer, path)
        with self.fit_combo.changed.blocked():
            self.fit_combo.value = session.fit_model
        with self.strength_slider.changed.blocked():
            self.strength_slider.value = round(session.strength * STRENGTH_STEPS) / STRENGTH_STEPS
        live = self._show_live(
            session.content_layer,
            session.content,
            session.transform,
            session.warped,
            session.inputs,
            session.options,
            device=self.device_combo.value,
            landmarks=session.landmarks,
            active=session.active,
        )
        self.hints.restore(session.options, session.inputs.get("geometry_style"))
        return live

    def show_landmark_table(self):
        """Dock the landmark table (pairs, residuals, on/off, delete, jump-to)."""
        from .landmark_table import LandmarkTable

        if self.table_dock is not None:
            table = self.table_dock.widget()
            table.set_live(self.live)
            self.table_dock.show()
            return table
        table = LandmarkTable(self.viewer, self.live)
        self.table_dock = self.viewer.window.add_dock_widget(
            table, name="GeoStyle landmarks", area="right"
        )
        return table

    def apply_to_layer(self, layer=None, inverse=None):
        """Warp another Image/Labels layer (the chosen one by default) into a new layer."""
        from napari.utils.notifications import show_error

        if self.live is None or self.live.closed:
            return None
        name = getattr(layer, "name", layer) or self.apply_combo.value
        layers = {candidate.name: candidate for candidate in self.viewer.layers}
        if name not in layers:
            show_error(f"GeoStyle: there is no layer {name!r} to apply the transform to.")
            return None
        inverse = self.inverse_check.value if inverse is None else inverse
        try:
            return self.live.apply_to(layers[name], inverse=inverse)
        except ValueError as error:
            show_error(f"GeoStyle: {error}")
            return None

    def _on_side_toggled(self, checked: bool) -> None:
        if self.live is not None and not self.live.closed:
            self.live.set_side_by_side(checked)

    def _on_grid_toggled(self, checked: bool) -> None:
        if self.live is not None:
            self.live.show_grid(checked)
