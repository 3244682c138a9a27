"""Per-pair time of the geometry stage, batched (``estimate_warps``) versus one pair at a time.

    python benchmarks/bench_geometry_batch.py [--device auto] [--pairs N] [--batches 1,8,32]
        [--model affine+tps] [--method network] [--init search] [--threads T] [--json PATH]

Times ``estimate_warp`` called once per pair, then ``estimate_warps`` with each batch size, on
the same N pairs of different sizes (crops of scikit-image samples), and prints milliseconds
per pair and the speed-up over one at a time. Also checks that the batched transforms match
the pair-by-pair ones (largest difference in pixels). The networks' forwards are what batching
shares; the global search (``init="search"``) and the refinement still run pair by pair, so
``--init identity`` shows the networks' share alone. Batching pays on a GPU; on a CPU the
forwards are compute-bound either way. Uses the shipped weights (untrained ones of the same
architecture if they are missing, which time the same).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from _common import add_repeat_argument, environment, timed, write_json


def make_pairs(count: int) -> tuple[list, list]:
    """``count`` (content, style) pairs of different sizes and aspects, none identical."""
    import skimage.data

    images = [
        skimage.data.astronaut(),
        skimage.data.coffee(),
        skimage.data.chelsea(),
        skimage.data.rocket(),
    ]
    contents, styles = [], []
    for index in range(count):
        image = images[index % len(images)]
        other = images[(index + 1) % len(images)]
        step = 2 + index % 3  # 1/2, 1/3, 1/4 of the side: several sizes in every batch
        shift = 4 * (index // len(images))  # later rounds take slightly different crops
        contents.append(np.ascontiguousarray(image[shift::step, shift::step]))
        styles.append(np.ascontiguousarray(other[::3, shift::3]))
    return contents, styles


def checkpoints(model: str):
    """The ``checkpoint`` argument for ``model`` (None: the shipped weights) and whether the
    shipped weights are used."""
    from napari_geostyle.core import geonet

    kinds = ("affine", "tps") if model == "affine+tps" else (model,)
    if all(geonet.shipped_checkpoint_path(kind).is_file() for kind in kinds):
        return None, True
    folder = Path(tempfile.mkdtemp())
    paths = {
        kind: str(
            geonet.save_checkpoint(
                geonet.build_geometry_net(geonet.default_config(kind)), folder / f"{kind}.pt"
            )
        )
        for kind in kinds
    }
    return (paths if model == "affine+tps" else paths[model]), False


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument(
        "--pairs", type=int, help="pairs to estimate (default 32 on CUDA, 8 elsewhere)"
    )
    parser.add_argument("--batches", default="1,8,32", help="batch sizes, comma-separated")
    parser.add_argument("--model", default="affine+tps", choices=("affine", "tps", "affine+tps"))
    parser.add_argument("--method", default="network", choices=("network", "refine"))
    parser.add_argument("--init", default="search", choices=("search", "identity"))
    add_repeat_argument(parser, 1, "timed runs of each")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the result as JSON")
    args = parser.parse_args(argv)

    import torch

    from napari_geostyle.core.devices import resolve_device
    from napari_geostyle.core.estimate import estimate_warp, estimate_warps
    from napari_geostyle.core.images import regular_grid_points

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    count = args.pairs or (32 if device.type == "cuda" else 8)
    batches = [int(b) for b in args.batches.split(",")]
    contents, styles = make_pairs(count)
    checkpoint, shipped = checkpoints(args.model)
    options = {
        "model": args.model,
        "method": args.method,
        "device": device,
        "checkpoint": checkpoint,
        "init": args.init,
    }
    results = {
        "pairs": count,
        "device": str(device),
        "model": args.model,
        "method": args.method,
        "init": args.init,
        "shipped_weights": shipped,
        "content_sizes": sorted({c.shape[:2] for c in contents}),
        "ms_per_pair": {},
    }
    outputs = {}

    def one_at_a_time():
        outputs["single"] = [estimate_warp(c, s, **options) for c, s in zip(contents, styles)]

    def batched(batch_size):
        outputs[batch_size] = estimate_warps(contents, styles, batch_size=batch_size, **options)

    # warm-up: loads the networks, and on a GPU the kernels and cuDNN's choices per batch size
    estimate_warps(contents[:2], styles[:2], batch_size=2, **options)
    runs = [("one at a time (estimate_warp)", one_at_a_time)]
    runs += [(f"estimate_warps batch {b}", lambda b=b: batched(b)) for b in batches]
    for name, run in runs:
        seconds = min(
            timed(run, args.repeat, warmup=1 if device.type == "cuda" else 0, device=device)
        )
        results["ms_per_pair"][name] = round(seconds / count * 1000, 1)

    single = results["ms_per_pair"]["one at a time (estimate_warp)"]
    results["speedup"] = {
        name: round(single / ms, 2)
        for name, ms in results["ms_per_pair"].items()
        if not name.startswith("one")
    }
    difference = 0.0
    for batch_size in batches:
        for content, a, b in zip(contents, outputs["single"], outputs[batch_size]):
            points = regular_grid_points(content.shape, 9)
            difference = max(
                difference, float(np.abs(a.sample_points(points) - b.sample_points(points)).max())
            )
    results["max_difference_px"] = difference
    results["environment"] = environment(device)
    print(json.dumps(results, indent=1, default=str))
    if args.json:
        write_json(args.json, results, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
