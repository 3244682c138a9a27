"""The texture solve's precision and CUDA-graph options: checked on any machine, and the forced
fallbacks run on a CUDA GPU (marked ``gpu``; skipped elsewhere)."""

import numpy as np
import pytest
import torch

from napari_geostyle.core import texture

TINY = {
    "backbone": "random",
    "device": "cpu",
    "size": 32,
    "levels": 1,
    "iterations": 2,
    "preview_every": 0,
}


def _images():
    rng = np.random.default_rng(0)
    return rng.random((32, 32, 3)).astype(np.float32), rng.random((32, 32, 3)).astype(np.float32)


def test_unknown_precision_is_refused_when_called():
    content, style = _images()
    with pytest.raises(ValueError, match="precision must be one of"):
        texture.iter_texture_transfer(content, style, precision="half", **TINY)


def test_half_precision_on_the_cpu_is_a_clear_error():
    content, style = _images()
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        texture.transfer_texture(content, style, precision="bf16", **TINY)


def test_cpu_runs_fp32_whatever_auto_and_graphs_say():
    content, style = _images()
    auto = texture.transfer_texture(content, style, **TINY)
    forced = texture.transfer_texture(content, style, precision="fp32", cuda_graphs=True, **TINY)
    np.testing.assert_array_equal(auto, forced)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(
    "precision, graphs",
    [("fp16", True), ("fp16", False), ("bf16", False), ("fp32", False), ("auto", None)],
)
def test_forced_fallbacks_run_and_stay_close_to_fp32(precision, graphs, gpu_texture_options):
    content, style = _images()
    options = gpu_texture_options
    reference = texture.transfer_texture(content, style, precision="fp32", cuda_graphs=False,
                                         **options)  # fmt: skip
    steps = list(texture.iter_texture_transfer(content, style, precision=precision,
                                               cuda_graphs=graphs, **options))  # fmt: skip
    image = steps[-1].image
    assert np.isfinite(image).all() and steps[-1].loss < steps[0].loss
    assert np.abs(image - reference).mean() < 0.05
