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
