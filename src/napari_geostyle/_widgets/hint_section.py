"""The warp widget's "hints" section: Hint mode on the live warp (``_napari.hints``).

Hints STEER the estimate (each completed pair re-runs it from the images through the pairs);
the landmarks section's control points EDIT its result. The section says so, shows the
estimate's confidence, and says "the shapes may not match: add a hint" when it is low.
"""

from __future__ import annotations

from qtpy.QtWidgets import QGridLayout, QLabel

from ._common import collapsible
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
        self.toggle_button.setCheckable(True)
        self.undo_button = button("Undo hint", self.undo)
        self.export_button = button("Export hints (CSV)", self.export)
        self.label = QLabel(HINT_HELP)
        self.label.setWordWrap(True)
        grid = QGridLayout()
        grid.addWidget(self.label, 0, 0, 1, 3)
        grid.addWidget(self.toggle_button, 1, 0)
        grid.addWidget(self.undo_button, 1, 1)
        grid.addWidget(self.export_button, 1, 2)
        self.box = collapsible("hints", grid)

    def toggle(self, on=None) -> None:
        from ..viewer_api import start_hint_mode

        on = self.toggle_button.isChecked() if on is None else bool(on)
        if not on:
            if self.hinted is not None:
                self.hinted.close()
            self.hinted = None
            self.label.setText(HINT_HELP)
            return
        live = self.widget.live
        style = self.widget.style_combo.currentText()
        if live is None or live.closed or not style:
            self.toggle_button.setChecked(False)
            self.label.setText("Run the estimate first: hints steer a live warp.")
            return
        self.hinted = start_hint_mode(
            self.widget.viewer, live, style, on_status=lambda text: self.label.setText(text)
        )
        self.toggle_button.setChecked(True)

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
