"""Weights resolution and the loader, with a torchvision-format file written here."""

import pytest
import torch
import torchvision

from napari_geostyle.core import features, weights


@pytest.fixture(autouse=True)
def _fresh_trunk_cache():
    yield
    features.clear_trunk_cache()


@pytest.fixture(scope="module")
def torchvision_state():
    torch.manual_seed(0)
    return torchvision.models.vgg19().state_dict()  # random init, torchvision's exact layout


@pytest.fixture
def weights_file(tmp_path, torchvision_state):
    path = tmp_path / "vgg19-test.pth"
    torch.save(torchvision_state, path)
    return path


@pytest.mark.slow
def test_torchvision_file_loads_into_the_trunk(weights_file, torchvision_state):
    state = weights.load_vgg19_state(weights_file)
    assert set(state) == {k for k in torchvision_state if k.startswith("features.")}
    trunk = features.build_trunk(str(weights_file), "cpu")
    assert trunk.backbone_name == "vgg19" and trunk.source == str(weights_file)
    assert torch.equal(trunk.features[0].weight, torchvision_state["features.0.weight"])
    # same activations as torchvision's own module (away from the reflect-padded border)
    net = torchvision.models.vgg19()
    net.load_state_dict(torchvision_state)
    x = torch.rand(1, 3, 32, 32)
    normalised = (x - trunk.mean) / trunk.std
    with torch.no_grad():
        ours = trunk(x, taps=("conv2_1",))["conv2_1"]
        theirs = net.features[:7](normalised)
    assert torch.allclose(ours[..., 2:-2, 2:-2], theirs[..., 2:-2, 2:-2], atol=1e-4)


def test_trimmed_file_with_features_only_loads(tmp_path, torchvision_state):
    path = tmp_path / "trunk.pth"
    torch.save({k: v for k, v in torchvision_state.items() if k.startswith("features.")}, path)
    assert len(weights.load_vgg19_state(path)) == 32


@pytest.mark.slow
def test_wrong_shape_names_the_key(tmp_path, torchvision_state):
    bad = dict(torchvision_state)
    bad["features.10.weight"] = torch.zeros(256, 64, 3, 3)
    path = tmp_path / "bad.pth"
    torch.save(bad, path)
    with pytest.raises(ValueError, match=r"features\.10\.weight.*\(256, 64, 3, 3\)"):
        weights.load_vgg19_state(path)


@pytest.mark.slow
def test_missing_key_names_the_key(tmp_path, torchvision_state):
    bad = {k: v for k, v in torchvision_state.items() if k != "features.34.bias"}
    path = tmp_path / "bad.pth"
    torch.save(bad, path)
    with pytest.raises(ValueError, match=r"features\.34\.bias"):
        weights.load_vgg19_state(path)


