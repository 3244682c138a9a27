"""Undo / redo history of landmark pairs (Qt-free: the live warp keeps one per warp).

A state is one ``(control, target)`` pair of ``(N, 2)`` arrays. ``push`` records a new state
and drops what was undone after the current one, as every editor's history does.
"""

from __future__ import annotations

import numpy as np


class LandmarkHistory:
    """Linear history of ``(control, target)`` landmark states."""

    def __init__(self):
        self._states: list[tuple[np.ndarray, np.ndarray]] = []
        self._index = -1

    def __len__(self) -> int:
        return len(self._states)

    def push(self, control, target) -> None:
        """Record a state (copied) after the current one; undone states are dropped."""
        state = (np.array(control, float), np.array(target, float))
        del self._states[self._index + 1 :]
        self._states.append(state)
        self._index = len(self._states) - 1

    @property
    def can_undo(self) -> bool:
        return self._index > 0

    @property
    def can_redo(self) -> bool:
        return self._index < len(self._states) - 1

    @property
    def current(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The state now shown, or None before the first ``push``."""
        return self._states[self._index] if self._states else None

    def undo(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Step back; the state to restore, or None when there is nothing to undo."""
        if not self.can_undo:
            return None
        self._index -= 1
        return self._states[self._index]

    def redo(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Step forward; the state to restore, or None when there is nothing to redo."""
        if not self.can_redo:
            return None
        self._index += 1
        return self._states[self._index]
