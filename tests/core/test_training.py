"""Synthetic pairs, training loop, checkpoints and evaluation of the geometry network."""

from __future__ import annotations

import math

import numpy as np
import pytest
import skimage.data

torch = pytest.importorskip("torch")

from napari_geostyle.core import geonet, training
from napari_geostyle.core.images import ALIGN_CORNERS


@pytest.fixture(scope="module")
def pool():
    images = [skimage.data.chelsea()[:, :300], skimage.data.rocket()[:, :400]]
    return training.build_image_pool(images, size=128, device="cpu")


def test_pool_is_square_crops_in_unit_range(pool):
    # chelsea (300 x 300) gives one crop, rocket (427 x 400) is near-square: one crop
    assert pool.shape == (2, 3, 128, 128)
    assert float(pool.min()) >= 0.0 and float(pool.max()) <= 1.0


def test_random_affine_respects_ranges():
    gen = torch.Generator().manual_seed(0)
    ranges = training.PairRanges()
    theta = training.random_affine_theta(2000, gen, ranges, "cpu")
    det = torch.linalg.det(theta[:, :, :2])
    # det = sx * sy: the scale range bounds it and the map never mirrors
    assert float(det.min()) >= 0.75**2 - 1e-6 and float(det.max()) <= 1.25**2 + 1e-6
    assert float(theta[:, :, 2].abs().max()) <= ranges.translation + 1e-6
    assert float(theta[:, :, 2].abs().max()) > 0.8 * ranges.translation


def test_target_is_source_warped_by_ground_truth(pool):
    """Without appearance changes, sampling the source at truth(p) reproduces the target."""
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(3)
    ranges = training.PairRanges(appearance=False, crop_zoom=(0.5, 0.5))
    for kind in ("affine", "tps"):
        pairs = training.make_pairs(pool, 4, kind, gen, ranges, size=64)
        eye = torch.eye(2, 3)[None].expand(4, 2, 3)
        centres = F.affine_grid(eye, [4, 1, 64, 64], align_corners=ALIGN_CORNERS)
        grid = pairs.truth(centres.reshape(4, -1, 2)).reshape(4, 64, 64, 2)
        warped = F.grid_sample(pairs.source, grid, align_corners=ALIGN_CORNERS)
        inside = (grid.abs() < 0.9).all(-1)[:, None].expand_as(warped)
        error = (warped - pairs.target)[inside].abs().mean()
        assert float(error) < 0.02, kind


def test_cross_instance_proxies_keep_the_truth_and_change_the_rest(pool):
    """The local-shape nuisance moves the target off the true warp by a bounded amount (the
    loss still asks for the true warp); a swapped background keeps the middle of the image."""
    ranges = training.PairRanges(appearance=False, crop_zoom=(0.5, 0.5))
    shaped = training.PairRanges(appearance=False, crop_zoom=(0.5, 0.5), nuisance_shift=0.1)
    plain = training.make_pairs(pool, 4, "affine", torch.Generator().manual_seed(9), ranges, 64)
    bent = training.make_pairs(pool, 4, "affine", torch.Generator().manual_seed(9), shaped, 64)
    assert torch.equal(plain.truth.theta, bent.truth.theta)
    difference = float((plain.target - bent.target).abs().mean())
    assert 0.005 < difference < 0.2

    swapped = training.PairRanges(appearance=False, crop_zoom=(0.5, 0.5), background_swap=1.0)
    pairs = training.make_pairs(pool, 4, "affine", torch.Generator().manual_seed(9), swapped, 64)
    middle = (slice(None), slice(None), slice(28, 36), slice(28, 36))
    corners = (slice(None), slice(None), slice(0, 4), slice(0, 4))
    assert float((pairs.target - plain.target)[middle].abs().max()) < 0.05
    assert float((pairs.target - plain.target)[corners].abs().mean()) > 0.01

    # the preset: weaker true warps for half the pairs, the source re-styled like the target
    preset = training.PairRanges.cross_instance()
    assert preset.small_share == 0.3 and preset.source_appearance == 1.0
    gen = torch.Generator().manual_seed(2)
    theta = training.random_ground_truth("affine", 400, gen, preset, "cpu").theta
    moved = (theta - torch.eye(2, 3)).abs().amax((1, 2))
    assert float((moved < 0.3 * 0.6).float().mean()) > 0.2


