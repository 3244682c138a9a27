"""Global layout search, the estimate's start candidates, and warp strength."""

import imageio.v3 as iio
import numpy as np
import pytest
import skimage.data
import torch

from napari_geostyle.cli import main
from napari_geostyle.core import estimate, matching
from napari_geostyle.core.images import rgb_tensor
from napari_geostyle.core.landmark_eval import _moved, _similarity_matrix
from napari_geostyle.core.transforms import (
    AffineTransform,
    ComposedTransform,
    TPSTransform,
    affine_from_theta,
    fit_tps,
    with_strength,
)
from napari_geostyle.core.warp import warp_image


@pytest.fixture(scope="module")
def astronaut():
    return np.ascontiguousarray(skimage.data.astronaut()[::4, ::4])


def test_search_recovers_a_known_similarity(astronaut):
    points = np.array([[30.0, 30.0], [30.0, 98.0], [98.0, 64.0], [64.0, 40.0]])
    matrix = _similarity_matrix(astronaut.shape, 12.0, 1.15, (6.0, -5.0))
    content, content_points = _moved(astronaut, points, matrix)
    theta = matching.search_similarity(rgb_tensor(content), rgb_tensor(astronaut))
    tf = affine_from_theta(theta.numpy().astype(np.float64), content.shape, astronaut.shape)
    error = np.linalg.norm(tf.map_points(content_points) - points, axis=1)
    assert error.max() < 0.03 * astronaut.shape[0]  # within 3% of the side everywhere


def test_layout_similarity_prefers_the_aligned_image(astronaut):
    style = rgb_tensor(astronaut)
    moved, _ = _moved(
        astronaut, np.zeros((1, 2)), _similarity_matrix(astronaut.shape, 15.0, 1.2, (8.0, 8.0))
    )
    scores = matching.layout_similarity(
        torch.cat([style, rgb_tensor(moved)]), style.expand(2, -1, -1, -1)
    )
    assert scores[0] > 0.99 and scores[1] < scores[0] - 0.1
    # the refinement passes the style's features once made; the scores are the same
    cached = matching.layout_similarity(
        torch.cat([style, rgb_tensor(moved)]),
        None,
        style_features=matching.layout_features(style.expand(2, -1, -1, -1)),
    )
    torch.testing.assert_close(cached, scores)


def test_search_ranges_are_checked():
    with pytest.raises(ValueError, match="scale"):
        matching.SearchRanges(scale=(1.2, 0.8))
    with pytest.raises(ValueError, match="margin"):
        matching.SearchRanges(margin=0.6)
    with pytest.raises(ValueError, match="centre_sigma"):
        matching.SearchRanges(centre_sigma=0.0)


def test_centre_weights_favour_the_middle_of_the_style():
    weights = matching.centre_weights(64, 0.1, 0.35)
    keep = round(64 * 0.1)
    assert weights.shape == (64 - 2 * keep, 64 - 2 * keep)
    assert float(weights.mean()) == pytest.approx(1.0)
    middle = weights.shape[0] // 2
    assert float(weights[middle, middle]) > 3 * float(weights[0, 0])
    assert torch.equal(matching.centre_weights(64, 0.1, None), torch.ones_like(weights))


def test_search_takes_the_object_in_the_middle_over_one_at_the_edge(astronaut):
    # the style holds the content's face mirrored (another instance) in its middle and an exact
    # copy near its edge: flat weights take the exact copy, the centre weighting (the default,
    # for object-centred images) takes the object in the middle
    pattern = np.ascontiguousarray(astronaut[10:42, 46:78])  # 32 px: the face
    style = np.full((128, 128, 3), 128, np.uint8)
    style[52:84, 44:76] = pattern[:, ::-1]
    style[14:46, 84:116] = pattern
    content = np.full((128, 128, 3), 128, np.uint8)
    content[48:80, 48:80] = pattern
    found = {}
    for sigma in (matching.SearchRanges().centre_sigma, None):
        ranges = matching.SearchRanges(
            rotation_deg=0.0,
            scale=(1.0, 1.0),
            scale_steps=1,
            shift=1.0,
            fine_levels=0,
            centre_sigma=sigma,
        )
        theta = matching.search_similarity(rgb_tensor(content), rgb_tensor(style), ranges)
        tf = affine_from_theta(theta.numpy().astype(np.float64), content.shape, style.shape)
        found[sigma] = tf.map_points(np.array([[64.0, 64.0]]))[0]  # the content face's centre
    assert np.linalg.norm(found[None] - [30.0, 100.0]) < 4.0  # the exact copy
    assert np.linalg.norm(found[0.35] - [68.0, 60.0]) < 4.0  # the face in the middle


