"""Texture Transfer widget: Gatys texture transfer of one or more style layers onto a content layer."""

from __future__ import annotations

import time

from magicgui.widgets import Container, Label
from qtpy.QtWidgets import QAbstractSpinBox, QLabel, QProgressBar

from ..core.texture import PRESET_NAMES, PRESET_SIZES
from ..core.texture_trunks import BACKBONE_LABELS, BACKBONES
from ._common import (
    FormWidget,
    LayerCombo,
    Section,
    WidgetLife,
    bind_console,
    device_names,
    follow_layer_list,
    form,
    run_or_cancel,
    scroll_body,
)
from ._controls import button, check, combo, double_spin, qt_button, spin, whole_spin

PREVIEW_EVERY = 5  # iterations between live previews of the result
TEXTURE_HINTS = ("texture style", "texture", "style")


def latest_warped_layer(viewer):
    """The most recently added layer made by a GeoStyle warp, or None."""
    for layer in reversed(list(viewer.layers)):
        record = layer.metadata.get("geostyle") if hasattr(layer, "metadata") else None
        if isinstance(record, dict) and record.get("stage") == "warp":
            return layer
    return None


class StyleRow(Container):
    """One texture-style layer and its weight."""

    def __init__(self, viewer, on_remove, avoid=()):
        self.combo = LayerCombo(viewer, prefer=TEXTURE_HINTS)
        self.weight = double_spin(0.0, 100.0, 1.0, step=0.1, tip="style_weight_row")
        self.remove_button = button("−", lambda: on_remove(self), "remove_style")
        self.remove_button.native.setMaximumWidth(28)
        # no step buttons: the weight is typed (or scrolled), and the picker keeps the width
        self.weight.native.setButtonSymbols(QAbstractSpinBox.ButtonSymbols.NoButtons)
        super().__init__(
            widgets=[self.combo, self.weight, self.remove_button], layout="horizontal", labels=False
        )
        self.margins = (0, 0, 0, 0)
        layout = self.native.layout()
        layout.setSpacing(4)
        layout.setStretch(0, 3)
        layout.setStretch(1, 1)
        self.combo.avoid.extend(avoid)
        self.combo.reset_choices()


