"""What every benchmark shares: a timer that waits for the GPU, a record of the environment a
number was measured in, and JSON output.

The benchmarks run as scripts (``python benchmarks/bench_warp.py``), so this module is imported
as ``_common`` from the script's own folder; the package itself comes from the installed
``napari_geostyle`` (``pip install -e .``), never from an edited import path.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from pathlib import Path


def _synchronize(device) -> None:
    """Wait for queued GPU work, so a time covers the work and not just its launch."""
    if device is None or getattr(device, "type", str(device).split(":")[0]) != "cuda":
        return
    import torch

    torch.cuda.synchronize(device)


class Timer:
    """``with Timer(device) as t: ...`` then ``t.seconds``; synchronises CUDA on both ends."""

    def __init__(self, device=None):
        self.device = device
        self.seconds = float("nan")

    def __enter__(self):
        _synchronize(self.device)
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        _synchronize(self.device)
        self.seconds = time.perf_counter() - self.start


def add_repeat_argument(parser, default: int, what: str = "timed runs") -> None:
    """Every benchmark's one option for how many times to time a thing: ``--repeat N`` (read as
    ``args.repeat``). ``--repeats`` and ``--reps``, the spellings some scripts used, still work."""
    parser.add_argument(
        "--repeat",
        "--repeats",
        "--reps",
        dest="repeat",
        type=int,
        default=default,
        metavar="N",
        help=f"{what} (default {default}; --repeats and --reps are the same option)",
    )


def timed(fn, repeats: int = 1, warmup: int = 1, device=None) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        with Timer(device) as timer:
            fn()
        times.append(timer.seconds)
    return times


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024.0 ** (2 if sys.platform == "darwin" else 1)  # bytes on macOS, KiB on Linux


def environment(device=None) -> dict:
    """Where a number was measured: versions, device, threads, machine load."""
    import napari_geostyle

    record = {
        "napari_geostyle": napari_geostyle.__version__,
        "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        record["torch"] = torch.__version__
        record["torch_threads"] = torch.get_num_threads()
    if device is not None:
        record["device"] = str(device)
        if getattr(device, "type", None) == "cuda":
            record["device_name"] = torch.cuda.get_device_name(device)
    return record


def write_json(path, result: dict, device=None) -> Path:
    """Write ``result`` with an ``environment`` record (and the peak memory) as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = dict(result)
    record.setdefault("environment", environment(device))
    record["environment"]["peak_rss_mb"] = round(peak_rss_mb(), 1)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path
