"""Batch inputs that must fail alone or up front, never the whole run (issue 24, section 2):
non-UTF-8 names, bad videos, bad schedulers, pixel caps and lazy planning."""

from __future__ import annotations

import csv
import json
import os

import imageio.v3 as iio
import numpy as np
import pytest

from napari_geostyle.core import manifest as manifest_module

pytest.importorskip("distributed")

import napari_geostyle as gs

THREADS = {"processes": False, "workers": 1, "device": "cpu"}


def _image(seed=0, shape=(32, 32)) -> np.ndarray:
    image = np.zeros((*shape, 3), np.uint8)
    image[8 + seed : 20 + seed, 6:22] = (200, 90, 40)
    return image


@pytest.fixture(scope="module")
def geometry(tmp_path_factory):
    path = tmp_path_factory.mktemp("styles") / "geometry.png"
    iio.imwrite(path, _image(3)[:, ::-1])
    return path


def _non_utf8_name(folder, name: bytes) -> str:
    """A file named with raw bytes; skips where the file system refuses them (macOS, Windows)."""
    path = os.fsencode(folder) + b"/" + name
    try:
        with open(path, "wb") as handle:
            handle.write(iio.imwrite("<bytes>", _image(), extension=".png"))
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses file names that are not UTF-8")
    return os.fsdecode(name)


# --------------------------------------------------------------------------- 10: names
def test_manifest_keeps_non_utf8_names_losslessly(tmp_path):
    name = os.fsdecode(b"caf\xe9.png")  # 'caf\udce9.png'
    manifest = manifest_module.Manifest(tmp_path)
    entry = {"output": name, "kind": "item", "status": "done", "source": f"in/{name}", "key": "k"}
    manifest.record(entry)
    manifest.record({**entry, "output": "\ud800odd.png", "source": "x"})  # not from a file name
    manifest.save()
    data = json.loads((tmp_path / manifest_module.MANIFEST_NAME).read_text())
    assert data["items"][name]["source"] == f"in/{name}"  # exact, surrogates and all
    rows = list(csv.DictReader((tmp_path / manifest_module.CSV_NAME).open(encoding="utf-8")))
    assert [r["output"] for r in rows] == ["caf\\xe9.png", "\\ud800odd.png"]
    assert rows[0]["source"] == "in/caf\\xe9.png"
    assert manifest_module.Manifest(tmp_path).entries[name]["key"] == "k"  # read back exactly


@pytest.mark.slow
def test_a_non_utf8_file_name_does_not_fail_the_batch(tmp_path, geometry):
    inputs = tmp_path / "in"
    inputs.mkdir()
    iio.imwrite(inputs / "good.png", _image(1))
    name = _non_utf8_name(inputs, b"caf\xe9.png")
    out = tmp_path / "out"
    run = gs.batch_geometric_style_transfer(inputs, out, geometry, None, model="affine", **THREADS)
    assert {r.output: r.status for r in run} == {name: "done", "good.png": "done"}
    assert os.path.isfile(os.fsencode(out) + b"/caf\xe9.png")
    data = json.loads((out / "manifest.json").read_text())
    assert data["items"][name]["status"] == "done"
    assert "caf\\xe9.png" in (out / "manifest.csv").read_text(encoding="utf-8")
    again = gs.batch_geometric_style_transfer(
        inputs, out, geometry, None, model="affine", **THREADS
    )
    assert {r.status for r in again} == {"skipped"}  # the resume key found under its exact name


