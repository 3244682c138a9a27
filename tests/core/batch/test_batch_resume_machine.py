"""Batch interruption and resume as a hypothesis state machine: a batch stopped at any point,
with or without its final manifest written, and run again any number of times, ends with the
same output bytes and the same manifest entries as a batch that ran through once."""

import json
import shutil

import imageio.v3 as iio
import numpy as np
import pytest

pytest.importorskip("distributed")
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import napari_geostyle as gs
from napari_geostyle.core import manifest as manifest_module

pytestmark = pytest.mark.slow  # every step runs a batch on Dask

TINY = {"backbone": "random", "size": 32, "levels": 1, "iterations": 2, "device": "cpu"}
THREADS = {"processes": False, "workers": 1}
COUNT = 4
# what an entry says about how a run went, not what it made: these differ between runs
RUN_FIELDS = {"timings", "worker", "finished", "models_loaded"}


def _image(i: int) -> np.ndarray:
    rows, cols = np.mgrid[0:40, 0:40]
    image = np.zeros((40, 40, 3), np.uint8)
    image[..., 0] = (30 + 5 * i + 150 * rows / 40).astype(np.uint8)
    image[(rows - 20) ** 2 + (cols - 8 - 6 * i) ** 2 < 50] = (220, 90, 30)
    return image


def _made(folder) -> dict:
    """Each output's bytes and its manifest entry without the run's own bookkeeping."""
    items = json.loads((folder / "manifest.json").read_text())["items"]
    return {
        name: (
            (folder / name).read_bytes(),
            {k: v for k, v in entry.items() if k not in RUN_FIELDS},
        )
        for name, entry in items.items()
    }


@pytest.fixture(scope="module")
def batch_case(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    inputs = root / "in"
    inputs.mkdir()
    for i in range(COUNT):
        iio.imwrite(inputs / f"img_{i}.png", _image(i))
    rows, cols = np.mgrid[0:32, 0:32]
    stripes = (((rows + cols) // 4) % 2 * 200 + 30).astype(np.uint8)
    iio.imwrite(root / "texture.png", np.stack([stripes, stripes // 2, 255 - stripes], -1))
    reference = root / "reference"
    done = list(gs.batch_geometric_style_transfer(inputs, reference, None, root / "texture.png",
                                                  **THREADS, **TINY))  # fmt: skip
    assert [r.status for r in done] == ["done"] * COUNT
    return inputs, root / "texture.png", _made(reference), root


def test_batch_interrupted_anywhere_resumes_to_the_uninterrupted_result(batch_case):
    inputs, texture, expected, root = batch_case
    runs = iter(range(10**6))

    class Interruptions(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.out = root / f"out{next(runs)}"
            shutil.rmtree(self.out, ignore_errors=True)

        def _run(self):
            return gs.batch_geometric_style_transfer(inputs, self.out, None, texture,
                                                     **THREADS, **TINY)  # fmt: skip

        @rule(stop_after=st.integers(0, COUNT))
        def run_and_stop(self, stop_after):
            """A run stopped after ``stop_after`` results (the rest never started)."""
            run = self._run()
            try:
                for count, _ in enumerate(run, 1):
                    if count >= stop_after:
                        break
            finally:
                run.close()

        @rule()
        def lose_the_manifest(self):
            """A kill before the manifest was rewritten: the journal alone remains."""
            manifest = self.out / "manifest.json"
            if manifest.exists():
                manifest.unlink()

        @rule(cut=st.integers(1, 40))
        def cut_the_journal(self, cut):
            """A kill in the middle of a journal line."""
            journal = self.out / manifest_module.JOURNAL_NAME
            if journal.exists() and journal.stat().st_size > cut:
                data = journal.read_bytes()
                journal.write_bytes(data[: len(data) - cut])

        @invariant()
        def no_output_is_half_written(self):
            if self.out.exists():
                for path in self.out.glob("img_*.png"):
                    assert iio.imread(path).shape == (32, 32, 3), path

        def teardown(self):
            """However the runs were stopped, one more run finishes the batch exactly."""
            statuses = [r.status for r in self._run()]
            assert set(statuses) <= {"done", "skipped"}, statuses
            assert _made(self.out) == expected

    Interruptions.TestCase.settings = settings(
        max_examples=4, stateful_step_count=3, deadline=None, derandomize=True
    )
    Interruptions.TestCase().runTest()
