"""Geometric Warp widget: warp a content layer to a geometry-style layer, then edit the landmarks."""

from __future__ import annotations

import time

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QApplication,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QSlider,
    QWidget,
)

from .._napari.layer_data import (
    leading_shape,
    read_layer_image,
    resolve_image_layer,
    same_layer,
    slices_shape,
)
from ..core.estimate import METHODS
from ..core.estimate import MODELS as _CORE_MODELS
from ..core.landmark_models import FIT_MODELS
from ._common import (
    LayerCombo,
    WidgetLife,
    bind_console,
    choose_file,
    collapsible,
    device_names,
    keep_different,
    scroll_body,
)
from ._controls import TOOLTIPS, button, check, combo
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


class GeometricWarpWidget(QWidget):
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
        self.worker = None
        self.last_error = None
        self._run_id = 0  # a cancelled (or superseded) estimate's result is dropped
        self._started_at = float("-inf")  # time.monotonic() of the last Run
        self._running_text = ""
        self._monitor = None  # the running estimate's EstimateMonitor
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

        self.content_combo = LayerCombo(napari_viewer, prefer=("content",))
        self.style_combo = LayerCombo(napari_viewer, prefer=("geometry style", "geometry", "style"))
        keep_different(self.content_combo, self.style_combo)
        self.model_combo = combo(MODELS)
        self.method_combo = combo(METHODS, "method")
        self.device_combo = combo(device_names())
        self.slice_combo = combo(SLICE_MODES, "stacks")
        self.run_button = button("Run", self.run_or_cancel)
        self.landmarks_button = button(
            "Start from landmarks", self.start_from_landmarks, "start_from_landmarks"
        )
        self.status_label = QLabel("Pick a content and a geometry-style layer, then Run.")
        self.status_label.setWordWrap(True)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setVisible(False)
        self.strength_slider = QSlider(Qt.Orientation.Horizontal)
        self.strength_slider.setRange(0, STRENGTH_STEPS)
        self.strength_slider.setValue(STRENGTH_STEPS)
        self.strength_slider.setToolTip(TOOLTIPS["strength"])
        self.strength_label = QLabel("1.00")
        self.strength_slider.valueChanged.connect(self._on_strength_changed)
        self.fit_combo = combo(LANDMARK_FITS, "landmark_fit")
        self.fit_combo.currentTextChanged.connect(self._on_fit_changed)
        self.content_combo.currentIndexChanged.connect(self._clear_stale_status)
        self.style_combo.currentIndexChanged.connect(self._clear_stale_status)

        self.undo_button = button("Undo", self.undo)
        self.redo_button = button("Redo", self.redo)
        self.undo_button.setShortcut("Ctrl+Z")
        self.redo_button.setShortcut("Ctrl+Shift+Z")
        self.import_button = button("Import BigWarp CSV…", self.import_csv)
        self.export_button = button("Export BigWarp CSV…", self.export_csv)
        self.json_button = button("Export transform JSON…", self.export_transform)
        self.field_button = button(
            "Export displacement .npy…", self.export_displacement, "export_displacement"
        )
        self.grid_check = check("Show deformation grid", on_toggled=self._on_grid_toggled)
        self.side_check = check("side by side", "side_by_side", self._on_side_toggled)
        self.side_check.setChecked(True)
        self.table_button = button("Landmark table", self.show_landmark_table)
        self.apply_button = button("Apply to layer…", self.apply_to_layer, "apply_to_layer")
        self.apply_combo = combo((), "apply_layer")
        self.inverse_check = check("inverse", "inverse")
        self.save_session_button = button("Save session…", self.save_session)
        self.load_session_button = button("Load session…", self.load_session)
        self.table_dock = None

        form = QFormLayout()
        form.addRow("content", self.content_combo)
        form.addRow("geometry style", self.style_combo)
        form.addRow("model", self.model_combo)
        strength_row = QHBoxLayout()
        strength_row.addWidget(self.strength_slider, 1)
        strength_row.addWidget(self.strength_label)
        form.addRow("strength", strength_row)
        advanced = QFormLayout()
        advanced.addRow("method", self.method_combo)
        advanced.addRow("device", self.device_combo)
        advanced.addRow("stacks", self.slice_combo)
        edits = QGridLayout()
        edits.addWidget(QLabel("landmark fit"), 0, 0)
        edits.addWidget(self.fit_combo, 0, 1)
        edits.addWidget(self.undo_button, 1, 0)
        edits.addWidget(self.redo_button, 1, 1)
        edits.addWidget(self.table_button, 2, 0)
        edits.addWidget(self.grid_check, 2, 1)
        edits.addWidget(self.side_check, 3, 0)
        edits.addWidget(self.apply_combo, 4, 0)
        apply_row = QHBoxLayout()
        apply_row.addWidget(self.apply_button)
        apply_row.addWidget(self.inverse_check)
        edits.addLayout(apply_row, 4, 1)
        files = QGridLayout()
        files.addWidget(self.import_button, 0, 0)
        files.addWidget(self.export_button, 0, 1)
        files.addWidget(self.json_button, 1, 0)
        files.addWidget(self.field_button, 1, 1)
        files.addWidget(self.save_session_button, 2, 0)
        files.addWidget(self.load_session_button, 2, 1)
        self.advanced_box = collapsible("advanced", advanced)
        self.landmarks_box = collapsible("landmarks", edits, expanded=True)
        self.files_box = collapsible("files", files)
        self.hints = HintSection(self)  # hints steer the estimate (``hint_section``)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button, 1)
        buttons.addWidget(self.landmarks_button)
        layout = scroll_body(self)
        layout.setSpacing(4)
        layout.addLayout(form)
        layout.addWidget(self.advanced_box)
        layout.addLayout(buttons)
        layout.addWidget(self.status_label)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.hints.box)
        layout.addWidget(self.landmarks_box)
        layout.addWidget(self.files_box)
        layout.addStretch(1)
        napari_viewer.layers.events.inserted.connect(self._refresh_apply_choices)
        napari_viewer.layers.events.removed.connect(self._refresh_apply_choices)
        self._refresh_apply_choices()
        self.content_combo.currentIndexChanged.connect(self._update_enabled)
        self._update_enabled()
        bind_console(napari_viewer)

    # ----------------------------------------------------------------- state
    def _update_enabled(self, *_):
        content = self.content_combo.layer()
        self.slice_combo.setEnabled(bool(content is not None and leading_shape(content)))
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
            control.setEnabled(has_live)
        self.undo_button.setEnabled(has_live and self.live.can_undo)
        self.redo_button.setEnabled(has_live and self.live.can_redo)

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
        self._run_id += 1
        if self._monitor is not None:
            self._monitor.cancel()
        if self.worker is not None:
            self.worker.quit()
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

    def _on_strength_changed(self, value: int) -> None:
        strength = value / STRENGTH_STEPS
        self.strength_label.setText(f"{strength:.2f}")
        if self.live is not None and not self.live.closed:
            self.live.set_strength(strength)

    @property
    def strength(self) -> float:
        return self.strength_slider.value() / STRENGTH_STEPS

    def _on_fit_changed(self, model: str) -> None:
        if self.live is not None and not self.live.closed:
            self.live.set_fit_model(model)

    def _refresh_apply_choices(self, *_):
        from .._napari.layer_data import applicable_layers

        current = self.apply_combo.currentText()
        live_names = set()
        if self.live is not None:
            live_names = {self.live.warped.name}
        names = [
            layer.name for layer in applicable_layers(self.viewer) if layer.name not in live_names
        ]
        self.apply_combo.blockSignals(True)
        self.apply_combo.clear()
        self.apply_combo.addItems(names)
        if current in names:
            self.apply_combo.setCurrentText(current)
        self.apply_combo.blockSignals(False)

    @property
    def busy(self) -> bool:
        """True while the estimate or a re-warp runs."""
        return self.worker is not None or (self.live is not None and self.live.busy)

    # ----------------------------------------------------------------- run
    def run_or_cancel(self) -> None:
        """The Run button: start, or cancel a running estimate. A second click within the
        double-click interval of the start is the rest of a double click, not a Cancel."""
        if self.worker is not None:
            since_start_ms = (time.monotonic() - self._started_at) * 1000.0
            if since_start_ms < QApplication.doubleClickInterval():
                return
            self.cancel()
        else:
            self.run()

    def cancel(self) -> None:
        """Abandon the running estimate: the widget is free at once (Run starts a new one);
        the abandoned estimate finishes in the background and its result is discarded."""
        if self.worker is None:
            return
        self._run_id += 1
        refining = self._monitor is not None and self._monitor.stage == "refining"
        if self._monitor is not None:
            self._monitor.cancel()  # refine stops at its next step
        self.worker.quit()  # stops the warp after the estimate
        self.worker = None
        self._end_busy()
        self.set_status(
            "cancelled: the refinement stopped." if refining else
            "cancelled: the estimate's result will be discarded (it finishes in the background)."
        )  # fmt: skip

    def _end_busy(self) -> None:
        self._elapsed_timer.stop()
        self._monitor = None
        self.progress_bar.setVisible(False)
        self.run_button.setText("Run")

    def _show_elapsed(self) -> None:
        if not self.life.alive or self.worker is None:
            return
        seconds = time.monotonic() - self._started_at
        monitor = self._monitor
        done, total, stage = monitor.report if monitor is not None else (0, 1, "")
        if total > 1:  # refine: its steps are known
            self.progress_bar.setRange(0, total)
            self.progress_bar.setValue(done)
            self.progress_bar.setFormat(f"{stage} %v/%m")
            self.progress_bar.setVisible(True)
        self.status_label.setText(f"{self._running_text} {seconds:.0f} s (Cancel stops it)")

    def run(self) -> None:
        """Estimate the warp (in a thread worker) and show it as live, editable layers."""
        from napari.qt.threading import create_worker
        from napari.utils.notifications import show_error

        from .._napari.runs import EstimateMonitor, estimate_and_warp
        from ..core.images import validate_image

        if self.worker is not None:
            return
        try:
            content_layer = resolve_image_layer(self.viewer, self.content_combo.layer(), "content")
            style_layer = resolve_image_layer(
                self.viewer, self.style_combo.layer(), "geometry style"
            )
            if same_layer(content_layer, style_layer):
                raise ValueError("content and geometry style are the same layer; pick two.")
            content = read_layer_image(content_layer, self.viewer)
            style = read_layer_image(style_layer, self.viewer)
            validate_image(content.normalized, f"content layer {content_layer.name!r}")
            validate_image(style.normalized, f"geometry-style layer {style_layer.name!r}")
        except ValueError as error:
            self.last_error = error
            show_error(f"GeoStyle warp: {error}")
            self.set_status(f"not started: {error}")
            return
        model = self.model_combo.currentText()
        method = self.method_combo.currentText()
        device = self.device_combo.currentText()
        stack = None
        progress = False
        lead = leading_shape(content_layer)
        if lead and self.slice_combo.currentText() == "all slices":
            stack = (content_layer, content.level, content.plane_step)
            total = _product(slices_shape(content_layer, content.level))
            progress = {"total": total, "desc": "GeoStyle: warping slices"}
        options = {"model": model, "method": method, "device": device}
        inputs = {"content": content_layer.name, "geometry_style": style_layer.name}

        monitor = EstimateMonitor()
        worker = create_worker(
            estimate_and_warp,
            content,
            style,
            model,
            method,
            device,
            stack,
            monitor,
            _progress=progress,
            _start_thread=False,
            _ignore_errors=True,
        )
        self._run_id += 1
        run_id = self._run_id
        life = self.life  # handlers below outlive the widget when the viewer closes

        def done(result):
            if not life.alive or run_id != self._run_id:
                return  # cancelled, or the viewer was closed: drop the result
            transform, warped = result
            self._show_live(
                content_layer, content, transform, warped, inputs, options, stack, device
            )

        def failed(error):
            from .._napari.runs import friendly_error

            if not life.alive or run_id != self._run_id:
                return
            self.last_error = error
            self.set_status(f"failed: {friendly_error(error, device)}")
            show_error(f"GeoStyle warp failed: {friendly_error(error, device)}")

        def finished():
            if not life.alive or self.worker is not worker:
                return  # cancelled: the widget was freed then (and may run another)
            self.worker = None
            self._end_busy()

        worker.returned.connect(done)
        worker.errored.connect(failed)
        worker.finished.connect(finished)
        self.worker = worker
        self._monitor = monitor
        self._started_at = time.monotonic()
        self.run_button.setText("Cancel")
        self._running_text = f"estimating {describe_warp(model)} ({method})…"
        self.set_status(self._running_text)
        self._elapsed_timer.start()
        worker.start()

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
        from .._napari.live_warp import start_live_warp

        # the previous warp's layers are taken over (updated in place: quicker than new ones)
        retired, reuse = self.live.hand_over() if self.live is not None else ("", {})
        self.live = None
        options = dict(options, strength=self.strength)
        self.live = start_live_warp(
            self.viewer,
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
            fit_model=self.fit_combo.currentText(),
            landmarks=landmarks,
            side_by_side=self.side_check.isChecked(),
            active=active,
            reuse=reuse,
        )
        if retired:  # an edited warp is never lost silently
            from napari.utils.notifications import show_info

            show_info(f"GeoStyle warp: {retired}")
            self.set_status(f"{self.live.status}; {retired}")
        self.grid_check.setChecked(False)
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
            device=self.device_combo.currentText(),
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
        from ..core.landmark_models import fit_landmarks
        from ..core.session import read_session
        from ..core.transforms import identity_transform
        from ..core.warp import warp_image

        record = read_session(path)
        name = record["inputs"]["content"]
        if name not in [layer.name for layer in self.viewer.layers]:
            source = record.get("sources", {}).get("content")
            if not source:
                raise ValueError(
                    f"the session's content layer {name!r} is not open and has no source "
                    "file recorded; open it (with that name) first."
                )
            opened = self.viewer.open(source)
            opened[0].name = name
        content_layer = resolve_image_layer(self.viewer, name, "content")
        index = tuple(record.get("slice_index") or ()) or None
        content = read_layer_image(content_layer, self.viewer, slice_index=index)
        control, target = record["control_points"], record["target_points"]
        active = record["active"]
        model = record["fit_model"]
        self.fit_combo.blockSignals(True)
        self.fit_combo.setCurrentText(model)
        self.fit_combo.blockSignals(False)
        self.strength_slider.blockSignals(True)
        self.strength_slider.setValue(round(record["strength"] * STRENGTH_STEPS))
        self.strength_label.setText(f"{record['strength']:.2f}")
        self.strength_slider.blockSignals(False)
        if int(active.sum()) >= 3:
            fitted = fit_landmarks(control[active], target[active], model)
        else:
            fitted = identity_transform()
        from ..core.transforms import with_strength

        warped = warp_image(content.raw, with_strength(fitted, record["strength"]))
        live = self._show_live(
            content_layer,
            content,
            fitted,
            warped,
            record["inputs"],
            record.get("options", {}),
            device=self.device_combo.currentText(),
            landmarks=(control, target),
            active=active,
        )
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
        name = getattr(layer, "name", layer) or self.apply_combo.currentText()
        layers = {candidate.name: candidate for candidate in self.viewer.layers}
        if name not in layers:
            show_error(f"GeoStyle: there is no layer {name!r} to apply the transform to.")
            return None
        inverse = self.inverse_check.isChecked() if inverse is None else inverse
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


def _product(values) -> int:
    total = 1
    for value in values:
        total *= int(value)
    return total
