"""Texture Transfer widget: Gatys texture transfer of one or more style layers onto a content layer."""

from __future__ import annotations

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ._common import LayerCombo, bind_console, device_names

PRESETS = ("fast", "balanced", "quality")
BACKBONES = ("auto", "vgg19", "random")
PRESET_SIZES = {"fast": 256, "balanced": 512, "quality": 1024}
PREVIEW_EVERY = 5  # iterations between live previews of the result


def latest_warped_layer(viewer):
    """The most recently added layer made by a GeoStyle warp, or None."""
    for layer in reversed(list(viewer.layers)):
        record = layer.metadata.get("geostyle") if hasattr(layer, "metadata") else None
        if isinstance(record, dict) and record.get("stage") == "warp":
            return layer
    return None


class StyleRow(QWidget):
    """One texture-style layer and its weight."""

    def __init__(self, viewer, on_remove, parent=None):
        super().__init__(parent)
        self.combo = LayerCombo(viewer)
        self.weight = QDoubleSpinBox()
        self.weight.setRange(0.0, 100.0)
        self.weight.setSingleStep(0.1)
        self.weight.setValue(1.0)
        self.weight.setToolTip("relative weight of this style's texture")
        self.remove_button = QPushButton("−")
        self.remove_button.setToolTip("remove this style")
        self.remove_button.setMaximumWidth(28)
        self.remove_button.clicked.connect(lambda: on_remove(self))
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.combo, 3)
        layout.addWidget(self.weight, 1)
        layout.addWidget(self.remove_button)


