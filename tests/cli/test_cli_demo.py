"""The README's main job: ``napari-geostyle demo --screenshot`` opens napari, runs the warp and
saves the window (a subprocess: the demo runs napari's own event loop)."""

import os
import subprocess
import sys

import numpy as np
import pytest


@pytest.mark.slow
def test_demo_runs_the_warp_and_saves_a_screenshot(tmp_path):
    import imageio.v3 as iio

    shot = tmp_path / "demo.png"
    code = "import sys; from napari_geostyle.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run(
        [sys.executable, "-c", code, "demo", "--screenshot", str(shot)],
        check=False, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS="2"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    image = iio.imread(shot)
    assert image.ndim == 3 and image.shape[0] > 400 and image.shape[1] > 600
    assert np.ptp(image[..., :3]) > 100  # the window was drawn, not a blank frame
