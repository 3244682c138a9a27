"""Building the widgets' controls (magicgui widgets): one helper per kind of control, and every
tooltip in one place.

Widgets call ``combo``/``spin``/``check``/``button``/... with a key; the key's tooltip comes
from ``TOOLTIPS`` (controls without an entry get none), so wording stays consistent across the
three widgets and is reviewed in one file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, PushButton, SpinBox

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


def tooltip(key: str | None) -> str | None:
    """The tooltip of ``key`` (None for a control without one)."""
    return TOOLTIPS.get(key) if key is not None else None


def combo(items: Iterable[str], tip: str | None = None, label: str = "") -> ComboBox:
    """A combo box of ``items`` (the first is the default)."""
    items = list(items)
    return ComboBox(
        choices=items, value=items[0] if items else None, label=label, tooltip=tooltip(tip)
    )


def spin(
    low: int,
    high: int,
    value: int | None = None,
    tip: str | None = None,
    special: str | None = None,
    label: str = "",
) -> SpinBox | FloatSpinBox:
    """An integer spin box; ``special`` is shown for the minimum (e.g. "preset").

    With ``special`` it is a FloatSpinBox with no decimals (read it with ``int()``): magicgui's
    SpinBox (superqt's QLargeIntSpinBox) shows neither a special text nor a suffix.
    """
    value = low if value is None else value
    if special is None:
        return SpinBox(min=low, max=high, value=value, label=label, tooltip=tooltip(tip))
    box = whole_spin(low, high, value, tip, label)
    box.native.setSpecialValueText(special)
    return box


def whole_spin(
    low: int, high: int, value: int, tip: str | None = None, label: str = ""
) -> FloatSpinBox:
    """A spin box of whole numbers that can show a suffix or a special text (``native``'s
    ``setSuffix``, ``setSpecialValueText``): a FloatSpinBox with no decimals, read with
    ``int()`` (magicgui's SpinBox, superqt's QLargeIntSpinBox, has neither)."""
    box = FloatSpinBox(min=low, max=high, step=1, value=value, label=label, tooltip=tooltip(tip))
    box.native.setDecimals(0)
    return box


def double_spin(
    low: float,
    high: float,
    value: float | None = None,
    step: float | None = None,
    tip: str | None = None,
    special: str | None = None,
    label: str = "",
) -> FloatSpinBox:
    """A float spin box (two decimals); ``special`` is shown for the minimum (e.g. "default")."""
    box = FloatSpinBox(
        min=low,
        max=high,
        step=1.0 if step is None else step,
        value=low if value is None else value,
        label=label,
        tooltip=tooltip(tip),
    )
    box.native.setDecimals(2)
    if special is not None:
        box.native.setSpecialValueText(special)
    return box


def check(
    text: str, tip: str | None = None, on_toggled: Callable | None = None, value: bool = False
) -> CheckBox:
    """A check box showing ``text`` beside it (no form label); ``on_toggled(checked)``."""
    box = CheckBox(text=text, value=value, label="", tooltip=tooltip(tip))
    if on_toggled is not None:
        box.changed.connect(on_toggled)
    return box


def button(text: str, on_click: Callable | None = None, tip: str | None = None) -> PushButton:
    """A push button; ``on_click`` is called with no arguments (the button's state is dropped)."""
    push = PushButton(text=text, label="", tooltip=tooltip(tip))
    push.native.setAutoDefault(False)  # as a plain Qt button: Enter does not click it
    if on_click is not None:
        push.changed.connect(lambda *_: on_click())
    return push


def qt_button(text: str, on_click: Callable | None = None, tip: str | None = None):
    """A plain Qt push button, for the few controls that stay Qt (the run/cancel button, the
    landmark table's buttons)."""
    from qtpy.QtWidgets import QPushButton

    push = QPushButton(text)
    if on_click is not None:
        push.clicked.connect(lambda *_: on_click())
    if tooltip(tip):
        push.setToolTip(tooltip(tip))
    return push
