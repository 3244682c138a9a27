"""Fit the estimate's ``confidence`` (``core/confidence.py``) on synthetic pairs made from
TRAINING photos, and store its coefficients in ``src/napari_geostyle/models/confidence.json``.

Never on evaluation material: the photos held out for validation (``HELD_OUT_PHOTOS`` of
``train_shipped_models.py``) and the landmark sets (faces) are not read. Pairs, from every other
photo of ``--images``:

- same-image pairs with a known warp (``training.make_eval_pairs``), with CNNGeometric's ranges
  and with the cross-instance proxies (``PairRanges.cross_instance``: local elastic warps,
  swapped backgrounds, the source re-styled), half of those with two hints (two lattice points
  through the true warp, as a user's clicks), so the map sees hinted estimates too;
- pairs of two unrelated photos, which no warp makes right.

An estimate is right when half of a 20 x 20 lattice lands within a tenth of the side of where
the true warp puts it (PCK@0.1 >= 0.5, the landmark evaluation's criterion on the whole image);
unrelated pairs are wrong. The logistic map is fitted on standardised features by Newton steps
with a small ridge; the JSON records the data, the counts, the in-sample AUROC and the command.

    python scripts/fit_confidence.py --images PHOTOS --pairs-per-image 1 --threads 1 \
        --data bench_out/confidence_data.json [--reuse-data] [--install]

(PHOTOS: the folder of training photos the shipped networks were trained on; the held-out
validation photos in it are skipped.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_shipped_models import HELD_OUT_PHOTOS


def _collect(args) -> list[dict]:
    import torch

    from napari_geostyle.core import estimate, training
    from napari_geostyle.core.confidence import confidence_features
    from napari_geostyle.core.hints import check_hints
    from napari_geostyle.core.images import regular_grid_points, rgb_tensor

    torch.set_num_threads(args.threads)
    files = [
        f
        for f in training.list_image_files([args.images])
        if not any(f.stem.startswith(name) for name in HELD_OUT_PHOTOS)
    ]
    if args.max_photos:  # an even spread over the sorted list
        files = [files[i] for i in np.linspace(0, len(files) - 1, args.max_photos).astype(int)]
    images = training.load_images(files, min_size=64)
    print(f"{len(images)} training photos", file=sys.stderr)
    size = 240
    lattice = regular_grid_points((size, size), training.LATTICE_SIZE)
    rng = np.random.default_rng(args.seed)
    jobs = []
    for kind, ranges in (
        ("same image", training.PairRanges()),
        ("cross-instance proxy", training.PairRanges.cross_instance()),
    ):
        pairs = training.make_eval_pairs(
            images, "affine+tps", args.pairs_per_image, args.seed, size, ranges
        )
        for index, (source, target, truth) in enumerate(pairs):
            hinted = kind != "same image" and index % 2 == 0
            jobs.append((kind, source, target, truth, hinted))
    sources = [job[1] for job in jobs]
    targets = [job[2] for job in jobs]
    for _ in range(len(images) * args.pairs_per_image // 2):
        i, j = rng.choice(len(sources), 2, replace=False)
        jobs.append(("unrelated", sources[i], targets[j], None, False))
    records = []
    for number, (kind, source, target, truth, hinted) in enumerate(jobs):
        hints = None
        if hinted:
            inside = np.flatnonzero(
                (np.minimum(lattice, truth).min(1) > 8)
                & (np.maximum(lattice, truth).max(1) < size - 8)
            )
            chosen = rng.choice(inside, 2, replace=False)
            # where the true warp samples the content for two output points: a user's clicks
            hints = check_hints((truth[chosen], lattice[chosen]), source.shape, target.shape)
        start = time.perf_counter()
        content_t, style_t = rgb_tensor(source, "cpu"), rgb_tensor(target, "cpu")
        options = estimate.GeometryOptions(args.model, "network", hints=hints)
        params = estimate.estimate_parameters(content_t, style_t, options, "cpu")
        # as estimate_warp makes it: hinted TPS estimates get the local matching too
        transform = estimate._transform_from_parameters(
            params, source.shape[:2], 1.0, hints, pair=(content_t, style_t)
        )
        if truth is None:
            right = False
        else:
            error = np.linalg.norm(transform.sample_points(lattice) - truth, axis=1) / size
            right = bool((error < 0.1).mean() >= 0.5)
        records.append(
            {
                "kind": kind,
                "hinted": hinted,
                "features": confidence_features(params.judge, hinted).tolist(),
                "right": right,
                "seconds": time.perf_counter() - start,
            }
        )
        print(json.dumps(records[-1]), file=sys.stderr, flush=True)  # a log to resume from
    return records


def fit_logistic(features, labels, ridge: float = 0.1, steps: int = 50):
    """``(weights, bias, mean, scale)`` of a ridge logistic regression (Newton steps)."""
    x = np.asarray(features, np.float64)
    y = np.asarray(labels, np.float64)
    mean, scale = x.mean(0), x.std(0)
    scale[scale < 1e-9] = 1.0
    z = np.hstack([np.ones((len(x), 1)), (x - mean) / scale])
    w = np.zeros(z.shape[1])
    penalty = np.diag([0.0] + [ridge] * (z.shape[1] - 1))
    for _ in range(steps):
        p = 1 / (1 + np.exp(-z @ w))
        gradient = z.T @ (p - y) + penalty @ w
        hessian = z.T @ (z * (p * (1 - p))[:, None]) + penalty + 1e-9 * np.eye(len(w))
        w -= np.linalg.solve(hessian, gradient)
    return w[1:], w[0], mean, scale


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", required=True, help="the training photos' folder")
    parser.add_argument("--pairs-per-image", type=int, default=2)
    parser.add_argument("--model", default="affine+tps")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--max-photos", type=int, default=0, help="at most this many (0: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", default="bench_out/confidence_data.json")
    parser.add_argument("--reuse-data", action="store_true", help="fit on --data as it is")
    parser.add_argument("--install", action="store_true", help="write models/confidence.json")
    parser.add_argument(
        "--features", nargs="+", default=None,
        help="the features the map reads (default: confidence.MAP_FEATURES; every estimate "
        "records all of confidence.FEATURES)",
    )  # fmt: skip
    args = parser.parse_args(argv)

    from napari_geostyle.core.confidence import COEFFICIENTS_PATH, FEATURES, MAP_FEATURES
    from napari_geostyle.core.landmark_eval import auroc

    chosen = tuple(args.features or MAP_FEATURES)
    unknown = [name for name in chosen if name not in FEATURES]
    if unknown:
        parser.error(f"unknown features {unknown}; choose from {list(FEATURES)}")

    data_path = Path(args.data)
    if args.reuse_data:
        records = json.loads(data_path.read_text())["records"]
    else:
        records = _collect(args)
        data_path.parent.mkdir(parents=True, exist_ok=True)
        data_path.write_text(json.dumps({"args": vars(args), "records": records}, indent=1))
    every = np.array([r["features"] for r in records])
    features = every[:, [FEATURES.index(name) for name in chosen]]
    labels = np.array([r["right"] for r in records])
    weights, bias, mean, scale = fit_logistic(features, labels)
    z = bias + ((features - mean) / scale) @ weights
    predicted = 1 / (1 + np.exp(-z))
    kinds = sorted({r["kind"] for r in records})
    collected = json.loads(data_path.read_text())["args"] if args.reuse_data else vars(args)
    # the command that collected the data, the photos' folder by its name only
    command = [
        f"--{key.replace('_', '-')} {Path(value).name if key == 'images' else value}"
        for key, value in collected.items()
        if key not in ("reuse_data", "install", "data", "features") and value not in (None, False)
    ] + ["--features " + " ".join(chosen)]
    result = {
        "features": list(chosen),
        "weights": weights.round(6).tolist(),
        "bias": round(float(bias), 6),
        "mean": mean.round(6).tolist(),
        "scale": scale.round(6).tolist(),
        "made_by": "scripts/fit_confidence.py " + " ".join(command),
        "data": "synthetic pairs from the training photos (validation photos and landmark sets "
        "never read): " + ", ".join(f"{sum(r['kind'] == k for r in records)} {k}" for k in kinds),
        "model": args.model,
        "right": "lattice PCK@0.1 >= 0.5 (unrelated pairs: never)",
        "pairs": len(records),
        "right_share": round(float(labels.mean()), 3),
        "in_sample_auroc": round(float(auroc(predicted, labels)), 3),
        "per_feature_auroc": {  # every recorded feature, used or not
            name: round(float(auroc(every[:, i], labels) or 0.5), 3)
            for i, name in enumerate(FEATURES)
        },
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.install:
        COEFFICIENTS_PATH.write_text(text + "\n", encoding="utf-8")
        print(f"wrote {COEFFICIENTS_PATH}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
