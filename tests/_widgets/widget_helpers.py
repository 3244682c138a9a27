"""Shared helpers of the widget tests (importable as ``widget_helpers``: pytest prepends
tests/_widgets/, the folder of each test file there, to sys.path)."""

WAIT_MS = 60000  # generous: a 2-core machine shared with other processes


def tiny(widget, iterations=2):
    """Options for a seconds-long CPU run (what a user would pick for a quick look)."""
    widget.size_spin.value = 32
    widget.levels_spin.value = 1
    widget.iterations_spin.value = iterations
    widget.backbone_combo.value = "random"
    widget.device_combo.value = "cpu"