def test_pairs_are_reproducible_and_restyled(pool):
    a = training.make_pairs(pool, 3, "affine", torch.Generator().manual_seed(5), size=64)
    b = training.make_pairs(pool, 3, "affine", torch.Generator().manual_seed(5), size=64)
    assert torch.equal(a.target, b.target)
    assert a.source.shape == a.target.shape == (3, 3, 64, 64)
    # appearance randomisation changes the target and keeps it in 0..1
    assert float((a.target - a.target_clean).abs().mean()) > 0.01
    assert float(a.target.min()) >= 0 and float(a.target.max()) <= 1


def test_grid_loss_is_zero_for_the_truth_and_positive_otherwise():
    gen = torch.Generator().manual_seed(1)
    truth = training.random_ground_truth("affine", 3, gen, training.PairRanges(), "cpu")
    exact = truth.theta.reshape(3, 6)
    assert float(training.grid_loss("affine", exact, truth)) < 1e-10
    identity = geonet.identity_parameters("affine")[None].expand(3, 6)
    assert float(training.grid_loss("affine", identity, truth)) > 1e-3


def test_learning_rate_schedule_warms_up_and_decays():
    peak = 1e-3
    values = [training._learning_rate(p, peak) for p in np.linspace(0, 1, 101)]
    assert max(values) == pytest.approx(peak, rel=1e-3)
    assert values[0] < 0.1 * peak and values[-1] < 0.05 * peak


def _fixed_batch_loss(net, pool, seed=99):
    gen = torch.Generator().manual_seed(seed)
    pairs = training.make_pairs(pool, 4, "affine", gen, _zoom_only(), net.input_size)
    net.eval()
    with torch.no_grad():
        return float(training.grid_loss("affine", net(pairs.source, pairs.target), pairs.truth))


def _zoom_only():
    # a consistent ~17% zoom: learnable in a few CPU steps, far from the identity
    return training.PairRanges(
        rotation_deg=0, shear_deg=0, scale=(1.15, 1.2), translation=0, appearance=False
    )


@pytest.mark.slow
def test_tiny_training_lowers_loss_and_round_trips_checkpoint(pool, tmp_path):
    torch.manual_seed(0)
    out = tmp_path / "affine.pt"
    steps = list(
        training.train_geometry(
            pool,
            "affine",
            steps=12,
            batch_size=2,
            lr=1e-2,
            device="cpu",
            out=out,
            ranges=_zoom_only(),
            images_are_pool=True,
            log_every=1,
            half_checkpoint=False,
        )
    )
    last = steps[-1]
    assert last.done and last.step == 12 and last.checkpoint == str(out)
    # the training loss (running average) falls well below where it started: the last three
    # against the first three (about 0.4 here; a run that does not learn stays near 1, and one
    # step's noise moves a single value by 15 %), so other BLAS and torch versions keep a margin
    losses = [p.loss for p in steps]
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), [round(v, 4) for v in losses]
    # the checkpoint holds the same network
    net = last.extra["net"]
    loaded = geonet.load_geometry_model("affine", checkpoint=out, device="cpu")
    assert loaded.config["model"] == "affine" and loaded.config["trunk"] == "embedded"
    assert _fixed_batch_loss(loaded, pool) == pytest.approx(_fixed_batch_loss(net, pool), rel=1e-4)
    # resume continues the step count from the checkpoint
    more = list(
        training.train_geometry(
            pool,
            "affine",
            steps=13,
            batch_size=2,
            device="cpu",
            out=out,
            resume=True,
            images_are_pool=True,
        )
    )
    assert more[-1].step == 13


def test_evaluate_geometry_reports_identity_and_network(tmp_path):
    path = tmp_path / "affine.pt"
    geonet.save_checkpoint(geonet.build_geometry_net(geonet.default_config("affine")), path)
    images = [skimage.data.coffee()[::4, ::4], skimage.data.astronaut()[::4, ::4]]
    # init="identity": the network alone, without the global search in front of it
    report = training.evaluate_geometry(
        images,
        "affine",
        ("identity", "network"),
        pairs_per_image=1,
        checkpoint=path,
        device="cpu",
        estimate_options={"init": "identity"},
    )
    assert report["pairs"] == 2
    identity, network = report["identity"], report["network"]
    assert identity["mean_error_pct"] > 1.0
    assert 0.0 <= identity["pck@0.05"] <= identity["pck@0.10"] <= 1.0
    # an untrained network starts at the identity: same error
    assert network["mean_error_pct"] == pytest.approx(identity["mean_error_pct"], rel=1e-3)


