"""CPU timing of the geometry network: inference per pair (2 threads) and estimate_warp.

    python benchmarks/bench_geonet.py [--threads 2] [--repeat 10] [--json PATH]

Reports milliseconds per pair for the bare network forward (both images at 240 x 240), for
``estimate_warp`` with method "network" (affine, tps, affine+tps; includes input conversion,
resizing and building the landmark transform) and seconds for method "refine". Uses the shipped
checkpoints (untrained ones of the same architecture if they are missing, which time the same).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from _common import add_repeat_argument, environment, timed, write_json


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    add_repeat_argument(parser, 10, "timed network forwards and network estimates")
    parser.add_argument("--refine-repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the result as JSON")
    args = parser.parse_args(argv)

    import skimage.data
    import torch

    from napari_geostyle.core import geonet
    from napari_geostyle.core.estimate import estimate_warp
    from napari_geostyle.core.images import rgb_tensor

    torch.set_num_threads(args.threads)
    checkpoints, shipped = {}, True
    tmp = Path(tempfile.mkdtemp())
    for kind in geonet.MODEL_KINDS:
        path = geonet.shipped_checkpoint_path(kind)
        if not path.is_file():
            shipped = False
            path = geonet.save_checkpoint(
                geonet.build_geometry_net(geonet.default_config(kind)), tmp / f"{kind}.pt"
            )
        checkpoints[kind] = str(path)
    content, style = skimage.data.astronaut(), skimage.data.coffee()
    results = {"threads": args.threads, "shipped_weights": shipped, "torch": torch.__version__}

    def mean_seconds(fn, repeats):
        times = timed(fn, repeats)  # one warm-up call first (allocations, one-time kernels)
        return sum(times) / len(times)

    for kind in geonet.MODEL_KINDS:
        net = geonet.load_geometry_model(kind, checkpoint=checkpoints[kind], device="cpu")
        a = net.prepare(rgb_tensor(content))
        b = net.prepare(rgb_tensor(style))
        with torch.no_grad():
            seconds = mean_seconds(lambda net=net, a=a, b=b: net(a, b), args.repeat)
        results[f"network_forward_{kind}_ms"] = round(seconds * 1000, 1)
    for model in ("affine", "tps", "affine+tps"):
        ck = checkpoints if model == "affine+tps" else checkpoints[model]
        seconds = mean_seconds(
            lambda model=model, ck=ck: estimate_warp(
                content, style, model, "network", "cpu", checkpoint=ck
            ),
            args.repeat,
        )
        results[f"estimate_network_{model}_ms"] = round(seconds * 1000, 1)
        seconds = mean_seconds(
            lambda model=model, ck=ck: estimate_warp(
                content, style, model, "refine", "cpu", checkpoint=ck
            ),
            args.refine_repeats,
        )
        results[f"estimate_refine_{model}_s"] = round(seconds, 2)
    results["environment"] = environment(torch.device("cpu"))
    print(json.dumps(results, indent=1))
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