class TextureTransferWidget(FormWidget):
    """Plugins > GeoStyle > Texture Transfer. ``run()`` starts; while running it cancels."""

    stage = "texture"

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.run_state = None  # the StyleRun in progress or last finished
        self._started_at = float("-inf")
        self.life = WidgetLife(self)
        self.life.on_destroyed(self._abandon_run)
        self.life.on_panel_closed(self._panel_closed)

        self.size_spin = spin(32, 8192, PRESET_SIZES[PRESET_NAMES[0]], "size", label="size")
        self.preset_combo = combo(PRESET_NAMES, label="preset")
        self.preset_combo.changed.connect(
            lambda preset: setattr(self.size_spin, "value", PRESET_SIZES[preset])
        )
        self.color_check = check("preserve colour", "preserve_colour")
        self.device_combo = combo(device_names(), label="device")

        # advanced: 0 means "the preset's value"
        self.iterations_spin = spin(0, 5000, special="preset", label="iterations per level")
        self.levels_spin = whole_spin(1, 6, 4, label="pyramid levels")  # its suffix: below
        self.levels_spin.tooltip = (
            "at most this many levels: levels too small for the network are left out"
        )
        self.style_weight_spin = double_spin(0.0, 1e6, special="default", label="style weight")
        self.content_weight_spin = double_spin(0.0, 1e6, special="default", label="content weight")
        self.backbone_combo = combo(BACKBONES, "backbone", label="backbone")
        self.seed_spin = spin(0, 2**31 - 1, label="seed")
        self.reuse_check = check("update the previous result layer", "reuse")
        self.color_output_check = check("colour result for gray content", "colour_output")
        self.all_frames_check = check("all frames", "all_frames")

        self.backbone_label = Label()  # one line; the details are in its tooltip
        self.fetch_button = button("Upgrade: fetch VGG-19 (548 MB)", self.fetch_weights)
        # Qt: magicgui has no Run/Cancel button with a progress bar and a word-wrapped status
        self.run_button = qt_button("Run", self.run_or_cancel)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("%p%")
        self.progress_bar.setVisible(False)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)

        self.form = form(
            *self._build_inputs(),
            self.all_frames_check,
            self.size_spin,
            self.preset_combo,
            self.color_check,
            self.device_combo,
        )
        self.content_combo.changed.connect(self._update_frames_choice)
        self._update_frames_choice()
        self.content_combo.changed.connect(self._update_levels_note)
        self.size_spin.changed.connect(self._update_levels_note)
        self.levels_spin.changed.connect(self._update_levels_note)
        self._update_levels_note()
        self.advanced_box = Section(
            "advanced",
            [
                self.iterations_spin,
                self.levels_spin,
                self.style_weight_spin,
                self.content_weight_spin,
                self.backbone_combo,
                self.seed_spin,
                self.color_output_check,
                self.reuse_check,
                self.fetch_button,
            ],
        )
        self.sections = form(self.advanced_box, self.backbone_label, spacing=4, labels=False)
        layout = scroll_body(self)
        layout.setSpacing(4)
        layout.addWidget(self.form.native)
        layout.addWidget(self.sections.native)
        layout.addWidget(self.run_button)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status_label)
        layout.addStretch(1)

        follow_layer_list(self, self.life)
        self.refresh_backbone_state()
        bind_console(napari_viewer)

    # ----------------------------------------------------------------- inputs
    def _build_inputs(self) -> list:
        """The input controls at the top of the form (content, styles and their weights)."""
        self.content_combo = LayerCombo(
            self.viewer, prefer=(latest_warped_layer, "content"), label="content"
        )
        self.content_combo.changed.connect(self._clear_stale_status)
        self.style_rows: list[StyleRow] = []
        self.styles_box: Container[StyleRow] = Container(labels=False, label="style, weight")
        self.styles_box.margins = (0, 0, 0, 0)
        self.add_style_button = button("+ add style", self.add_style_row)
        self.add_style_row()
        return [self.content_combo, self.styles_box, self.add_style_button]

    def add_style_row(self, layer=None) -> StyleRow:
        avoid = [self.content_combo, *(r.combo for r in self.style_rows)]
        row = StyleRow(self.viewer, self._remove_style_row, avoid=avoid)
        row.combo.changed.connect(self._clear_stale_status)
        if layer is not None:
            row.combo.set_layer(layer)
        self.style_rows.append(row)
        self.styles_box.append(row)
        self._update_remove_buttons()
        return row

    def _remove_style_row(self, row: StyleRow) -> None:
        if len(self.style_rows) <= 1:
            return
        self.style_rows.remove(row)
        self.styles_box.remove(row)
        row.native.deleteLater()
        self._update_remove_buttons()

    def _update_remove_buttons(self) -> None:
        for row in self.style_rows:
            row.remove_button.enabled = len(self.style_rows) > 1

    # ----------------------------------------------------------------- backbone
    def refresh_backbone_state(self) -> dict:
        from ..core.weights import describe_vgg19_weights

        state = describe_vgg19_weights()
        looked = "\n".join(f"{entry['where']}: {entry['path']}" for entry in state["looked"])
        if state["found"]:
            self.backbone_label.value = "texture network: ImageNet VGG-19"
            self.fetch_button.visible = False
            self.backbone_label.tooltip = f"'auto' uses {state['source']}"
        else:
            self.backbone_label.value = "texture network: ImageNet EfficientNet-Lite0 (installed)"
            self.fetch_button.visible = True
            self.backbone_label.tooltip = (
                "'auto' uses the ImageNet EfficientNet-Lite0 that came with the plugin. The "
                "ImageNet VGG-19 (Gatys et al.'s own network, a 548 MB download once) is an "
                f"upgrade: fetch it under 'advanced', or set {state['env_var']}. "
                f"Looked in:\n{looked}"
            )
        return state

    def fetch_weights(self) -> None:
        """Download the ImageNet VGG-19 weights in a thread worker (with a progress message)."""
        from napari.utils.notifications import show_error, show_info

        from .._napari.downloads import start_vgg19_download

        def finished():
            self.fetch_button.enabled = True
            self.refresh_backbone_state()

        self.fetch_button.enabled = False
        self.backbone_label.value = "downloading the VGG-19 weights (548 MB)…"
        self.fetch_worker = start_vgg19_download(
            lambda path: show_info(f"GeoStyle: VGG-19 weights saved to {path}"),
            lambda error: show_error(f"GeoStyle: {error}"),
            finished,
        )

    # ----------------------------------------------------------------- running
    def options(self) -> dict:
        """The texture options chosen in the widget (as ``iter_texture_transfer`` takes them)."""
        options = {
            "size": self.size_spin.value,
            "preset": self.preset_combo.value,
            "levels": int(self.levels_spin.value),
            "preserve_color": self.color_check.value,
            "device": self.device_combo.value,
            "backbone": self.backbone_combo.value,
            "seed": self.seed_spin.value,
            "preview_every": PREVIEW_EVERY,
        }
        if self.iterations_spin.value > 0:
            options["iterations"] = int(self.iterations_spin.value)
        if self.style_weight_spin.value > 0:
            options["style_weight"] = self.style_weight_spin.value
        if self.content_weight_spin.value > 0:
            options["content_weight"] = self.content_weight_spin.value
        return options

    @property
    def running(self) -> bool:
        return self.run_state is not None and self.run_state.running

    def run_or_cancel(self) -> None:
        """The Run button: start, or cancel a running run (not on a double click's second
        click)."""
        run_or_cancel(self.running, self._started_at, self.run, self.cancel)

    def cancel(self) -> None:
        """Stop after the current iteration; the last preview stays."""
        if self.run_state is not None:
            self.status_label.setText("cancelling…")
            self.run_state.cancel()

    def _abandon_run(self) -> None:
        """The widget is gone (the viewer closed): stop the run, free what it holds."""
        if self.run_state is not None:
            self.run_state.abandon()
        self.run_state = None

    def _panel_closed(self) -> None:
        """The panel was closed (or its viewer): stop the run there, and show it idle."""
        if not self.running:
            return
        self._abandon_run()
        self.run_button.setText("Run")
        self.progress_bar.setVisible(False)
        self.status_label.setText("stopped: the panel was closed during the run.")

    def _update_frames_choice(self, *_) -> None:
        """Offer "all frames" only for a content layer with frames (a stack, a time series)."""
        from .._napari.stack_run import has_frames

        layer = self.content_combo.layer()
        self.all_frames_check.visible = layer is not None and has_frames(layer)

    def _update_levels_note(self, *_) -> None:
        """The levels spin says how many levels run at this size ("4 (3 run here)"): the
        progress bar counts those."""
        from ..core.images import fit_longest_side
        from ..core.texture import level_shapes

        layer = self.content_combo.layer()
        size = self.size_spin.value
        shape = (size, size)
        if layer is not None:
            data = layer.data[0] if layer.multiscale else layer.data
            spatial = data.shape[-3:-1] if layer.rgb else data.shape[-2:]
            shape = fit_longest_side(spatial, size)
        levels = int(self.levels_spin.value)
        running = len(level_shapes(shape, levels))
        self.levels_spin.native.setSuffix(f"  ({running} run here)" if running < levels else "")

    def all_frames(self) -> bool:
        """Whether a run does every frame of the content (ticked and offered)."""
        return self.all_frames_check.value and not self.all_frames_check.native.isHidden()

    def _clear_stale_status(self, *_):
        if self.status_label.text().startswith(("not started", "failed")):
            self.status_label.setText("")

    def _show_progress(self, done: int, total: int, text: str) -> None:
        if not self.life.alive:
            return
        self.progress_bar.setRange(0, max(1, total))
        self.progress_bar.setValue(done)
        self.progress_bar.setFormat(f"{text} (%p%)")

    def _start(self):
        from .._napari.runs import texture_run
        from .._napari.stack_run import stack_texture_run

        styles = [row.combo.layer() for row in self.style_rows]
        options = self.options()
        if len(styles) > 1:
            options["style_weights"] = [row.weight.value for row in self.style_rows]
        return (stack_texture_run if self.all_frames() else texture_run)(
            self.viewer, self.content_combo.layer(), styles, **self._run_hooks(), **options
        )

    def _run_hooks(self) -> dict:
        return {
            "on_done": self._finished,
            "on_progress": self._show_progress,
            "reuse": self.reuse_check.value,
            "color_output": self.color_output_check.value,
        }

    def run(self):
        """Start the run (returns the StyleRun, or None after an error notification)."""
        from napari.utils.notifications import show_error

        if self.running:
            return self.run_state
        try:
            self.run_state = self._start()
        except (ValueError, ImportError) as error:
            from .._napari.runs import friendly_error

            show_error(f"GeoStyle {self.stage}: {friendly_error(error)}")
            self.status_label.setText(f"not started: {error}")
            return None
        self._started_at = time.monotonic()
        self.run_button.setText("Cancel")
        self.progress_bar.setRange(0, 0)  # busy until the first step reports its position
        self.progress_bar.setFormat("starting…")
        self.progress_bar.setVisible(True)
        self.status_label.setText("running…")
        return self.run_state

    def _finished(self, run) -> None:
        if not self.life.alive:
            return
        self.run_button.setText("Run")
        self.progress_bar.setVisible(False)
        if run.error is not None:
            self.status_label.setText(f"failed: {run.error}")
        elif run.cancelled and getattr(run, "frames", None):
            self.status_label.setText(
                f"cancelled: {run.frames_done} of {run.frames} frames done in {run.output_name!r}."
                if run.output is not None
                else "cancelled before the first frame was shown."
            )
        elif run.cancelled and run.output is not None:
            self.status_label.setText(
                f"cancelled: the last preview is kept in {run.output_name!r}."
            )
        elif run.cancelled:
            self.status_label.setText("cancelled before a preview was made.")
        else:
            network = BACKBONE_LABELS.get(getattr(run, "backbone", None) or "", "")
            self.status_label.setText(
                f"done: {run.output_name!r}" + (f" (texture network: {network})" if network else "")
            )
