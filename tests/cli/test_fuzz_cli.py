"""Fuzzing every command: hostile options and files; exit 0, or 2 with one ``error:`` line and
nothing left behind.

The contract, the settings and the strategies are in tests/fuzzing.py.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from pathlib import Path
from unittest import mock

import imageio.v3 as iio
import numpy as np
import pytest
from fuzzing import (
    CONTENT,
    FEW,
    FEWER,
    FUZZ,
    RNG,
    STYLE,
    accepts,
    half,
    must_accept,
    note,
    option_text,
    with_one_hostile,
)
from hypothesis import given
from hypothesis import strategies as st

import napari_geostyle as gs
from napari_geostyle.cli import main


@contextlib.contextmanager
def cli_folder():
    """A temporary folder with small input files, readable and not."""
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        iio.imwrite(folder / "content.png", CONTENT)
        iio.imwrite(folder / "style.png", STYLE)
        (folder / "images").mkdir()
        iio.imwrite(folder / "images" / "a.png", (RNG.random((64, 64, 3)) * 255).astype(np.uint8))
        gs.write_bigwarp_csv(folder / "landmarks.csv", [[5, 5], [5, 40], [35, 5], [35, 40]],
                             [[6, 5], [5, 41], [34, 6], [36, 40]])  # fmt: skip
        # a landmark set (eval-geometry --pairs), the same cut short, and one missing an array
        corners = [[8.0, 8.0], [8.0, 39.0], [31.0, 8.0], [31.0, 39.0]]
        np.savez(folder / "set.npz", images=np.stack([CONTENT, CONTENT[:, ::-1]]),
                 landmarks=np.array([corners, corners]))  # fmt: skip
        data = (folder / "set.npz").read_bytes()
        (folder / "cut.npz").write_bytes(data[: len(data) // 2])
        np.savez(folder / "partial.npz", images=np.stack([CONTENT, CONTENT]))
        yield folder


def run_cli(argv, outputs):
    """``main(argv)`` in this process; checks the exit contract and returns (status, stdout)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    existed = {path: path.exists() for path in outputs}
    with (contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr),
          warnings.catch_warnings()):  # fmt: skip
        warnings.simplefilter("ignore")
        status = main([str(arg) for arg in argv])
    err = stderr.getvalue()
    note(f"exit status {status}")
    assert "Traceback" not in err, err
    assert status == 0 or not must_accept(), f"a valid command failed ({status}): {err}"
    if status == 2:
        errors = [line for line in err.strip().splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err
        for path in outputs:
            if not existed[path]:
                assert not path.exists(), f"{path} was left behind after an error"
    else:
        assert status in (0, 1), (status, err)
    from napari_geostyle.core.media import TEMP_MARK

    for path in outputs:  # the temporary siblings of atomic writes (media.write_atomic)
        siblings = path.parent.iterdir() if path.parent.is_dir() else ()
        partial = [p.name for p in siblings if TEMP_MARK in p.name]
        assert not partial, partial
    return status, stdout.getvalue()


def hostile_text():
    """An option's value on the command line that is probably wrong."""
    return st.one_of(
        st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1e309", "", "x", "--", str(2**70),
                         "0x10", " 1", "1.5", "--help"]),
        option_text(),
    )  # fmt: skip


def file_argument():
    """A path argument: a good file, a missing one, a folder, or random bytes as a file."""
    return st.one_of(
        st.sampled_from(["content.png", "style.png", "missing.png", "images", "", "/dev/null",
                         "set.npz", "cut.npz", "partial.npz", "landmarks.csv"]),
        st.tuples(st.binary(max_size=64), st.sampled_from([".png", ".jpg", ".tif", ".csv",
                                                           ".npz", ".pt", ""])),
    )  # fmt: skip


def materialise(argument, folder):
    """A file_argument() value as a path in ``folder`` (random bytes are written there)."""
    if isinstance(argument, tuple):
        data, suffix = argument
        path = folder / f"random{suffix}"
        path.write_bytes(data)
        return str(path)
    return str(folder / argument) if argument and not argument.startswith("/") else argument


def options_argv(pairs):
    argv = []
    for flag, value in pairs.items():
        argv += [flag] if value is True else [flag, value]
    return argv