def test_eval_pairs_truth_matches_lattice_convention():
    images = [skimage.data.coffee()[::2, ::2]]
    ranges = training.PairRanges(rotation_deg=0, shear_deg=0, scale=(1, 1), translation=0.0)
    source, target, truth = training.make_eval_pairs(images, "affine", 1, size=64, ranges=ranges)[0]
    from napari_geostyle.core.images import regular_grid_points

    # zero translation, no rotation/shear/scale: truth is the lattice itself
    assert np.allclose(truth, regular_grid_points((64, 64), 20), atol=1e-4)
    assert source.shape == target.shape == (64, 64, 3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"loss": "nope", "steps": 1}, "loss"),
        ({}, "steps or seconds"),
        ({"steps": 0}, "steps"),
        ({"steps": 1, "batch_size": 1}, "batch_size"),
        ({"seconds": -1}, "seconds"),  # a negative budget trained forever
        ({"steps": 1, "lr": 0}, "lr"),
        ({"steps": 1, "model": "homography"}, "affine, tps"),
        ({"steps": 1, "trunk": "resnet"}, "embedded, vgg19"),
    ],
)
def test_train_geometry_rejects_bad_options(pool, kwargs, message):
    kwargs = {"model": "affine", **kwargs}
    model = kwargs.pop("model")
    with pytest.raises(ValueError, match=message):
        next(training.train_geometry(pool, model, images_are_pool=True, device="cpu", **kwargs))


def test_eval_pairs_need_at_least_one_pair_per_image():
    with pytest.raises(ValueError, match="pairs_per_image"):
        training.make_eval_pairs([np.zeros((64, 64))], "affine", pairs_per_image=0)


def test_load_images_rejects_empty_folder(tmp_path):
    with pytest.raises(ValueError, match="no usable images"):
        training.load_images(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        training.load_images(tmp_path / "missing")


def test_evaluate_rejects_unknown_model_and_method():
    with pytest.raises(ValueError, match="affine"):
        training.evaluate_geometry([np.zeros((64, 64))], "homography")
    with pytest.raises(ValueError, match="identity"):
        training.evaluate_geometry([np.zeros((64, 64))], "affine", ("magic",))


def test_rotation_range_is_bounded():
    gen = torch.Generator().manual_seed(2)
    ranges = training.PairRanges(shear_deg=0, scale=(1, 1), translation=0)
    theta = training.random_affine_theta(500, gen, ranges, "cpu")
    angles = torch.atan2(theta[:, 1, 0], theta[:, 0, 0]).abs()
    assert float(angles.max()) <= math.radians(15) + 1e-6


@pytest.mark.slow
def test_cli_train_then_eval_geometry(tmp_path, capsys):
    import imageio.v3 as iio

    from napari_geostyle import cli

    folder = tmp_path / "images"
    folder.mkdir()
    iio.imwrite(folder / "chelsea.png", skimage.data.chelsea()[::2, ::2])
    out = tmp_path / "tps.pt"
    assert (
        cli.main(
            [
                "train-geometry",
                "--images",
                str(folder),
                "--model",
                "tps",
                "--steps",
                "2",
                "--batch-size",
                "2",
                "--device",
                "cpu",
                "--out",
                str(out),
                "--val-count",
                "1",
            ]
        )
        == 0
    )
    assert out.is_file() and out.with_suffix(".validation.png").is_file()
    assert geonet.read_checkpoint(out)["extra"]["step"] == 2
    capsys.readouterr()
    assert (
        cli.main(
            [
                "eval-geometry",
                "--images",
                str(folder),
                "--model",
                "tps",
                "--checkpoint",
                str(out),
                "--method",
                "network",
                "--pairs-per-image",
                "1",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    import json

    report = json.loads(capsys.readouterr().out)
    assert report["pairs"] == 1 and "network" in report and "refine" not in report


def test_cli_eval_geometry_missing_checkpoint_is_one_error_line(tmp_path, capsys):
    import imageio.v3 as iio

    from napari_geostyle import cli

    iio.imwrite(tmp_path / "coffee.png", skimage.data.coffee()[::4, ::4])
    code = cli.main(
        [
            "eval-geometry",
            "--images",
            str(tmp_path),
            "--model",
            "affine",
            "--checkpoint",
            str(tmp_path / "missing.pt"),
            "--method",
            "network",
        ]
    )
    assert code == 2
    assert "missing.pt" in capsys.readouterr().err
