"""Shared helpers of the widget tests (tests/ is on sys.path: pytest's rootdir-relative import)."""

WAIT_MS = 60000  # generous: a 2-core machine shared with other processes


def tiny(widget, iterations=2):
    """Options for a seconds-long CPU run (what a user would pick for a quick look)."""
    widget.size_spin.value = 32
    widget.levels_spin.value = 1
    widget.iterations_spin.value = iterations
    widget.backbone_combo.value = "random"
    widget.device_combo.value = "cpu"
