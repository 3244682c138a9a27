"""The benchmark scripts still run: the warp benchmark and the interactivity benchmark (a real
napari viewer, needs a display) end to end at tiny sizes, their JSON records included, and the
shared helpers they all import."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def common(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the scripts import it from their own folder
    import _common

    return _common


@pytest.mark.slow
def test_warp_benchmark_runs_at_a_tiny_size_and_writes_json(tmp_path):
    out = tmp_path / "warp.json"
    completed = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "bench_warp.py"),
            "--size",
            "64",
            "--repeat",
            "2",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
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


def test_one_repeat_option_with_the_old_spellings_as_aliases(common):
    import argparse

    parser = argparse.ArgumentParser()
    common.add_repeat_argument(parser, 4)
    assert parser.parse_args([]).repeat == 4
    for spelling in ("--repeat", "--repeats", "--reps"):
        assert parser.parse_args([spelling, "7"]).repeat == 7
    for script in BENCHMARKS.glob("bench_*.py"):  # no script spells it its own way
        text = script.read_text()
        assert not any(f'"{s}"' in text for s in ("--repeat", "--repeats", "--reps")), script.name


def test_no_benchmark_edits_sys_path():
    for script in BENCHMARKS.glob("*.py"):
        assert "sys.path" not in script.read_text(), script.name


@pytest.mark.slow
def test_interactive_benchmark_drags_points_in_a_real_viewer_and_writes_json(tmp_path):
    import os

    pytest.importorskip("napari")
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        pytest.skip("needs a display (pytest-xvfb, or xvfb-run)")
    out = tmp_path / "interactive.json"
    completed = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "bench_interactive.py"),
            "--size",
            "256",
            "--drags",
            "1",
            "--moves",
            "4",
            "--repeats",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "move -> preview drawn" in completed.stdout
    record = json.loads(out.read_text())
    # every timed path produced samples: the drag moved the point through napari's own
    # mouse handling, the previews and the full warps reached the screen
    assert record["move_to_preview_ms"]["n"] + record["moves_shown_only_by_the_full_warp"] == 4
    assert record["move_to_preview_ms"]["n"] >= 1
    assert record["release_to_full_ms"]["n"] == 1 and record["set_points_to_full_ms"]["n"] == 1
    assert record["stall_ms"]["drag"] >= 0 and record["stall_ms"]["run"] >= 0
    # the reference: napari's own layers and a second Run were timed too
    assert record["stall_ms"]["napari_same_layers"] > 0
    assert record["stall_ms"]["second_run_making_layers"] > 0
    assert set(record["targets_met"]) == {"move_to_preview", "release_to_full", "stall"}
    assert record["environment"]["load_average"]


def test_texture_quality_scores_at_their_definitional_extremes(monkeypatch):
    """The judge's content score of the content itself is 1; its style score is 1 for the
    unchanged content (no style) and 0 for the style's own statistics."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_texture_quality as bench

    from napari_geostyle.core import efficientnet

    judge = bench.Judge(
        efficientnet.build_efficientnet("random", "cpu"),
        style_taps=("stem", "b1.depthwise", "b3.depthwise"),
        content_tap="b15",
    )
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[0:64, 0:64] / 64.0
    content = np.stack([rows, cols, 1 - rows], -1).astype(np.float32)
    style = rng.random((64, 64, 3)).astype(np.float32)
    assert judge.content_score(content, content) == pytest.approx(1.0, abs=1e-5)
    assert judge.style_score(content, content, style) == pytest.approx(1.0, abs=1e-5)
    assert judge.style_score(style, content, style) == pytest.approx(0.0, abs=1e-6)
    assert judge.content_score(style, content) < 0.99
    mixed = 0.5 * content + 0.5 * style
    assert 0.0 < judge.style_score(mixed, content, style) < 1.0
