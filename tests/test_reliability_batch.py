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