@pytest.mark.slow
def test_init_choices_and_result_types(astronaut):
    style = np.ascontiguousarray(astronaut[::-1])
    for init in ("search", "identity"):
        assert isinstance(
            estimate.estimate_warp(astronaut, style, model="tps", device="cpu", init=init),
            TPSTransform,
        )
        assert isinstance(
            estimate.estimate_warp(astronaut, style, device="cpu", init=init), ComposedTransform
        )
    with pytest.raises(
        ValueError, match="init must be one of search, search-edges, identity, search-vgg19"
    ):
        estimate.estimate_warp(astronaut, style, init="guess")


@pytest.mark.slow
def test_strength_zero_gives_the_content_back_and_one_the_full_warp(astronaut):
    style = np.ascontiguousarray(astronaut[:, ::-1])
    full = estimate.estimate_warp(astronaut, style, model="affine+tps", device="cpu")
    same = estimate.estimate_warp(astronaut, style, model="affine+tps", device="cpu", strength=1.0)
    none = estimate.estimate_warp(astronaut, style, model="affine+tps", device="cpu", strength=0.0)
    points = np.array([[10.0, 20.0], [100.0, 50.0], [64.0, 64.0]])
    assert np.allclose(full.map_points(points), same.map_points(points))
    assert np.array_equal(warp_image(astronaut, none), astronaut)
    half = estimate.estimate_warp(astronaut, style, model="affine", device="cpu", strength=0.5)
    whole = estimate.estimate_warp(astronaut, style, model="affine", device="cpu")
    assert np.allclose(half.matrix, (np.eye(3) + whole.matrix) / 2)
    with pytest.raises(ValueError, match="strength"):
        estimate.estimate_warp(astronaut, style, strength=1.5)


def test_with_strength_doses_each_kind():
    affine = AffineTransform([[1.2, 0.1, 5.0], [-0.1, 0.9, -3.0]])
    src = np.array([[0.0, 0.0], [0.0, 50.0], [50.0, 0.0], [50.0, 50.0], [25.0, 25.0]])
    tps = fit_tps(src, src + np.array([[2.0, 0.0], [0, 0], [0, 0], [0, 0], [4.0, -2.0]]))
    assert np.allclose(
        with_strength(affine, 0.25).matrix, np.eye(3) + 0.25 * (affine.matrix - np.eye(3))
    )
    dosed = with_strength(tps, 0.5)
    assert np.allclose(
        dosed.sample_points(tps.output_points),
        tps.output_points + 0.5 * (tps.content_points - tps.output_points),
    )
    composed = with_strength(ComposedTransform([affine, tps]), 0.0)
    assert np.allclose(composed.map_points(src), src)
    assert with_strength(tps, 1) is tps


