"""Batches that must never lose or mix a user's files (issue 24, section 2): one batch per output
folder, outputs that are inputs, literal names, kills between write and journal, bad manifests,
unwritable folders, devices, spreadsheet cells, globs, worker counts, planning time, symlinks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

pytest.importorskip("distributed")

import napari_geostyle as gs
from napari_geostyle import cli
from napari_geostyle.core import media, output_lock

TEXTURE = {"backbone": "random", "size": 24, "levels": 1, "iterations": 1}
THREADS = {"processes": False, "workers": 1, "device": "cpu"}


def _image(seed=0, shape=(32, 32)) -> np.ndarray:
    image = np.zeros((*shape, 3), np.uint8)
    image[..., 2] = 60
    image[6 + seed : 18 + seed, 6:22] = (200, 90, 40)
    return image


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(4):
        iio.imwrite(folder / f"img_{i}.png", _image(i))
    return folder


@pytest.fixture
def texture(tmp_path):
    rows, cols = np.mgrid[0:32, 0:32]
    stripes = (((rows + cols) // 4) % 2 * 200 + 30).astype(np.uint8)
    path = tmp_path / "texture.png"
    iio.imwrite(path, np.stack([stripes, stripes // 2, 255 - stripes], -1))
    return path


def _batch(inputs, out, texture, **options):
    return gs.batch_geometric_style_transfer(inputs, out, None, texture, **TEXTURE, **THREADS,
                                             **options)  # fmt: skip


def _manifest(folder):
    return json.loads((folder / "manifest.json").read_text())


# --------------------------------------------------------------------------- 1: one batch a folder
HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import napari_geostyle as gs

    inputs, out, texture, started, go = sys.argv[1:]
    run = gs.batch_geometric_style_transfer(
        inputs, out, None, texture, backbone="random", size=24, levels=1, iterations=1,
        processes=False, workers=1, device="cpu")
    results = iter(run)
    first = next(results)  # the lock is held from here
    Path(started).write_text(first.output)
    deadline = time.time() + 120
    while not Path(go).exists() and time.time() < deadline:
        time.sleep(0.05)
    statuses = [first.status] + [r.status for r in results]
    print(" ".join(statuses))
    """
)


@pytest.mark.slow
def test_a_second_batch_on_a_busy_folder_is_refused_and_the_first_finishes(
    inputs, texture, tmp_path, capsys
):
    out, started, go = tmp_path / "out", tmp_path / "started", tmp_path / "go"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(inputs), str(out), str(texture), str(started), str(go)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        deadline = time.time() + 120
        while not started.exists():
            assert holder.poll() is None, holder.communicate()
            assert time.time() < deadline, "the first batch never started"
            time.sleep(0.05)
        lock = json.loads((out / output_lock.LOCK_NAME).read_text())
        assert lock["pid"] == holder.pid and lock["host"] == socket.gethostname()
        # the second batch, in this process: refused at the call, with nothing touched
        before = sorted(p.name for p in out.iterdir())
        with pytest.raises(ValueError, match="another batch is writing to") as refused:
            _batch(inputs, out, texture, overwrite=True)
        assert str(holder.pid) in str(refused.value) and "\n" not in str(refused.value)
        # and from the command line: one line, status 2
        argv = ["batch", str(inputs), "-o", str(out), "--texture", str(texture), "--threads",
                "--workers", "1", "--device", "cpu", "--backbone", "random", "--size", "24",
                "--levels", "1", "--iterations", "1", "--overwrite"]  # fmt: skip
        capsys.readouterr()
        assert cli.main(argv) == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and error[0].startswith("error: another batch is writing")
        assert sorted(p.name for p in out.iterdir()) == before
    finally:
        go.write_text("go")
        stdout, stderr = holder.communicate(timeout=120)
    assert holder.returncode == 0, stderr
    assert stdout.split() == ["done"] * 4
    items = _manifest(out)["items"]
    assert sorted(items) == [f"img_{i}.png" for i in range(4)]
    assert {e["status"] for e in items.values()} == {"done"}
    assert not (out / output_lock.LOCK_NAME).exists()  # released at the end
    assert {r.status for r in _batch(inputs, out, texture)} == {"skipped"}


