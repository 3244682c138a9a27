"""Batch engine on Dask: folders, failures, resume, overwrite, manifest, videos, stacks, CLI."""

import json
import shutil

import imageio.v3 as iio
import numpy as np
import pytest

pytest.importorskip("distributed")

import napari_geostyle as gs
from napari_geostyle import __version__, cli
from napari_geostyle.core import manifest as manifest_module
from napari_geostyle.core import media, temporal

TINY = {"backbone": "random", "size": 32, "levels": 1, "iterations": 2, "device": "cpu"}
THREADS = {"processes": False, "workers": 2}


def _scene(t: int, shape=(48, 48)) -> np.ndarray:
    """A disc moving right and a square moving down over a gradient (frame ``t``)."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    image = np.zeros((*shape, 3), np.uint8)
    image[..., 2] = (40 + 100 * rows / shape[0]).astype(np.uint8)
    image[(rows - 24) ** 2 + (cols - 10 - 3 * t) ** 2 < 64] = (230, 80, 40)
    image[(abs(rows - 10 - t) < 5) & (abs(cols - 36) < 5)] = (40, 200, 90)
    return image


@pytest.fixture(scope="module")
def styles(tmp_path_factory):
    folder = tmp_path_factory.mktemp("styles")
    rows, cols = np.mgrid[0:48, 0:48]
    stripes = (((rows + cols) // 4) % 2 * 200 + 30).astype(np.uint8)
    texture = np.stack([stripes, stripes // 2, 255 - stripes], -1)
    geometry = _scene(3)[:, ::-1].copy()
    iio.imwrite(folder / "texture.png", texture)
    iio.imwrite(folder / "geometry.png", geometry)
    return folder / "geometry.png", folder / "texture.png"


@pytest.fixture
def folder(tmp_path):
    """Six tiny images; the fourth is corrupt."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(6):
        iio.imwrite(inputs / f"img_{i}.png", _scene(2 * i))
    (inputs / "img_3.png").write_bytes(b"\x89PNG this file was cut short")
    return inputs


def _manifest(folder):
    return json.loads((folder / "manifest.json").read_text())


def test_folder_on_threads_failure_and_manifest(folder, styles, tmp_path):
    geometry, texture = styles
    out = tmp_path / "out"
    run = gs.batch_geometric_style_transfer(folder, out, geometry, texture, **THREADS, **TINY)
    assert run.total == 6 and run.pending == 6
    results = {r.output: r for r in run}
    assert {n: r.status for n, r in results.items()} == {
        **{f"img_{i}.png": "done" for i in (0, 1, 2, 4, 5)}, "img_3.png": "failed"}
    assert "img_3.png" in results["img_3.png"].error and not (out / "img_3.png").exists()
    for i in (0, 1, 2, 4, 5):
        image = iio.imread(out / f"img_{i}.png")
        assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    manifest = _manifest(out)
    assert manifest["package"] == {"name": "napari-geostyle", "version": __version__}
    assert manifest["options"]["geometry"]["model"] == "affine+tps"
    assert manifest["options"]["texture"]["size"] == 32
    entry = manifest["items"]["img_1.png"]
    assert entry["status"] == "done" and len(entry["key"]) == 64 and entry["error"] is None
    restored = gs.transform_from_dict(entry["transform"])
    assert np.allclose(restored.map_points([[10.0, 20.0]]),
                       gs.transform_from_dict(results["img_1.png"].transform).map_points(
                           [[10.0, 20.0]]))
    assert entry["device"] == "cpu" and entry["timings"]["total"] > 0
    assert {"geometry", "warp", "texture"} <= set(entry["timings"])
    # every worker loaded its networks once, before the first task: no task loaded any
    assert all(e["models_loaded"] == 0 for e in manifest["items"].values()
               if e["status"] == "done")
    assert manifest["items"]["img_3.png"]["status"] == "failed"
    keys = {e["key"] for e in manifest["items"].values()}
    assert len(keys) == 6  # one per input
    csv_lines = (out / "manifest.csv").read_text().splitlines()
    assert csv_lines[0].startswith("output,kind,status") and len(csv_lines) == 7
    assert not (out / manifest_module.JOURNAL_NAME).exists()


def test_processes_keep_models_loaded(folder, styles, tmp_path):
    geometry, _ = styles
    for name in ("img_2.png", "img_3.png", "img_4.png", "img_5.png"):
        (folder / name).unlink()
    out = tmp_path / "out"
    results = list(gs.batch_geometric_style_transfer(
        folder, out, geometry, None, processes=True, workers=2, device="cpu", model="affine"))
    assert [r.status for r in results] == ["done", "done"]
    entries = _manifest(out)["items"].values()
    assert all(e["models_loaded"] == 0 and e["worker"].startswith("tcp://") for e in entries)
    warped = iio.imread(out / "img_0.png")
    assert warped.shape == (48, 48, 3) and warped.dtype == np.uint8  # warp keeps size and dtype


