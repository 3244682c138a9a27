"""Batch engine on Dask: throughput with 1 vs 2 workers, per-task overhead, flicker, GPU batching.

    python benchmarks/bench_batch.py [--images 12] [--flicker-only] [--json bench_batch.json]
    python benchmarks/bench_batch.py --geometry-batch-only --geometry-batch 1 4 [--images 8]
        [--device cpu|cuda]

- Throughput (images/s) of ``batch_geometric_style_transfer`` on a LocalCluster of worker
  processes (one thread each), 1 and 2 workers: geometry only (affine+tps network, 240 px
  inputs) and geometry + a tiny texture schedule. Cluster start and model loading are excluded
  (a warm-up batch runs first); scaling = throughput(2) / throughput(1).
- Dask overhead per task: wall time of many empty tasks, and batch wall time per image minus
  the work the tasks measured themselves.
- Flicker (``temporal.flicker_ratio``) on synthetic 10-frame clips (``_clips``; geometry
  style: a pose of the clip's own subject; the tiny texture schedule): coherent (geometry
  once), per-frame geometry smoothed over 5 frames (``--geometry-per-frame``), per-frame
  unsmoothed (``--smooth-frames 1``, the geometry of independent mode) and independent frames;
  with geometry also the warp's lattice jitter (``temporal.lattice_jitter``, px: the mean
  second difference over time of the positions the warp samples).
- Geometry batching: throughput of the geometry stage alone for each ``--geometry-batch``
  value (pairs per geometry task, ``estimate_warps``; default 1 and 16), 1 and 2 workers, on
  ``--device`` (default cpu; cuda on a GPU machine), with the geometry time per image.
- On CUDA: the geometry network's forward for B pairs in one batch vs one pair at a time
  (the part of the geometry stage that batching shares).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
from _common import Timer, write_json


def _images(folder: Path, count: int) -> None:
    import imageio.v3 as iio
    from skimage import data, transform

    base = data.astronaut()
    for i in range(count):
        crop = base[(i * 17) % 200 :][:300, (i * 29) % 200 :][:, :300]
        iio.imwrite(
            folder / f"img_{i:03d}.png", (transform.resize(crop, (240, 240)) * 255).astype(np.uint8)
        )


def _noop(x):
    return x


def _throughput(folder, geometry, texture, workers, options, scratch, tag="") -> dict:
    from distributed import Client, LocalCluster

    import napari_geostyle as gs

    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        list(
            gs.batch_geometric_style_transfer(  # warm-up: workers import and load models
                sorted(folder.glob("*.png"))[:workers],
                scratch / f"warm{workers}{texture is None}{tag}",
                geometry,
                texture,
                client=client,
                **options,
            )
        )
        out = scratch / f"run{workers}{texture is None}{tag}"
        with Timer() as timer:
            results = list(
                gs.batch_geometric_style_transfer(
                    folder, out, geometry, texture, client=client, **options
                )
            )
        wall = timer.seconds
        assert all(r.status == "done" for r in results), [r.error for r in results]
        work = sum(r.timings["total"] for r in results)
        geometry_s = [r.timings["geometry"] for r in results if "geometry" in r.timings]
        count = 300
        with Timer() as timer:
            client.gather(client.map(_noop, range(count), pure=False))
        empty = timer.seconds / count
    return {
        "workers": workers,
        "images": len(results),
        "wall_s": wall,
        "images_per_s": len(results) / wall,
        "task_work_s": work / len(results),
        "overhead_per_image_s": max(wall * workers - work, 0) / len(results),
        "empty_task_s": empty,
        "geometry_s_per_image": float(np.mean(geometry_s)) if geometry_s else None,
    }


FLICKER_MODES = {  # label: batch keywords for the clip
    "coherent": {"coherent": True},
    "per-frame smoothed": {"coherent": True, "geometry_per_frame": True, "smooth_frames": 5},
    "per-frame unsmoothed": {"coherent": True, "geometry_per_frame": True, "smooth_frames": 1},
    "independent": {"coherent": False},
}


def _clips() -> dict:
    """Two 10-frame clips, 48 x 64, each with its geometry style (a pose of its own subject):
    "two shapes" move apart (a disc right, a square down: no one warp holds both), "one
    subject" (a disc and a square together) moves right (per-frame geometry can hold it)."""
    rows, cols = np.mgrid[0:48, 0:64]
    clips = {}
    for name in ("two shapes", "one subject"):
        frames = []
        for t in range(10):
            frame = np.zeros((48, 64, 3), np.uint8)
            frame[..., 2] = (40 + 2 * rows).astype(np.uint8)
            if name == "two shapes":
                frame[(rows - 24) ** 2 + (cols - 10 - 3 * t) ** 2 < 64] = (230, 80, 40)
                frame[(abs(rows - 10 - t) < 5) & (abs(cols - 44) < 5)] = (40, 200, 90)
            else:
                frame[(rows - 24) ** 2 + (cols - 12 - 2 * t) ** 2 < 64] = (230, 80, 40)
                frame[(abs(rows - 14) < 5) & (abs(cols - 22 - 2 * t) < 5)] = (40, 200, 90)
            frames.append(frame)
        style = frames[3][:, ::-1] if name == "two shapes" else frames[4][::-1]
        clips[name] = (frames, style.copy())
    return clips


