"""Time a large thin-plate-spline warp: ``python benchmarks/bench_warp.py [--size 4096]``.

Warps a SIZE x SIZE RGB uint8 image with a 16-landmark TPS (a jittered 4 x 4 grid, displaced by
about 1% of the size) and prints one line: size, device, best and median seconds, peak memory.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
from _common import add_repeat_argument, environment, peak_rss_mb, timed, write_json


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size", type=int, default=4096, help="image side in pixels (default 4096)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    add_repeat_argument(parser, 3)
    parser.add_argument(
        "--landmarks", type=int, default=4, help="landmark grid side (default 4 -> 16)"
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the result as JSON")
    args = parser.parse_args(argv)

    import torch

    from napari_geostyle.core.devices import resolve_device
    from napari_geostyle.core.transforms import fit_tps
    from napari_geostyle.core.warp import warp_image

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    rng = np.random.default_rng(0)
    size = args.size
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    lattice = np.linspace(0.15 * size, 0.85 * size, args.landmarks)
    src = np.stack(np.meshgrid(lattice, lattice, indexing="ij"), -1).reshape(-1, 2)
    src += rng.uniform(-0.02, 0.02, src.shape) * size
    transform = fit_tps(src, src + rng.normal(0.0, 0.01 * size, src.shape))

    warp_image(image[:64, :64], transform, device=device)  # warm-up (kernels, allocator)
    last = {}  # only the latest output is kept: the peak memory is one warp's
    times = timed(lambda: last.update(warped=warp_image(image, transform, device=device)),
                  args.repeat, warmup=0, device=device)  # fmt: skip
    warped = last.pop("warped")
    assert warped.shape == image.shape and warped.dtype == np.uint8
    env = environment(device)
    result = {
        "size": size,
        "landmarks": len(src),
        "device": str(device),
        "threads": env["torch_threads"],
        "best_s": round(min(times), 3),
        "median_s": round(statistics.median(times), 3),
        "times_s": [round(t, 3) for t in times],
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "gpu_peak_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        if device.type == "cuda"
        else None,
        "torch": env["torch"],
        "machine": env["machine"],
        "load_average": env["load_average"],
        "environment": env,
    }
    print(
        f"warp {size}x{size} RGB uint8, TPS {len(src)} landmarks on {device} "
        f"({result['threads']} threads): best {result['best_s']:.3f} s, median "
        f"{result['median_s']:.3f} s over {len(times)} runs, "
        f"peak RSS {result['peak_rss_mb']:.0f} MB, "
        f"load average {result['load_average'][0]}"
    )
    if args.json:
        write_json(args.json, result, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
