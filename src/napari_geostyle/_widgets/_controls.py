"""Building the widgets' controls: one helper per kind of control, and every tooltip in one place.

Widgets call ``combo``/``spin``/``check``/``button``/... with a key; the key's tooltip comes
from ``TOOLTIPS`` (controls without an entry get none), so wording stays consistent across the
three widgets and is reviewed in one file.
"""

from __future__ import annotations

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QPushButton,
    QSpinBox,
)

TOOLTIPS = {
    # Geometric Warp
    "method": "network: one forward pass of the geometry network; refine: then optimise the "
    "transform on feature correlations (slower, closer).",
    "stacks": "For stacks and time series: warp the shown slice or all.",
    "start_from_landmarks": "No network: an identity warp with no landmarks. Click on the "
    "content, then where that point should land in the output; repeat (3 pairs make a warp).",
    "strength": "0: no warp, 1: the full warp (re-warps live)",
    "landmark_fit": "How the landmarks are fitted when you edit them: TPS bends through every "
    "pair; affine, similarity (rotation + scale) and rigid (rotation) are least squares.",
    "export_displacement": "(H, W, 2) float32: per output pixel, the content (row, col) it "
    "samples minus its own.",
    "side_by_side": "On: the output to the right of the content, control points over the "
    "content and target points over the output. Off: fused, the output over the content.",
    "apply_to_layer": "Warp another Image or Labels layer with this transform",
    "apply_layer": "the layer 'Apply to layer' warps (labels: nearest)",
    "inverse": "apply the inverse transform (output -> content frame)",
    # Texture Transfer / Geometric Style Transfer
    "size": "longest side of the result in pixels",
    "preserve_colour": "transfer luminance only and keep the content's colours",
    "backbone": "auto: ImageNet VGG-19 if found, else a random VGG-19 (textures look worse)",
    "reuse": "off: every run makes a new layer (layers you edited are never replaced)",
    "all_frames": "Every slice of the stack / time point, one after the other: the geometry "
    "is estimated on the first frame, each frame's texture starts from the previous result "
    "(no flicker). The result is one stack layer that fills in as frames finish.",
    "colour_output": "gray content gives a gray result; tick to keep a colour style's colours",
    "style_weight_row": "relative weight of this style's texture",
    "remove_style": "remove this style",
}


def _tip(widget, key: str | None):
    if key is not None and key in TOOLTIPS:
        widget.setToolTip(TOOLTIPS[key])
    return widget


def combo(items, tip: str | None = None) -> QComboBox:
    """A combo box of ``items`` (the first is the default)."""
    box = QComboBox()
    box.addItems(list(items))
    return _tip(box, tip)


def spin(
    low: int,
    high: int,
    value: int | None = None,
    tip: str | None = None,
    special: str | None = None,
) -> QSpinBox:
    """An integer spin box; ``special`` is shown for the minimum (e.g. "preset")."""
    box = QSpinBox()
    box.setRange(low, high)
    if value is not None:
        box.setValue(value)
    if special is not None:
        box.setSpecialValueText(special)
    return _tip(box, tip)


def double_spin(
    low: float,
    high: float,
    value: float | None = None,
    step: float | None = None,
    tip: str | None = None,
    special: str | None = None,
) -> QDoubleSpinBox:
    """A float spin box; ``special`` is shown for the minimum (e.g. "default")."""
    box = QDoubleSpinBox()
    box.setRange(low, high)
    if step is not None:
        box.setSingleStep(step)
    if value is not None:
        box.setValue(value)
    if special is not None:
        box.setSpecialValueText(special)
    return _tip(box, tip)


def check(text: str, tip: str | None = None, on_toggled=None) -> QCheckBox:
    box = QCheckBox(text)
    if on_toggled is not None:
        box.toggled.connect(on_toggled)
    return _tip(box, tip)


def button(text: str, on_click=None, tip: str | None = None) -> QPushButton:
    """A push button; ``on_click`` is called with no arguments (Qt's ``checked`` is dropped)."""
    push = QPushButton(text)
    if on_click is not None:
        push.clicked.connect(lambda *_: on_click())
    return _tip(push, tip)