def test_not_a_state_dict_is_a_value_error(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a readable"):
        weights.load_vgg19_state(path)


@pytest.mark.slow
def test_resolution_order_env_then_hub_then_cache(tmp_path, monkeypatch, weights_file):
    assert weights.resolve_vgg19_weights(download=False) is None
    trimmed = weights.cache_dir() / weights.TRIMMED_FILENAME
    trimmed.parent.mkdir(parents=True)
    trimmed.write_bytes(b"x")
    assert weights.resolve_vgg19_weights() == trimmed
    hub = weights._hub_checkpoint_path()
    hub.parent.mkdir(parents=True)
    hub.write_bytes(b"x")
    assert weights.resolve_vgg19_weights() == hub
    monkeypatch.setenv("GEOSTYLE_VGG19_WEIGHTS", str(weights_file))
    assert weights.resolve_vgg19_weights() == weights_file
    other = tmp_path / "explicit.pth"
    other.write_bytes(b"x")
    assert weights.resolve_vgg19_weights(path=other) == other
    info = weights.describe_vgg19_weights()
    assert info["found"] and info["path"] == str(weights_file)
    assert [entry["where"] for entry in info["looked"]][1:] == [
        "$GEOSTYLE_VGG19_WEIGHTS",
        "torch hub cache",
        "napari-geostyle cache (trimmed trunk)",
    ]


def test_env_pointing_nowhere_is_a_value_error(monkeypatch, tmp_path):
    monkeypatch.setenv("GEOSTYLE_VGG19_WEIGHTS", str(tmp_path / "nope.pth"))
    with pytest.raises(ValueError, match="nope.pth"):
        weights.resolve_vgg19_weights()


def test_offline_never_downloads(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("tried the network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fail)
    assert weights.resolve_vgg19_weights() is None  # GEOSTYLE_OFFLINE=1
    monkeypatch.setenv("GEOSTYLE_OFFLINE", "0")
    assert weights.resolve_vgg19_weights(download=False) is None


@pytest.mark.slow
def test_download_checks_hash_and_keeps_a_trimmed_trunk(monkeypatch, torchvision_state):
    calls = {}

    def fake_download(url, dst, hash_prefix=None, progress=True):
        calls.update(url=url, hash_prefix=hash_prefix)
        torch.save(torchvision_state, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    monkeypatch.setenv("GEOSTYLE_OFFLINE", "0")
    path = weights.resolve_vgg19_weights(download=True)
    assert calls == {"url": weights.VGG19_URL, "hash_prefix": "dcbb9e9d"}
    assert path.name == weights.TRIMMED_FILENAME and path.is_file()
    assert set(torch.load(path, weights_only=True)) == {
        k for k in torchvision_state if k.startswith("features.")
    }
    assert list(path.parent.iterdir()) == [path]  # the full file is gone
    assert weights.resolve_vgg19_weights(download=False) == path
    features.clear_trunk_cache()
    trunk = features.build_trunk("vgg19", "cpu")
    assert trunk.backbone_name == "vgg19" and trunk.source == str(path)


def test_failed_download_is_a_value_error_with_instructions(monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", broken)
    monkeypatch.setenv("GEOSTYLE_OFFLINE", "0")
    with pytest.raises(ValueError, match="network unreachable.*GEOSTYLE_VGG19_WEIGHTS"):
        weights.resolve_vgg19_weights(download=True)


# --------------------------------------------------------------------------- hostile input
def _set_mtime(path, seconds):
    import os

    os.utime(path, (seconds, seconds))


@pytest.mark.slow
def test_weights_file_replaced_on_disk_is_read_again(weights_file, torchvision_state):
    first = features.build_trunk(str(weights_file), "cpu")
    assert features.build_trunk(str(weights_file), "cpu") is first  # cached while unchanged
    changed = dict(torchvision_state)
    changed["features.0.bias"] = torch.full((64,), 0.5)
    torch.save(changed, weights_file)
    _set_mtime(weights_file, 1_000_000)  # same size: only the mtime tells them apart
    second = features.build_trunk(str(weights_file), "cpu")
    assert second is not first
    assert torch.equal(second.features[0].bias, torch.full((64,), 0.5))
    weights_file.write_bytes(b"truncated")  # a bad replacement is reported, not hidden
    with pytest.raises(ValueError, match="not a readable"):
        features.build_trunk(str(weights_file), "cpu")


def test_offline_download_is_refused_before_the_network(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("tried the network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fail)
    with pytest.raises(ValueError, match="GEOSTYLE_OFFLINE"):
        weights.download_vgg19_weights()
    with pytest.raises(ValueError, match="GEOSTYLE_OFFLINE"):
        weights.resolve_vgg19_weights(download=True)


def test_cli_weights_download_offline_prints_one_line(monkeypatch, capsys):
    from napari_geostyle import cli

    calls = []
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: calls.append(a))
    assert cli.main(["weights", "--download"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "GEOSTYLE_OFFLINE" in err[0]
    assert calls == []


def test_cli_weights_does_not_report_an_unusable_file_as_present(monkeypatch, tmp_path, capsys):
    from napari_geostyle import cli

    junk = tmp_path / "vgg19-junk.pth"
    junk.write_bytes(b"\x00" * 1000)
    monkeypatch.setenv("GEOSTYLE_VGG19_WEIGHTS", str(junk))
    assert cli.main(["weights"]) == 0
    out = capsys.readouterr().out
    assert "unusable: " in out and "not present" in out
    assert not any(line.startswith("present:") for line in out.splitlines())
    assert cli.main(["weights", "--path"]) == 1
    info = weights.describe_vgg19_weights(check=True)
    assert not info["found"] and info["looked"][1]["problem"]


def test_crafted_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (marker.touch, ())

    path = tmp_path / "vgg19-evil.pth"
    torch.save({"features.0.weight": Exploit()}, path)
    with pytest.raises(ValueError, match="not a readable"):
        weights.load_vgg19_state(path)
    assert not marker.exists()
