"""Make docs/hints.png: Hint mode in use on the demo's sample (runs under Xvfb too).

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_hint_screenshot.py

The warp widget estimates the sample's warp, Hint mode is turned on, and three hint pairs are
clicked (both eyes and the mouth: the content's points, and where the sample's known warp puts
them on the geometry style); each completed pair re-estimates the warp in a worker. The window
is saved when the last estimate is shown.
"""

import sys
from pathlib import Path

import numpy as np

CONTENT_CLICKS = np.array([[102.0, 100.0], [102.0, 148.0], [146.0, 123.0]])  # eyes, mouth


def style_points(content_points: np.ndarray) -> np.ndarray:
    """Where the sample's known warp puts content points on the geometry style (nearest pixel of
    its sampling map)."""
    from napari_geostyle._sample_data import style_sampling_map

    sampled = style_sampling_map().reshape(-1, 2)
    width = style_sampling_map().shape[1]
    nearest = [int(np.argmin(np.linalg.norm(sampled - p, axis=1))) for p in content_points]
    return np.array([[i // width, i % width] for i in nearest], float)


def main(path: Path) -> int:
    import napari
    from qtpy.QtCore import QTimer

    viewer = napari.Viewer(title="GeoStyle hints")
    viewer.open_sample("napari-geostyle", "content_style")
    viewer.window.resize(1500, 950)
    _, widget = viewer.window.add_plugin_dock_widget("napari-geostyle", "Geometric Warp")
    widget.content_combo.set_layer("content")
    widget.style_combo.set_layer("geometry style")
    widget.hints.box.expand()
    clicks = list(zip(CONTENT_CLICKS, style_points(CONTENT_CLICKS), strict=True))
    state = {"status": 1, "clicked": 0}
    poll = QTimer()
    poll.setInterval(200)

    def step() -> None:
        if widget.last_error is not None:
            print(f"error: {widget.last_error}", file=sys.stderr)
            return finish()
        if widget.live is None or widget.busy:
            return None
        hinted = widget.hints.hinted
        if hinted is None:
            widget.hints.toggle(True)
            return None
        if hinted.busy or hinted.estimates < state["clicked"]:
            return None
        if state["clicked"] < len(clicks):
            content, style = clicks[state["clicked"]]
            hinted.session.content_hints.add(content)  # a click on the content, then the style
            hinted.session.style_hints.add(style)
            state["clicked"] += 1
            return None
        viewer.layers["texture style"].visible = False
        # the view on the three images side by side (the hidden texture style lies elsewhere)
        shown = [viewer.layers[n] for n in ("geometry style", "content", "content warped")]
        low = np.min([layer.extent.world[0][-2:] for layer in shown], axis=0)
        high = np.max([layer.extent.world[1][-2:] for layer in shown], axis=0)
        viewer.camera.center = tuple((low + high) / 2)
        height, width = viewer.window._qt_viewer.canvas.size  # noqa: SLF001 (no public getter)
        viewer.camera.zoom = 0.95 * min(width / (high - low)[1], height / (high - low)[0])
        napari_image = viewer.screenshot(canvas_only=False, flash=False)
        from napari_geostyle.core.media import encode_image, write_atomic

        write_atomic(path, encode_image(napari_image, str(path)))
        print(f"saved {path}: {widget.hints.label.value}")
        state["status"] = 0
        return finish()

    def finish() -> None:
        poll.stop()
        viewer.close()

    poll.timeout.connect(step)
    widget.run()
    poll.start()
    napari.run()
    return state["status"]


if __name__ == "__main__":
    sys.exit(main(Path(__file__).resolve().parent / "hints.png"))