# --------------------------------------------------------------------------- 11: bad videos
@pytest.mark.slow
def test_a_bad_video_fails_alone_recorded_with_a_short_error(tmp_path, geometry, capsys):
    from napari_geostyle import cli
    from napari_geostyle.core import media

    inputs = tmp_path / "in"
    inputs.mkdir()
    iio.imwrite(inputs / "good.png", _image(1))
    (inputs / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 8)
    media.write_video(inputs / "clip.mp4", [_image(i) for i in range(3)], fps=5.0)
    out = tmp_path / "out"
    code = cli.main(
        [
            "batch",
            str(inputs),
            "-o",
            str(out),
            "--geometry",
            str(geometry),
            "--model",
            "affine",
            "--threads",
            "--workers",
            "1",
            "--device",
            "cpu",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1  # something failed, the rest was done
    entries = json.loads((out / "manifest.json").read_text())
    assert entries["items"]["broken.mp4"]["status"] == "failed"
    assert entries["items"]["good.png"]["status"] == "done"
    assert entries["sequences"]["clip.mp4"]["status"] == "done"
    error = entries["items"]["broken.mp4"]["error"]
    assert "broken.mp4" in error and len(error) < 400
    assert "ffmpeg version" not in error and "configuration:" not in error
    assert "imageio-ffmpeg package" not in error  # the package is there: no wrong hint
    assert "1 failed" in err and "ffmpeg version" not in err
    assert (out / "good.png").is_file() and (out / "clip.mp4").is_file()


# --------------------------------------------------------------------------- 7: schedulers
class _FakeServer:
    """A TCP server on 127.0.0.1 that is not a Dask scheduler; every thread ends by itself."""

    def __init__(self, behaviour: str):
        import socket
        import threading

        self.behaviour, self.stop = behaviour, threading.Event()
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(8)
        self.socket.settimeout(0.2)
        self.address = f"tcp://127.0.0.1:{self.socket.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import threading

        while not self.stop.is_set():
            try:
                connection, _ = self.socket.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection):
        import struct

        with connection:
            if self.behaviour == "huge":  # a length header of 3 EiB
                connection.sendall(struct.pack("Q", 3 << 60))
            elif self.behaviour == "big":  # 3 GiB: would be allocated and filled
                connection.sendall(struct.pack("Q", 3 << 30))
            elif self.behaviour == "garbage":
                connection.sendall(b"\x01\x02\x03")
                return
            elif self.behaviour == "http":
                connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                return
            self.stop.wait(10)  # "silent" and the headers: keep the connection, never answer

    def close(self):
        self.stop.set()
        self.socket.close()


@pytest.fixture
def short_timeout(monkeypatch):
    monkeypatch.setattr("napari_geostyle.core.scheduler.SCHEDULER_TIMEOUT_S", 3.0)
    return 3.0


@pytest.mark.parametrize("behaviour", ["silent", "huge", "big", "garbage", "http"])
@pytest.mark.slow
def test_a_bogus_scheduler_ends_within_the_timeout_with_one_line(behaviour, short_timeout):
    import time

    from napari_geostyle.core.scheduler import check_scheduler

    server = _FakeServer(behaviour)
    try:
        started = time.monotonic()
        with pytest.raises(ValueError, match="cannot use the Dask scheduler") as caught:
            check_scheduler(server.address)
        assert time.monotonic() - started < short_timeout + 1.0
    finally:
        server.close()
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300


def _batch_argv(inputs, out, geometry, scheduler):
    return ["batch", str(inputs), "-o", str(out), "--geometry", str(geometry), "--model",
            "affine", "--device", "cpu", "--scheduler", scheduler]  # fmt: skip


@pytest.mark.parametrize(
    "address", ["silent", "huge", "refused", "tls://127.0.0.1:8786", "ucx://127.0.0.1:8786"]
)
@pytest.mark.slow
def test_a_bad_scheduler_leaves_no_output_folder(
    address, tmp_path, geometry, capsys, short_timeout
):
    import socket
    import time

    from napari_geostyle import cli

    server = None
    if address in ("silent", "huge"):
        server = _FakeServer(address)
        address = server.address
    elif address == "refused":
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            address = f"tcp://127.0.0.1:{free.getsockname()[1]}"
    inputs = tmp_path / "in"
    inputs.mkdir()
    iio.imwrite(inputs / "a.png", _image())
    out = tmp_path / "out"
    try:
        started = time.monotonic()
        code = cli.main(_batch_argv(inputs, out, geometry, address))
        elapsed = time.monotonic() - started
    finally:
        if server is not None:
            server.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert "scheduler" in err[0]
    assert not out.exists()
    assert elapsed < 30  # planning and the check, never the hang of the issue


@pytest.mark.slow
def test_a_real_scheduler_passes_the_check_and_runs_the_batch(tmp_path, geometry):
    from distributed import LocalCluster

    inputs = tmp_path / "in"
    inputs.mkdir()
    iio.imwrite(inputs / "a.png", _image())
    cluster = LocalCluster(
        n_workers=1,
        processes=False,
        protocol="tcp",
        host="127.0.0.1",
        dashboard_address=None,
        threads_per_worker=1,
    )
    with cluster:
        run = gs.batch_geometric_style_transfer(
            inputs, tmp_path / "out", geometry, None, model="affine", device="cpu",
            scheduler=cluster.scheduler_address,
        )  # fmt: skip
        assert [r.status for r in run] == ["done"]


# --------------------------------------------------------------------------- 6: pixel cap
def _huge_tiff(width=60_000, height=60_000) -> bytes:
    """A 200-byte TIFF whose header declares ``width`` x ``height`` 8-bit gray pixels (3.6 G
    by default), with one deflate strip that would never hold them."""
    import struct

    strip = b"x\x9c\x03\x00\x00\x00\x00\x01"  # a tiny deflate stream
    tags = [
        (256, 4, 1, width),  # ImageWidth, LONG
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample, SHORT
        (259, 3, 1, 8),  # Compression: deflate
        (262, 3, 1, 1),  # Photometric: black is zero
        (273, 4, 1, 0),  # StripOffsets (patched below)
        (277, 3, 1, 1),  # SamplesPerPixel
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, len(strip)),  # StripByteCounts
    ]
    ifd_size = 2 + 12 * len(tags) + 4
    data_offset = 8 + ifd_size
    ifd = struct.pack("<H", len(tags))
    for tag, kind, count, value in tags:
        value = data_offset if tag == 273 else value
        packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + strip


