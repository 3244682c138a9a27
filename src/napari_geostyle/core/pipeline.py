"""Both stages of geometric style transfer: warp to the geometry style, then transfer texture."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .images import validate_image

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from numpy.typing import ArrayLike

    from .geometry_options import GeometryOptions
    from .transforms import Transform

GEOMETRY_OPTIONS = ("model", "method", "trunk")


@dataclass
class GeometricStyleResult:
    """What both stages produce.

    Parameters
    ----------
    image : numpy.ndarray
        The stylised result, float32 ``(H, W, 3)`` in 0..1.
    warped : numpy.ndarray
        The content warped to the geometry style (content's dtype, shape and channels).
    transform : Transform
        Content -> output.
    options : dict
        The options of the run (model, method, trunk, strength and the texture options).
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
    ``done=True`` and carries ``result``.

    Parameters
    ----------
    stage : {"geometry", "texture"}
        The stage this step belongs to.
    level, levels, iteration, iterations : int
        The texture stage's pyramid level and iteration, as :class:`TextureStep`.
    loss : float, optional
        The texture stage's latest loss.
    image : numpy.ndarray, optional
        A preview (or the result on the last step), float32 ``(H, W, 3)`` in 0..1.
    progress, total : int
        Texture iterations done, of ``total`` over all levels.
    done : bool
        True on the last step.
    warped : numpy.ndarray, optional
        The warped content (the geometry step).
    transform : Transform, optional
        Content -> output.
    result : GeometricStyleResult, optional
        The result, on the last step.
    backbone : str
        The texture stage's network (``TextureStep.backbone``).
    """

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
    content: ArrayLike,
    style: ArrayLike | None = None,
    geometry_style: ArrayLike | None = None,
    texture_style: ArrayLike | Sequence[ArrayLike] | None = None,
    *,
    model: str = "affine+tps",
    method: str = "network",
    trunk: str = "auto",
    transform: Transform | None = None,
    device: str | torch.device | None = None,
    strength: float = 1.0,
    progress: Callable[[int, int, str], object] | None = None,
    hints: tuple[ArrayLike, ArrayLike] | None = None,
    **texture_options: Any,
) -> Generator[GeometricStyleStep, None, None]:
    """Generator form of :func:`geometric_style_transfer` (progress and previews as it goes).

    Inputs and choices are checked now (``ValueError``); the work starts on the first
    ``next()``.

    Parameters
    ----------
    content, style, geometry_style, texture_style : array_like
        The content image and the style images, as :func:`geometric_style_transfer` takes
        them.
    model : {"affine", "tps", "affine+tps"}, default "affine+tps"
        The geometric transform to estimate (``estimate_warp``).
    method : {"network", "refine"}, default "network"
        How to estimate it (``estimate_warp``).
    trunk : str, default "auto"
        The geometry networks' trunk (``estimate_warp``).
    transform : Transform, optional
        Skip the geometric estimate and use this one (e.g. landmarks a user edited).
    device : str or torch.device, optional
        ``None``/``"auto"`` picks cuda > mps > cpu.
    strength : float, default 1.0
        0 (no warp) .. 1 (the full warp), applied to the estimate or ``transform``.
    progress : callable, optional
        The estimate's ``progress(done, total, stage)`` callback (``estimate_warp``); raising
        from it stops the estimate (a refinement stops at its next step).
    hints : tuple of array_like, optional
        ``(content_points, style_points)`` that steer the estimate (``estimate_warp``).
    **texture_options
        Those of :func:`napari_geostyle.iter_texture_transfer`.

    Yields
    ------
    GeometricStyleStep
        A ``"geometry"`` step, then one ``"texture"`` step per iteration; the last has
        ``done=True`` and carries ``result``.

    Raises
    ------
    ValueError
        At the call, if an image, option, ``transform``, ``strength`` or the hints are invalid,
        or neither ``style`` nor both ``geometry_style`` and ``texture_style`` are given.
    """
    from .estimate import MIN_SIZE
    from .geometry_options import GeometryOptions
    from .stages import check_texture_stage
    from .transforms import Transform, check_strength

    strength = check_strength(strength)
    content = validate_image(content, "content", min_size=MIN_SIZE)
    geometry, texture = _pick_sources(style, geometry_style, texture_style)
    options = None
    if transform is None:
        options = GeometryOptions(model=model, method=method, trunk=trunk, strength=strength)
        geometry = validate_image(geometry, "geometry style", min_size=MIN_SIZE)
        if hints is not None:  # bad hints fail now, before any work
            from .hints import check_hints

            checked = check_hints(hints, content.shape[:2], geometry.shape[:2])
            options = dataclasses.replace(options, hints=checked)
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
    check_texture_stage(content, texture, device, texture_options)
    recorded = dict(model=model, method=method, trunk=trunk, strength=strength, **texture_options)
    return _run_both_stages(
        content, geometry, texture, options, transform, strength, device, texture_options,
        recorded, progress,
    )  # fmt: skip


def _run_both_stages(
    content: np.ndarray,
    geometry: np.ndarray,
    texture: np.ndarray | list[np.ndarray],
    options: GeometryOptions | None,
    transform: Transform | None,
    strength: float,
    device: str | torch.device | None,
    texture_options: dict,
    recorded: dict,
    progress: Callable[[int, int, str], object] | None,
) -> Generator[GeometricStyleStep, None, None]:
    """The stages (``core.stages``): the estimate by ``options`` (or ``transform``, dosed by
    ``strength``), the warp, then the texture; ``recorded``: the result's ``options``."""
    from .stages import texture_stage, warp_stage
    from .transforms import with_strength

    if transform is not None:
        transform = with_strength(transform, strength)
    warped, transform = warp_stage(
        content, geometry, options, device, transform=transform, progress=progress
    )
    yield GeometricStyleStep(stage="geometry", warped=warped, transform=transform)

    texture_steps = texture_stage(warped, texture, device, texture_options)
    try:
        for step in texture_steps:
            result = (
                GeometricStyleResult(step.image, warped, transform, recorded)
                if step.done and step.image is not None  # the last step carries the image
                else None
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
    content: ArrayLike,
    style: ArrayLike | None = None,
    geometry_style: ArrayLike | None = None,
    texture_style: ArrayLike | Sequence[ArrayLike] | None = None,
    **options: Any,
) -> GeometricStyleResult:
    """Warp ``content`` to the geometry of ``geometry_style`` (default ``style``), then transfer
    the texture of ``texture_style`` (default ``style``). Returns a :class:`GeometricStyleResult`.

    Parameters
    ----------
    content : array_like
        The content image (>= 32 px), gray/RGB/RGBA.
    style : array_like, optional
        The style image for both stages.
    geometry_style : array_like, optional
        The image whose geometry the content takes; default ``style``.
    texture_style : array_like or sequence of array_like, optional
        The image (or list of images) whose texture the result takes; default ``style``.
    **options
        The keyword options of :func:`iter_geometric_style_transfer` (model, method, trunk,
        transform, device, strength, progress, hints and the texture options).

    Returns
    -------
    GeometricStyleResult
        The stylised image, the warped content, the transform and the options.

    Raises
    ------
    ValueError
        If an image or option is invalid (see :func:`iter_geometric_style_transfer`).
    """
    result = None
    for step in iter_geometric_style_transfer(
        content, style, geometry_style, texture_style, **options
    ):
        result = step.result or result
    assert result is not None, "the last step carries the result"
    return result