def test_cli_warp_strength_zero_writes_the_content(tmp_path, astronaut):
    content = tmp_path / "content.png"
    iio.imwrite(content, astronaut)
    csv = tmp_path / "landmarks.csv"
    rows = [(10, 10, 14, 12), (10, 110, 12, 100), (110, 10, 100, 14), (110, 110, 104, 106)]
    csv.write_text(
        "".join(f'"Pt-{i}","true","{a}","{b}","{c}","{d}"\n' for i, (a, b, c, d) in enumerate(rows))
    )
    out = tmp_path / "out.png"
    assert (
        main(
            [
                "warp",
                str(content),
                "--landmarks",
                str(csv),
                "-o",
                str(out),
                "--strength",
                "0",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert np.array_equal(iio.imread(out), astronaut)
    assert (
        main(
            [
                "warp",
                str(content),
                "--landmarks",
                str(csv),
                "-o",
                str(tmp_path / "x.png"),
                "--strength",
                "2",
            ]
        )
        == 2
    )


@pytest.mark.slow
def test_deep_descriptor_search_mechanics_with_the_random_trunk(astronaut):
    # with the ImageNet weights this is the paper's feature space; the seeded random VGG-19
    # checks the mechanics: the same image, moved, is found again
    points = np.array([[30.0, 30.0], [30.0, 98.0], [98.0, 64.0], [64.0, 40.0]])
    matrix = _similarity_matrix(astronaut.shape, -8.0, 0.9, (-5.0, 4.0))
    content, content_points = _moved(astronaut, points, matrix)
    descriptor = matching.deep_descriptor("random", device="cpu")
    ranges = matching.SearchRanges(
        rotation_deg=10.0, scale=(0.85, 1.0), scale_steps=3, fine_levels=1
    )  # few candidates: VGG on a CPU is slow
    theta = matching.search_similarity(
        rgb_tensor(content), rgb_tensor(astronaut), ranges, descriptor=descriptor
    )
    tf = affine_from_theta(theta.numpy().astype(np.float64), content.shape, astronaut.shape)
    error = np.linalg.norm(tf.map_points(content_points) - points, axis=1)
    assert error.max() < 0.05 * astronaut.shape[0]


def test_search_vgg19_without_the_weights_says_how_to_get_them(astronaut):
    with pytest.raises(ValueError, match="VGG-19 weights"):
        estimate.estimate_warp(astronaut, astronaut, init="search-vgg19", device="cpu")


# --------------------------------------------------------------------------- point matches
def test_mutual_matches_of_one_map_with_itself_match_every_cell_to_itself():
    features = torch.nn.functional.normalize(torch.randn(1, 16, 5, 7), dim=1)
    content_xy, style_xy, similarity = matching.mutual_matches(features, features)
    assert len(content_xy) == 35
    assert torch.equal(content_xy, style_xy)
    assert torch.allclose(similarity, torch.ones(35))
    # cell centres in normalised (x, y): the first row's first cell, the map's corners inside
    centres = content_xy[torch.argsort(content_xy[:, 1] * 10 + content_xy[:, 0])]  # row-major
    assert torch.allclose(centres[0], torch.tensor([-6 / 7, -4 / 5]))
    assert centres.abs().max() < 1


def test_robust_affine_ignores_outliers_and_refuses_too_few_agreeing_matches():
    generator = torch.Generator().manual_seed(3)
    style_xy = torch.rand(60, 2, generator=generator) * 2 - 1
    truth = torch.tensor([[0.9, 0.15, 0.05], [-0.1, 1.1, -0.08]])
    content_xy = style_xy @ truth[:, :2].T + truth[:, 2]
    content_xy[::3] = torch.rand(20, 2, generator=generator) * 2 - 1  # a third are wrong
    theta, inliers = matching.robust_affine(content_xy, style_xy)
    assert torch.allclose(theta, truth, atol=1e-4)
    expected = torch.ones(60, dtype=torch.bool)
    expected[::3] = False
    assert torch.equal(inliers, expected)
    with pytest.raises(matching.TooFewMatches, match="only 5 point matches"):
        matching.robust_affine(content_xy[:5], style_xy[:5])
    scattered = torch.rand(40, 2, generator=generator) * 2 - 1
    with pytest.raises(ValueError, match="agree on one affine"):
        matching.robust_affine(scattered, style_xy[:40], threshold=1e-4)


def test_point_matches_recover_a_sheared_move_with_the_random_trunk(astronaut):
    # with the ImageNet weights the matches are the paper's feature space; the seeded random
    # VGG-19 checks the mechanics: the same image under an affine that is not a similarity
    points = np.array([[30.0, 30.0], [30.0, 98.0], [98.0, 64.0], [64.0, 40.0]])
    linear = np.array([[0.95, 0.12], [-0.08, 1.05]])
    centre = np.array([64.0, 64.0])
    matrix = np.eye(3)
    matrix[:2, :2] = linear
    matrix[:2, 2] = centre - linear @ centre + [4.0, -5.0]
    content, content_points = _moved(astronaut, points, matrix)
    for descriptor in ("orientation", matching.deep_descriptor("random", device="cpu")):
        theta = matching.match_affine(rgb_tensor(content), rgb_tensor(astronaut), descriptor)
        tf = affine_from_theta(theta.numpy().astype(np.float64), content.shape, astronaut.shape)
        error = np.linalg.norm(tf.map_points(content_points) - points, axis=1)
        assert error.max() < 0.03 * astronaut.shape[0], descriptor


def test_matches_vgg19_without_the_weights_says_how_to_get_them(astronaut):
    with pytest.raises(ValueError, match="VGG-19 weights"):
        estimate.estimate_warp(astronaut, astronaut, init="matches-vgg19", device="cpu")


def test_matches_vgg19_falls_back_to_the_search_when_the_matches_disagree(astronaut, monkeypatch):
    calls = []

    def no_agreement(content, style, descriptor="vgg19", threshold=0.08):
        calls.append(descriptor)
        raise matching.TooFewMatches("only 3 of 90 point matches agree on one affine")

    def searched(content, style, ranges=None, descriptor="orientation"):
        calls.append(("search", descriptor))
        return torch.tensor([[1.0, 0.0, 0.1], [0.0, 1.0, 0.0]])

    monkeypatch.setattr(matching, "match_affine", no_agreement)
    monkeypatch.setattr(matching, "search_similarity", searched)
    theta = estimate.initial_theta(rgb_tensor(astronaut), rgb_tensor(astronaut), "matches-vgg19")
    assert calls == ["vgg19", ("search", "vgg19")]
    assert torch.allclose(theta, torch.tensor([[1.0, 0.0, 0.1], [0.0, 1.0, 0.0]]))