def _huge_png(width=40_000, height=40_000) -> bytes:
    """A small PNG whose header declares ``width`` x ``height`` pixels."""
    import struct
    import zlib

    data = iio.imwrite("<bytes>", np.zeros((4, 4), np.uint8), extension=".png")
    start = data.index(b"IHDR")
    body = struct.pack(">II", width, height) + data[start + 12 : start + 17]
    chunk = b"IHDR" + body + struct.pack(">I", zlib.crc32(b"IHDR" + body))
    return data[:start] + chunk + data[start + len(chunk) :]


@pytest.mark.parametrize("make, suffix", [(_huge_tiff, ".tif"), (_huge_png, ".png")])
def test_an_image_over_the_pixel_cap_is_refused_before_it_is_decoded(make, suffix, tmp_path):
    import time
    import tracemalloc

    from napari_geostyle.core import media

    data = make()
    assert len(data) < 2000
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(ValueError, match=r"megapixels\), more than the limit"):
            media.decode_image(data, f"huge{suffix}")
        path = tmp_path / f"huge{suffix}"
        path.write_bytes(data)
        with pytest.raises(ValueError, match="--max-pixels"):
            media.read_image_file(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 5 and peak < 50e6


def test_the_cli_refuses_an_image_over_the_cap_with_one_line(tmp_path, capsys, monkeypatch):
    from napari_geostyle import cli
    from napari_geostyle.core import media

    monkeypatch.delenv(media.MAX_PIXELS_ENV, raising=False)
    (tmp_path / "huge.tif").write_bytes(_huge_tiff())
    (tmp_path / "marks.csv").write_text('"a","true","1","1","2","2"\n"b","true","9","1","9","2"\n')
    code = cli.main(["warp", str(tmp_path / "huge.tif"), "--landmarks", str(tmp_path / "marks.csv"),
                     "-o", str(tmp_path / "out.png")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "megapixels" in err[0], err
    assert not (tmp_path / "out.png").exists()


def test_the_pixel_cap_can_be_raised_by_environment_or_flag(tmp_path, monkeypatch, capsys):
    from napari_geostyle import cli
    from napari_geostyle.core import media

    data = iio.imwrite("<bytes>", np.zeros((100, 120), np.uint8), extension=".png")
    monkeypatch.setenv(media.MAX_PIXELS_ENV, "10000")
    with pytest.raises(ValueError, match="120 x 100 pixels"):
        media.decode_image(data, "a.png")
    monkeypatch.setenv(media.MAX_PIXELS_ENV, "12000")
    assert media.decode_image(data, "a.png").shape == (100, 120)
    monkeypatch.setenv(media.MAX_PIXELS_ENV, "lots")
    with pytest.raises(ValueError, match="NAPARI_GEOSTYLE_MAX_PIXELS='lots'"):
        media.decode_image(data, "a.png")
    monkeypatch.setenv(media.MAX_PIXELS_ENV, "10000")
    (tmp_path / "a.png").write_bytes(data)
    argv = ["warp", str(tmp_path / "a.png"), "--landmarks", str(tmp_path / "none.csv"),
            "-o", str(tmp_path / "out.png")]  # fmt: skip
    assert cli.main(argv) == 2 and "megapixels" in capsys.readouterr().err
    assert cli.main(["--max-pixels", "2e4", *argv]) == 2  # read now; the CSV is missing
    assert "megapixels" not in capsys.readouterr().err
    assert os.environ[media.MAX_PIXELS_ENV] == "20000"  # what Dask workers inherit


@pytest.mark.slow
def test_a_batch_input_over_the_cap_fails_alone(tmp_path, geometry, monkeypatch):
    from napari_geostyle.core import media

    monkeypatch.delenv(media.MAX_PIXELS_ENV, raising=False)
    inputs = tmp_path / "in"
    inputs.mkdir()
    iio.imwrite(inputs / "good.png", _image(1))
    (inputs / "huge.tif").write_bytes(_huge_tiff())
    run = gs.batch_geometric_style_transfer(
        inputs, tmp_path / "out", geometry, None, model="affine", **THREADS
    )
    results = {r.output: r for r in run}
    assert results["good.png"].status == "done"
    assert results["huge.tif"].status == "failed" and "megapixels" in results["huge.tif"].error


# --------------------------------------------------------------------------- 6: lazy planning
def test_planning_a_many_page_stack_reads_one_page_at_a_time(tmp_path):
    """A 200-page, 512 x 512 stack (52 MB decoded, a few hundred KB on disk): planning keeps
    digests, not pages (the issue's 200-page stack took 3.5 GB)."""
    import tracemalloc

    import tifffile

    from napari_geostyle.core import media

    pages = np.zeros((200, 512, 512), np.uint8)
    pages[:, 10, 10] = np.arange(200)  # each page its own
    tifffile.imwrite(tmp_path / "stack.tif", pages, photometric="minisblack", compression="zlib")
    del pages
    tracemalloc.start()
    try:
        items, sequences = media.collect_inputs(tmp_path / "stack.tif")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(items) == 200 and sequences[0].kind == "stack"
    assert peak < 20e6, f"planning peaked at {peak / 1e6:.0f} MB"
    frame = media.load_item(items[137])  # read when a worker needs it
    assert frame.shape == (512, 512) and frame[10, 10] == 137


@pytest.mark.slow
def test_planning_a_1080p_video_keeps_digests_not_frames(tmp_path):
    """50 frames of 1080p (311 MB decoded): planning stays far below that; the issue's 20 s
    video is 10 x longer and peaks no higher, as one frame is held at a time."""
    import subprocess
    import tracemalloc

    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    from napari_geostyle.core import media

    path = tmp_path / "clip.mp4"
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i",
               "testsrc=s=1920x1080:d=2:r=25", "-c:v", "libx264", "-preset", "ultrafast",
               "-pix_fmt", "yuv420p", str(path)]  # fmt: skip
    subprocess.run(command, check=True, timeout=120)
    tracemalloc.start()
    try:
        items, sequences = media.collect_inputs(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(items) == 50 and sequences[0].fps == pytest.approx(25.0)
    assert peak < 100e6, f"planning peaked at {peak / 1e6:.0f} MB"
    assert all(item.stored is None and item.data is None for item in items)
    frame = media.load_item(items[31])  # a seek, checked against the planned digest
    assert frame.shape == (1080, 1920, 3) and media.digest_array(frame) == items[31].digest


def test_a_video_over_the_pixel_cap_fails_alone(tmp_path, monkeypatch):
    from napari_geostyle.core import media

    media.write_video(tmp_path / "clip.mp4", [_image(i, (48, 64)) for i in range(3)], fps=5.0)
    monkeypatch.setenv(media.MAX_PIXELS_ENV, "1000")
    items, sequences = media.collect_inputs(tmp_path / "clip.mp4")
    assert not sequences and len(items) == 1 and "megapixels" in items[0].error
    with pytest.raises(ValueError, match="64 x 48 pixels"):
        media.load_item(items[0])


def test_planning_a_folder_of_images_holds_no_file_bytes(tmp_path, geometry):
    import tracemalloc

    from napari_geostyle.core import media

    rng = np.random.default_rng(0)
    for index in range(12):  # about 0.8 MB each: noise does not compress
        iio.imwrite(
            tmp_path / f"img_{index:02d}.png", rng.integers(0, 255, (480, 560, 3), np.uint8)
        )
    total = sum(p.stat().st_size for p in tmp_path.iterdir())
    tracemalloc.start()
    try:
        items, _ = media.collect_inputs(tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(items) == 12 and all(item.data is None for item in items)
    assert peak < total / 4, f"planning peaked at {peak / 1e6:.1f} MB for {total / 1e6:.1f} MB"
    assert media.load_item(items[3]).shape == (480, 560, 3)
    iio.imwrite(tmp_path / "img_03.png", np.zeros((8, 8), np.uint8))  # changed after planning
    with pytest.raises(ValueError, match="changed since the batch was planned"):
        media.load_item(items[3])


def test_training_and_evaluation_readers_apply_the_pixel_cap(tmp_path, monkeypatch):
    from napari_geostyle.core import media, training
    from napari_geostyle.core.landmark_eval import read_pf_pairs

    monkeypatch.delenv(media.MAX_PIXELS_ENV, raising=False)
    iio.imwrite(tmp_path / "fine.png", _image(0, (80, 80)))
    (tmp_path / "huge.tif").write_bytes(_huge_tiff())
    assert len(training.load_images(tmp_path)) == 1  # the huge one skipped, not decoded
    (tmp_path / "pairs.csv").write_text("imageA,imageB,XA,YA,XB,YB\nhuge.tif,fine.png,1,1,1,1\n")
    with pytest.raises(ValueError, match="pairs.csv line 2: .*megapixels"):
        read_pf_pairs(tmp_path / "pairs.csv")


def test_video_frames_read_in_order_share_one_reader(tmp_path, monkeypatch):
    import imageio.v2 as imageio

    from napari_geostyle.core import media

    media.write_video(tmp_path / "clip.mp4", [_image(i, (48, 64)) for i in range(8)], fps=5.0)
    items, _ = media.collect_inputs(tmp_path / "clip.mp4")
    opened = []
    real = imageio.get_reader
    monkeypatch.setattr(imageio, "get_reader", lambda *a, **k: opened.append(a) or real(*a, **k))
    frames = [media.load_item(item) for item in items]
    assert len(frames) == 8 and len(opened) == 1  # no ffmpeg restart (and seek) per frame
    assert all(media.digest_array(f) == item.digest for f, item in zip(frames, items))
