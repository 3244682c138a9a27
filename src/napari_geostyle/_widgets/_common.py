"""Small Qt pieces the GeoStyle widgets share: Image-layer pickers, console binding, devices."""

from __future__ import annotations

from qtpy.QtCore import QEvent, QObject, QSize, Qt, Signal
from qtpy.QtWidgets import QComboBox, QScrollArea

from .._napari.layer_data import image_layers, is_offerable_image, same_layer

NONE_TEXT = "(same as style)"
SECOND_IMAGE_TEXT = "(open a second image)"  # every image is taken by the other picker


class LayerCombo(QComboBox):
    """A picker of the viewer's non-empty Image layers, kept current as layers come and go.

    Refreshes when layers are inserted, removed, moved or renamed, keeping the chosen layer
    when it is still there. ``optional_text`` adds a first entry meaning "none".

    Until the user (or code, through :meth:`set_layer`) chooses a layer, the choice is automatic
    and follows the layer list: the first layer whose name matches one of ``prefer`` (exactly,
    then as a part of the name; a callable hint ``hint(viewer)`` returns a layer), else the
    first layer no ``avoid`` picker shows (optional pickers then stay on "none"). So a widget
    docked before any data picks distinct, sensible layers once File > Open Sample adds them.
    ``refreshed`` is emitted after every refresh.
    """

    refreshed = Signal()

    def __init__(self, viewer, optional_text: str | None = None, parent=None, prefer: tuple = ()):
        super().__init__(parent)
        self.viewer = viewer
        self.optional_text = optional_text
        self.prefer = tuple(prefer)
        self.avoid: list[LayerCombo] = []
        self.chosen_by_user = False
        self._layers: list = []
        self._watched: list = []
        viewer.layers.events.inserted.connect(self._on_layers_changed)
        viewer.layers.events.removed.connect(self._on_layers_changed)
        viewer.layers.events.moved.connect(self._on_layers_changed)
        self.activated.connect(self._on_user_choice)
        self.destroyed.connect(_disconnector(viewer, self._on_layers_changed))
        self.refresh()

    def _on_user_choice(self, _index=None) -> None:
        self.chosen_by_user = True

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

    def automatic_choice(self):
        """The layer this picker shows while the user has not chosen one (or None)."""
        layers = image_layers(self.viewer)
        taken = [combo.layer() for combo in self.avoid]
        free = [layer for layer in layers if not any(same_layer(layer, t) for t in taken)]
        names = [hint for hint in self.prefer if isinstance(hint, str)]
        for hint in self.prefer:
            if callable(hint):  # e.g. "the latest warped layer"
                found = hint(self.viewer)
                if found is not None and any(same_layer(found, layer) for layer in free):
                    return found
            for layer in free:
                if isinstance(hint, str) and layer.name.lower() == hint.lower():
                    return layer
        for hint in names:
            for layer in free:
                if hint.lower() in layer.name.lower():
                    return layer
        if self.optional_text is not None:
            return None
        if free:
            return free[0]
        return None if self.avoid else (layers[0] if layers else None)

    def refresh(self) -> None:
        chosen = self.layer()
        layers = image_layers(self.viewer)
        self._watch_names()
        if not self.chosen_by_user or chosen is None and self.optional_text is None:
            chosen = self.automatic_choice()
        self.blockSignals(True)
        try:
            self.clear()
            self._layers = []
            if self.optional_text is not None:
                self.addItem(self.optional_text)
                self._layers.append(None)
            elif chosen is None and layers:  # the only image(s) are the other picker's
                self.addItem(SECOND_IMAGE_TEXT)
                self._layers.append(None)
            for layer in layers:
                self.addItem(layer.name)
                self._layers.append(layer)
            for index, candidate in enumerate(self._layers):
                if candidate is not None and same_layer(candidate, chosen):
                    self.setCurrentIndex(index)
        finally:
            self.blockSignals(False)
        self.currentIndexChanged.emit(self.currentIndex())
        self.refreshed.emit()

    def layer(self):
        """The chosen layer (None when nothing, or the optional entry, is chosen)."""
        index = self.currentIndex()
        if 0 <= index < len(self._layers):
            layer = self._layers[index]
            if layer is not None and is_offerable_image(layer) and layer in self.viewer.layers:
                return layer
        return None

    def set_layer(self, layer) -> bool:
        """Choose ``layer`` (object or name), as a user would. False if it is not offered."""
        for index, candidate in enumerate(self._layers):
            if candidate is not None and (candidate.name == getattr(layer, "name", layer)):
                self.chosen_by_user = True
                self.setCurrentIndex(index)
                return True
        return False

    def layers(self) -> list:
        return [layer for layer in self._layers if layer is not None]


def _disconnector(viewer, callback):
    """A slot for ``destroyed`` that stops a deleted picker from hearing the layer list."""

    def disconnect(*_):
        for emitter in (
            viewer.layers.events.inserted,
            viewer.layers.events.removed,
            viewer.layers.events.moved,
        ):
            try:
                emitter.disconnect(callback)
            except (ValueError, RuntimeError, TypeError):
                pass

    return disconnect


