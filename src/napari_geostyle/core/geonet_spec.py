"""What a geometry network is, as plain facts: its model kinds, their sizes, its trunks.

- model kinds: ``affine`` regresses 6 numbers (``theta`` (2, 3)); ``tps`` regresses ``2 K^2``
  (where each point of a K x K control grid samples from; K is ``grid_size``, 3 by default,
  at least 2);
- trunks: ``embedded``, ``vgg19``, ``efficientnet`` (``TRUNK_CHOICES`` adds ``"auto"``, which
  ``geonet.resolve_trunk`` resolves);
- the network's input side (``INPUT_SIZE``) and its trunk's stride (``FEATURE_STRIDE``).

The network code (``geonet``, ``geonet_modules``) and the parameter maths (``warp_params``,
``transforms``) read these facts here. This module imports nothing, so every module may import
it.
"""

from __future__ import annotations

MODEL_KINDS = ("affine", "tps")
TRUNKS = ("embedded", "vgg19", "efficientnet")
TRUNK_CHOICES = ("auto", *TRUNKS)  # what users may pass; "auto" is resolved by resolve_trunk
INPUT_SIZE = 240
FEATURE_STRIDE = 16
DEFAULT_GRID_SIZE = 3


def check_model_kind(model: str) -> str:
    if model not in MODEL_KINDS:
        raise ValueError(f"unknown geometry model {model!r}; accepted: {', '.join(MODEL_KINDS)}.")
    return model


def check_trunk(trunk: str) -> str:
    if trunk not in TRUNKS:
        raise ValueError(f"unknown trunk {trunk!r}; accepted: {', '.join(TRUNKS)}.")
    return trunk


def check_grid_size(grid_size) -> int:
    """``grid_size`` (K of the K x K TPS control grid) as an int >= 2; else a ``ValueError``."""
    if int(grid_size) != grid_size or int(grid_size) < 2:
        raise ValueError(f"grid_size must be an integer >= 2; got {grid_size!r}.")
    return int(grid_size)


def parameter_count(model: str, grid_size: int = DEFAULT_GRID_SIZE) -> int:
    """Number of regressed parameters: 6 for affine, 2 * grid_size**2 for TPS."""
    return 6 if check_model_kind(model) == "affine" else 2 * grid_size * grid_size
