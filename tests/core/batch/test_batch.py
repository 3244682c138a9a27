"""Batch engine on Dask: folders, failures, resume, overwrite, manifest, videos, stacks, CLI."""

import json
import shutil

import imageio.v3 as iio
import numpy as np
import pytest

pytest.importorskip("distributed")
pytestmark = pytest.mark.slow  # folders, videos and stacks on Dask

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
        **{f"img_{i}.png": "done" for i in (0, 1, 2, 4, 5)},
        "img_3.png": "failed",
    }
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
    assert np.allclose(
        restored.map_points([[10.0, 20.0]]),
        gs.transform_from_dict(results["img_1.png"].transform).map_points([[10.0, 20.0]]),
    )
    assert entry["device"] == "cpu" and entry["timings"]["total"] > 0
    assert {"geometry", "warp", "texture"} <= set(entry["timings"])
    # every worker loaded its networks once, before the first task: no task loaded any
    assert all(e["models_loaded"] == 0 for e in manifest["items"].values() if e["status"] == "done")
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
    results = list(
        gs.batch_geometric_style_transfer(
            folder, out, geometry, None, processes=True, workers=2, device="cpu", model="affine"
        )
    )
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
    with pytest.raises(ValueError, match="preset"):  # no texture stage, still a mistake
        gs.batch_geometric_style_transfer(folder, tmp_path / "o", geometry, preset="x")
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
        results = list(
            gs.batch_geometric_style_transfer(
                tmp_path / "clip.mp4",
                out,
                None,
                texture,
                coherent=coherent,
                **{**TINY, "iterations": 6, "size": 48},
                **THREADS,
            )
        )
        assert [r.status for r in results] == ["done"] * 11
        assert results[-1].kind == "sequence" and results[-1].output == "clip.mp4"
        flicker[coherent] = temporal.flicker_ratio(_frames(out, "clip", 10), inputs)
    # warm-started texture follows the previous frame instead of being re-drawn each time. With
    # 6 iterations an independent frame's random-backbone texture is re-drawn far from the last
    # one (about 4-5x the coherent flicker here); half is a margin that codecs and BLAS cannot eat
    assert flicker[True] < 0.5 * flicker[False], flicker
    video, sequences = media.collect_inputs(tmp_path / "styled_True" / "clip.mp4")
    assert len(video) == 10 and video[0].array.shape == (36, 48, 3)
    assert sequences[0].fps == pytest.approx(10.0)
    for coherent in (True, False):  # geometry: estimated once for the clip, or per frame
        out = tmp_path / f"warped_{coherent}"
        list(gs.batch_geometric_style_transfer(tmp_path / "clip.mp4", out, geometry,
                                               coherent=coherent, **THREADS))  # fmt: skip
        transforms = {
            json.dumps(e["transform"], sort_keys=True) for e in _manifest(out)["items"].values()
        }
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
    resumed = {
        r.output: r.status
        for r in gs.batch_geometric_style_transfer(stack, out, None, texture, **options)
    }
    assert list(resumed.values()).count("skipped") == 4 and resumed["stack.tif"] == "done"
    for original, again in zip(originals, _frames(out, "stack", 6)):
        assert np.array_equal(original, again)  # warm-started from frame 3's file
    import tifffile

    assert tifffile.imread(out / "stack.tif").shape == (6, 32, 32, 3)


