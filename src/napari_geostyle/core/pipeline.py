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
    """One progress step. ``stage`` is ``"geometry"`` (the first step, carrying ``warped`` and
    ``transform``) or ``"texture"`` (one per texture iteration, as :class:`TextureStep`:
    ``progress`` of ``total`` iterations over all levels, ``image`` previews). The last step has
    ``done=True`` and carries ``result``."""

    stage: str
    level: int = 0
    levels: int = 0
    iteration: int = 0
    iterations: int = 0
    loss: float | None = None
    image: np.ndarray | None = None
    progress: int = 0
    total: int = 0
    done: bool = False
    warped: np.ndarray | None = None
    transform: object = None
    result: GeometricStyleResult | None = None
    backbone: str = ""  # the texture stage's network (TextureStep.backbone)


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
    trunk: str = "auto",
    transform=None,
    device=None,
    strength: float = 1.0,
    progress=None,
    hints=None,
    **texture_options,
) -> Iterator[GeometricStyleStep]:
    """Generator form of :func:`geometric_style_transfer` (progress and previews as it goes).

    ``transform``: skip the geometric estimate and use this one (e.g. landmarks a user edited).
    ``strength``: 0 (no warp) .. 1 (the full warp), applied to the estimate or ``transform``.
    ``progress``: the estimate's ``progress(done, total, stage)`` callback (``estimate_warp``);
    raising from it stops the estimate (a refinement stops at its next step).
    ``hints``: ``(content_points, style_points)`` that steer the estimate (``estimate_warp``).
    ``texture_options`` are those of :func:`napari_geostyle.iter_texture_transfer`. Inputs and
    choices are checked now (``ValueError``); the work starts on the first ``next()``.
    """
    from .estimate import MIN_SIZE, check_options
    from .transforms import Transform, check_strength

    strength = check_strength(strength)
    content = validate_image(content, "content", min_size=MIN_SIZE)
    geometry, texture = _pick_sources(style, geometry_style, texture_style)
    if transform is None:
        check_options(model, method, trunk)
        geometry = validate_image(geometry, "geometry style", min_size=MIN_SIZE)
        if hints is not None:  # bad hints fail now, before any work
            from .hints import check_hints

            hints = check_hints(hints, content.shape[:2], geometry.shape[:2])
    elif not isinstance(transform, Transform):
        raise ValueError(f"transform must be a transform (fit_tps, estimate_warp, ...); "
                         f"got {type(transform).__name__}.")  # fmt: skip
    texture = (
        [validate_image(t, "texture style") for t in texture]
        if isinstance(texture, (list, tuple))
        else validate_image(texture, "texture style")
    )
    # The texture stage runs on the warped content, which has the content's shape and dtype:
    # planning it on the content now makes a bad texture option fail before the geometric stage.
    from .texture import iter_texture_transfer

    iter_texture_transfer(content, texture, device=device, **texture_options).close()
    return _run_both_stages(
        content,
        geometry,
        texture,
        model,
        method,
        trunk,
        transform,
        device,
        texture_options,
        strength,
        progress,
        hints,
    )


def _run_both_stages(
    content,
    geometry,
    texture,
    model,
    method,
    trunk,
    transform,
    device,
    texture_options,
    strength=1.0,
    progress=None,
    hints=None,
) -> Iterator[GeometricStyleStep]:
    from .estimate import estimate_warp
    from .texture import iter_texture_transfer
    from .transforms import with_strength
    from .warp import warp_image

    if transform is None:
        transform = estimate_warp(
            content, geometry, model=model, method=method, device=device, trunk=trunk,
            progress=progress, hints=hints,
        )  # fmt: skip
    transform = with_strength(transform, strength)
    warped = warp_image(content, transform, device=device)
    yield GeometricStyleStep(stage="geometry", warped=warped, transform=transform)

    options = dict(model=model, method=method, trunk=trunk, strength=strength, **texture_options)
    texture_steps = iter_texture_transfer(warped, texture, device=device, **texture_options)
    try:
        for step in texture_steps:
            result = (
                GeometricStyleResult(step.image, warped, transform, options) if step.done else None
            )
            yield GeometricStyleStep(
                stage="texture",
                level=step.level,
                levels=step.levels,
                iteration=step.iteration,
                iterations=step.iterations,
                loss=step.loss,
                image=step.image,
                progress=step.progress,
                total=step.total,
                done=step.done,
                transform=transform,
                result=result,
                backbone=step.backbone,
            )
    finally:  # closing this generator stops the texture stage at once (frees device memory)
        texture_steps.close()


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
