"""``napari-geostyle demo``: napari with the sample images and the GeoStyle widgets docked;
``--screenshot`` runs the warp, saves the window and quits (for the README)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .common import CLIError, check_output_path, write_image
from .options import add_estimate, add_overwrite

#: the command as ``build_parser`` adds it: its name, one-line help and description
NAME = "demo"
HELP = "open napari with sample images and the GeoStyle widgets"
DESCRIPTION = (
    "Open napari with the 'content + style' sample and the GeoStyle widgets "
    "docked (Geometric Warp, Texture Transfer, Geometric Style Transfer)."
)


def run(args: argparse.Namespace) -> int:
    """Open napari with the sample images and the GeoStyle widgets docked."""
    try:
        import napari
    except ImportError as error:
        raise CLIError("the demo needs napari: pip install 'napari[all]'") from error
    if args.screenshot:  # before napari starts, not after the warp
        check_output_path(args.screenshot, args.overwrite)

    viewer = napari.Viewer(title="GeoStyle demo")
    viewer.open_sample("napari-geostyle", "content_style")
    viewer.window.resize(1500, 950)
    for name in ("Geometric Style Transfer", "Texture Transfer"):
        viewer.window.add_plugin_dock_widget("napari-geostyle", name, tabify=True)
    # added last so its tab is the one shown
    _, warp_widget = viewer.window.add_plugin_dock_widget(
        "napari-geostyle", "Geometric Warp", tabify=True
    )
    warp_widget.content_combo.set_layer("content")
    warp_widget.style_combo.set_layer("geometry style")
    warp_widget.model_combo.value = args.model
    warp_widget.method_combo.value = args.method
    outcome = {"status": 0}
    if args.screenshot:
        _screenshot_after_warp(viewer, warp_widget, args.screenshot, outcome)
    napari.run()
    return outcome["status"]


def _screenshot_after_warp(viewer: Any, widget: Any, path: str, outcome: dict[str, Any]) -> None:
    """Run the warp, then save a screenshot of the whole window and quit (for the README)."""
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    poll = QTimer()
    poll.setInterval(200)

    def check() -> None:
        if widget.last_error is not None:
            print(f"error: the warp failed: {widget.last_error}", file=sys.stderr)
            outcome["status"] = 2
        elif widget.live is None or widget.busy:
            return
        else:
            viewer.layers["content warped"].opacity = 0.85
            for name in ("content", "geometry style", "texture style"):
                viewer.layers[name].visible = name == "content"
            viewer.reset_view()
            shot = viewer.screenshot(canvas_only=False, flash=False)
            try:
                write_image(path, shot)  # atomic; --overwrite was checked at the start
                print(f"saved {path}")
            except CLIError as error:
                print(f"error: {error}", file=sys.stderr)
                outcome["status"] = 2
        poll.stop()
        viewer.close()
        app = QApplication.instance()
        if app is not None:  # the viewer's, running
            app.quit()

    poll.timeout.connect(check)
    widget.run()
    poll.start()
    outcome["poll"] = poll  # keep the timer alive while napari runs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``demo``'s arguments (``run`` reads them)."""
    parser.add_argument(
        "--screenshot",
        metavar="PATH",
        help="run the warp, save a screenshot of the window to PATH, then quit",
    )
    add_overwrite(parser, help="replace the --screenshot file if it exists (default: refuse)")
    add_estimate(parser, when=" (the warp widget's first choice)")