def test_multipage_tiff_in_stack_out(styles, tmp_path):
    import tifffile

    geometry, _ = styles
    tifffile.imwrite(
        tmp_path / "zstack.tif",
        np.stack([_scene(t)[..., 0] for t in range(4)]),
        photometric="minisblack",
    )
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
    argv = [
        "batch",
        str(folder),
        "-o",
        str(out),
        "--geometry",
        str(geometry),
        "--texture",
        str(texture),
        "--backbone",
        "random",
        "--size",
        "32",
        "--levels",
        "1",
        "--iterations",
        "2",
        "--threads",
        "--workers",
        "2",
        "--device",
        "cpu",
        "--geometry-batch",
        "2",
    ]
    assert cli.main(argv) == 0
    assert "5 done, 0 skipped (finished before), 0 failed" in capsys.readouterr().err
    manifest = _manifest(out)
    assert manifest["options"]["geometry_batch"] == 2
    assert sorted(e["geometry_batch"] for e in manifest["items"].values()) == [1, 2, 2, 2, 2]
    assert sorted(p.name for p in out.glob("img_*.png")) == sorted(
        p.name for p in folder.glob("*.png")
    )
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
    probe = subprocess.run(
        [ffmpeg, "-i", str(out / "a.mp4")], capture_output=True, text=True, check=False
    )  # ffmpeg -i without an output exits 1 by design
    assert "Audio:" in probe.stderr and "Video:" in probe.stderr
    assert _manifest(out)["sequences"]["a.mp4"]["audio"].startswith("audio from the input")


# --------------------------------------------------------------------------- a style per input
def _styles_csv(folder, text):
    path = folder / "styles.csv"
    path.write_text(text)
    return path


def test_styles_csv_gives_each_input_its_own_styles(folder, styles, tmp_path):
    geometry, texture = styles
    for name in ("img_3.png", "img_4.png", "img_5.png"):
        (folder / name).unlink()
    table = tmp_path / "table"
    (table / "shapes").mkdir(parents=True)
    iio.imwrite(table / "shapes" / "wide.png", _scene(8)[:, ::-1])
    shutil.copy(geometry, table / "shapes" / "pose.png")
    csv = _styles_csv(
        table,
        "Input , geometry_style,texture_style\n"
        "img_0.png,shapes/pose.png,\n"
        "../in/img_1.png,shapes/wide.png,none\n\n",
    )
    out = tmp_path / "out"
    options = dict(model="affine", **TINY, **THREADS)
    run = gs.batch_geometric_style_transfer(
        folder, out, texture_style=texture, styles=csv, **options
    )
    assert {r.output: r.status for r in run} == dict.fromkeys(
        ["img_0.png", "img_1.png", "img_2.png"], "done"
    )
    # img_0: its geometry + the default texture; img_1: its geometry only; img_2: the default
    assert iio.imread(out / "img_0.png").shape == (32, 32, 3)
    assert iio.imread(out / "img_1.png").shape == (48, 48, 3)  # warped only: size kept
    assert iio.imread(out / "img_2.png").shape == (32, 32, 3)
    manifest = _manifest(out)
    items = manifest["items"]
    assert items["img_0.png"]["geometry_style"] == str(table / "shapes" / "pose.png")
    assert items["img_0.png"]["texture_style"] == str(texture)
    assert items["img_1.png"]["geometry_style"] == str(table / "shapes" / "wide.png")
    assert items["img_1.png"]["texture_style"] is None
    assert items["img_2.png"]["geometry_style"] is None and items["img_2.png"]["transform"] is None
    assert manifest["styles_table"] == str(csv)
    assert "geometry_style" in (out / "manifest.csv").read_text().splitlines()[0]
    for name, style in (("img_0.png", geometry), ("img_1.png", table / "shapes" / "wide.png")):
        alone = gs.estimate_warp(
            iio.imread(folder / name), iio.imread(style), model="affine", device="cpu"
        )
        assert np.allclose(
            gs.transform_from_dict(items[name]["transform"]).matrix, alone.matrix, atol=1e-4
        )  # the warp of the input's own style
    # the styles' bytes are in the resume key: a changed style file redoes only its inputs
    again = gs.batch_geometric_style_transfer(
        folder, out, texture_style=texture, styles=csv, **options
    )
    assert again.pending == 0 and {r.status for r in again} == {"skipped"}
    iio.imwrite(table / "shapes" / "wide.png", _scene(1))
    with pytest.raises(ValueError, match="img_1.png.*overwrite"):
        gs.batch_geometric_style_transfer(folder, out, texture_style=texture, styles=csv, **options)
    redo = gs.batch_geometric_style_transfer(
        folder, out, texture_style=texture, styles=csv, overwrite=True, **options
    )
    assert redo.pending == 1
    assert {r.output: r.status for r in redo}["img_1.png"] == "done"
    assert _manifest(out)["items"]["img_1.png"]["key"] != items["img_1.png"]["key"]


