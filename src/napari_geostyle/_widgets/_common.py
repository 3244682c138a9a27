"""Pieces the GeoStyle widgets share: magicgui Image-layer pickers that follow the layer list,
collapsible sections, the form widget base (labels aligned, layer choices refreshed), the
Run/Cancel double-click guard, console binding, devices, scrolling."""

from __future__ import annotations

import time
from collections.abc import Callable

from magicgui.widgets import ComboBox, Container, PushButton
from qtpy.QtCore import QEvent, QObject, QSize, Qt
from qtpy.QtWidgets import QComboBox, QLabel, QScrollArea, QWidget

from .._napari.layer_data import image_layers, is_offerable_image, same_layer

NONE_TEXT = "(same as style)"
SECOND_IMAGE_TEXT = "(open a second image)"  # every image is taken by the other picker
LAYER_LIST_EVENTS = ("inserted", "removed", "reordered", "renamed")
MIN_NAME_CHARS = 8  # characters of a layer name a picker shows at least


class LayerCombo(ComboBox):
    """A magicgui picker of the viewer's non-empty Image layers (annotation
    ``napari.layers.Image``), kept current by ``reset_choices``.

    napari calls ``reset_choices`` on a docked widget when layers come, go, move or are renamed;
    widgets call :func:`follow_layer_list` so that a widget that is not docked follows too.
    A reset keeps the chosen layer when it is still there. ``optional_text`` adds a first entry
    meaning "none".

    Until the user (or code, through :meth:`set_layer`) chooses a layer, the choice is automatic
    and follows the layer list: the first layer whose name matches one of ``prefer`` (exactly,
    then as a part of the name; a callable hint ``hint(viewer)`` returns a layer), else the
    first layer no ``avoid`` picker shows (optional pickers then stay on "none"). So a widget
    docked before any data picks distinct, sensible layers once File > Open Sample adds them.
    The callables in ``refreshed`` run after every reset.
    """

    def __init__(
        self,
        viewer,
        optional_text: str | None = None,
        prefer: tuple = (),
        label: str = "",
        tooltip: str | None = None,
    ):
        from napari.layers import Image

        self.viewer = viewer
        self.optional_text = optional_text
        self.prefer = tuple(prefer)
        self.avoid: list[LayerCombo] = []
        self.chosen_by_user = False
        self.refreshed: list[Callable] = []
        self._chosen = None
        super().__init__(
            choices=self._layer_choices, annotation=Image, label=label, tooltip=tooltip
        )
        self.native.activated.connect(self._on_user_choice)
        # as wide as the panel allows, not as the longest layer name: long names do not widen
        # the dock (the list that drops down still shows them whole)
        self.native.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.native.setMinimumContentsLength(MIN_NAME_CHARS)

    def _on_user_choice(self, _index=None) -> None:
        self.chosen_by_user = True

    def _layer_choices(self, _widget=None) -> list[tuple[str, object]]:
        layers = image_layers(self.viewer)
        entries: list[tuple[str, object]] = []
        if self.optional_text is not None:
            entries.append((self.optional_text, None))
        elif self._chosen is None and layers:  # the only image(s) are the other picker's
            entries.append((SECOND_IMAGE_TEXT, None))
        return entries + [(layer.name, layer) for layer in layers]

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

    def reset_choices(self, *_) -> None:
        """Rebuild the entries in layer-list order and choose the layer (one ``changed``)."""
        chosen = self.layer()
        if not self.chosen_by_user or chosen is None and self.optional_text is None:
            chosen = self.automatic_choice()
        self._chosen = chosen
        with self.changed.blocked():
            self.native.clear()  # magicgui keeps old entries in place: the order would drift
            super().reset_choices()
            for index in range(self.native.count()):
                candidate = self.native.itemData(index)
                if candidate is not None and same_layer(candidate, chosen):
                    self.native.setCurrentIndex(index)
        self.changed.emit(self.value)
        for callback in list(self.refreshed):
            callback()

    def layer(self):
        """The chosen layer (None when nothing, or the optional entry, is chosen)."""
        layer = self.native.itemData(self.native.currentIndex())
        if layer is not None and is_offerable_image(layer) and layer in self.viewer.layers:
            return layer
        return None

    def set_layer(self, layer) -> bool:
        """Choose ``layer`` (object or name), as a user would. False if it is not offered."""
        for index in range(self.native.count()):
            candidate = self.native.itemData(index)
            if candidate is not None and candidate.name == getattr(layer, "name", layer):
                self.chosen_by_user = True
                self.native.setCurrentIndex(index)
                return True
        return False

    def layers(self) -> list:
        entries = (self.native.itemData(index) for index in range(self.native.count()))
        return [layer for layer in entries if layer is not None]

    def names(self) -> list[str]:
        """The entries' texts, in order."""
        return [self.native.itemText(index) for index in range(self.native.count())]


def keep_different(first: LayerCombo, second: LayerCombo) -> None:
    """Keep two pickers on different layers: ``second``'s automatic choice avoids ``first``'s,
    and when both show the same layer, ``second`` moves to another one (if any)."""
    if first not in second.avoid:
        second.avoid.append(first)

    def fix(*_):
        chosen = first.layer()
        if chosen is None or not same_layer(second.layer(), chosen):
            return
        for candidate in second.layers():
            if not same_layer(candidate, chosen):
                user = second.chosen_by_user
                second.set_layer(candidate)
                second.chosen_by_user = user
                return

    first.changed.connect(fix)
    second.changed.connect(fix)
    first.refreshed.append(fix)
    second.refreshed.append(fix)
    second.reset_choices()


