"""The geometry network: architecture, correlation, checkpoints, shipped weights."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from napari_geostyle.core import geonet


@pytest.mark.parametrize("kind, size", [("affine", 6), ("tps", 18)])
def test_untrained_network_predicts_the_identity(kind, size):
    net = geonet.build_geometry_net(geonet.default_config(kind)).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, 100, 130), torch.rand(2, 3, 240, 240))
    assert out.shape == (2, size)
    assert torch.allclose(out, geonet.identity_parameters(kind)[None].expand(2, size))


def test_correlation_peaks_where_features_match():
    net = geonet.build_geometry_net(geonet.default_config("affine"))
    feats = torch.randn(1, 16, 15, 15)
    shifted = torch.roll(feats, shifts=(2, 3), dims=(2, 3))  # style(k, l) = content(k-2, l-3)
    corr = net.correlation(feats, shifted)
    assert corr.shape == (1, 225, 15, 15)
    # channel (i, j) of the content peaks at style location (i+2, j+3)
    i, j = 5, 6
    peak = int(corr[0, i * 15 + j].flatten().argmax())
    assert divmod(peak, 15) == (i + 2, j + 3)
    # ReLU + L2 over channels: non-negative, unit norm per location
    assert float(corr.min()) >= 0
    assert torch.allclose(corr.norm(dim=1), torch.ones(1, 15, 15), atol=1e-4)


def test_checkpoint_round_trip_in_fp16(tmp_path):
    net = geonet.build_geometry_net(geonet.default_config("tps"))
    with torch.no_grad():
        net.linear.bias.normal_(0, 0.05)
    path = geonet.save_checkpoint(net.eval(), tmp_path / "tps.pt", extra={"step": 3})
    payload = geonet.read_checkpoint(path)
    assert payload["config"]["model"] == "tps" and payload["config"]["grid_size"] == 3
    assert payload["config"]["input_size"] == 240 and payload["extra"]["step"] == 3
    floats = [t for t in payload["state_dict"].values() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float16 for t in floats)
    loaded = geonet.load_geometry_model("tps", checkpoint=path, device="cpu")
    x, y = torch.rand(1, 3, 240, 240), torch.rand(1, 3, 240, 240)
    with torch.no_grad():
        assert torch.allclose(loaded(x, y), net(x, y), atol=2e-3)
    # cached: the same object comes back
    assert geonet.load_geometry_model("tps", checkpoint=path, device="cpu") is loaded


def test_missing_checkpoint_names_the_path(tmp_path):
    missing = tmp_path / "nowhere.pt"
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        geonet.load_geometry_model("affine", checkpoint=missing)


def test_checkpoint_of_the_wrong_kind_or_format_is_refused(tmp_path):
    path = geonet.save_checkpoint(geonet.build_geometry_net(geonet.default_config("affine")),
                                  tmp_path / "a.pt")
    with pytest.raises(ValueError, match="'affine' model, not 'tps'"):
        geonet.load_geometry_model("tps", checkpoint=path)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": 1}, foreign)
    with pytest.raises(ValueError, match="not a napari-geostyle"):
        geonet.load_geometry_model("affine", checkpoint=foreign)


@pytest.mark.parametrize("call", [
    lambda: geonet.default_config("homography"),
    lambda: geonet.default_config("affine", trunk="resnet50"),
    lambda: geonet.load_geometry_model("perspective"),
    lambda: geonet.load_geometry_model("affine", trunk="alexnet"),
])
def test_unknown_model_or_trunk_says_what_is_accepted(call):
    with pytest.raises(ValueError, match="accepted"):
        call()


def test_shipped_models_exist_are_fp16_and_small():
    total = 0
    for kind in geonet.MODEL_KINDS:
        path = geonet.shipped_checkpoint_path(kind)
        assert path.is_file(), f"shipped model missing: {path}"
        total += path.stat().st_size
        payload = geonet.read_checkpoint(path)
        assert payload["config"]["model"] == kind and payload["config"]["trunk"] == "embedded"
        assert all(t.dtype == torch.float16 for t in payload["state_dict"].values()
                   if t.is_floating_point())
    assert total <= 10 * 1024 * 1024


def test_vgg19_trunk_runs_with_random_backbone():
    net = geonet.build_geometry_net(geonet.default_config("affine", trunk="vgg19"),
                                    backbone="random").eval()
    # the frozen VGG is shared, not part of the checkpoint: only the head is trainable state
    assert not any(k.startswith("trunk") for k in net.state_dict())
    with torch.no_grad():
        out = net(torch.rand(1, 3, 240, 240), torch.rand(1, 3, 240, 240))
    assert out.shape == (1, 6) and bool(torch.isfinite(out).all())
