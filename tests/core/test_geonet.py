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
    path = geonet.save_checkpoint(
        geonet.build_geometry_net(geonet.default_config("affine")), tmp_path / "a.pt"
    )
    with pytest.raises(ValueError, match="'affine' model, not 'tps'"):
        geonet.load_geometry_model("tps", checkpoint=path)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": 1}, foreign)
    with pytest.raises(ValueError, match="not a napari-geostyle"):
        geonet.load_geometry_model("affine", checkpoint=foreign)


@pytest.mark.parametrize(
    "call",
    [
        lambda: geonet.default_config("homography"),
        lambda: geonet.default_config("affine", trunk="resnet50"),
        lambda: geonet.load_geometry_model("perspective"),
        lambda: geonet.load_geometry_model("affine", trunk="alexnet"),
    ],
)
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
        assert all(
            t.dtype == torch.float16
            for t in payload["state_dict"].values()
            if t.is_floating_point()
        )
    assert total <= 10 * 1024 * 1024


def test_vgg19_trunk_runs_with_random_backbone():
    net = geonet.build_geometry_net(
        geonet.default_config("affine", trunk="vgg19"), backbone="random"
    ).eval()
    # the frozen VGG is shared, not part of the checkpoint: only the head is trainable state
    assert not any(k.startswith("trunk") for k in net.state_dict())
    with torch.no_grad():
        out = net(torch.rand(1, 3, 240, 240), torch.rand(1, 3, 240, 240))
    assert out.shape == (1, 6) and bool(torch.isfinite(out).all())


# --------------------------------------------------------------------------- hostile checkpoints
def _saved(tmp_path, **config):
    net = geonet.build_geometry_net(geonet.default_config("affine"))
    path = geonet.save_checkpoint(net, tmp_path / "net.pt")
    if config:
        payload = torch.load(path, weights_only=True)
        payload["config"].update(config)
        torch.save(payload, path)
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        ({"input_size": 8000}, "input_size"),
        ({"input_size": 250}, "multiple of 16"),
        ({"input_size": 64}, "input_size"),
        ({"grid_size": 40}, "grid_size"),
        ({"grid_size": True}, "grid_size"),
        ({"embedded_widths": [32, 64, 96]}, "embedded_widths"),
        ({"embedded_widths": [32, 64, -96, 128]}, "embedded_widths"),
        ({"model": "homography"}, "model"),
        ({"trunk": "resnet"}, "trunk"),
        ({"version": 99}, "version"),
        ({"mystery": 1}, "unknown config key"),
    ],
)
def test_bad_config_is_refused_before_building(tmp_path, monkeypatch, change, message):
    path = _saved(tmp_path, **change)
    built = []
    monkeypatch.setattr(geonet, "build_geometry_net", lambda *a, **k: built.append(a))
    with pytest.raises(ValueError, match=message):
        geonet.net_from_checkpoint(geonet.read_checkpoint(path))
    payload = torch.load(path, weights_only=True)
    with pytest.raises(ValueError, match=message):
        geonet.net_from_checkpoint(payload)  # also when the dict did not come from read
    assert built == []


@pytest.mark.parametrize("key", ["model", "trunk", "grid_size", "input_size"])
def test_missing_config_key_is_named(tmp_path, key):
    path = _saved(tmp_path)
    payload = torch.load(path, weights_only=True)
    del payload["config"][key]
    torch.save(payload, path)
    with pytest.raises(ValueError, match=f"config key '{key}' is missing"):
        geonet.read_checkpoint(path)


def test_nan_weights_are_refused(tmp_path):
    path = _saved(tmp_path)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["linear.weight"][0, 0] = float("nan")
    torch.save(payload, path)
    with pytest.raises(ValueError, match="'linear.weight' contain NaN"):
        geonet.load_geometry_model("affine", checkpoint=path, device="cpu")


def test_wrong_tensor_shape_is_a_value_error(tmp_path):
    path = _saved(tmp_path)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["linear.bias"] = torch.zeros(7, dtype=torch.float16)
    with pytest.raises(ValueError, match=r"'linear.bias' have shape \(7,\)"):
        geonet.net_from_checkpoint(payload)


def test_flipped_bytes_in_a_checkpoint_are_a_value_error(tmp_path):
    path = _saved(tmp_path)
    data = bytearray(path.read_bytes())
    for offset in range(200, len(data), len(data) // 7):
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError):
        geonet.net_from_checkpoint(geonet.read_checkpoint(path))


def test_crafted_pickle_checkpoint_does_not_execute(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (marker.touch, ())

    path = tmp_path / "evil.pt"
    torch.save({"format": geonet.CHECKPOINT_FORMAT, "config": Exploit(), "state_dict": {}}, path)
    with pytest.raises(ValueError, match="cannot read"):
        geonet.read_checkpoint(path)
    assert not marker.exists()


def test_checksums_json_matches_the_shipped_files():
    # fails after a retrain until `python scripts/update_model_checksums.py` is run
    import json

    table = json.loads(geonet.CHECKSUMS_FILE.read_text())
    shipped = sorted(p.name for p in geonet.MODELS_DIR.glob("geonet_*.pt"))
    assert sorted(table) == shipped
    for name in shipped:
        assert geonet.file_sha256(geonet.MODELS_DIR / name) == table[name], name


def test_damaged_shipped_model_is_refused(tmp_path, monkeypatch):
    import json
    import shutil

    models = tmp_path / "models"
    models.mkdir()
    original = geonet.shipped_checkpoint_path("affine")
    copy = models / original.name
    shutil.copy(original, copy)
    (models / "checksums.json").write_text(json.dumps({copy.name: geonet.file_sha256(copy)}))
    monkeypatch.setattr(geonet, "MODELS_DIR", models)
    monkeypatch.setattr(geonet, "CHECKSUMS_FILE", models / "checksums.json")
    assert geonet.read_checkpoint(copy)["config"]["model"] == "affine"
    data = bytearray(copy.read_bytes())
    data[-100] ^= 0x01  # one flipped bit
    copy.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="damaged.*reinstall"):
        geonet.read_checkpoint(copy)
    user = tmp_path / original.name  # the same bytes outside the models folder: no hash check
    user.write_bytes(original.read_bytes())
    assert geonet.read_checkpoint(user)["config"]["model"] == "affine"