@accepts(options={"content": "content.png", "--landmarks": "landmarks.csv", "-o": "out.png"})
@FUZZ
@given(options=with_one_hostile(
    {"--regularization": st.sampled_from(["0", "0.5"]),
     "--strength": st.sampled_from(["0", "0.5", "1"]),
     "--padding": st.sampled_from(["border", "zeros"]), "--device": st.just("cpu"),
     "--affine": st.just(True), "--overwrite": st.just(True)},
    {"content": file_argument(), "--landmarks": file_argument(),
     "-o": st.sampled_from(["out.tif", "out.txt", "no/out.png", "images", "out"]),
     "--regularization": hostile_text(), "--strength": hostile_text(),
     "--padding": hostile_text(), "--device": hostile_text()},
    required={"content": st.just("content.png"), "--landmarks": st.just("landmarks.csv"),
              "-o": st.just("out.png")},
))  # fmt: skip
def test_cli_warp(options):
    with cli_folder() as folder:
        content = materialise(options.pop("content"), folder)
        out = folder / options.pop("-o")
        options["--landmarks"] = materialise(options["--landmarks"], folder)
        argv = ["warp", content, "-o", out, *options_argv(options)]
        status, _ = run_cli(argv, [out])
        if status == 0:
            assert iio.imread(out).shape[:2] == iio.imread(content).shape[:2]


@accepts(content="content.png", texture=["style.png"], output="out.png", options={})
@FUZZ
@given(
    content=half(st.just("content.png"), file_argument()),
    texture=half(st.just(["style.png"]), st.lists(file_argument(), max_size=2)),
    output=half(st.just("out.png"), st.sampled_from(["out.jpg", "out.txt", "no/out.png",
                                                      "images"])),
    options=with_one_hostile(
        {"--size": st.sampled_from(["16", "24"]), "--levels": st.sampled_from(["1", "2"]),
         "--iterations": st.sampled_from(["1", "2"]),
         "--optimizer": st.sampled_from(["lbfgs", "adam"]), "--style-weight": st.just("30"),
         "--content-weight": st.just("1"), "--texture-weights": st.just("1"),
         "--preset": st.sampled_from(["fast", "quality"]), "--device": st.just("cpu"),
         "--seed": st.sampled_from(["0", "3"]), "--preserve-color": st.just(True),
         "--geometry": st.just("style.png"), "--strength": st.sampled_from(["0", "0.5"]),
         "--warped-output": st.just("warped.png"), "--overwrite": st.just(True)},
        {"--size": hostile_text(), "--levels": hostile_text(), "--iterations": hostile_text(),
         "--optimizer": hostile_text(), "--style-weight": hostile_text(),
         "--content-weight": hostile_text(), "--texture-weights": hostile_text(),
         "--preset": hostile_text(), "--backbone": hostile_text(), "--device": hostile_text(),
         "--seed": hostile_text(), "--model": hostile_text(), "--method": hostile_text(),
         "--strength": hostile_text(), "--geometry": file_argument(),
         "--warped-output": st.sampled_from(["out.png", "no/w.png", "w.txt", "images"])},
    ),
)  # fmt: skip
def test_cli_transfer(content, texture, output, options):
    with cli_folder() as folder:
        content = materialise(content, folder)
        texture = [materialise(t, folder) for t in texture]
        out = folder / output
        options = {"--size": "24", "--levels": "1", "--iterations": "1", "--backbone": "random",
                   "--model": "affine", **options}  # fmt: skip
        for flag in ("--geometry", "--warped-output"):
            if flag in options:
                options[flag] = materialise(options[flag], folder)
        warped = Path(options.get("--warped-output") or folder / "none")
        argv = ["transfer", content, "--texture", *texture, "-o", out, *options_argv(options)]
        status, _ = run_cli(argv, [out, warped])
        if status == 0:
            result = iio.imread(out)
            assert result.ndim == 3 and result.shape[2] == 3
            assert max(result.shape[:2]) == int(options["--size"])


@accepts(flags=[])
@FUZZ
@given(flags=st.lists(st.sampled_from(["--download", "--path", "--x", "-", "extra"]),
                      max_size=3))  # fmt: skip
def test_cli_weights(flags):
    """GEOSTYLE_OFFLINE is set for the tests: --download is refused, never attempted."""
    status, out = run_cli(["weights", *flags], [])
    if "--download" in flags:
        assert status == 2
    elif status == 0 and "--path" not in flags:
        assert "looked for" in out


def _below(text, limit):
    """Not a whole number argparse reads as ``limit`` or more (those only make training long)."""
    try:
        return int(text) < limit
    except ValueError:
        return True