def test_styles_table_errors_come_before_any_work(folder, styles, tmp_path):
    geometry, texture = styles
    out = tmp_path / "out"

    def fails(error, match, text, **kwargs):
        with pytest.raises(error, match=match):
            gs.batch_geometric_style_transfer(
                folder, out, styles=_styles_csv(tmp_path, text), **kwargs
            )

    fails(ValueError, "bad header.*'input'", "file,geometry_style\nimg_0.png,g.png\n")
    fails(ValueError, "bad header.*unknown column.*'style'", "input,style\nimg_0.png,g.png\n")
    fails(ValueError, "bad header.*no style column", "input\nimg_0.png\n")
    fails(
        ValueError,
        "not among the batch's inputs: img_9.png",
        f"input,geometry_style\nimg_9.png,{geometry}\n",
        texture_style=texture,
    )
    fails(
        FileNotFoundError,
        "line 3: geometry_style nothere.png is not a file",
        f"input,geometry_style\nimg_0.png,{geometry}\nimg_1.png,nothere.png\n",
    )
    fails(
        ValueError,
        "img_0.png already has styles from .*line 2",
        f"input,geometry_style\nimg_0.png,{geometry}\nimg_0.png,{geometry}\n",
        texture_style=texture,
    )
    fails(
        ValueError,
        r"no style for .*img_1.png.*--geometry-style",
        f"input,geometry_style\nimg_0.png,{geometry}\n",
    )  # the others: no default
    fails(
        ValueError,
        "no style for .*img_0.png",
        "input,geometry_style,texture_style\nimg_0.png,none,none\n",
        texture_style=texture,
    )
    with pytest.raises(FileNotFoundError, match="no styles CSV"):
        gs.batch_geometric_style_transfer(folder, out, styles=tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="keys are"):
        gs.batch_geometric_style_transfer(folder, out, geometry, styles={"img_0.png": {"g": 1}})
    assert not out.exists()


def test_cli_styles_csv(folder, styles, tmp_path, capsys):
    geometry, _ = styles
    for name in ("img_2.png", "img_3.png", "img_4.png", "img_5.png"):
        (folder / name).unlink()
    csv = _styles_csv(tmp_path, f"input,geometry_style\nimg_1.png,{geometry.name}\n")
    shutil.copy(geometry, tmp_path / geometry.name)
    out = tmp_path / "out"
    argv = [
        "batch",
        str(folder),
        "-o",
        str(out),
        "--styles-csv",
        str(csv),
        "--model",
        "affine",
        "--threads",
        "--workers",
        "2",
        "--device",
        "cpu",
    ]
    assert cli.main(argv) == 2  # img_0.png has no style and there is no default
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "img_0.png" in error[0] and "--geometry-style" in error[0]
    assert not out.exists()
    assert cli.main([*argv, "--geometry-style", str(geometry)]) == 0
    assert "2 done, 0 skipped" in capsys.readouterr().err
    items = _manifest(out)["items"]
    assert items["img_1.png"]["geometry_style"] == str(tmp_path / geometry.name)
    assert items["img_0.png"]["geometry_style"] == str(geometry)


