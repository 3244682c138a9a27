"""The warp widget's "hints" section: Hint mode on the live warp (``_napari.hints``).

Hints STEER the estimate (each completed pair re-runs it from the images through the pairs);
the landmarks section's control points EDIT its result. The section says so, shows the
estimate's confidence, and says "the shapes may not match: add a hint" when it is low.
"""

from __future__ import annotations

from magicgui.widgets import Label

from ._common import Section, row
from ._controls import button

HINT_HELP = (
    "Hints steer the estimate: click a point on the content, then the same place on the "
    "geometry style; each pair re-estimates the warp from the images. (Control points, below, "
    "edit the result instead.)"
)


class HintSection:
    """Builds the section for ``widget`` (a ``WarpWidget``): ``.box`` goes into its layout."""

    def __init__(self, widget):
        self.widget = widget
        self.hinted = None
        self.toggle_button = button("Hint mode", self.toggle)
        self.toggle_button.native.setCheckable(True)
        self.undo_button = button("Undo hint", self.undo)
        self.export_button = button("Export hints (CSV)", self.export)
        self.label = Label(value=HINT_HELP)
        self.label.native.setWordWrap(True)
        buttons = row(self.toggle_button, self.undo_button, self.export_button)
        self.box = Section("hints", [self.label, buttons], labels=False)

    def toggle(self, on=None, hints=None) -> None:
        """Hint mode on or off (``on`` None: the button's state). ``hints``: pairs the live warp
        was already estimated with (a restored session), shown without estimating again."""
        from ..viewer_api import start_hint_mode

        on = self.toggle_button.value if on is None else bool(on)
        if not on:
            if self.hinted is not None:
                self.hinted.close()
            self.hinted = None
            self.label.value = HINT_HELP
            return
        live = self.widget.live
        style = self.widget.style_combo.layer()
        if live is None or live.closed or style is None:
            self.toggle_button.native.setChecked(False)
            self.label.value = "Run the estimate first: hints steer a live warp."
            return
        if self.hinted is not None:  # a new live warp (a loaded session): new hint layers
            self.hinted.close()
        self.hinted = start_hint_mode(
            self.widget.viewer, live, style.name, on_status=self._show_status, hints=hints
        )
        self.toggle_button.native.setChecked(True)

    def restore(self, options: dict, style_name) -> None:
        """Hint mode back on with a session's saved hints (``options["hints"]``), on its
        geometry style layer when it is open; nothing when the session had no hints."""
        saved = (options or {}).get("hints") or {}
        content, style = saved.get("content_points") or [], saved.get("style_points") or []
        if not len(content) or not self.widget.style_combo.set_layer(style_name or ""):
            return
        self.toggle(True, hints=(content, style))

    def _show_status(self, text: str) -> None:
        self.label.value = text

    def undo(self) -> None:
        if self.hinted is not None:
            self.hinted.session.undo()

    def export(self, path=None) -> None:
        if self.hinted is None:
            return
        if path is None:
            from ._common import choose_file

            path = choose_file(self.widget, "Export hints", "BigWarp CSV (*.csv)", save=True)
            if not path:
                return
        self.hinted.session.export_bigwarp_csv(path)
