"""Both stages of geometric style transfer: warp to the geometry style, then transfer texture."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from .images import validate_image

GEOMETRY_OPTIONS = ("model", "method", "trunk")


@dataclass
class GeometricStyleResult:
    """What both stages produce.

    ``image``: the stylised result, float32 ``(H, W, 3)`` in 0..1; ``warped``: the content warped
    to the geometry style (content's dtype, shape and channels); ``transform``: content -> output.
    """

    image: np.ndarray
    warped: np.ndarray
    transform: object
    options: dict = field(default_factory=dict)


@dataclass
class GeometricStyleStep:
    """One progress step. ``stage`` is ``"geometry"`` (one step, carrying ``warped`` and
    ``transform``) or ``"texture"`` (the texture stage's steps, with ``image`` previews);
    the last step carries ``result``."""

    stage: str
    level: int = 0
    levels: int = 0
    iteration: int = 0
    iterations: int = 0
    loss: float | None = None
    image: np.ndarray | None = None
    warped: np.ndarray | None = None
    transform: object = None
    result: GeometricStyleResult | None = None


def _pick_sources(style, geometry_style, texture_style):
    geometry = style if geometry_style is None else geometry_style
    texture = style if texture_style is None else texture_style
    if geometry is None or texture is None:
        raise ValueError(
            "give a style image, or both geometry_style and texture_style "
            "(the geometry and texture may come from different images)."
        )
    return geometry, texture


def iter_geometric_style_transfer(
    content,
    style=None,
    geometry_style=None,
    texture_style=None,
    *,
    model: str = "affine+tps",
    method: str = "network",
    trunk: str = "embedded",
    transform=None,
    device=None,
    **texture_options,
) -> Iterator[GeometricStyleStep]:
    """Generator form of :func:`geometric_style_transfer` (progress and previews as it goes).

    ``transform``: skip the geometric estimate and use this one (e.g. landmarks a user edited).
    ``texture_options`` are those of :func:`napari_geostyle.iter_texture_transfer`.
    """
    from .estimate import estimate_warp
    from .texture import iter_texture_transfer
    from .warp import warp_image

    content = validate_image(content, "content")
    geometry, texture = _pick_sources(style, geometry_style, texture_style)
    if transform is None:
        transform = estimate_warp(
            content, geometry, model=model, method=method, device=device, trunk=trunk
        )
    warped = warp_image(content, transform, device=device)
    yield GeometricStyleStep(stage="geometry", warped=warped, transform=transform)

    final = None
    for step in iter_texture_transfer(warped, texture, device=device, **texture_options):
        final = step
        yield GeometricStyleStep(
            stage="texture",
            level=step.level,
            levels=step.levels,
            iteration=step.iteration,
            iterations=step.iterations,
            loss=step.loss,
            image=step.image,
        )
    if final is None or final.image is None:  # pragma: no cover - the texture stage always ends with an image
        raise RuntimeError("texture transfer ended without an image")
    options = dict(model=model, method=method, trunk=trunk, **texture_options)
    result = GeometricStyleResult(final.image, warped, transform, options)
    yield GeometricStyleStep(
        stage="done",
        level=final.level,
        levels=final.levels,
        iteration=final.iteration,
        iterations=final.iterations,
        loss=final.loss,
        image=final.image,
        warped=warped,
        transform=transform,
        result=result,
    )


def geometric_style_transfer(
    content, style=None, geometry_style=None, texture_style=None, **options
) -> GeometricStyleResult:
    """Warp ``content`` to the geometry of ``geometry_style`` (default ``style``), then transfer
    the texture of ``texture_style`` (default ``style``). Returns a :class:`GeometricStyleResult`."""
    result = None
    for step in iter_geometric_style_transfer(
        content, style, geometry_style, texture_style, **options
    ):
        result = step.result or result
    return result
