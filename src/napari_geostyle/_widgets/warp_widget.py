"""Geometric Warp widget: warp a content layer to a geometry-style layer, then edit the landmarks."""

from __future__ import annotations

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ._common import LayerCombo, bind_console, choose_file, device_names, keep_different
from ._layer_data import (
    leading_shape,
    read_layer_image,
    resolve_image_layer,
    same_layer,
    slices_shape,
)

MODELS = ("affine+tps", "affine", "tps")
METHODS = ("network", "refine")
SLICE_MODES = ("current slice", "all slices")


class GeometricWarpWidget(QWidget):
    """Plugins > GeoStyle > Geometric Warp.

    Run estimates the warp in a thread worker; the result is a live :class:`LiveWarp`
    (``self.live``) whose control / target points can be dragged, added, deleted, undone.
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.live = None
        self.worker = None
        self.last_error = None

        self.content_combo = LayerCombo(napari_viewer)
        self.style_combo = LayerCombo(napari_viewer)
        if len(self.style_combo.layers()) > 1:
            self.style_combo.setCurrentIndex(1)
        keep_different(self.content_combo, self.style_combo)
        self.model_combo = QComboBox()
        self.model_combo.addItems(MODELS)
        self.method_combo = QComboBox()
        self.method_combo.addItems(METHODS)
        self.method_combo.setToolTip(
            "network: one forward pass of the geometry network; refine: then optimise the "
            "transform on feature correlations (slower, closer)."
        )
        self.device_combo = QComboBox()
        self.device_combo.addItems(device_names())
        self.slice_combo = QComboBox()
        self.slice_combo.addItems(SLICE_MODES)
        self.slice_combo.setToolTip("For stacks and time series: warp the shown slice or all.")
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self.run)
        self.status_label = QLabel("Pick a content and a geometry-style layer, then Run.")
        self.status_label.setWordWrap(True)

        self.undo_button = QPushButton("Undo")
        self.redo_button = QPushButton("Redo")
        self.undo_button.setShortcut("Ctrl+Z")
        self.redo_button.setShortcut("Ctrl+Shift+Z")
        self.undo_button.clicked.connect(self.undo)
        self.redo_button.clicked.connect(self.redo)
        self.import_button = QPushButton("Import BigWarp CSV…")
        self.export_button = QPushButton("Export BigWarp CSV…")
        self.json_button = QPushButton("Export transform JSON…")
        self.field_button = QPushButton("Export displacement .npy…")
        self.field_button.setToolTip(
            "(H, W, 2) float32: per output pixel, the content (row, col) it samples minus its own."
        )
        self.import_button.clicked.connect(lambda: self.import_csv())
        self.export_button.clicked.connect(lambda: self.export_csv())
        self.json_button.clicked.connect(lambda: self.export_transform())
        self.field_button.clicked.connect(lambda: self.export_displacement())
        self.grid_check = QCheckBox("Show deformation grid")
        self.grid_check.toggled.connect(self._on_grid_toggled)

        form = QFormLayout()
        form.addRow("content", self.content_combo)
        form.addRow("geometry style", self.style_combo)
        form.addRow("model", self.model_combo)
        form.addRow("method", self.method_combo)
        form.addRow("device", self.device_combo)
        form.addRow("stacks", self.slice_combo)
        edits = QGridLayout()
        edits.addWidget(self.undo_button, 0, 0)
        edits.addWidget(self.redo_button, 0, 1)
        edits.addWidget(self.import_button, 1, 0)
        edits.addWidget(self.export_button, 1, 1)
        edits.addWidget(self.json_button, 2, 0)
        edits.addWidget(self.field_button, 2, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.run_button)
        layout.addWidget(self.status_label)
        layout.addLayout(edits)
        layout.addWidget(self.grid_check)
        layout.addStretch(1)
        self.content_combo.currentIndexChanged.connect(self._update_enabled)
        self._update_enabled()
        bind_console(napari_viewer)

    # ----------------------------------------------------------------- state
    def _update_enabled(self, *_):
        content = self.content_combo.layer()
        self.slice_combo.setEnabled(bool(content is not None and leading_shape(content)))
        has_live = self.live is not None and not self.live.closed
        for button in (self.import_button, self.export_button, self.json_button,
                       self.field_button, self.grid_check):
            button.setEnabled(has_live)
        self.undo_button.setEnabled(has_live and self.live.can_undo)
        self.redo_button.setEnabled(has_live and self.live.can_redo)

    def set_status(self, text: str) -> None:
        self.status_label.setText(text)
        self._update_enabled()

    @property
    def busy(self) -> bool:
        """True while the estimate or a re-warp runs."""
        return self.worker is not None or (self.live is not None and self.live.busy)

    # ----------------------------------------------------------------- run
    def run(self) -> None:
        """Estimate the warp (in a thread worker) and show it as live, editable layers."""
        from napari.qt.threading import create_worker
        from napari.utils.notifications import show_error

        from ..core.images import validate_image
        from ._runs import estimate_and_warp

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

        worker = create_worker(
            estimate_and_warp, content, style, model, method, device, stack,
            _progress=progress, _start_thread=False, _ignore_errors=True,
        )

        def done(result):
            transform, warped = result
            if self.live is not None:
                self.live.close()
            from ._live_points import start_live_warp

            self.live = start_live_warp(
                self.viewer, content_layer, content, transform, warped,
                inputs=inputs, options=options, stack=stack, device=device,
                on_status=self.set_status,
            )
            self.grid_check.setChecked(False)
            self._update_enabled()

        def failed(error):
            from ._runs import friendly_error

            self.last_error = error
            self.set_status(f"failed: {friendly_error(error, device)}")
            show_error(f"GeoStyle warp failed: {friendly_error(error, device)}")

        def finished():
            self.worker = None
            self.run_button.setEnabled(True)

        worker.returned.connect(done)
        worker.errored.connect(failed)
        worker.finished.connect(finished)
        self.worker = worker
        self.run_button.setEnabled(False)
        self.set_status(f"estimating a {model} warp ({method})…")
        worker.start()

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
            lambda p: self.live.import_bigwarp_csv(p), path, "Import BigWarp landmarks",
            "CSV (*.csv)", False,
        )

    def export_csv(self, path=None):
        return self._file_action(
            lambda p: self.live.export_bigwarp_csv(p), path, "Export BigWarp landmarks",
            "CSV (*.csv)", True,
        )

    def export_transform(self, path=None):
        return self._file_action(
            lambda p: self.live.export_transform_json(p), path, "Export transform",
            "JSON (*.json)", True,
        )

    def export_displacement(self, path=None):
        return self._file_action(
            lambda p: self.live.export_displacement_npy(p), path, "Export displacement field",
            "NumPy (*.npy)", True,
        )

    def _on_grid_toggled(self, checked: bool) -> None:
        if self.live is not None:
            self.live.show_grid(checked)


def _product(values) -> int:
    total = 1
    for value in values:
        total *= int(value)
    return total