# --------------------------------------------------------------------------- per-frame geometry
def test_per_frame_geometry_smoothed_jitters_less_than_unsmoothed(styles, tmp_path):
    geometry, _ = styles
    stack = np.stack([_scene(2 * t) for t in range(8)])  # the shapes move a lot
    options = dict(geometry_per_frame=True, model="affine", **THREADS, device="cpu")
    transforms, estimated = {}, {}
    for window in (1, 5):
        out = tmp_path / f"window{window}"
        results = list(
            gs.batch_geometric_style_transfer(stack, out, geometry, smooth_frames=window, **options)
        )
        assert [r.status for r in results] == ["done"] * 9
        items = [_manifest(out)["items"][f"stack_frames/stack_{i:06d}.png"] for i in range(8)]
        transforms[window] = [gs.transform_from_dict(e["transform"]) for e in items]
        estimated[window] = [gs.transform_from_dict(e["estimated_transform"]) for e in items]
    # the smoothed run's own per-frame estimates are the unsmoothed run's warps
    for raw, alone in zip(estimated[5], transforms[1]):
        assert np.allclose(raw.matrix, alone.matrix, atol=1e-6)
    smoothed = temporal.smooth_transforms(estimated[5], 5)
    for got, want in zip(transforms[5], smoothed):
        assert np.allclose(got.matrix, want.matrix, atol=1e-9)
    assert len({t.matrix.tobytes() for t in transforms[5]}) == 8  # it follows the subject
    jitter = {w: temporal.lattice_jitter(t, (48, 48)) for w, t in transforms.items()}
    # about 0.22 here; 0.6 leaves the estimates' numerics a margin of more than two
    assert jitter[5] < 0.6 * jitter[1], jitter
    assert _manifest(tmp_path / "window5")["options"]["smooth_frames"] == 5
    again = gs.batch_geometric_style_transfer(
        stack, tmp_path / "window5", geometry, smooth_frames=5, **options
    )
    assert again.pending == 0  # same frames, window and kernel: resumed
    with pytest.raises(ValueError, match="overwrite"):  # another window: other warps
        gs.batch_geometric_style_transfer(
            stack, tmp_path / "window5", geometry, smooth_frames=3, **options
        )
    with pytest.raises(ValueError, match="coherent"):
        gs.batch_geometric_style_transfer(
            stack, tmp_path / "o", geometry, coherent=False, geometry_per_frame=True
        )
    with pytest.raises(ValueError, match="odd whole number"):
        gs.batch_geometric_style_transfer(
            stack, tmp_path / "o", geometry, smooth_frames=4, geometry_per_frame=True
        )


# --------------------------------------------------------------------------- batched geometry
def _sampled(entry, shape=(48, 48)):
    """Where an entry's transform sends a 5 x 5 lattice of content pixels."""
    rows, cols = np.meshgrid(np.linspace(0, shape[0] - 1, 5), np.linspace(0, shape[1] - 1, 5))
    points = np.stack([cols.ravel(), rows.ravel()], -1)
    return gs.transform_from_dict(entry["transform"]).map_points(points)


def test_geometry_batch_gives_per_pair_transforms_and_bad_inputs_fail_alone(
    folder, styles, tmp_path
):
    geometry, _ = styles
    # img_1 reads but is too small for the geometry network: the batched call of its chunk
    # raises and the chunk falls back to pair by pair; img_3 (corrupt) fails to read
    iio.imwrite(folder / "img_1.png", _scene(0, (20, 20)))
    items = {}
    for batch in (1, 3):
        out = tmp_path / f"batch{batch}"
        results = {
            r.output: r
            for r in gs.batch_geometric_style_transfer(
                folder, out, geometry, geometry_batch=batch, model="affine", device="cpu", **THREADS
            )
        }
        assert {n: r.status for n, r in results.items()} == {
            **{f"img_{i}.png": "done" for i in (0, 2, 4, 5)},
            "img_1.png": "failed",
            "img_3.png": "failed",
        }
        assert "img_3.png" in results["img_3.png"].error
        assert "20 x 20 pixels; at least 32 x 32" in results["img_1.png"].error
        manifest = _manifest(out)
        assert manifest["options"]["geometry_batch"] == batch  # 6 pairs, 2 workers: 3 a chunk
        items[batch] = manifest["items"]
    # chunks [img_0, img_1, img_2] (pair by pair after the batched call failed) and
    # [img_3, img_4, img_5] (img_3 unreadable: img_4 and img_5 in one forward)
    assert [items[3][f"img_{i}.png"]["geometry_batch"] for i in (0, 2, 4, 5)] == [1, 1, 2, 2]
    for i in (0, 2, 4, 5):
        entry = items[3][f"img_{i}.png"]
        assert entry["timings"]["geometry"] > 0 and "warp" in entry["timings"]
        np.testing.assert_allclose(_sampled(entry), _sampled(items[1][f"img_{i}.png"]), atol=1e-3)
    with pytest.raises(ValueError, match="geometry_batch"):
        gs.batch_geometric_style_transfer(folder, tmp_path / "o", geometry, geometry_batch=0)
    assert not (tmp_path / "o").exists()