def test_stale_and_foreign_locks(inputs, texture, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    lock = out / output_lock.LOCK_NAME
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    owner = {"host": socket.gethostname(), "pid": gone.pid, "process_start": 1.0,
             "started": "yesterday", "token": "x"}  # fmt: skip
    lock.write_text(json.dumps(owner))  # a killed batch's lock: its process is gone
    assert {r.status for r in _batch(inputs, out, texture)} == {"done"}
    assert not lock.exists()
    # a batch on another machine (a shared folder): never guessed stale
    lock.write_text(json.dumps({**owner, "host": "elsewhere.example", "pid": 1}))
    with pytest.raises(ValueError, match="pid 1 on elsewhere.example") as refused:
        _batch(inputs, out, texture, overwrite=True)
    assert str(lock) in str(refused.value)  # how to remove it when it is stale
    # debris: a lock file without contents, older than a few seconds
    lock.write_text("")
    os.utime(lock, (time.time() - 60, time.time() - 60))
    assert {r.status for r in _batch(inputs, out, texture)} == {"skipped"}


def test_a_batch_planned_before_another_wrote_there_starts_again(inputs, texture, tmp_path):
    out = tmp_path / "out"
    planned = _batch(inputs, out, texture)  # planned, not started
    assert [r.status for r in _batch(inputs, out, texture)] == ["done"] * 4
    with pytest.raises(ValueError, match="after this one was planned"):
        next(planned)
    assert not (out / output_lock.LOCK_NAME).exists()
    assert {r.status for r in _batch(inputs, out, texture)} == {"skipped"}


# --------------------------------------------------------------------------- 2: outputs on inputs
def _bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_an_output_that_is_an_input_is_refused_whatever_the_flags(inputs, texture, tmp_path):
    originals = _bytes(inputs)
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="is the input"):  # batch same -o same
            _batch(inputs, inputs, texture, overwrite=overwrite)
    link = tmp_path / "link"
    link.symlink_to(inputs, target_is_directory=True)
    with pytest.raises(ValueError, match="is the input"):  # the same folder through a link
        _batch(inputs, link, texture, overwrite=True)
    # an output subfolder that the input glob reaches: sub/img_9.png is an input and an output
    (inputs / "sub").mkdir()
    iio.imwrite(inputs / "sub" / "img_9.png", _image(5))
    with pytest.raises(ValueError, match="is the input"):
        _batch(str(inputs / "**" / "img_9.png"), inputs / "sub", texture, overwrite=True)
    (tmp_path / "styles").mkdir()
    style = tmp_path / "styles" / "img_1.png"  # a style where an output would go
    style.write_bytes(texture.read_bytes())
    with pytest.raises(ValueError, match="is the input"):
        _batch(inputs, tmp_path / "styles", style, overwrite=True)
    assert _bytes(inputs) == originals


def test_cli_transfer_and_warp_never_write_over_an_input(inputs, texture, tmp_path, capsys):
    content = inputs / "img_0.png"
    original = content.read_bytes()
    landmarks = tmp_path / "landmarks.csv"
    gs.write_bigwarp_csv(landmarks, [[5, 5], [5, 25], [25, 5], [25, 25]],
                         [[6, 5], [5, 26], [24, 6], [26, 25]])  # fmt: skip
    link = tmp_path / "link.png"
    link.symlink_to(content)
    for output in (content, link):
        for argv in (
            ["transfer", content, "--texture", texture, "-o", output, "--backbone", "random",
             "--size", "24", "--levels", "1", "--iterations", "1", "--overwrite"],
            ["transfer", content, "--texture", texture, "-o", tmp_path / "o.png",
             "--warped-output", output, "--geometry", texture, "--overwrite"],
            ["warp", content, "--landmarks", landmarks, "-o", output, "--overwrite"],
            ["warp", content, "--landmarks", landmarks, "-o", output],
        ):  # fmt: skip
            assert cli.main([str(a) for a in argv]) == 2
            error = capsys.readouterr().err.strip().splitlines()
            assert len(error) == 1 and "is the input" in error[0], error
    assert content.read_bytes() == original and link.is_symlink()
    assert not (tmp_path / "o.png").exists()


# --------------------------------------------------------------------------- 3: literal names
def test_a_file_name_with_brackets_is_taken_literally(texture, tmp_path):
    folder = tmp_path / "br"
    folder.mkdir()
    iio.imwrite(folder / "photo [edited].png", _image(1))
    iio.imwrite(folder / "photo e.png", _image(7))  # what the name means as a glob
    out = tmp_path / "out"
    results = list(_batch(str(folder / "photo [edited].png"), out, texture))
    assert [(r.output, r.status) for r in results] == [("photo [edited].png", "done")]
    assert _manifest(out)["items"]["photo [edited].png"]["source"] == str(
        folder / "photo [edited].png"
    )
    assert not (out / "photo e.png").exists()
    # a pattern that is not a file name is still a glob
    items, _ = media.collect_inputs(str(folder / "photo [e]*.png"))
    assert [i.output for i in items] == ["photo e.png"]


