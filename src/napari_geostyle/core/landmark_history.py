"""Undo / redo history of landmark pairs (Qt-free: the live warp keeps one per warp).

A state is one ``(control, target)`` pair of ``(N, 2)`` arrays, with the pairs' on/off flags
(``active``, read with ``current_active``) recorded beside it: undo restores both together.
``push`` records a new state and drops what was undone after the current one, as every
editor's history does.
"""

from __future__ import annotations

import numpy as np


class LandmarkHistory:
    """Linear history of ``(control, target)`` landmark states."""

    def __init__(self):
        self._states: list[tuple[np.ndarray, np.ndarray]] = []
        self._active: list[np.ndarray] = []  # each state's on/off flags
        self._index = -1

    def __len__(self) -> int:
        return len(self._states)

    def push(self, control, target, active=None) -> None:
        """Record a state (copied) after the current one; undone states are dropped.
        ``active``: the pairs' on/off flags (all on when not given)."""
        state = (np.array(control, float), np.array(target, float))
        flags = np.ones(len(state[0]), bool) if active is None else np.array(active, bool)
        del self._states[self._index + 1 :]
        del self._active[self._index + 1 :]
        self._states.append(state)
        self._active.append(flags)
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

    @property
    def current_active(self) -> np.ndarray | None:
        """The on/off flags of the state now shown, or None before the first ``push``."""
        return self._active[self._index].copy() if self._states else None

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
