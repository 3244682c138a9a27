"""Texture loop inside napari's thread worker vs. the same loop in a plain script.

    xvfb-run -a python benchmarks/bench_worker.py [--size 128] [--device auto] [--json PATH]

napari thread workers have been reported to slow interactive work (napari >= 0.5; micro-sam
turned theirs off). This runs
the same texture transfer (same options, random backbone) twice: iterated directly, then through
``viewer_api.start_texture_transfer`` (a napari thread worker that updates a layer live with
previews), and prints both wall times and their ratio.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _common import Timer, environment, write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--preview-every", type=int, default=10)
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the result as JSON")
    args = parser.parse_args()

    import napari
    import numpy as np
    from qtpy.QtCore import QEventLoop, QTimer
    from skimage import data

    import napari_geostyle as gs
    from napari_geostyle import viewer_api

    options = {"size": args.size, "preset": "fast", "backbone": "random", "device": args.device,
                   "preview_every": args.preview_every}  # fmt: skip
    content, style = data.chelsea(), data.brick()
    gs.transfer_texture(
        content[::4, ::4],
        style[::4, ::4],
        size=32,
        levels=1,
        iterations=2,
        backbone="random",
        device=args.device,
    )  # warm-up: trunk built and cached

    with Timer() as script:
        for _ in gs.iter_texture_transfer(content, style, **options):
            pass
    script_s = script.seconds

    viewer = napari.Viewer(show=True)
    viewer.add_image(content, name="content", rgb=True)
    viewer.add_image(style, name="style")
    with Timer() as in_worker:
        worker = viewer_api.start_texture_transfer(viewer, "content", "style", **options)
        run = worker.geostyle_run
        loop = QEventLoop()  # wait as napari's own event loop does: idle until events arrive
        poll = QTimer()
        poll.timeout.connect(lambda: run.done and loop.quit())
        poll.start(20)
        loop.exec()
        poll.stop()
    worker_s = in_worker.seconds
    output = [layer for layer in viewer.layers if layer.name not in ("content", "style")]
    assert output and np.asarray(output[-1].data).size, "the worker produced no layer"
    viewer.close()
    print(
        f"texture {args.size} px, fast preset, {args.device}: script {script_s:.2f} s, "
        f"napari worker {worker_s:.2f} s, ratio {worker_s / script_s:.2f}"
    )
    if args.json:
        write_json(args.json, {"size": args.size, "preset": "fast", "script_s": script_s,
                               "worker_s": worker_s, "ratio": worker_s / script_s,
                               "environment": environment(args.device)})  # fmt: skip


if __name__ == "__main__":
    main()
