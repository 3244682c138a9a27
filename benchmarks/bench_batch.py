"""Batch engine on Dask: throughput with 1 vs 2 workers, per-task overhead, flicker, GPU batching.

    python benchmarks/bench_batch.py [--images 12] [--json bench_batch.json]

- Throughput (images/s) of ``batch_geometric_style_transfer`` on a LocalCluster of worker
  processes (one thread each), 1 and 2 workers: geometry only (affine+tps network, 240 px
  inputs) and geometry + a tiny texture schedule. Cluster start and model loading are excluded
  (a warm-up batch runs first); scaling = throughput(2) / throughput(1).
- Dask overhead per task: wall time of many empty tasks, and batch wall time per image minus
  the work the tasks measured themselves.
- Flicker (``temporal.flicker_ratio``) on a synthetic 10-frame clip, coherent vs independent.
- On CUDA: the geometry network's forward for B pairs in one batch vs one pair at a time
  (what batching the geometry stage would give; the batch engine runs one pair per task).
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
        iio.imwrite(folder / f"img_{i:03d}.png",
                    (transform.resize(crop, (240, 240)) * 255).astype(np.uint8))


def _noop(x):
    return x


def _throughput(folder, geometry, texture, workers, options, scratch) -> dict:
    from distributed import Client, LocalCluster

    import napari_geostyle as gs

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        list(gs.batch_geometric_style_transfer(  # warm-up: workers import and load models
            sorted(folder.glob("*.png"))[:workers], scratch / f"warm{workers}{texture is None}",
            geometry, texture, client=client, **options))
        out = scratch / f"run{workers}{texture is None}"
        with Timer() as timer:
            results = list(gs.batch_geometric_style_transfer(folder, out, geometry, texture,
                                                             client=client, **options))
        wall = timer.seconds
        assert all(r.status == "done" for r in results), [r.error for r in results]
        work = sum(r.timings["total"] for r in results)
        count = 300
        with Timer() as timer:
            client.gather(client.map(_noop, range(count), pure=False))
        empty = timer.seconds / count
    return {"workers": workers, "images": len(results), "wall_s": wall,
            "images_per_s": len(results) / wall, "task_work_s": work / len(results),
            "overhead_per_image_s": max(wall * workers - work, 0) / len(results),
            "empty_task_s": empty}


def _flicker(scratch, geometry, texture) -> dict:
    import napari_geostyle as gs
    from napari_geostyle.core import media, temporal

    rows, cols = np.mgrid[0:48, 0:64]
    frames = []
    for t in range(10):
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[..., 2] = (40 + 2 * rows).astype(np.uint8)
        frame[(rows - 24) ** 2 + (cols - 10 - 3 * t) ** 2 < 64] = (230, 80, 40)
        frame[(abs(rows - 10 - t) < 5) & (abs(cols - 44) < 5)] = (40, 200, 90)
        frames.append(frame)
    stack = np.stack(frames)
    options = dict(backbone="random", size=48, levels=1, iterations=5, device="cpu",
                   processes=False, workers=1)
    table = {}
    for label, geo in (("texture", None), ("geometry+texture", geometry)):
        for coherent in (True, False):
            out = scratch / f"flicker_{label}_{coherent}"
            list(gs.batch_geometric_style_transfer(stack, out, geo, texture, coherent=coherent,
                                                   **options))  # fmt: skip
            outputs = [media.decode_image((out / f"stack_frames/stack_{i:06d}.png").read_bytes(),
                                          "x.png") for i in range(10)]
            table[f"{label}, {'coherent' if coherent else 'independent'}"] = (
                temporal.flicker_ratio(outputs, frames))
    return table


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
        for label, run in (("one_at_a_time", lambda: [net(a[i:i + 1], b[i:i + 1])
                                                      for i in range(batch)]),
                           ("batched", lambda: net(a, b))):
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
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from skimage import data, transform

    geometry = (transform.resize(data.chelsea(), (240, 320)) * 255).astype(np.uint8)
    texture = (transform.resize(data.brick(), (64, 64)) * 255).astype(np.uint8)
    tiny = dict(backbone="random", size=64, levels=1, iterations=10)
    results = {"cpu_count": os.cpu_count(), "throughput": [], "flicker": None, "gpu": None}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        folder = scratch / "in"
        folder.mkdir()
        _images(folder, args.images)
        for label, tex, options in (("geometry", None, {}), ("geometry+texture", texture, tiny)):
            for workers in (1, 2):
                row = _throughput(folder, geometry, tex, workers, {**options, "device": "cpu"},
                                  scratch)
                row["stage"] = label
                results["throughput"].append(row)
        results["flicker"] = _flicker(scratch, geometry, texture)
    results["gpu"] = _gpu_batching()

    print(f"{'stage':<18} {'workers':>7} {'images/s':>9} {'s/image (task)':>15} "
          f"{'overhead s/image':>17} {'empty task ms':>14}")
    for row in results["throughput"]:
        print(f"{row['stage']:<18} {row['workers']:>7} {row['images_per_s']:>9.2f} "
              f"{row['task_work_s']:>15.3f} {row['overhead_per_image_s']:>17.3f} "
              f"{1e3 * row['empty_task_s']:>14.2f}")
    for stage in ("geometry", "geometry+texture"):
        rows = {r["workers"]: r for r in results["throughput"] if r["stage"] == stage}
        scaling = rows[2]["images_per_s"] / rows[1]["images_per_s"]
        results[f"scaling_{stage}"] = scaling
        print(f"scaling 1 -> 2 workers ({stage}): {scaling:.2f}x")
    for label, value in results["flicker"].items():
        print(f"flicker ratio {label}: {value:.2f}")
    if results["gpu"]:
        gpu = results["gpu"]
        print(f"GPU geometry forward: {gpu['one_at_a_time_ms_per_pair']:.2f} ms/pair one at a "
              f"time, {gpu['batched_ms_per_pair']:.2f} ms/pair batched x{gpu['batch']} "
              f"({gpu['speedup']:.1f}x)")
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