@accepts(images_argument=["images"], out="m.pt", options={"--steps": "1"})
@FEWER
@given(
    images_argument=st.one_of(st.just(["images"]), st.lists(file_argument(), min_size=1,
                                                            max_size=2)),
    out=st.sampled_from(["m.pt", "m.pt", "no/m.pt", "images", "m"]),
    options=with_one_hostile(
        {"--model": st.sampled_from(["affine", "tps"]), "--batch-size": st.sampled_from(["2", "3"]),
         "--lr": st.just("0.001"), "--loss": st.sampled_from(["grid", "mse"]),
         "--seconds": st.just("5"), "--device": st.just("cpu"), "--seed": st.just("1"),
         "--checkpoint-every": st.just("60"), "--resume": st.just(True),
         "--overwrite": st.just(True)},
        {"--steps": hostile_text().filter(lambda s: _below(s, 3)),
         "--model": hostile_text(), "--batch-size": hostile_text().filter(lambda s: _below(s, 5)),
         # a huge valid lr diverges: test_cli_train_geometry_refuses_a_diverged_run
         "--lr": st.sampled_from(["nan", "inf", "-1", "0", "x", "", "1e309", "0x1"]),
         "--loss": hostile_text(), "--seconds": hostile_text().filter(
             lambda s: s.strip().lower() not in ("inf", "1e309")),
         "--device": hostile_text(), "--seed": hostile_text(), "--val-count": hostile_text(),
         "--checkpoint-every": hostile_text(), "--trunk": hostile_text(),
         "--val-images": file_argument()},
        required={"--steps": st.sampled_from(["1", "2"])},
    ),
)  # fmt: skip
@pytest.mark.slow
def test_cli_train_geometry(images_argument, out, options):
    """Training steps, batch sizes and seconds stay small (valid large ones only take long)."""
    with cli_folder() as folder:
        paths = [materialise(i, folder) for i in images_argument]
        out_path = folder / out
        if "--val-images" in options:
            options["--val-images"] = materialise(options["--val-images"], folder)
        argv = ["train-geometry", "--images", *paths, "--out", out_path, "--val-count", "1",
                *options_argv(options)]  # fmt: skip
        figure = out_path.with_suffix(".validation.png")
        status, _ = run_cli(argv, [out_path, figure])
        if status == 0:
            assert out_path.is_file() and figure.is_file()


def test_cli_train_geometry_refuses_a_diverged_run():
    """A learning rate that makes the weights NaN is an error, with no checkpoint written
    (the evaluation after training refuses such a checkpoint, so the run must not end in one)."""
    with cli_folder() as folder:
        out = folder / "m.pt"
        status, _ = run_cli(["train-geometry", "--images", folder / "images", "--steps", "2",
                             "--batch-size", "2", "--lr", "1e30", "--out", out, "--val-count",
                             "1"], [out])  # fmt: skip
        assert status == 2


@accepts(source=("--pairs", ["set.npz"]), options={})
@FEW
@given(
    source=st.one_of(
        st.tuples(st.just("--images"), st.one_of(st.just(["images"]),
                                                  st.lists(file_argument(), min_size=1,
                                                           max_size=2))),
        st.tuples(st.just("--pairs"), half(st.just(["set.npz"]),
                                            file_argument().map(lambda f: [f]))),
    ),
    options=with_one_hostile(
        {"--model": st.sampled_from(["affine", "tps"]), "--seed": st.just("0"),
         "--json": st.just("report.json"), "--figure": st.just("figure.png"),
         "--figure-pairs": st.just("1"), "--device": st.just("cpu"),
         "--overwrite": st.just(True)},
        {"--model": hostile_text(), "--count": hostile_text(),
         "--pairs-per-image": hostile_text(), "--seed": hostile_text(), "--init": hostile_text(),
         "--json": st.sampled_from(["no/r.json", "images", ""]),
         "--figure": st.sampled_from(["figure.txt", "no/f.png", "images"]),
         "--figure-pairs": hostile_text(), "--device": hostile_text(),
         "--protocol": hostile_text(), "--checkpoint": file_argument(),
         "--trunk": hostile_text(), "--image-root": file_argument()},
    ),
)  # fmt: skip
def test_cli_eval_geometry(source, options):
    with cli_folder() as folder:
        flag, files = source
        paths = [materialise(f, folder) for f in files]
        for key in ("--json", "--figure", "--checkpoint", "--image-root"):
            if key in options:
                options[key] = materialise(options[key], folder)
        # one pair, one pass of the network: the cheapest evaluation there is
        options = {"--method": "network", "--pairs-per-image": "1", "--init": "identity",
                   "--count": "1", **options}  # fmt: skip
        outputs = [Path(options[k]) for k in ("--json", "--figure") if options.get(k)]
        status, out = run_cli(["eval-geometry", flag, *paths, *options_argv(options)], outputs)
        if status == 0:
            assert "network" in out
            for path in outputs:
                assert path.is_file()


class _ReachedNapari(Exception):
    """The demo got past its checks and would open a window now."""