def follow_layer_list(widget, life: WidgetLife) -> None:
    """Call ``widget.reset_choices`` when the viewer's layers come, go, move or are renamed
    (napari does so for docked widgets only; the same callback is not connected twice), and
    stop when the widget is deleted."""
    events = widget.viewer.layers.events
    for name in LAYER_LIST_EVENTS:
        getattr(events, name).connect(widget.reset_choices)

    def disconnect() -> None:
        for name in LAYER_LIST_EVENTS:
            try:
                getattr(events, name).disconnect(widget.reset_choices)
            except (ValueError, RuntimeError, TypeError):
                pass

    life.on_destroyed(disconnect)


def run_or_cancel(busy: bool, started_at: float, run: Callable, cancel: Callable) -> None:
    """A Run/Cancel button's click: start, or cancel the running work. A second click within
    the double-click interval of the start is the rest of a double click, not a Cancel."""
    from qtpy.QtWidgets import QApplication

    if not busy:
        run()
        return
    since_start_ms = (time.monotonic() - started_at) * 1000.0
    if since_start_ms < QApplication.doubleClickInterval():
        return
    cancel()


class Section(Container):
    """A collapsible section: a header button that shows or hides a magicgui ``Container``."""

    def __init__(self, title: str, widgets: list, expanded: bool = False, labels: bool = True):
        self.title = title
        self.header = PushButton(text=title, label="")
        self.header.native.setFlat(True)
        self.header.native.setStyleSheet("text-align: left; padding: 2px;")
        self.body = Container(widgets=widgets, labels=labels)
        self.body.margins = (0, 0, 0, 0)
        super().__init__(widgets=[self.header, self.body], labels=False)
        self.margins = (0, 0, 0, 0)
        self.native.layout().setSpacing(0)
        self.header.changed.connect(lambda *_: self.toggle())
        self.expand() if expanded else self.collapse()

    @property
    def expanded(self) -> bool:
        return not self.body.native.isHidden()

    def expand(self) -> None:
        self.body.native.setVisible(True)
        self.header.text = f"\u25be {self.title}"

    def collapse(self) -> None:
        self.body.native.setVisible(False)
        self.header.text = f"\u25b8 {self.title}"

    def toggle(self) -> None:
        self.collapse() if self.expanded else self.expand()


def row(*widgets, name: str = "", label: str = "") -> Container:
    """Widgets side by side, without labels (one form row)."""
    box = Container(widgets=list(widgets), layout="horizontal", labels=False, label=label)
    box.margins = (0, 0, 0, 0)
    if name:
        box.name = name
    return box


def align_labels(*containers: Container) -> None:
    """Give each form's labels one width, measured in the font they are shown in (magicgui
    measures them before napari's style sheet applies, so the fields would start unevenly).
    Widgets call it when they are shown."""
    for container in containers:
        labels = []
        for widget in container:
            holder = widget.native.parentWidget()  # magicgui's label-and-widget row
            if holder is None or holder is container.native or holder.layout() is None:
                continue
            label = holder.layout().itemAt(0).widget()
            if isinstance(label, QLabel) and label is not widget.native:
                label.ensurePolished()
                labels.append(label)
        if labels:
            widest = max(label.sizeHint().width() for label in labels)
            for label in labels:
                label.setFixedWidth(widest)


class FormWidget(QWidget):
    """A dock widget built on a magicgui ``form`` with an Advanced section (``advanced_box``):
    their labels line up when it is shown, and napari's ``reset_choices`` refreshes the layer
    choices of its ``choice_forms()``."""

    form: Container
    advanced_box: Section

    def choice_forms(self) -> tuple[Container, ...]:
        """The forms whose layer choices ``reset_choices`` refreshes."""
        return (self.form,)

    def showEvent(self, event) -> None:
        align_labels(self.form, self.advanced_box.body)
        super().showEvent(event)

    def reset_choices(self, *_) -> None:
        """Refresh every layer choice (napari calls it on docked widgets as layers change)."""
        for choices in self.choice_forms():
            choices.reset_choices()


def form(*widgets, spacing: int = 2, labels: bool = True) -> Container:
    """A compact column of widgets; ``labels``: a form, each widget's ``label`` at its left."""
    box = Container(widgets=list(widgets), labels=labels)
    box.margins = (0, 0, 0, 0)
    box.native.layout().setSpacing(spacing)
    return box


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
    from qtpy.QtWidgets import QFrame, QVBoxLayout

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
        bar = self.verticalScrollBar()
        assert bar is not None, "a scroll area always has its bar"
        return QSize(size.width() + bar.sizeHint().width(), height)

    def _content(self) -> QWidget:
        content = self.widget()
        assert content is not None, "set when the section is built"
        return content

    def minimumSizeHint(self) -> QSize:
        inner = self._content().minimumSizeHint()
        return self._with_bar(inner, min(inner.height(), SCROLL_MIN_HEIGHT))

    def sizeHint(self) -> QSize:
        inner = self._content().sizeHint()
        return self._with_bar(inner, inner.height())
