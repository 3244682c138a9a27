"""Geometric Style Transfer widget: both stages (warp to the geometry, then texture) in one click."""

from __future__ import annotations

from ._common import NONE_TEXT, LayerCombo, keep_different
from ._controls import combo
from .texture_widget import TextureTransferWidget
from .warp_widget import METHODS, MODELS


class GeometricStyleTransferWidget(TextureTransferWidget):
    """Plugins > GeoStyle > Geometric Style Transfer.

    Content + style (geometry and texture from the same layer, or from two different ones);
    the texture options are the Texture Transfer widget's. The warped image appears as soon as
    the geometric stage ends, the result updates live.
    """

    stage = "geometric style"

    def _build_inputs(self) -> list:
        self.content_combo = LayerCombo(self.viewer, prefer=("content",), label="content")
        self.style_combo = LayerCombo(
            self.viewer, prefer=("style", "geometry style"), label="style"
        )
        keep_different(self.content_combo, self.style_combo)
        # optional pickers stay on "(same as style)" unless a layer is plainly meant for them
        self.geometry_combo = LayerCombo(
            self.viewer, optional_text=NONE_TEXT, label="geometry from"
        )
        self.texture_combo = LayerCombo(
            self.viewer,
            optional_text=NONE_TEXT,
            prefer=("texture style", "texture"),
            label="texture from",
        )
        for picker in (self.geometry_combo, self.texture_combo):
            picker.avoid.extend([self.content_combo, self.style_combo])
            picker.reset_choices()
        for picker in (
            self.content_combo,
            self.style_combo,
            self.geometry_combo,
            self.texture_combo,
        ):
            picker.changed.connect(self._clear_stale_status)
        self.model_combo = combo(MODELS, label="warp model")
        self.method_combo = combo(METHODS, "method", label="warp method")
        return [
            self.content_combo,
            self.style_combo,
            self.geometry_combo,
            self.texture_combo,
            self.model_combo,
            self.method_combo,
        ]

    def _start(self):
        from .._napari.runs import pipeline_run
        from .._napari.stack_run import stack_pipeline_run

        options = self.options()
        options["model"] = self.model_combo.value
        options["method"] = self.method_combo.value
        return (stack_pipeline_run if self.all_frames() else pipeline_run)(
            self.viewer,
            self.content_combo.layer(),
            self.style_combo.layer(),
            geometry_style=self.geometry_combo.layer(),
            texture_style=self.texture_combo.layer(),
            **self._run_hooks(),
            **options,
        )