@accepts(screenshot=None, options={})
@FUZZ
@given(
    screenshot=st.one_of(st.none(), st.sampled_from(["shot.png", "shot.txt", "no/shot.png",
                                                     "images", "content.png"]), option_text()),
    options=with_one_hostile(
        {"--model": st.just("affine"), "--method": st.just("network"),
         "--overwrite": st.just(True)},
        {"--model": hostile_text(), "--method": hostile_text(), "--unknown": hostile_text()},
    ),
)  # fmt: skip
def test_cli_demo_checks_before_napari(screenshot, options):
    pytest.importorskip("napari")
    with cli_folder() as folder, mock.patch("napari.Viewer", side_effect=_ReachedNapari):
        argv = ["demo", *options_argv(options)]
        outputs = []
        if screenshot is not None:
            shot = Path(materialise(screenshot, folder))
            argv += ["--screenshot", shot]
            outputs.append(shot)
        try:
            run_cli(argv, outputs)
        except _ReachedNapari:  # accepted: the screenshot path must then be writable
            if screenshot:
                assert shot.parent.is_dir() and not shot.is_dir()
        else:
            assert not must_accept(), "a valid demo command never reached napari"


@accepts(inputs=["content.png"], options={}, hostile=None, hostile_value=None)
@FEW
@given(
    inputs=st.one_of(st.just(["content.png"]), st.lists(file_argument(), min_size=1,
                                                        max_size=2)),
    options=st.fixed_dictionaries({}, optional={
        "--geometry": file_argument(), "--texture": file_argument(),
        "--model": st.just("affine"), "--strength": st.just("1"), "--size": st.just("24"),
        "--levels": st.just("1"), "--iterations": st.just("1"), "--chunk": st.just("1"),
        "--smooth-frames": st.just("1"), "--smooth-kernel": st.just("box"),
        "--device": st.just("cpu"), "--seed": st.just("0"), "--preset": st.just("fast"),
        "--backbone": st.just("random"),
    }),
    hostile=st.sampled_from(["--workers", "--chunk", "--smooth-frames", "--size", "--levels",
                             "--strength", "--model", "--scheduler", "--device", "--geometry",
                             "--styles-csv", "--iterations", "--backbone", "--preset"]),
    hostile_value=st.data(),
)  # fmt: skip
def test_cli_batch_refuses_hostile_options(inputs, options, hostile, hostile_value):
    """Every drawn example carries one value that must be refused (a real run starts a
    cluster: tests/core/batch/test_batch.py runs those), and is refused with one line before
    anything runs. The one valid example (``hostile=None``) must run to the end."""
    refused = {
        "--workers": st.sampled_from(["0", "-1"]), "--chunk": st.sampled_from(["0", "-1"]),
        "--smooth-frames": st.sampled_from(["0", "2", "-3"]),
        "--size": st.sampled_from(["nan", "0", "-5", "x"]),
        "--levels": st.sampled_from(["0", "9", "x"]),
        "--strength": st.sampled_from(["nan", "2", "-0.5", "inf"]),
        "--model": st.sampled_from(["rigid", ""]),
        "--scheduler": st.sampled_from(["moon", "127.0.0.1"]),
        "--device": st.sampled_from(["tpu", "cuda:99"]),
        "--geometry": st.sampled_from(["missing.png", "images", ("", ".png")]),
        "--styles-csv": st.sampled_from(["missing.csv", ("a,b\n\xff", ".csv")]),
        "--iterations": st.sampled_from(["0", "-1"]),
        "--backbone": st.sampled_from(["missing.pth", "resnet"]),
        "--preset": st.sampled_from(["slow", ""]),
    }  # fmt: skip
    if hostile is None:  # the valid example: a tiny texture run on threads
        options = {**options, "--texture": "style.png", "--size": "24", "--levels": "1",
                   "--iterations": "1", "--backbone": "random"}  # fmt: skip
    else:
        options = {**options, hostile: hostile_value.draw(refused[hostile])}
    if hostile in ("--size", "--levels", "--iterations", "--backbone", "--preset"):
        options["--texture"] = "style.png"  # texture options are used (and checked) with one
    with cli_folder() as folder:
        paths = [materialise(i, folder) for i in inputs]
        for flag in ("--geometry", "--texture", "--styles-csv"):
            if flag in options:
                value = options[flag]
                if isinstance(value, tuple) and isinstance(value[0], str):
                    value = (value[0].encode("utf-8", "surrogateescape"), value[1])
                options[flag] = materialise(value, folder)
        out = folder / "out"
        status, _ = run_cli(["batch", *paths, "-o", out, "--threads", "--workers", "1",
                             *options_argv(options)], [])  # fmt: skip
        if hostile is None:
            assert status == 0 and (out / "content.png").is_file()
            return
        assert status == 2
        assert not out.exists() or not any(p.suffix != ".json" for p in out.iterdir())