def test_resume_after_kill_skips_finished_and_ignores_partial_files(folder, styles, tmp_path):
    geometry, texture = styles
    (folder / "img_3.png").unlink()
    out = tmp_path / "out"
    first = list(gs.batch_geometric_style_transfer(folder, out, geometry, texture, **THREADS,
                                                   **TINY))  # fmt: skip
    assert all(r.status == "done" for r in first)
    original = (out / "img_2.png").read_bytes()
    entries = _manifest(out)["items"]
    # A kill while img_2 was being written, before the manifest was rewritten: the journal
    # holds the others, img_2 exists only as a half-written temporary file.
    (out / "manifest.json").unlink()
    (out / "img_2.png").unlink()
    partial = out / f".img_2.abc{media.TEMP_MARK}.png"
    partial.write_bytes(original[: len(original) // 2])
    journal = "".join(json.dumps(e) + "\n" for n, e in entries.items() if n != "img_2.png")
    (out / manifest_module.JOURNAL_NAME).write_text(journal + '{"output": "img_')  # cut short
    run = gs.batch_geometric_style_transfer(folder, out, geometry, texture, **THREADS, **TINY)
    assert run.pending == 1
    statuses = {r.output: r.status for r in run}
    assert statuses.pop("img_2.png") == "done"
    assert set(statuses.values()) == {"skipped"}
    assert (out / "img_2.png").read_bytes() == original  # the same result as uninterrupted
    assert not partial.exists()
    assert set(_manifest(out)["items"]) == {f"img_{i}.png" for i in (0, 1, 2, 4, 5)}


def test_existing_outputs_and_changed_options_are_not_overwritten(folder, styles, tmp_path):
    geometry, _ = styles
    for name in ("img_1.png", "img_2.png", "img_3.png", "img_4.png", "img_5.png"):
        (folder / name).unlink()
    out = tmp_path / "out"
    out.mkdir()
    (out / "img_0.png").write_bytes(b"someone else's file")
    with pytest.raises(ValueError, match="overwrite"):
        gs.batch_geometric_style_transfer(folder, out, geometry, model="affine", **THREADS)
    assert (out / "img_0.png").read_bytes() == b"someone else's file"
    done = list(gs.batch_geometric_style_transfer(folder, out, geometry, model="affine",
                                                  overwrite=True, **THREADS))  # fmt: skip
    assert done[0].status == "done" and iio.imread(out / "img_0.png").shape == (48, 48, 3)
    with pytest.raises(ValueError, match="overwrite"):  # other options: another result
        gs.batch_geometric_style_transfer(folder, out, geometry, model="affine", strength=0.5)
    again = list(gs.batch_geometric_style_transfer(folder, out, geometry, model="affine"))
    assert [r.status for r in again] == ["skipped"]  # same options: nothing to do, no cluster


def test_bad_arguments_fail_before_any_work(folder, styles, tmp_path):
    geometry, texture = styles
    with pytest.raises(ValueError, match="geometry style"):
        gs.batch_geometric_style_transfer(folder, tmp_path / "o")
    with pytest.raises(ValueError, match="preset"):
        gs.batch_geometric_style_transfer(folder, tmp_path / "o", None, texture, preset="x")
    with pytest.raises(ValueError, match="no file"):
        gs.batch_geometric_style_transfer(tmp_path / "missing", tmp_path / "o", geometry)
    with pytest.raises(ValueError, match="scheduler"):
        gs.batch_geometric_style_transfer(folder, tmp_path / "o", geometry, scheduler="gpu")
    assert not (tmp_path / "o").exists()


def _video_frames(count=10):
    return [_scene(t, (48, 64)) for t in range(count)]


def _frames(out, stem, count):
    return [iio.imread(out / f"{stem}_frames/{stem}_{i:06d}.png") for i in range(count)]


def test_video_coherent_mode_flickers_less_than_independent_frames(styles, tmp_path):
    geometry, texture = styles
    media.write_video(tmp_path / "clip.mp4", _video_frames(), fps=10.0)
    items, _ = media.collect_inputs(tmp_path / "clip.mp4")
    inputs = [item.array for item in items]
    flicker = {}
    for coherent in (True, False):
        out = tmp_path / f"styled_{coherent}"
        results = list(gs.batch_geometric_style_transfer(
            tmp_path / "clip.mp4", out, None, texture, coherent=coherent,
            **{**TINY, "iterations": 3, "size": 48}, **THREADS))
        assert [r.status for r in results] == ["done"] * 11
        assert results[-1].kind == "sequence" and results[-1].output == "clip.mp4"
        flicker[coherent] = temporal.flicker_ratio(_frames(out, "clip", 10), inputs)
    # warm-started texture follows the previous frame instead of being re-drawn each time
    assert flicker[True] < 0.7 * flicker[False]
    video, sequences = media.collect_inputs(tmp_path / "styled_True" / "clip.mp4")
    assert len(video) == 10 and video[0].array.shape == (36, 48, 3)
    assert sequences[0].fps == pytest.approx(10.0)
    for coherent in (True, False):  # geometry: estimated once for the clip, or per frame
        out = tmp_path / f"warped_{coherent}"
        list(gs.batch_geometric_style_transfer(tmp_path / "clip.mp4", out, geometry,
                                               coherent=coherent, **THREADS))  # fmt: skip
        transforms = {json.dumps(e["transform"], sort_keys=True)
                      for e in _manifest(out)["items"].values()}
        assert (len(transforms) == 1) == coherent


def test_coherent_resume_continues_the_chain_exactly(styles, tmp_path):
    _, texture = styles
    stack = np.stack([_scene(t) for t in range(6)])
    out = tmp_path / "out"
    options = dict(coherent=True, **TINY, **THREADS)
    first = list(gs.batch_geometric_style_transfer(stack, out, None, texture, **options))
    assert [r.kind for r in first][-1] == "sequence"
    originals = _frames(out, "stack", 6)
    entries = _manifest(out)
    for i in (4, 5):  # killed after frame 3
        name = f"stack_frames/stack_{i:06d}.png"
        (out / name).unlink()
        del entries["items"][name]
    (out / "manifest.json").write_text(json.dumps(entries))
    (out / "stack.tif").unlink()
    resumed = {r.output: r.status for r in gs.batch_geometric_style_transfer(
        stack, out, None, texture, **options)}
    assert list(resumed.values()).count("skipped") == 4 and resumed["stack.tif"] == "done"
    for original, again in zip(originals, _frames(out, "stack", 6)):
        assert np.array_equal(original, again)  # warm-started from frame 3's file
    import tifffile

    assert tifffile.imread(out / "stack.tif").shape == (6, 32, 32, 3)


def test_multipage_tiff_in_stack_out(styles, tmp_path):
    import tifffile

    geometry, _ = styles
    tifffile.imwrite(tmp_path / "zstack.tif", np.stack([_scene(t)[..., 0] for t in range(4)]),
                     photometric="minisblack")
    out = tmp_path / "out"
    results = list(gs.batch_geometric_style_transfer(tmp_path / "zstack.tif", out, geometry,
                                                     model="affine", **THREADS))  # fmt: skip
    assert [r.status for r in results] == ["done"] * 5
    stack = tifffile.imread(out / "zstack.tif")
    assert stack.shape == (4, 48, 48) and stack.dtype == np.uint8


def test_flicker_ratio():
    frames = [_scene(t).astype(np.float32) / 255 for t in range(4)]
    assert temporal.flicker_ratio(frames, frames) == pytest.approx(1.0)
    halved = [0.5 * f for f in frames]
    assert temporal.flicker_ratio(halved, frames) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="do not change"):
        temporal.flicker_ratio(frames, [frames[0]] * 4)
    with pytest.raises(ValueError, match="as many"):
        temporal.flicker_ratio(frames[:2], frames)


def test_cli_batch_end_to_end_resume_and_refusal(folder, styles, tmp_path, capsys):
    geometry, texture = styles
    (folder / "img_3.png").unlink()
    out = tmp_path / "out"
    argv = ["batch", str(folder), "-o", str(out), "--geometry", str(geometry), "--texture",
            str(texture), "--backbone", "random", "--size", "32", "--levels", "1",
            "--iterations", "2", "--threads", "--workers", "2", "--device", "cpu"]
    assert cli.main(argv) == 0
    assert "5 done, 0 skipped (finished before), 0 failed" in capsys.readouterr().err
    assert sorted(p.name for p in out.glob("img_*.png")) == sorted(
        p.name for p in folder.glob("*.png"))
    assert cli.main(argv) == 0
    assert "0 done, 5 skipped" in capsys.readouterr().err
    shutil.copy(folder / "img_0.png", out / "img_9.png")
    shutil.copy(folder / "img_0.png", folder / "img_9.png")
    assert cli.main(argv) == 2  # img_9.png exists and was not made by this batch
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "img_9.png" in error[0] and "--overwrite" in error[0]
    assert cli.main([*argv, "--overwrite"]) == 0
    assert "1 done, 5 skipped" in capsys.readouterr().err
    assert cli.main(["batch", str(folder), "-o", str(out)]) == 2
    assert "--geometry" in capsys.readouterr().err


def test_video_audio_is_kept(styles, tmp_path):
    import subprocess

    geometry, _ = styles
    ffmpeg = media._ffmpeg()
    subprocess.run([ffmpeg, "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10",
                    "-f", "lavfi", "-i", "sine=frequency=440", "-t", "0.5", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(tmp_path / "a.mp4")],
                   check=True)  # fmt: skip
    out = tmp_path / "out"
    results = list(gs.batch_geometric_style_transfer(tmp_path / "a.mp4", out, geometry,
                                                     model="affine", **THREADS))  # fmt: skip
    assert results[-1].status == "done"
    probe = subprocess.run([ffmpeg, "-i", str(out / "a.mp4")], capture_output=True, text=True,
                           check=False)  # ffmpeg -i without an output exits 1 by design
    assert "Audio:" in probe.stderr and "Video:" in probe.stderr
    assert _manifest(out)["sequences"]["a.mp4"]["audio"].startswith("audio from the input")
