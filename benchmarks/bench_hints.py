"""Time of ``estimate_warp`` with and without hints, alternated pair by pair in one process.

The issue asks hinted estimates to take at most the unhinted time + 10 %. Pairs of a landmark
set (``--pairs``, e.g. the dev faces, perturbed as ``eval-geometry`` does) or, without one,
same-image pairs of scikit-image's astronaut; hints are ``--clicks`` simulated clicks. Both
variants of a pair run back to back, in alternating order, so a machine whose speed drifts
(a shared CPU) slows both alike. Prints medians per variant and their ratio.

    python benchmarks/bench_hints.py --pairs dev_faces.npz --count 6 --clicks 2 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def _pairs(args):
    from napari_geostyle.core import landmark_eval as le

    if args.pairs:
        items = le.load_landmark_set(args.pairs)
        pairs = le.pairs_from_set(items, args.count, 1, le.load_click_groups(args.pairs))
        return le.perturb_pairs(pairs, None, 1)
    import skimage.data

    from napari_geostyle.core.transforms import AffineTransform
    from napari_geostyle.core.warp import warp_image

    image = skimage.data.astronaut()[::2, ::2]
    points = np.array([[80.0 + 20 * i, 90.0 + 15 * j] for i in range(4) for j in range(4)])
    pairs = []
    for k in range(args.count):
        moved = AffineTransform([[1.0, 0.05 * k, 3.0 * k], [-0.04 * k, 1.0, -2.0 * k]])
        style = warp_image(image, moved, padding="reflection", device="cpu")
        pairs.append(le.LandmarkPair(image, style, points, moved.map_points(points), f"p{k}"))
    return pairs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", default=None, help="a landmark set .npz (default: astronaut)")
    parser.add_argument("--count", type=int, default=6)
    parser.add_argument("--clicks", type=int, default=2)
    parser.add_argument("--model", default="affine+tps")
    parser.add_argument("--methods", nargs="+", default=["network", "refine"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import torch

    from napari_geostyle.core import landmark_eval as le
    from napari_geostyle.core.estimate import estimate_warp

    torch.set_num_threads(args.threads)
    pairs = _pairs(args)
    estimate_warp(pairs[0].content, pairs[0].style, model=args.model, device="cpu")  # warm up
    for method in args.methods:
        seconds = {"without hints": [], "with hints": []}
        for index, pair in enumerate(pairs):
            rng = np.random.default_rng([1, index, args.clicks])
            content, style, _ = le.simulated_clicks(pair, args.clicks, rng)
            variants = [("without hints", None), ("with hints", (content, style))]
            for name, hints in variants if index % 2 == 0 else variants[::-1]:
                start = time.perf_counter()
                estimate_warp(pair.content, pair.style, model=args.model, method=method,
                              hints=hints, device="cpu")  # fmt: skip
                seconds[name].append(time.perf_counter() - start)
        plain = statistics.median(seconds["without hints"])
        hinted = statistics.median(seconds["with hints"])
        print(
            f"{args.model} {method}, {len(pairs)} pairs, {args.clicks} clicks, "
            f"{args.threads} threads: without hints {plain:.2f} s, with hints {hinted:.2f} s "
            f"(median; ratio {hinted / plain:.2f})",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
