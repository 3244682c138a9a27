"""Shared fixtures: small test images and a napari viewer holding them (widget tests)."""

import os

import numpy as np
import pytest

try:  # hypothesis comes with the testing extra
    from hypothesis import settings as _hypothesis_settings
except ImportError:  # pragma: no cover
    pass
else:
    # CI (the CI variable set): the same examples on every run, so a red build is reproducible
    # and never depends on the draw; local runs keep exploring new examples each time.
    _hypothesis_settings.register_profile("ci", derandomize=True, database=None)
    if os.environ.get("CI"):
        _hypothesis_settings.load_profile("ci")


def pytest_sessionstart(session):
    """Load triton (torch's CUDA build brings it) before any test draws a napari canvas.

    Mesa's software OpenGL and triton each carry an LLVM; a process that loaded Mesa's first
    segfaults when a ``torch.optim`` optimiser imports triton (the geometry training tests do).
    The GUI's own paths never import it (``core/optim.py``); loaded first, both work, so the
    suite passes in any order and on any subset."""
    try:
        import triton  # noqa: F401
    except (ImportError, OSError, RuntimeError):  # a CPU-only torch, or none for this platform
        pass


@pytest.fixture(autouse=True)
def _isolated_weights(monkeypatch, tmp_path):
    """Tests never see VGG-19 weights that happen to be installed, and never download."""
    monkeypatch.setenv("GEOSTYLE_OFFLINE", "1")
    monkeypatch.setenv("GEOSTYLE_CACHE_DIR", str(tmp_path / "geostyle-cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv("GEOSTYLE_VGG19_WEIGHTS", raising=False)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One torch thread: on a shared 2-core machine two threads spin against other processes
    (and napari's worker threads) and run many times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _blob_image(size: int, center, radius: float, rgb: bool, seed: int) -> np.ndarray:
    """A bright disc with some texture on a darker ramp: structure a warp visibly moves."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    disc = ((rows - center[0]) ** 2 + (cols - center[1]) ** 2) < radius**2
    noise = np.random.default_rng(seed).random((size, size)).astype(np.float32)
    gray = 0.2 + 0.3 * cols / size + 0.4 * disc + 0.1 * noise
    image = np.clip(gray * 255, 0, 255).astype(np.uint8)
    if rgb:
        image = np.stack([image, image[:, ::-1], image.T], axis=-1)
    return image


@pytest.fixture
def gpu_texture_options():
    """Texture options of the CUDA tests (``test_texture_gpu``, ``test_texture_precision``): enough
    iterations per level for warm-up, CUDA-graph capture and several replays."""
    return {
        "backbone": "random",
        "device": "cuda",
        "size": 128,
        "levels": 2,
        "iterations": [12, 10],
        "preview_every": 0,
        "seed": 3,
    }


@pytest.fixture
def content_image():
    return _blob_image(64, (28, 34), 14, rgb=True, seed=0)


@pytest.fixture
def style_image():
    return _blob_image(64, (34, 28), 20, rgb=False, seed=1)


@pytest.fixture
def geo_viewer(make_napari_viewer_proxy, content_image, style_image):
    """A viewer with Image layers ``content`` (RGB) and ``style`` (gray)."""
    viewer = make_napari_viewer_proxy()
    viewer.add_image(content_image, name="content", rgb=True)
    viewer.add_image(style_image, name="style")
    return viewer
