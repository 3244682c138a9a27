"""Small Qt pieces the GeoStyle widgets share: Image-layer pickers, console binding, devices."""

from __future__ import annotations

from qtpy.QtWidgets import QComboBox

from ._layer_data import image_layers, is_offerable_image, same_layer

NONE_TEXT = "(same as style)"


class LayerCombo(QComboBox):
    """A picker of the viewer's non-empty Image layers, kept current as layers come and go.

    Refreshes when layers are inserted, removed, moved or renamed, keeping the chosen layer
    (by identity) when it is still there. ``optional`` adds a first entry meaning "none".
    """

    def __init__(self, viewer, optional_text: str | None = None, parent=None):
        super().__init__(parent)
        self.viewer = viewer
        self.optional_text = optional_text
        self._layers: list = []
        self._watched: list = []
        viewer.layers.events.inserted.connect(self._on_layers_changed)
        viewer.layers.events.removed.connect(self._on_layers_changed)
        viewer.layers.events.moved.connect(self._on_layers_changed)
        self.refresh()

    def _on_layers_changed(self, event=None) -> None:
        self.refresh()

    def _watch_names(self) -> None:
        for layer in self._watched:
            try:
                layer.events.name.disconnect(self._on_layers_changed)
            except (ValueError, RuntimeError, TypeError):
                pass
        self._watched = list(self.viewer.layers)
        for layer in self._watched:
            layer.events.name.connect(self._on_layers_changed)

    def refresh(self) -> None:
        chosen = self.layer()
        layers = image_layers(self.viewer)
        self._watch_names()
        self.blockSignals(True)
        try:
            self.clear()
            self._layers = []
            if self.optional_text is not None:
                self.addItem(self.optional_text)
                self._layers.append(None)
            for layer in layers:
                self.addItem(layer.name)
                self._layers.append(layer)
            for index, candidate in enumerate(self._layers):
                if candidate is not None and same_layer(candidate, chosen):
                    self.setCurrentIndex(index)
        finally:
            self.blockSignals(False)
        if not same_layer(self.layer(), chosen):
            self.currentIndexChanged.emit(self.currentIndex())

    def layer(self):
        """The chosen layer (None when nothing, or the optional entry, is chosen)."""
        index = self.currentIndex()
        if 0 <= index < len(self._layers):
            layer = self._layers[index]
            if layer is not None and is_offerable_image(layer) and layer in self.viewer.layers:
                return layer
        return None

    def set_layer(self, layer) -> bool:
        """Choose ``layer`` (object or name). False if it is not offered."""
        for index, candidate in enumerate(self._layers):
            if candidate is not None and (candidate.name == getattr(layer, "name", layer)):
                self.setCurrentIndex(index)
                return True
        return False

    def layers(self) -> list:
        return [layer for layer in self._layers if layer is not None]


def keep_different(first: LayerCombo, second: LayerCombo) -> None:
    """When both pickers show the same layer, move ``second`` to another one (if any)."""

    def fix(_index=None):
        chosen = first.layer()
        if chosen is None or not same_layer(second.layer(), chosen):
            return
        for candidate in second.layers():
            if not same_layer(candidate, chosen):
                second.set_layer(candidate)
                return

    first.currentIndexChanged.connect(fix)
    second.currentIndexChanged.connect(fix)
    fix()


def bind_console(viewer) -> None:
    """Make ``geostyle`` (the scripting module) available in the napari console."""
    from .. import viewer_api

    viewer.update_console({"geostyle": viewer_api})


def device_names() -> list[str]:
    """"auto" and the devices actually present (torch is loaded here, not at import)."""
    try:
        from ..core.devices import available_devices

        return ["auto", *available_devices()]
    except ImportError:  # torch missing: runs will report how to install it
        return ["auto"]


def choose_file(parent, caption: str, filters: str, save: bool):
    """A file dialog; returns the chosen path or None."""
    from qtpy.QtWidgets import QFileDialog

    if save:
        path, _ = QFileDialog.getSaveFileName(parent, caption, "", filters)
    else:
        path, _ = QFileDialog.getOpenFileName(parent, caption, "", filters)
    return path or None
