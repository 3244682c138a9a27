"""The two stages of geometric style transfer, as one engine for every run that chains them.

- ``warp_stage``: the content warped to the geometry style (the estimate, or a transform the
  caller already has), and the transform.
- ``texture_stage``: the texture transfer of one (warped) image, step by step;
  ``texture_result``: the same run to its end.
- ``check_texture_stage``: the texture stage's options checked now, by planning it on an image
  of the content's shape, so a bad option fails before the geometric stage.

The one-image pipeline (``core.pipeline``), stacks and videos (``core.stack_transfer``) and the
batch engine's tasks (``core.batch``) call these and wrap the steps in their own step types.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch
    from numpy.typing import ArrayLike

    from .geometry_options import GeometryOptions
    from .texture import TextureStep
    from .transforms import Transform


def warp_stage(
    content: np.ndarray,
    geometry_style: ArrayLike | None,
    options: GeometryOptions | None,
    device: str | torch.device | None = None,
    *,
    transform: Transform | None = None,
    progress: Callable[[int, int, str], object] | None = None,
) -> tuple[np.ndarray, Transform]:
    """The geometric stage: ``(warped, transform)``.

    Parameters
    ----------
    content : numpy.ndarray
        The validated content image.
    geometry_style : array_like, optional
        The image whose geometry the content takes (unused when ``transform`` is given).
    options : GeometryOptions, optional
        The estimate's options, its strength included (unused when ``transform`` is given).
    device : str or torch.device, optional
        Where the estimate and the warp run.
    transform : Transform, optional
        Warp by this transform, already dosed, instead of estimating one.
    progress : callable, optional
        The estimate's ``progress(done, total, stage)`` (``estimate_warp``).

    Returns
    -------
    tuple
        The warped content (its shape, dtype and channels) and the transform, content ->
        output.
    """
    from .warp import warp_image

    if transform is None:
        from .estimate import estimate_transform

        assert geometry_style is not None and options is not None, "an estimate needs both"
        transform = estimate_transform(content, geometry_style, options, device, progress)
    return warp_image(content, transform, device=device), transform


def texture_stage(
    image: np.ndarray,
    texture_style: ArrayLike | Sequence[ArrayLike],
    device: str | torch.device | None,
    texture_options: Mapping[str, Any],
    init: np.ndarray | str | None = None,
) -> Generator[TextureStep, None, None]:
    """The texture stage of ``image``: one ``TextureStep`` per iteration, the last ``done``.

    Parameters
    ----------
    image : numpy.ndarray
        The (warped) image to style.
    texture_style : array_like or sequence of array_like
        The texture style (or a list of them).
    device : str or torch.device, optional
        Where the texture stage runs.
    texture_options : mapping
        :func:`napari_geostyle.iter_texture_transfer`'s options, without ``init``.
    init : numpy.ndarray or str, optional
        Where the solve starts (``iter_texture_transfer``'s ``init``); None: its default.

    Yields
    ------
    TextureStep
        The texture transfer's steps. Closing this generator stops the solve at once (frees
        device memory).
    """
    from .texture import iter_texture_transfer

    start: dict[str, Any] = {} if init is None else {"init": init}
    steps = iter_texture_transfer(image, texture_style, device=device, **start, **texture_options)
    try:
        yield from steps
    finally:
        steps.close()


def check_texture_stage(
    image: np.ndarray,
    texture_style: ArrayLike | Sequence[ArrayLike],
    device: str | torch.device | None,
    texture_options: Mapping[str, Any],
) -> None:
    """``ValueError`` now for a bad texture option: the texture stage is planned (no work) on
    ``image``, whose shape and dtype the warped image will have.

    Parameters
    ----------
    image : numpy.ndarray
        An image of the shape and dtype the stage will style.
    texture_style : array_like or sequence of array_like
        The texture style (or a list of them).
    device : str or torch.device, optional
        Where the texture stage will run.
    texture_options : mapping
        :func:`napari_geostyle.iter_texture_transfer`'s options.
    """
    from .texture import iter_texture_transfer

    iter_texture_transfer(image, texture_style, device=device, **texture_options).close()


def texture_result(
    image: np.ndarray,
    texture_style: ArrayLike | Sequence[ArrayLike],
    device: str | torch.device | None,
    texture_options: Mapping[str, Any],
    init: np.ndarray | str | None = None,
) -> np.ndarray:
    """``texture_stage`` run to its end, for runs that keep no previews (batch tasks).

    Parameters
    ----------
    image, texture_style, device, texture_options, init
        As :func:`texture_stage`.

    Returns
    -------
    numpy.ndarray
        The last step's image: float32 ``(H, W, 3)`` in 0..1, the output size.
    """
    result = None
    for step in texture_stage(image, texture_style, device, texture_options, init):
        if step.done:
            result = step.image
    assert result is not None, "the texture stage's last step is done and carries the image"
    return result