# --------------------------------------------------------------------------- 5: kill before journal
def test_a_kill_between_writing_an_output_and_journalling_it_does_not_block_resume(
    inputs, texture, tmp_path, monkeypatch
):
    from napari_geostyle.core.manifest import JOURNAL_NAME, Manifest

    class Killed(BaseException):
        pass

    record = Manifest.record

    def killed_after_the_write(self, entry):
        if entry["output"] == "img_2.png" and entry["status"] == "done":
            raise Killed  # img_2.png is in place; its entry never reaches the journal
        record(self, entry)

    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        patch.setattr(Manifest, "record", killed_after_the_write)
        patch.setattr(Manifest, "save", lambda self: None)  # a kill: no final save either
        with pytest.raises(Killed):
            list(_batch(inputs, out, texture))
    assert (out / "img_2.png").is_file() and not (out / "manifest.json").exists()
    written = (out / "img_2.png").read_bytes()
    statuses = {r.output: r.status for r in _batch(inputs, out, texture)}  # no overwrite needed
    assert statuses["img_2.png"] == "done" and len(statuses) == 4
    assert (out / "img_2.png").read_bytes() == written  # the same result, redone
    assert {e["status"] for e in _manifest(out)["items"].values()} == {"done"}
    # a file that is not what the journal says was being written is still not replaced
    key = _manifest(out)["items"]["img_1.png"]["key"]
    pending = {"output": "img_1.png", "kind": "item", "status": "pending", "key": key + "x",
               "sha256": "0" * 64}  # fmt: skip
    (out / JOURNAL_NAME).write_text(json.dumps(pending) + "\n")
    with pytest.raises(ValueError, match="not made by this batch"):
        _batch(inputs, out, texture)


# --------------------------------------------------------------------------- 8: bad manifests
FORMAT = '"format": "napari-geostyle batch manifest"'


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("manifest.json", "[]"),
        ("manifest.json", "null"),
        ("manifest.json", "5"),
        ("manifest.json", '{"format": "napari-geostyle batch manifest", "items": {"img'),  # cut
        ("manifest.json", "{" + FORMAT + ', "items": []}'),
        ("manifest.json", "{" + FORMAT + ', "items": {"img_0.png": 5}}'),
        ("manifest.json", "{" + FORMAT + ', "items": {"img_0.png": {"timings": [1]}}}'),
        ("manifest.json", "{" + FORMAT + ', "sequences": "x"}'),
        ("manifest.json", '{"something": "else"}'),
        (".manifest-journal.jsonl", "5\n"),
        (".manifest-journal.jsonl", '{"no": "output"}\n'),
        (".manifest-journal.jsonl", 'not json\n{"output": "img_0.png"}\n'),
        (".manifest-journal.jsonl", '{"output": "img_0.png", "status": 1}\n'),
    ],
)
def test_a_corrupt_or_hand_edited_manifest_is_one_clear_error(
    name, text, inputs, texture, tmp_path, capsys
):
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_text(text)
    with pytest.raises(ValueError, match="the manifest is unreadable: ") as refused:
        _batch(inputs, out, texture)
    assert name in str(refused.value) and "--overwrite" in str(refused.value)
    argv = ["batch", str(inputs), "-o", str(out), "--texture", str(texture), "--threads",
            "--device", "cpu", "--backbone", "random", "--size", "24"]  # fmt: skip
    capsys.readouterr()
    assert cli.main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: the manifest is unreadable: ")


def test_a_journal_line_cut_short_by_a_kill_is_still_fine(inputs, texture, tmp_path):
    out = tmp_path / "out"
    assert {r.status for r in _batch(inputs, out, texture)} == {"done"}
    (out / ".manifest-journal.jsonl").write_text('{"output": "img_0.png", "sta')
    assert {r.status for r in _batch(inputs, out, texture)} == {"skipped"}


