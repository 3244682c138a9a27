"""Landmark table (a dock widget of the Geometric Warp): one row per landmark pair.

Shows each pair's content and output (row, col), its residual under the current fit (0 for a
TPS, which passes through every pair), and an on/off switch (off: left out of the fit). Delete
removes the selected pairs; Jump centres the view on a pair. It follows the live warp's points.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QSize, Qt
from qtpy.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ._controls import qt_button

COLUMNS = ("on", "content row", "content col", "output row", "output col", "residual")
# headers on two lines, columns as wide as their contents: all six fit a docked panel
HEADERS = tuple(name.replace(" ", "\n") for name in COLUMNS)


class LandmarkTable(QWidget):
    """The pairs of ``live`` (a :class:`LiveWarp`) as a table; ``set_live`` switches warps."""

    def __init__(self, viewer, live=None, parent=None):
        super().__init__(parent)
        self.viewer = viewer
        self.live = None
        self._filling = False
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(HEADERS)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.itemChanged.connect(self._on_item_changed)
        # Qt: magicgui has no editable table with per-row check boxes, selection and jumps
        self.delete_button = qt_button("Delete", self.delete_selected)
        self.jump_button = qt_button("Jump to", lambda: self.jump_to(self.selected_rows()[:1]))
        self.table.cellDoubleClicked.connect(lambda row, _col: self.jump_to([row]))
        buttons = QHBoxLayout()
        buttons.addWidget(self.delete_button)
        buttons.addWidget(self.jump_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addLayout(buttons)
        self.set_live(live)

    def sizeHint(self) -> QSize:
        """Wide enough to show every column whole (the dock opens at this width)."""
        table = self.table
        header = table.horizontalHeader()
        widths = [
            max(header.sectionSizeHint(i), table.sizeHintForColumn(i))
            for i in range(table.columnCount())
        ]
        # the stretched last column is never narrower than the default section size
        widths[-1] = max(widths[-1], header.defaultSectionSize())
        row_header, scroll_bar = table.verticalHeader(), table.verticalScrollBar()
        layout = self.layout()
        assert row_header and scroll_bar and layout, "the table's and the layout's, built above"
        margins = layout.contentsMargins()
        width = (
            row_header.sizeHint().width()
            + sum(widths)
            + scroll_bar.sizeHint().width()
            + 2 * table.frameWidth()
            + margins.left()
            + margins.right()
        )
        return QSize(max(width, super().sizeHint().width()), super().sizeHint().height())

    def minimumSizeHint(self) -> QSize:
        return QSize(self.sizeHint().width(), super().minimumSizeHint().height())

    def set_live(self, live) -> None:
        for layer in self._layers():
            try:
                layer.events.data.disconnect(self.refresh)
                layer.events.features.disconnect(self.refresh)
            except (ValueError, RuntimeError, TypeError):
                pass
        self.live = live
        for layer in self._layers():
            layer.events.data.connect(self.refresh)
            layer.events.features.connect(self.refresh)
        self.refresh()

    def _layers(self):
        if self.live is None:
            return ()
        return (self.live.content_points, self.live.target_points)

    def refresh(self, *_):
        """Refill the table from the live warp's points (after any edit or re-fit)."""
        if self.live is None or self.live.closed:
            self.table.setRowCount(0)
            return
        control, target = self.live.pairs()
        active = self.live.active_pairs()
        try:
            residuals = self.live.residuals()
        except ValueError:
            residuals = np.full(len(control), np.nan)
        self._filling = True
        try:
            self.table.setRowCount(len(control))
            for row in range(len(control)):
                check = QTableWidgetItem()
                check.setFlags(
                    Qt.ItemFlag.ItemIsUserCheckable
                    | Qt.ItemFlag.ItemIsEnabled
                    | Qt.ItemFlag.ItemIsSelectable
                )
                check.setCheckState(
                    Qt.CheckState.Checked if active[row] else Qt.CheckState.Unchecked
                )
                self.table.setItem(row, 0, check)
                values = (*control[row], *target[row], residuals[row])
                for column, value in enumerate(values, start=1):
                    item = QTableWidgetItem(f"{value:.2f}")
                    item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
                    self.table.setItem(row, column, item)
            self.table.setVerticalHeaderLabels([str(i + 1) for i in range(len(control))])
        finally:
            self._filling = False
        self.updateGeometry()  # wider numbers: a wider panel

    def _on_item_changed(self, item) -> None:
        if self._filling or self.live is None or item.column() != 0:
            return
        self.live.set_pair_active(item.row(), item.checkState() == Qt.CheckState.Checked)
        self.refresh()

    def selected_rows(self) -> list[int]:
        return sorted({index.row() for index in self.table.selectionModel().selectedRows()})

    def delete_selected(self) -> None:
        """Delete the selected pairs (undoable like any point edit)."""
        rows = self.selected_rows()
        if self.live is None or not rows:
            return
        control, target = self.live.pairs()
        keep = np.setdiff1d(np.arange(len(control)), rows)
        active = self.live.active_pairs()[keep]
        self.live.set_points(control[keep], target[keep], active=active)  # one undo step
        self.refresh()

    def jump_to(self, rows) -> None:
        """Centre the view on the first of ``rows``' output point and select it."""
        if self.live is None or not len(rows):
            return
        row = int(rows[0])
        layer = self.live.target_points
        world = np.asarray(layer.data_to_world(layer.data[row]))
        camera = getattr(getattr(self.viewer, "scene", None), "camera", None) or self.viewer.camera
        camera.center = tuple(world[-2:])
        layer.selected_data = {row}
        self.viewer.layers.selection.active = layer
