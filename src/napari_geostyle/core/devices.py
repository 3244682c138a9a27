"""The one place that resolves a device name to a ``torch.device``."""

from __future__ import annotations

_AUTO = (None, "", "auto")


def available_devices() -> list[str]:
    """Device names usable here, best first (``"cpu"`` is always last)."""
    import torch

    names = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    names.append("cpu")
    return names


def resolve_device(device=None):
    """``None``/``"auto"`` -> cuda > mps > cpu; a named device must exist (else ``ValueError``)."""
    import torch

    if isinstance(device, torch.device):
        device = str(device)
    if device in _AUTO:
        return torch.device(available_devices()[0])
    if not isinstance(device, str):
        raise ValueError(f"device must be a name such as 'auto', 'cpu', 'cuda:0'; got {device!r}.")
    name = device.strip().lower()
    try:
        resolved = torch.device(name)
    except RuntimeError:
        raise ValueError(
            f"unknown device {device!r}; use 'auto' or one of {available_devices()}."
        ) from None
    if resolved.type == "cuda":
        index = 0 if resolved.index is None else resolved.index
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r} is not available here; available: {available_devices()}."
            )
        return torch.device("cuda", index)
    if resolved.type == "mps" and "mps" not in available_devices():
        raise ValueError(f"device 'mps' is not available here; available: {available_devices()}.")
    if resolved.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {device!r} is not supported; use 'auto', 'cpu', 'cuda' or 'mps'.")
    return resolved