def _flicker(scratch, texture) -> dict:
    import napari_geostyle as gs
    from napari_geostyle.core import media, temporal

    options = {
        "backbone": "random",
        "size": 48,
        "levels": 1,
        "iterations": 5,
        "device": "cpu",
        "processes": False,
        "workers": 1,
    }
    names = [f"stack_frames/stack_{i:06d}.png" for i in range(10)]
    table, jitter = {}, {}
    for clip, (frames, geometry) in _clips().items():
        stages = (
            ("texture", None, texture),
            ("geometry", geometry, None),
            ("geometry+texture", geometry, texture),
        )
        for label, geo, tex in stages if clip == "two shapes" else stages[1:2]:
            for mode, keywords in FLICKER_MODES.items():
                if (geo is None and "geometry_per_frame" in keywords) or (
                    tex is None and mode == "independent"
                ):
                    continue  # the same as coherent / as per-frame unsmoothed
                out = scratch / f"flicker_{clip}_{label}_{mode}".replace(" ", "_")
                results = list(
                    gs.batch_geometric_style_transfer(
                        np.stack(frames), out, geo, tex, **keywords, **options
                    )
                )
                assert all(r.status == "done" for r in results), [r.error for r in results]
                outputs = [media.decode_image((out / n).read_bytes(), "x.png") for n in names]
                table[f"{clip}: {label}, {mode}"] = temporal.flicker_ratio(outputs, frames)
                if label == "geometry":
                    by_output = {r.output: r for r in results}
                    warps = [gs.transform_from_dict(by_output[n].transform) for n in names]
                    jitter[f"{clip}: {mode}"] = temporal.lattice_jitter(warps, (48, 64))
    return {"flicker": table, "lattice_jitter_px": jitter}