# --------------------------------------------------------------------------- 9: unwritable folders
def test_an_unwritable_output_folder_is_found_before_any_work(inputs, texture, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match="cannot write to the output folder"):
        _batch(inputs, blocker / "out", texture)  # its parent is a file
    argv = ["batch", str(inputs), "-o", str(tmp_path / "ro" / "out"), "--texture", str(texture),
            "--threads", "--device", "cpu", "--backbone", "random", "--size", "24"]  # fmt: skip
    (tmp_path / "ro").mkdir()
    os.chmod(tmp_path / "ro", 0o555)
    try:
        if os.access(tmp_path / "ro", os.W_OK):  # root: a read-only mode does not stop it
            pytest.skip("this user writes to read-only folders (root)")
        capsys.readouterr()
        assert cli.main(argv) == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and error[0].startswith("error: cannot write to the output folder")
        assert not (tmp_path / "ro" / "out").exists()
    finally:
        os.chmod(tmp_path / "ro", 0o755)


def test_a_probe_that_cannot_be_written_refuses_the_batch_and_leaves_no_folder(
    inputs, texture, tmp_path, monkeypatch
):
    import tempfile

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    with pytest.raises(ValueError, match="cannot write to the output folder .*Permission denied"):
        _batch(inputs, tmp_path / "new" / "out", texture)
    assert not (tmp_path / "new").exists()


def test_a_full_disk_records_every_output_not_done_and_stops_with_one_line(
    inputs, texture, tmp_path, monkeypatch, capsys
):
    import errno

    write_atomic, written = media.write_atomic, []

    def full_after_one(path, data, *args, **kwargs):
        if Path(path).name.startswith("img_"):  # an output: the disk fills up after the first
            if written:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
            written.append(path)
        return write_atomic(path, data, *args, **kwargs)

    out = tmp_path / "out"
    argv = ["batch", str(inputs), "-o", str(out), "--texture", str(texture), "--threads",
            "--workers", "1", "--device", "cpu", "--backbone", "random", "--size", "24",
            "--levels", "1", "--iterations", "1"]  # fmt: skip
    with monkeypatch.context() as patch:
        patch.setattr(media, "write_atomic", full_after_one)
        capsys.readouterr()
        assert cli.main(argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "no space left" in errors[0] and "3 of 4 outputs" in errors[0]
    assert "Traceback" not in err
    items = _manifest(out)["items"]
    assert sorted(items) == [f"img_{i}.png" for i in range(4)]
    statuses = sorted(e["status"] for e in items.values())
    assert statuses == ["done", "failed", "failed", "failed"]
    assert all("no space left" in e["error"] for e in items.values() if e["status"] == "failed")
    assert cli.main(argv) == 0  # space again: resumed
    assert "3 done, 1 skipped" in capsys.readouterr().err
    assert {e["status"] for e in _manifest(out)["items"].values()} == {"done"}


# --------------------------------------------------------------------------- 12: devices
@pytest.mark.parametrize("device", ["bogus", "cuda:3", "tpu", "cuda:-1", "mps:x"])
def test_a_bad_device_is_one_error_before_any_work(device, inputs, texture, tmp_path, capsys):
    import torch

    if device == "cuda:3" and torch.cuda.device_count() > 3:
        pytest.skip("this machine has a cuda:3")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="device"):
        gs.batch_geometric_style_transfer(inputs, out, None, texture, device=device, **TEXTURE)
    argv = ["batch", str(inputs), "-o", str(out), "--texture", str(texture), "--threads",
            "--device", device, "--backbone", "random", "--size", "24"]  # fmt: skip
    capsys.readouterr()
    assert cli.main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error:") and "device" in error[0]
    assert not out.exists()


def test_a_remote_cluster_checks_only_that_the_device_is_a_name(inputs, texture, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="unknown device"):
        gs.batch_geometric_style_transfer(inputs, out, None, texture, client=object(),
                                          device="bogus", **TEXTURE)  # fmt: skip
    run = gs.batch_geometric_style_transfer(inputs, out, None, texture, client=object(),
                                            device="cuda:3", **TEXTURE)  # fmt: skip
    run.close()  # the workers' GPUs are theirs: not checked here


