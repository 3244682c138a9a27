import pytest
import torch

from napari_geostyle.core.devices import available_devices, resolve_device


def test_auto_picks_the_best_available():
    assert str(resolve_device("auto")).startswith(available_devices()[0].split(":")[0])
    assert resolve_device(None) == resolve_device("auto")
    assert resolve_device("cpu") == torch.device("cpu")
    assert available_devices()[-1] == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="not available"):
        resolve_device("cuda")


@pytest.mark.parametrize("bad", ["gpu0", "tpu", 3])
def test_unknown_device_names_are_value_errors(bad):
    with pytest.raises(ValueError):
        resolve_device(bad)


# --------------------------------------------------------------------------- capability choices
from napari_geostyle.core import devices

CPU = devices.CudaCapabilities(cuda=False)
PASCAL = devices.CudaCapabilities(True, (6, 1), bf16=False)
TURING = devices.CudaCapabilities(True, (7, 5), bf16=False)
AMPERE = devices.CudaCapabilities(True, (8, 0), bf16=True)


@pytest.mark.parametrize(
    "caps, amp, expected",
    [
        (AMPERE, None, "bf16"),
        (TURING, None, "fp32"),
        (PASCAL, None, "fp32"),
        (CPU, None, "fp32"),
        (AMPERE, False, "fp32"),
        (TURING, True, "fp16"),
        (PASCAL, True, "fp32"),
        (CPU, True, "fp32"),
    ],
)
def test_auto_precision_follows_the_gpu(caps, amp, expected):
    assert devices.choose_precision("auto", caps, amp=amp) == expected


@pytest.mark.parametrize("forced", ["bf16", "fp16", "fp32"])
def test_forced_precision_is_used_on_any_cuda_gpu(forced):
    for caps in (PASCAL, TURING, AMPERE):
        assert devices.choose_precision(forced, caps) == forced


def test_half_precision_off_cuda_and_unknown_names_are_value_errors():
    assert devices.choose_precision("fp32", CPU) == "fp32"
    for forced in ("bf16", "fp16"):
        with pytest.raises(ValueError, match="needs a CUDA GPU"):
            devices.choose_precision(forced, CPU)
    with pytest.raises(ValueError, match="precision must be one of"):
        devices.choose_precision("fp8", AMPERE)


@pytest.mark.parametrize(
    "requested, caps, expected",
    [
        (None, AMPERE, True),
        (None, TURING, True),
        (None, PASCAL, False),
        (None, CPU, False),
        (True, PASCAL, True),
        (False, AMPERE, False),
        (True, CPU, False),
    ],
)
def test_cuda_graphs_follow_compute_capability_unless_forced(requested, caps, expected):
    assert devices.choose_cuda_graphs(requested, caps) is expected


def test_capabilities_of_the_cpu():
    assert devices.cuda_capabilities("cpu") == CPU
    assert devices.supports_float64("cpu") and not devices.supports_float64("mps")


@pytest.mark.parametrize(
    "version, available, driver, noted",
    [
        ("12.4", False, True, True),  # a driver too old for the build: say so
        ("12.4", True, True, False),
        ("12.4", False, False, False),  # no NVIDIA GPU at all: nothing is wrong
        (None, False, True, False),  # a CPU-only build
    ],
)
def test_cuda_build_note(version, available, driver, noted):
    note = devices.cuda_build_note_for(version, available, driver)
    assert (note is not None) is noted
    if noted:
        assert "\n" not in note and "CUDA 12.4" in note and "driver" in note


def test_cli_prints_the_cuda_note_once(monkeypatch, capsys):
    from napari_geostyle import cli
    from napari_geostyle.cli import common

    note = devices.cuda_build_note_for("12.4", False, True)
    monkeypatch.setattr(devices, "cuda_build_note", lambda: note)
    monkeypatch.setattr(common, "_DEVICE_NOTE_PRINTED", False)
    assert cli.main(["weights"]) == 0
    assert cli.main(["weights"]) == 0
    assert capsys.readouterr().err.count(note) == 1