class TextureTransferWidget(QWidget):
    """Plugins > GeoStyle > Texture Transfer. ``run()`` starts; while running it cancels."""

    stage = "texture"

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.run_state = None  # the StyleRun in progress or last finished

        self.size_spin = QSpinBox()
        self.size_spin.setRange(32, 8192)
        self.size_spin.setValue(PRESET_SIZES["fast"])
        self.size_spin.setToolTip("longest side of the result in pixels")
        self.preset_combo = QComboBox()
        self.preset_combo.addItems(PRESETS)
        self.preset_combo.currentTextChanged.connect(
            lambda preset: self.size_spin.setValue(PRESET_SIZES[preset])
        )
        self.color_check = QCheckBox("preserve colour")
        self.color_check.setToolTip("transfer luminance only and keep the content's colours")
        self.device_combo = QComboBox()
        self.device_combo.addItems(device_names())

        # advanced: 0 means "the preset's value"
        self.iterations_spin = QSpinBox()
        self.iterations_spin.setRange(0, 5000)
        self.iterations_spin.setSpecialValueText("preset")
        self.levels_spin = QSpinBox()
        self.levels_spin.setRange(1, 6)
        self.levels_spin.setValue(4)
        self.style_weight_spin = QDoubleSpinBox()
        self.style_weight_spin.setRange(0.0, 1e6)
        self.style_weight_spin.setSpecialValueText("default")
        self.content_weight_spin = QDoubleSpinBox()
        self.content_weight_spin.setRange(0.0, 1e6)
        self.content_weight_spin.setSpecialValueText("default")
        self.backbone_combo = QComboBox()
        self.backbone_combo.addItems(BACKBONES)
        self.backbone_combo.setToolTip(
            "auto: ImageNet VGG-19 if found, else a random VGG-19 (textures look worse)"
        )
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)

        self.backbone_label = QLabel()
        self.backbone_label.setWordWrap(True)
        self.fetch_button = QPushButton("Fetch ImageNet weights (548 MB)")
        self.fetch_button.clicked.connect(self.fetch_weights)
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self.run_or_cancel)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)

        form = QFormLayout()
        self._build_inputs(form)
        form.addRow("size", self.size_spin)
        form.addRow("preset", self.preset_combo)
        form.addRow("", self.color_check)
        form.addRow("device", self.device_combo)
        advanced = QFormLayout()
        advanced.addRow("iterations per level", self.iterations_spin)
        advanced.addRow("pyramid levels", self.levels_spin)
        advanced.addRow("style weight", self.style_weight_spin)
        advanced.addRow("content weight", self.content_weight_spin)
        advanced.addRow("backbone", self.backbone_combo)
        advanced.addRow("seed", self.seed_spin)
        self.advanced_box = _collapsible("advanced", advanced)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.advanced_box)
        layout.addWidget(self.backbone_label)
        layout.addWidget(self.fetch_button)
        layout.addWidget(self.run_button)
        layout.addWidget(self.status_label)
        layout.addStretch(1)

        self.refresh_backbone_state()
        bind_console(napari_viewer)

    # ----------------------------------------------------------------- inputs
    def _build_inputs(self, form) -> None:
        self.content_combo = LayerCombo(self.viewer)
        warped = latest_warped_layer(self.viewer)
        if warped is not None:
            self.content_combo.set_layer(warped)
        self.style_rows: list[StyleRow] = []
        self.styles_box = QVBoxLayout()
        self.add_style_button = QPushButton("+ add style")
        self.add_style_button.clicked.connect(lambda: self.add_style_row())
        form.addRow("content", self.content_combo)
        form.addRow("texture style, weight", self.styles_box)
        form.addRow("", self.add_style_button)
        self.add_style_row()

    def add_style_row(self, layer=None) -> StyleRow:
        row = StyleRow(self.viewer, self._remove_style_row)
        content = self.content_combo.layer()
        if layer is not None:
            row.combo.set_layer(layer)
        else:
            taken = {getattr(r.combo.layer(), "name", None) for r in self.style_rows}
            taken.add(getattr(content, "name", None))
            for candidate in reversed(row.combo.layers()):
                if candidate.name not in taken:
                    row.combo.set_layer(candidate)
                    break
        self.style_rows.append(row)
        self.styles_box.addWidget(row)
        self._update_remove_buttons()
        return row

    def _remove_style_row(self, row: StyleRow) -> None:
        if len(self.style_rows) <= 1:
            return
        self.style_rows.remove(row)
        self.styles_box.removeWidget(row)
        row.deleteLater()
        self._update_remove_buttons()

    def _update_remove_buttons(self) -> None:
        for row in self.style_rows:
            row.remove_button.setEnabled(len(self.style_rows) > 1)

    # ----------------------------------------------------------------- backbone
    def refresh_backbone_state(self) -> dict:
        from ..core.weights import describe_vgg19_weights

        state = describe_vgg19_weights()
        if state["found"]:
            self.backbone_label.setText(f"ImageNet VGG-19 weights: found ({state['source']}).")
            self.fetch_button.setVisible(False)
        else:
            self.backbone_label.setText(
                "ImageNet VGG-19 weights: not found, 'auto' uses a random VGG-19 (poor "
                "textures). Fetch them below, or set " + str(state["env_var"]) + "."
            )
            self.fetch_button.setVisible(True)
        self.backbone_label.setToolTip(
            "\n".join(f"{entry['where']}: {entry['path']}" for entry in state["looked"])
        )
        return state

    def fetch_weights(self) -> None:
        """Download the ImageNet VGG-19 weights in a thread worker (with a progress message)."""
        from napari.qt.threading import create_worker
        from napari.utils.notifications import show_error, show_info

        from ..core.weights import download_vgg19_weights

        worker = create_worker(download_vgg19_weights, False, _start_thread=False, _ignore_errors=True)
        self.fetch_button.setEnabled(False)
        self.backbone_label.setText("downloading the VGG-19 weights (548 MB)…")

        def done(path):
            show_info(f"GeoStyle: VGG-19 weights saved to {path}")

        def failed(error):
            show_error(f"GeoStyle: {error}")

        def finished():
            self.fetch_button.setEnabled(True)
            self.refresh_backbone_state()

        worker.returned.connect(done)
        worker.errored.connect(failed)
        worker.finished.connect(finished)
        self.fetch_worker = worker
        worker.start()

    # ----------------------------------------------------------------- running
    def options(self) -> dict:
        """The texture options chosen in the widget (as ``iter_texture_transfer`` takes them)."""
        options = {
            "size": self.size_spin.value(),
            "preset": self.preset_combo.currentText(),
            "levels": self.levels_spin.value(),
            "preserve_color": self.color_check.isChecked(),
            "device": self.device_combo.currentText(),
            "backbone": self.backbone_combo.currentText(),
            "seed": self.seed_spin.value(),
            "preview_every": PREVIEW_EVERY,
        }
        if self.iterations_spin.value() > 0:
            options["iterations"] = self.iterations_spin.value()
        if self.style_weight_spin.value() > 0:
            options["style_weight"] = self.style_weight_spin.value()
        if self.content_weight_spin.value() > 0:
            options["content_weight"] = self.content_weight_spin.value()
        return options

    @property
    def running(self) -> bool:
        return self.run_state is not None and self.run_state.running

    def run_or_cancel(self) -> None:
        if self.running:
            self.cancel()
        else:
            self.run()

    def cancel(self) -> None:
        """Stop after the current iteration; the last preview stays."""
        if self.run_state is not None:
            self.status_label.setText("cancelling…")
            self.run_state.cancel()

    def _start(self):
        from .. import viewer_api

        styles = [row.combo.layer() for row in self.style_rows]
        options = self.options()
        if len(styles) > 1:
            options["style_weights"] = [row.weight.value() for row in self.style_rows]
        return viewer_api._texture_run(
            self.viewer, self.content_combo.layer(), styles, on_done=self._finished, **options
        )

    def run(self):
        """Start the run (returns the StyleRun, or None after an error notification)."""
        from napari.utils.notifications import show_error

        if self.running:
            return self.run_state
        try:
            self.run_state = self._start()
        except (ValueError, ImportError) as error:
            from ._runs import friendly_error

            show_error(f"GeoStyle {self.stage}: {friendly_error(error)}")
            self.status_label.setText(f"not started: {error}")
            return None
        self.run_button.setText("Cancel")
        self.status_label.setText("running…")
        return self.run_state

    def _finished(self, run) -> None:
        self.run_button.setText("Run")
        if run.error is not None:
            self.status_label.setText(f"failed: {run.error}")
        elif run.cancelled:
            self.status_label.setText("cancelled: the last preview is kept.")
        else:
            self.status_label.setText(f"done: {run.output_name!r}")


def _collapsible(title: str, form) -> QWidget:
    """A section that starts collapsed (superqt's QCollapsible)."""
    from superqt import QCollapsible

    inner = QWidget()
    inner.setLayout(form)
    box = QCollapsible(title)
    box.addWidget(inner)
    box.collapse(animate=False)
    return box
