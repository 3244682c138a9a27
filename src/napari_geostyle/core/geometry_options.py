"""The geometry estimate's options: which models, methods and starts exist, the checks of the
user's choices (``check_options``, ``stage_passes``, ``checkpoint_for``), and
``GeometryOptions``, the one object that carries them, checked once when it is made.

It imports nothing from the package at module level, so every module that takes geometry
options (the estimate, the pipeline, stacks, batches, ``viewer_api``) can check them here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .hints import Hints

MODELS = ("affine", "tps", "affine+tps")
METHODS = ("network", "refine")
# where the network stages start: "search" = the similarity that best aligns the two images
# (core/matching.py), found by exhaustive search on the ImageNet EfficientNet-Lite0 features
# installed with the package (``efficientnet``), on edge layouts where they are not installed;
# "search-edges" = that search on edge layouts always; "identity" = no warp
# ("search-vgg19": the same search on ImageNet VGG-19 conv4 features, as the paper's geometry
# stage; "matches-vgg19": an affine fitted robustly to the mutual nearest neighbours of those
# features, the search where too few agree; both need the weights, see
# ``napari-geostyle weights``)
INITS = ("search", "search-edges", "identity", "search-vgg19", "matches-vgg19")
# Network passes per stage and model: each pass after the first predicts the residual between
# the content warped so far and the style. Chosen on a tuning split of TRAINING images (see
# MODEL_CARD.md): more affine passes help the affine model but hurt affine+tps, whose affine
# stage then absorbs part of the TPS.
DEFAULT_PASSES = {
    "affine": {"affine": 3},
    "tps": {"tps": 2},
    "affine+tps": {"affine": 1, "tps": 3},
}
MAX_PASSES = 8


def check_options(model: str, method: str, trunk: str, init: str = "search") -> None:
    """``ValueError`` naming the accepted values for an unknown model / method / trunk."""
    from .geonet import TRUNK_CHOICES

    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}: model must be one of {', '.join(MODELS)}.")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: method must be one of {', '.join(METHODS)}.")
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}: init must be one of {', '.join(INITS)}.")
    if trunk not in TRUNK_CHOICES:
        raise ValueError(
            f"unknown trunk {trunk!r}: trunk must be one of {', '.join(TRUNK_CHOICES)}."
        )


def checkpoint_for(kind: str, model: str, checkpoint):
    """The checkpoint path for network ``kind`` out of the user's ``checkpoint`` argument."""
    if checkpoint is None:
        return None
    if isinstance(checkpoint, dict):
        unknown = set(checkpoint) - {"affine", "tps"}
        if unknown:
            raise ValueError(
                f"checkpoint keys must be 'affine' and/or 'tps'; got {sorted(unknown)}."
            )
        return checkpoint.get(kind)
    if model == "affine+tps":
        raise ValueError(
            "model 'affine+tps' uses two networks: pass checkpoint={'affine': path, 'tps': path} "
            "(or leave it None for the shipped ones)."
        )
    return checkpoint


def stage_passes(model: str, passes=None) -> dict:
    """``{stage: count}`` for ``model`` from the user's ``passes`` (None, an int or a dict)."""
    defaults = dict(DEFAULT_PASSES[model])
    if passes is None:
        return defaults
    if isinstance(passes, dict):
        unknown = set(passes) - {"affine", "tps"}
        if unknown:
            raise ValueError(f"passes keys must be 'affine' and/or 'tps'; got {sorted(unknown)}.")
        chosen = {**defaults, **{k: v for k, v in passes.items() if k in defaults}}
    else:
        chosen = {kind: passes for kind in defaults}
    for kind, count in chosen.items():
        if (
            isinstance(count, bool)
            or not isinstance(count, (int, np.integer))
            or not (1 <= count <= MAX_PASSES)
        ):
            raise ValueError(
                f"passes ({kind}) must be an integer from 1 to {MAX_PASSES}; got {count!r}."
            )
    return {kind: int(count) for kind, count in chosen.items()}


@dataclass(frozen=True)
class GeometryOptions:
    """The options of one geometry estimate, checked when made (``ValueError`` naming what is
    wrong, with the messages of ``estimate_warp``), so the code that carries them never checks
    them again.

    The device is not one of them: the texture stage runs on it too, and it is resolved where
    the work starts.

    Parameters
    ----------
    model : {"affine", "tps", "affine+tps"}, default "affine+tps"
        The transform to estimate.
    method : {"network", "refine"}, default "network"
        The networks alone, or the networks followed by the feature refinement.
    trunk : str, default "auto"
        The networks' trunk (``geonet.TRUNK_CHOICES``).
    init : str, default "search"
        Where the networks start (``INITS``).
    passes : int or dict, optional
        Network passes per stage (``stage_passes``); None: ``DEFAULT_PASSES[model]``.
    strength : float, default 1.0
        0 (no warp) .. 1 (the full warp); kept as a float.
    checkpoint : path or dict, optional
        The networks' checkpoint(s) (``checkpoint_for``); None: the shipped ones.
    hints : Hints, optional
        One pair's hints, already checked against its two images (``hints.check_hints``, which
        needs the images' shapes); None: no hints.
    """

    model: str = "affine+tps"
    method: str = "network"
    trunk: str = "auto"
    init: str = "search"
    passes: int | Mapping[str, int] | None = None
    strength: float = 1.0
    checkpoint: str | os.PathLike[str] | Mapping[str, str | os.PathLike[str]] | None = None
    hints: Hints | None = None

    def __post_init__(self) -> None:
        from .transforms import check_strength

        check_options(self.model, self.method, self.trunk, self.init)
        stage_passes(self.model, self.passes)  # a bad value fails before any work
        object.__setattr__(self, "strength", check_strength(self.strength))
        for kind in DEFAULT_PASSES[self.model]:
            checkpoint_for(kind, self.model, self.checkpoint)
        if self.hints is not None:
            from .hints import Hints

            if not isinstance(self.hints, Hints):
                raise ValueError(
                    "GeometryOptions.hints must be checked against the pair's images first "
                    f"(core.hints.check_hints); got {type(self.hints).__name__}."
                )
