"""The benchmark scripts still run: the warp benchmark end to end at a tiny size (seconds), its
JSON record included, and the shared helpers they all import."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def common(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the scripts import it from their own folder
    import _common

    return _common


def test_warp_benchmark_runs_at_a_tiny_size_and_writes_json(tmp_path):
    out = tmp_path / "warp.json"
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_warp.py"), "--size", "64", "--repeat", "2",
         "--device", "cpu", "--threads", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "warp 64x64" in completed.stdout
    record = json.loads(out.read_text())
    assert record["size"] == 64 and record["device"] == "cpu" and len(record["times_s"]) == 2
    assert record["best_s"] <= record["median_s"]
    assert record["environment"]["torch_threads"] == 1
    assert record["environment"]["peak_rss_mb"] > 0


def test_common_timer_and_timed_measure_elapsed_time(common):
    import time

    with common.Timer() as timer:
        time.sleep(0.02)
    assert 0.015 < timer.seconds < 1.0
    calls = []
    times = common.timed(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(times) == 3 and len(calls) == 5 and all(t >= 0 for t in times)


def test_common_write_json_adds_the_environment(common, tmp_path):
    path = common.write_json(tmp_path / "sub" / "result.json", {"answer": 1})
    record = json.loads(path.read_text())
    assert record["answer"] == 1
    assert record["environment"]["napari_geostyle"]
    assert record["environment"]["peak_rss_mb"] > 0


def test_no_benchmark_edits_sys_path():
    for script in BENCHMARKS.glob("*.py"):
        assert "sys.path" not in script.read_text(), script.name