def keep_different(first: LayerCombo, second: LayerCombo) -> None:
    """Keep two pickers on different layers: ``second``'s automatic choice avoids ``first``'s,
    and when both show the same layer, ``second`` moves to another one (if any)."""
    if first not in second.avoid:
        second.avoid.append(first)

    def fix(_index=None):
        chosen = first.layer()
        if chosen is None or not same_layer(second.layer(), chosen):
            return
        for candidate in second.layers():
            if not same_layer(candidate, chosen):
                user = second.chosen_by_user
                second.set_layer(candidate)
                second.chosen_by_user = user
                return

    first.currentIndexChanged.connect(fix)
    second.currentIndexChanged.connect(fix)
    first.refreshed.connect(fix)
    second.refreshed.connect(fix)
    second.refresh()


class WidgetLife:
    """Whether a widget's Qt side still exists; runs ``on_destroyed`` callbacks when it goes.

    Closing the viewer deletes the docked widgets while a thread worker may still run: its
    handlers ask ``alive`` before touching a button, and the callbacks stop the work.

    ``on_panel_closed`` callbacks run when the widget's panel is closed (napari takes the
    widget out of its dock: its parent becomes None) or when the viewer's window it was docked
    in closes. The widget itself lives on, but its work must stop there: a late step must not
    touch a viewer that is closed, nor run on unseen from a panel nobody can reach.
    """

    def __init__(self, widget):
        self.alive = True
        self._callbacks: list = []
        self._panel_callbacks: list = []
        self._docked = False
        self._window = None
        self._watch = _PanelWatch(self, widget)  # a child of the widget: it goes with it
        widget.installEventFilter(self._watch)
        widget.destroyed.connect(self._destroyed)

    def on_destroyed(self, callback) -> None:
        self._callbacks.append(callback)

    def on_panel_closed(self, callback) -> None:
        self._panel_callbacks.append(callback)

    def _destroyed(self, *_):
        self.alive = False
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def _parent_changed(self, widget) -> None:
        if widget.parent() is not None:
            self._docked = True
            window = widget.window()
            if window is not widget and window is not self._window:
                self._window = window
                window.installEventFilter(self._watch)
        elif self._docked:
            self._docked = False
            self._panel_closed()

    def _window_closing(self, spontaneous: bool) -> None:
        if not spontaneous:  # viewer.close(): its layers are gone already
            self._panel_closed()
            return
        from qtpy.QtCore import QTimer

        window = self._window  # a user's close may still be refused (a confirmation)

        def check() -> None:
            try:
                closed = not window.isVisible()
            except RuntimeError:  # the window is deleted already
                closed = True
            if closed:
                self._panel_closed()

        QTimer.singleShot(0, check)

    def _panel_closed(self) -> None:
        if not self.alive:
            return
        for callback in list(self._panel_callbacks):
            callback()


class _PanelWatch(QObject):
    """Event filter of a widget (parent changes) and of the window it is docked in (close)."""

    def __init__(self, life: WidgetLife, widget):
        super().__init__(widget)
        self._life = life
        self._widget = widget

    def eventFilter(self, watched, event):
        kind = event.type()
        if kind == QEvent.Type.ParentChange and watched is self._widget:
            self._life._parent_changed(self._widget)
        elif kind == QEvent.Type.Close and watched is self._life._window:
            self._life._window_closing(event.spontaneous())
        return False


def bind_console(viewer) -> None:
    """Make ``geostyle`` (the scripting module) available in the napari console."""
    from .. import viewer_api

    viewer.update_console({"geostyle": viewer_api})


def device_names() -> list[str]:
    """ "auto" and the devices actually present (torch is loaded here, not at import)."""
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


SCROLL_MIN_HEIGHT = 180  # px a docked widget asks for at least; the rest scrolls


def scroll_body(widget):
    """Give ``widget`` a vertical scroll area filling it, and return the layout to fill inside.

    A docked widget then asks for its full width but only ``SCROLL_MIN_HEIGHT`` px of height:
    several widgets docked on a small screen (sections open) never push the window taller
    than the screen, and every control stays reachable by scrolling.
    """
    from qtpy.QtWidgets import QFrame, QVBoxLayout, QWidget

    body = QWidget()
    area = _ScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setWidget(body)
    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(area)
    return QVBoxLayout(body)


class _ScrollArea(QScrollArea):
    """A vertical scroll area as wide as its content, as tall as it when there is room."""

    def _with_bar(self, size: QSize, height: int) -> QSize:
        return QSize(size.width() + self.verticalScrollBar().sizeHint().width(), height)

    def minimumSizeHint(self) -> QSize:
        inner = self.widget().minimumSizeHint()
        return self._with_bar(inner, min(inner.height(), SCROLL_MIN_HEIGHT))

    def sizeHint(self) -> QSize:
        inner = self.widget().sizeHint()
        return self._with_bar(inner, inner.height())


def collapsible(title: str, form, expanded: bool = False):
    """A section (superqt's QCollapsible) holding ``form``; starts collapsed unless ``expanded``."""
    from qtpy.QtWidgets import QWidget
    from superqt import QCollapsible

    inner = QWidget()
    form.setContentsMargins(0, 0, 0, 0)
    inner.setLayout(form)
    box = QCollapsible(title)
    box.addWidget(inner)
    box.layout().setContentsMargins(0, 0, 0, 0)
    if expanded:
        box.expand(animate=False)
    else:
        box.collapse(animate=False)
    return box
