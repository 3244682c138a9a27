"""napari-geostyle: geometric style transfer (Liu et al., arXiv:2007.05471) for napari.

The public API is resolved lazily, so ``import napari_geostyle`` imports neither torch nor Qt.
"""

from __future__ import annotations

import importlib

_DISTRIBUTION = "napari-geostyle"
# what __version__ says when the package runs from a source tree that was never installed
_UNKNOWN_VERSION = "0+unknown"

# public name -> module that defines it (relative to this package)
_PUBLIC = {
    "AffineTransform": ".core.transforms",
    "TPSTransform": ".core.transforms",
    "ComposedTransform": ".core.transforms",
    "fit_affine": ".core.transforms",
    "fit_tps": ".core.transforms",
    "transform_from_dict": ".core.transforms",
    "warp_image": ".core.warp",
    "read_bigwarp_csv": ".core.landmarks",
    "write_bigwarp_csv": ".core.landmarks",
    "resolve_device": ".core.devices",
    "available_devices": ".core.devices",
    "iter_texture_transfer": ".core.texture",
    "transfer_texture": ".core.texture",
    "TextureStep": ".core.texture",
    "estimate_warp": ".core.estimate",
    "estimate_warps": ".core.estimate",
    "geometric_style_transfer": ".core.pipeline",
    "iter_geometric_style_transfer": ".core.pipeline",
    "GeometricStyleResult": ".core.pipeline",
    "GeometricStyleStep": ".core.pipeline",
    "batch_geometric_style_transfer": ".core.batch",
    "iter_stack_transfer": ".core.stack_transfer",
    "StackStep": ".core.stack_transfer",
}

__all__ = ["__version__", *_PUBLIC]  # noqa: PLE0604 (the keys are strings)


def _installed_version() -> str:
    """The installed distribution's version (from the git tag at build time, setuptools-scm)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(_DISTRIBUTION)
    except PackageNotFoundError:
        return _UNKNOWN_VERSION


def __getattr__(name: str):
    if name == "__version__":  # read from the metadata on first use: import stays cheap
        value = globals()["__version__"] = _installed_version()
        return value
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'napari_geostyle' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # cache: later look-ups skip __getattr__
    return value


def __dir__():
    return sorted(__all__)