def _gpu_batching(batch: int = 16, repeat: int = 20) -> dict | None:
    import torch

    if not torch.cuda.is_available():
        return None
    from napari_geostyle.core.geonet import load_geometry_model

    net = load_geometry_model("affine", "embedded", None, "cuda")
    source = torch.rand(batch, 3, 240, 240, device="cuda")
    style = torch.rand(batch, 3, 240, 240, device="cuda")
    a, b = net.prepare(source), net.prepare(style)
    result = {}
    with torch.no_grad():
        for label, run in (
            ("one_at_a_time", lambda: [net(a[i : i + 1], b[i : i + 1]) for i in range(batch)]),
            ("batched", lambda: net(a, b)),
        ):
            run()
            with Timer(torch.device("cuda")) as timer:
                for _ in range(repeat):
                    run()
            result[f"{label}_ms_per_pair"] = 1e3 * timer.seconds / (repeat * batch)
    result["batch"] = batch
    result["speedup"] = result["one_at_a_time_ms_per_pair"] / result["batched_ms_per_pair"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12, help="images per timed batch")
    parser.add_argument(
        "--flicker-only",
        action="store_true",
        help="only the flicker and jitter of the frame modes (quick)",
    )
    parser.add_argument(
        "--geometry-batch",
        type=int,
        nargs="+",
        default=[1, 16],
        metavar="N",
        help="pairs per geometry task to compare (default: 1 16)",
    )
    parser.add_argument(
        "--geometry-batch-only",
        action="store_true",
        help="only the geometry throughput for each --geometry-batch",
    )
    parser.add_argument(
        "--device", default="cpu", help="device of the geometry-batch runs (default: cpu)"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from skimage import data, transform

    geometry = (transform.resize(data.chelsea(), (240, 320)) * 255).astype(np.uint8)
    texture = (transform.resize(data.brick(), (64, 64)) * 255).astype(np.uint8)
    tiny = {"backbone": "random", "size": 64, "levels": 1, "iterations": 10}
    results = {
        "cpu_count": os.cpu_count(),
        "throughput": [],
        "geometry_batch": [],
        "flicker": None,
        "lattice_jitter_px": None,
        "gpu": None,
    }
    only_geometry_batch = args.geometry_batch_only
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        folder = scratch / "in"
        folder.mkdir()
        _images(folder, args.images)
        quick = args.flicker_only or only_geometry_batch
        for label, tex, options in (("geometry", None, {}), ("geometry+texture", texture, tiny)):
            for workers in (1, 2) if not quick else ():
                row = _throughput(
                    folder, geometry, tex, workers, {**options, "device": "cpu"}, scratch
                )
                row["stage"] = label
                results["throughput"].append(row)
        for batch in args.geometry_batch if not args.flicker_only else ():
            for workers in (1, 2):
                row = _throughput(
                    folder,
                    geometry,
                    None,
                    workers,
                    {"device": args.device, "geometry_batch": batch},
                    scratch,
                    f"gb{batch}",
                )
                row["geometry_batch"] = batch
                results["geometry_batch"].append(row)
        if not only_geometry_batch:
            results.update(_flicker(scratch, texture))
    results["gpu"] = None if quick else _gpu_batching()

    if results["throughput"]:
        print(
            f"{'stage':<18} {'workers':>7} {'images/s':>9} {'s/image (task)':>15} "
            f"{'overhead s/image':>17} {'empty task ms':>14}"
        )
    for row in results["throughput"]:
        print(
            f"{row['stage']:<18} {row['workers']:>7} {row['images_per_s']:>9.2f} "
            f"{row['task_work_s']:>15.3f} {row['overhead_per_image_s']:>17.3f} "
            f"{1e3 * row['empty_task_s']:>14.2f}"
        )
    for stage in ("geometry", "geometry+texture") if results["throughput"] else ():
        rows = {r["workers"]: r for r in results["throughput"] if r["stage"] == stage}
        scaling = rows[2]["images_per_s"] / rows[1]["images_per_s"]
        results[f"scaling_{stage}"] = scaling
        print(f"scaling 1 -> 2 workers ({stage}): {scaling:.2f}x")
    if results["geometry_batch"]:
        print(
            f"geometry only, {args.device}: {'batch':>5} {'workers':>7} {'images/s':>9} "
            f"{'geometry s/image':>17}"
        )
    for row in results["geometry_batch"]:
        print(
            f"{'':<{15 + len(args.device)}}{row['geometry_batch']:>5} {row['workers']:>7} "
            f"{row['images_per_s']:>9.2f} {row['geometry_s_per_image']:>17.3f}"
        )
    for label, value in (results["flicker"] or {}).items():
        print(f"flicker ratio {label}: {value:.2f}")
    for mode, value in (results["lattice_jitter_px"] or {}).items():
        print(f"warp lattice jitter, {mode}: {value:.2f} px")
    if results["gpu"]:
        gpu = results["gpu"]
        print(
            f"GPU geometry forward: {gpu['one_at_a_time_ms_per_pair']:.2f} ms/pair one at a "
            f"time, {gpu['batched_ms_per_pair']:.2f} ms/pair batched x{gpu['batch']} "
            f"({gpu['speedup']:.1f}x)"
        )
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