def test_geometry_batch_with_sequences_and_resume(styles, tmp_path):
    import tifffile

    geometry, _ = styles
    tifffile.imwrite(tmp_path / "once.tif", np.stack([_scene(t) for t in range(3)]))
    stack = np.stack([_scene(3 * t) for t in range(3)])
    options = {"model": "affine", "device": "cpu", "processes": False, "workers": 1}
    # coherent mode: the stack's one estimate (frame 0) shares a chunk with the image
    inputs = [tmp_path / "once.tif", _scene(5)]
    run = list(
        gs.batch_geometric_style_transfer(
            inputs, tmp_path / "mixed", geometry, geometry_batch=4, **options
        )
    )
    assert [r.status for r in run] == ["done"] * 5
    items = _manifest(tmp_path / "mixed")["items"]
    frames = [items[f"once_frames/once_{i:06d}.png"] for i in range(3)]
    assert frames[0]["geometry_batch"] == 2 and "geometry_batch" not in frames[1]
    assert all(f["transform"] == frames[0]["transform"] for f in frames)
    alone = gs.estimate_warp(_scene(0), iio.imread(geometry), model="affine", device="cpu")
    np.testing.assert_allclose(
        gs.transform_from_dict(frames[0]["transform"]).matrix, alone.matrix, atol=1e-4
    )
    # per-frame geometry, smoothed: batched estimates, the same warps as one pair at a time
    per_frame = dict(geometry_per_frame=True, smooth_frames=3, **options)
    names = [f"stack_frames/stack_{i:06d}.png" for i in range(3)]
    entries = {}
    for batch in (1, 4):
        out = tmp_path / f"frames{batch}"
        run = list(
            gs.batch_geometric_style_transfer(
                stack, out, geometry, geometry_batch=batch, **per_frame
            )
        )
        assert [r.status for r in run] == ["done"] * 4
        entries[batch] = _manifest(out)["items"]
    for name in names:
        np.testing.assert_allclose(
            _sampled(entries[4][name]), _sampled(entries[1][name]), atol=1e-3
        )
    assert [entries[4][n]["geometry_batch"] for n in names] == [3, 3, 3]
    # resume: only the last frame is redone; its finished neighbour's estimate comes from the
    # manifest, so its chunk holds the last frame alone
    out = tmp_path / "frames4"
    saved = _manifest(out)
    (out / names[-1]).unlink()
    del saved["items"][names[-1]]
    (out / "manifest.json").write_text(json.dumps(saved))
    (out / "stack.tif").unlink()
    run = gs.batch_geometric_style_transfer(stack, out, geometry, geometry_batch=4, **per_frame)
    assert run.pending == 1
    assert {r.output: r.status for r in run}[names[-1]] == "done"
    redone = _manifest(out)["items"][names[-1]]
    assert redone["geometry_batch"] == 1
    np.testing.assert_allclose(_sampled(redone), _sampled(entries[4][names[-1]]), atol=1e-6)