# --------------------------------------------------------------------------- 13: CSV injection
def test_manifest_csv_cells_are_never_formulas(texture, tmp_path):
    import csv

    folder = tmp_path / "in"
    folder.mkdir()
    names = ["=HYPERLINK(1).png", "+1.png", "-2.png", "@SUM(A1).png", "plain.png"]
    for i, name in enumerate(names):
        iio.imwrite(folder / name, _image(i))
    out = tmp_path / "out"
    assert {r.status for r in _batch(folder, out, texture)} == {"done"}
    rows = list(csv.DictReader((out / "manifest.csv").open(encoding="utf-8", newline="")))
    cells = {row["output"] for row in rows}
    assert cells == {"'=HYPERLINK(1).png", "'+1.png", "'-2.png", "'@SUM(A1).png", "plain.png"}
    for row in rows:  # every text cell, the source path and the error included
        assert not any(str(v).startswith(("=", "+", "-", "@", "\t", "\r")) for v in row.values())
    assert set(_manifest(out)["items"]) == set(names)  # the JSON keeps the exact names


# --------------------------------------------------------------------------- 14: globs
def test_a_glob_never_picks_up_the_batch_manifest(inputs, texture, tmp_path):
    styled, again = tmp_path / "styled", tmp_path / "again"
    assert {r.status for r in _batch(inputs, styled, texture)} == {"done"}
    assert (styled / "manifest.json").is_file() and (styled / "manifest.csv").is_file()
    pattern = str(styled / "*")  # style the outputs once more: the manifests are not inputs
    first = {r.output: r.status for r in _batch(pattern, again, texture)}
    assert first == {f"img_{i}.png": "done" for i in range(4)}
    assert {r.status for r in _batch(pattern, again, texture)} == {"skipped"}  # a rerun resumes
    with pytest.raises(ValueError, match="no image or video files match"):
        media.collect_inputs(str(styled / "manifest.*"))


# --------------------------------------------------------------------------- 15: worker counts
def test_too_many_local_workers_are_refused_with_the_limit(inputs, texture, tmp_path, capsys):
    import torch

    from napari_geostyle.core import batch

    limit = batch.WORKERS_PER_CORE * max(os.cpu_count() or 1, torch.cuda.device_count())
    with pytest.raises(ValueError, match=f"workers=2000 .* at most {limit}"):
        gs.batch_geometric_style_transfer(inputs, tmp_path / "out", None, texture, workers=2000,
                                          processes=False, device="cpu", **TEXTURE)  # fmt: skip
    argv = ["batch", str(inputs), "-o", str(tmp_path / "out"), "--texture", str(texture),
            "--threads", "--workers", str(limit + 1), "--device", "cpu"]  # fmt: skip
    capsys.readouterr()
    assert cli.main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and f"at most {limit}" in error[0]
    assert not (tmp_path / "out").exists()
    run = gs.batch_geometric_style_transfer(inputs, tmp_path / "out", None, texture,
                                            workers=limit, **TEXTURE)  # fmt: skip
    run.close()  # the limit itself is accepted


# --------------------------------------------------------------------------- 16: planning time
@pytest.mark.slow
def test_planning_is_linear_in_the_number_of_inputs(tmp_path):
    """Quadratic planning (names.count per input) took 16 s for 40k files; linear planning of
    100k inputs takes about 5 s on a loaded 2-core machine. Timed as a ratio, so that a slow
    machine does not fail it: ten times the inputs must cost well under a hundred times."""
    style = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    image = np.zeros((2, 2, 3), np.uint8)

    def planned(count):
        started = time.perf_counter()
        run = gs.batch_geometric_style_transfer([image] * count, tmp_path / f"out{count}", None,
                                                style, **TEXTURE, **THREADS)  # fmt: skip
        seconds = time.perf_counter() - started
        assert run.total == count
        run.close()
        return seconds

    small = min(planned(4000) for _ in range(2))
    large = planned(40000)
    assert large < 25 * small, (small, large)  # linear: about 10x; quadratic: about 100x


# --------------------------------------------------------------------------- 19: symlinked frames
def test_a_symlinked_frames_folder_that_leaves_the_output_folder_is_refused(texture, tmp_path):
    stack = np.stack([_image(i) for i in range(3)])
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "stack_frames").symlink_to(elsewhere, target_is_directory=True)
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="outside the output folder"):
            _batch(stack, out, texture, overwrite=overwrite)
    assert list(elsewhere.iterdir()) == []
    # a link that stays inside the output folder is only another name for a folder of it
    (out / "stack_frames").unlink()
    (out / "real").mkdir()
    (out / "stack_frames").symlink_to(out / "real", target_is_directory=True)
    assert {r.status for r in _batch(stack, out, texture)} == {"done"}
    assert len(list((out / "real").glob("stack_*.png"))) == 3
