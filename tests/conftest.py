"""Shared fixtures: small test images and a napari viewer holding them (widget tests)."""

import numpy as np
import pytest


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
