"""The one place for devices: resolving a device name to a ``torch.device``, what a device
supports (float64, bf16, CUDA graphs), and noticing a CUDA build of torch that cannot use the GPU.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

_AUTO = (None, "", "auto")


def available_devices() -> list[str]:
    """Device names usable here, best first (``"cpu"`` is always last).

    Returns
    -------
    list of str
        For example ``["cuda:0", "cpu"]``: the CUDA devices, then ``"mps"`` where it is
        available, then ``"cpu"``.
    """
    import torch

    names = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    names.append("cpu")
    return names


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"`` -> cuda > mps > cpu; a named device must exist (else ``ValueError``).

    Parameters
    ----------
    device : str or torch.device, optional
        ``None``, ``""`` or ``"auto"`` (the best available), or a name such as ``"cpu"``,
        ``"cuda"``, ``"cuda:1"``, ``"mps"`` (case and surrounding spaces ignored).

    Returns
    -------
    torch.device
        The device; a bare ``"cuda"`` becomes ``cuda:0``.

    Raises
    ------
    ValueError
        If ``device`` is not a name, is unknown, unsupported, or not available here.
    """
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


def supports_float64(device) -> bool:
    """Whether ``device`` computes in float64 (Apple's MPS does not): float64 work goes to the
    CPU where it does not."""
    import torch

    return torch.device(device).type != "mps"


# --------------------------------------------------------------------------- GPU capabilities
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
_TENSOR_CORE_CAPABILITY = (7, 0)  # Volta: CUDA graphs and fp16 tensor cores pay off from here
_BF16_CAPABILITY = (8, 0)  # Ampere: native bf16 (older GPUs only emulate it, slowly)


@dataclass(frozen=True)
class CudaCapabilities:
    """What a device offers the mixed-precision and CUDA-graph choices (``cuda_capabilities``)."""

    cuda: bool
    compute_capability: tuple[int, int] | None = None
    bf16: bool = False  # native bf16 arithmetic


def cuda_capabilities(device) -> CudaCapabilities:
    """The capabilities of a resolved ``torch.device`` (nothing for CPU and MPS)."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return CudaCapabilities(cuda=False)
    major, minor = torch.cuda.get_device_capability(device)
    capability = (major, minor)
    with torch.cuda.device(device):
        try:
            bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # older torch: no emulation switch
            bf16 = torch.cuda.is_bf16_supported()
    return CudaCapabilities(True, capability, bool(bf16) and capability >= _BF16_CAPABILITY)


def choose_precision(requested, capabilities: CudaCapabilities, amp=None) -> str:
    """The trunk's arithmetic: "bf16", "fp16" or "fp32".

    ``requested``: "auto" (bf16 where the GPU has it natively, else fp32: fp16 needs loss
    scaling and is only used when asked for), or a forced "bf16"/"fp16"/"fp32". Half precision
    is CUDA only (``ValueError`` elsewhere). ``amp`` (the older switch) False means fp32 and
    True half precision where the GPU can (bf16, else fp16 on tensor-core GPUs).
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {requested!r}.")
    if not capabilities.cuda:
        if requested in ("bf16", "fp16"):
            raise ValueError(
                f"precision {requested!r} needs a CUDA GPU; on this device use 'auto' or 'fp32'."
            )
        return "fp32"
    if requested != "auto":
        return requested
    if amp is False:
        return "fp32"
    if capabilities.bf16:
        return "bf16"
    capability = capabilities.compute_capability or (0, 0)
    if amp is True and capability >= _TENSOR_CORE_CAPABILITY:
        return "fp16"
    return "fp32"


def choose_cuda_graphs(requested, capabilities: CudaCapabilities) -> bool:
    """Whether to replay iterations as CUDA graphs: never off CUDA; ``True``/``False`` force it
    on CUDA; ``None`` (auto) from compute capability 7.0 on."""
    if not capabilities.cuda:
        return False
    if requested is not None:
        return bool(requested)
    return (capabilities.compute_capability or (0, 0)) >= _TENSOR_CORE_CAPABILITY


# --------------------------------------------------------------------------- CUDA build, no CUDA
def _nvidia_driver_present() -> bool:
    import shutil
    from pathlib import Path

    return Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None


def cuda_build_note_for(cuda_version, cuda_available: bool, driver_present: bool) -> str | None:
    """The note for a CUDA build of torch that cannot use the GPU (pure; see ``cuda_build_note``)."""
    if not cuda_version or cuda_available or not driver_present:
        return None
    return (
        f"note: this torch is built for CUDA {cuda_version}, but the GPU is not usable (the "
        f"NVIDIA driver is probably too old for CUDA {cuda_version}); running on the CPU. "
        "Update the NVIDIA driver, or install a torch built for an older CUDA."
    )


@functools.lru_cache(maxsize=1)
def cuda_build_note() -> str | None:
    """One line when a CUDA build of torch finds an NVIDIA driver but cannot use the GPU (a
    driver too old for the build): the work silently runs on the CPU otherwise. None when all
    is well, or on a machine without an NVIDIA GPU."""
    import torch

    return cuda_build_note_for(
        torch.version.cuda, torch.cuda.is_available(), _nvidia_driver_present()
    )
