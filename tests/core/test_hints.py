"""Hints: correspondences the user asserts steer estimate_warp, and the result honours them.

Frames: the transform maps content pixels to the output frame (the content's (H, W) holding
the style's geometry); a style hint is compared there through ``landmark_eval.to_style_frame``,
in the style's own pixels, as the issue asks (within 0.5 px).
"""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data

torch = pytest.importorskip("torch")

from napari_geostyle.core import estimate, hints
from napari_geostyle.core.landmark_eval import to_style_frame
from napari_geostyle.core.transforms import AffineTransform, TPSTransform
from napari_geostyle.core.warp import warp_image


@pytest.fixture(scope="module")
def astronaut():
    return skimage.data.astronaut()[::4, ::4]  # 128 x 128


def _in_style_pixels(tf, content_points, content_shape, style_shape):
    return to_style_frame(tf.map_points(content_points), content_shape, style_shape)


def _known_pair(image, style_shape):
    """A style made from ``image`` by a known smooth warp, at another size: the true map of
    content pixels into the style's pixels."""
    height, width = image.shape[:2]
    # content -> style pixels: an affine, then a bend
    matrix = np.array([[0.9, 0.12, 6.0], [-0.08, 1.05, -4.0], [0, 0, 1.0]])
    scale = np.diag([style_shape[0] / height, style_shape[1] / width, 1.0])
    affine = AffineTransform(scale @ matrix)
    grid = np.array([[r, c] for r in (0, 0.5, 1) for c in (0, 0.5, 1)]) * (
        np.array(style_shape) - 1
    )
    bent = grid + np.where(np.all(grid == grid[4], 1)[:, None], [5.0, -4.0], 0.0)
    bend = TPSTransform(bent, affine.sample_points(grid))  # sample map: style -> content
    style = warp_image(image, bend, output_shape=style_shape, padding="reflection", device="cpu")
    return style, bend


@pytest.mark.parametrize("model", ["affine+tps", "tps"])
def test_tps_models_honour_hints_exactly_in_the_styles_pixels(astronaut, model):
    style_shape = (112, 144)  # another size and aspect than the content's
    style, truth = _known_pair(astronaut, style_shape)
    content_points = np.array([[40.0, 50.0], [80.0, 90.0], [60.0, 30.0]])
    style_points = truth.map_points(content_points)
    tf = estimate.estimate_warp(
        astronaut, style, model=model, hints=(content_points, style_points), device="cpu"
    )
    mapped = _in_style_pixels(tf, content_points, astronaut.shape[:2], style_shape)
    assert np.abs(mapped - style_points).max() < 0.5
    assert 0.0 <= tf.confidence <= 1.0


def test_affine_honours_hints_in_the_least_squares_sense(astronaut):
    style, truth = _known_pair(astronaut, astronaut.shape[:2])
    content_points = np.array([[40.0, 50.0], [80.0, 90.0], [60.0, 30.0], [30.0, 100.0]])
    style_points = truth.map_points(content_points)
    tf = estimate.estimate_warp(
        astronaut, style, model="affine", hints=(content_points, style_points), device="cpu"
    )
    mapped = _in_style_pixels(tf, content_points, astronaut.shape[:2], astronaut.shape[:2])
    design = np.hstack([content_points, np.ones((4, 1))])
    best, *_ = np.linalg.lstsq(design, style_points, rcond=None)
    np.testing.assert_allclose(mapped, design @ best, atol=1e-6)


def test_one_hint_on_a_pure_translation_gives_the_translation(astronaut):
    shift = np.array([7.0, -5.0])
    style = warp_image(
        astronaut, AffineTransform([[1, 0, shift[0]], [0, 1, shift[1]]]), padding="reflection",
        device="cpu",
    )  # fmt: skip
    hint = np.array([[64.0, 60.0]])
    tf = estimate.estimate_warp(
        astronaut, style, model="affine", hints=(hint, hint + shift), device="cpu"
    )
    points = np.array([[20.0, 20.0], [100.0, 30.0], [40.0, 110.0]])
    np.testing.assert_allclose(tf.map_points(points), points + shift, atol=1.0)


def _rings(size: int, radii, centre) -> np.ndarray:
    """Gray image of soft rings with a mark on each, a pattern that repeats at two scales."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    radius = np.hypot(rows - centre[0], cols - centre[1])
    image = np.full((size, size), 0.2)
    for r in radii:
        image += 0.6 * np.exp(-((radius - r) ** 2) / 8.0)
        image += 0.8 * np.exp(-((rows - centre[0] + r) ** 2 + (cols - centre[1]) ** 2) / 10.0)
    return np.clip(image, 0, 1)


def test_hints_beat_the_search_on_a_pattern_that_repeats_at_two_scales():
    size, centre = 128, (64.0, 64.0)
    content = _rings(size, (18.0, 24.0, 32.0, 42.7), centre)  # radii a factor 1.33 apart
    scale = 1.33  # the style is the content magnified: each ring lands on the next one
    magnify = AffineTransform(
        [[scale, 0, centre[0] * (1 - scale)], [0, scale, centre[1] * (1 - scale)]]
    )
    style = warp_image(content, magnify, padding="reflection", device="cpu")
    probe = np.array([[64.0 - r, 64.0] for r in (18.0, 24.0)] + [[64.0, 40.0], [88.0, 64.0]])
    truth = magnify.map_points(probe)

    def error(tf):
        return float(np.linalg.norm(tf.map_points(probe) - truth, axis=1).mean())

    plain = estimate.estimate_warp(content, style, model="affine", device="cpu")
    points = probe[:2]
    hinted = estimate.estimate_warp(
        content, style, model="affine", hints=(points, magnify.map_points(points)), device="cpu"
    )
    assert error(hinted) < 1.0
    assert error(hinted) < error(plain)


@pytest.mark.parametrize(
    "given, message",
    [
        (([[np.nan, 3.0]], [[3.0, 3.0]]), "NaN"),
        (([[10.0, 10.0]], [[10.0, 200.0]]), "outside"),
        (([[-3.0, 10.0]], [[10.0, 10.0]]), "outside"),
        (([[10.0, 10.0], [10.2, 10.0]], [[10.0, 10.0], [30.0, 30.0]]), "same place"),
        (([[10.0, 10.0], [20.0, 20.0]], [[10.0, 10.0]]), "2 content hints but 1"),
        ((np.zeros((0, 2)), np.zeros((0, 2))), "at least 1"),
        (([[1.0, 2.0, 3.0]], [[1.0, 2.0, 3.0]]), "expected (N, 2)"),
        ("nonsense", "hints must be"),
    ],
)
def test_bad_hints_fail_before_any_work(monkeypatch, given, message):
    def no_work(*args, **kwargs):
        raise AssertionError("estimated despite bad hints")

    monkeypatch.setattr(estimate, "estimate_parameters", no_work)
    image = np.zeros((64, 64), np.float32)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        estimate.estimate_warp(image, image, hints=given, device="cpu")


@pytest.mark.slow
def test_estimate_warps_takes_hints_per_pair(astronaut):
    hint = np.array([[64.0, 64.0], [30.0, 90.0]])
    tfs = estimate.estimate_warps(
        [astronaut, astronaut], [astronaut, astronaut], model="affine+tps",
        hints=[None, (hint, hint + [3.0, -2.0])], device="cpu",
    )  # fmt: skip
    np.testing.assert_allclose(tfs[1].map_points(hint), hint + [3.0, -2.0], atol=0.5)
    with pytest.raises(ValueError, match="one entry"):
        estimate.estimate_warps([astronaut], [astronaut], hints=[None, None], device="cpu")


def test_hinted_poses_honour_the_hints():
    shape = (100, 140)
    given = hints.check_hints(
        ([[20.0, 30.0], [70.0, 100.0], [50.0, 20.0]], [[25.0, 40.0], [60.0, 90.0], [55.0, 30.0]]),
        shape, (90, 120),
    )  # fmt: skip
    for count in (1, 2, 3):
        subset = hints.Hints(given.content_rc[:count], given.style_rc[:count], shape, (90, 120))
        thetas = torch.as_tensor(hints.hinted_thetas(subset), dtype=torch.float32)
        for theta in thetas:
            assert hints.hint_residual(theta, None, subset) < 1e-5


@pytest.mark.slow
def test_confidence_is_lower_on_unrelated_noise_than_on_a_same_image_pair(astronaut):
    rng = np.random.default_rng(0)
    noise_a, noise_b = rng.random((2, 128, 128, 3))
    same = estimate.estimate_warp(astronaut, astronaut, model="affine+tps", device="cpu")
    unrelated = estimate.estimate_warp(noise_a, noise_b, model="affine+tps", device="cpu")
    assert 0.0 <= unrelated.confidence < same.confidence <= 1.0


def test_cli_transfer_hints_round_trip(tmp_path, capsys, monkeypatch):
    """A BigWarp CSV of hints carries a content point onto the style's point in the warp."""
    import imageio.v3 as iio

    from napari_geostyle import cli
    from napari_geostyle.core import texture
    from napari_geostyle.core.landmarks import write_bigwarp_csv

    monkeypatch.setattr(texture, "MIN_LEVEL_SIDE", 32)
    rng = np.random.default_rng(0)
    content = (rng.random((64, 64, 3)) * 60).astype(np.uint8)
    content[19:22, 29:32] = 255  # a bright dot the hint names
    style = (rng.random((64, 64, 3)) * 60).astype(np.uint8)
    iio.imwrite(tmp_path / "c.png", content)
    iio.imwrite(tmp_path / "s.png", style)
    content_hints = np.array([[20.0, 30.0], [45.0, 12.0], [50.0, 50.0]])
    style_hints = np.array([[40.0, 25.0], [52.0, 10.0], [30.0, 55.0]])
    write_bigwarp_csv(tmp_path / "hints.csv", content_hints, style_hints)
    code = cli.main(["transfer", str(tmp_path / "c.png"), "--texture", str(tmp_path / "s.png"),
                     "--geometry", str(tmp_path / "s.png"), "--hints", str(tmp_path / "hints.csv"),
                     "--warped-output", str(tmp_path / "w.png"), "-o", str(tmp_path / "o.png"),
                     "--size", "32", "--iterations", "1", "--levels", "1", "--backbone", "random",
                     "--device", "cpu"])  # fmt: skip
    assert code == 0
    warped = iio.imread(tmp_path / "w.png")
    assert warped[40, 25].min() > 200  # the dot, where the style's hint is
    assert "geometry confidence" in capsys.readouterr().err
    code = cli.main(["transfer", str(tmp_path / "c.png"), "--texture", str(tmp_path / "s.png"),
                     "--hints", str(tmp_path / "hints.csv"), "-o", str(tmp_path / "o2.png")])  # fmt: skip
    assert code == 2


@pytest.mark.slow
def test_add_warp_takes_hints_and_records_them_with_the_confidence(geo_viewer, qtbot):
    from napari_geostyle import viewer_api

    content_points = np.array([[20.0, 20.0], [40.0, 44.0], [50.0, 16.0]])
    style_points = content_points + [2.0, -3.0]
    live = viewer_api.add_warp(
        geo_viewer, "content", "style", model="affine+tps", device="cpu",
        hints=(content_points, style_points),
    )  # fmt: skip
    np.testing.assert_allclose(live.transform.map_points(content_points), style_points, atol=0.5)
    options = live.warped.metadata["geostyle"]["options"]
    assert options["hints"]["content_points"] == content_points.tolist()
    assert 0.0 <= options["confidence"] <= 1.0
    with pytest.raises(ValueError, match="outside"):
        viewer_api.add_warp(geo_viewer, "content", "style", hints=([[500.0, 1.0]], [[1.0, 1.0]]))


@pytest.mark.slow
def test_cli_batch_hints_per_input_in_the_styles_csv(tmp_path, capsys):
    """A hints column in --styles-csv steers that input's warp; the manifest has confidences."""
    pytest.importorskip("distributed")
    import json

    import imageio.v3 as iio

    from napari_geostyle import cli
    from napari_geostyle.core.landmarks import write_bigwarp_csv
    from napari_geostyle.core.transforms import transform_from_dict

    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(1)
    for name in ("a.png", "b.png"):
        iio.imwrite(inputs / name, (rng.random((48, 48, 3)) * 255).astype(np.uint8))
    iio.imwrite(tmp_path / "style.png", (rng.random((48, 48, 3)) * 255).astype(np.uint8))
    content_hints = np.array([[10.0, 12.0], [30.0, 35.0], [40.0, 8.0]])
    style_hints = np.array([[14.0, 10.0], [28.0, 38.0], [36.0, 12.0]])
    write_bigwarp_csv(tmp_path / "hints.csv", content_hints, style_hints)
    (tmp_path / "styles.csv").write_text("input,geometry_style,hints\na.png,style.png,hints.csv\n")
    out = tmp_path / "out"
    code = cli.main(["batch", str(inputs), "-o", str(out), "--geometry", str(tmp_path / "style.png"),
                     "--styles-csv", str(tmp_path / "styles.csv"), "--model", "affine+tps",
                     "--threads", "--workers", "1", "--device", "cpu"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    items = json.loads((out / "manifest.json").read_text())["items"]
    hinted = transform_from_dict(items["a.png"]["transform"])
    np.testing.assert_allclose(hinted.map_points(content_hints), style_hints, atol=0.5)
    assert all(0.0 <= items[n]["confidence"] <= 1.0 for n in ("a.png", "b.png"))
    (tmp_path / "bad.csv").write_text(
        '"Pt-0","true","1","2","1","2"\n"Pt-1","true","1.2","2","5","5"\n'
    )
    code = cli.main(["batch", str(inputs), "-o", str(tmp_path / "o2"), "--geometry",
                     str(tmp_path / "style.png"), "--hints", str(tmp_path / "bad.csv")])  # fmt: skip
    assert code == 2 and "same place" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()


@pytest.mark.slow
def test_hint_mode_re_estimates_after_each_pair_and_undo_removes_a_hint(geo_viewer, qtbot):
    from napari_geostyle import viewer_api

    live = viewer_api.add_warp(geo_viewer, "content", "style", model="affine+tps", device="cpu")
    hinted = viewer_api.start_hint_mode(geo_viewer, live, "style")
    session = hinted.session
    assert session.content_hints.name == "content hints"
    assert session.style_hints.name == "style hints"
    # a click on the content, then its partner on the style: one complete pair
    session.content_hints.add([20.0, 20.0])
    assert hinted.estimates == 0 and not hinted.busy  # half a pair does nothing
    session.style_hints.add([22.0, 18.0])
    qtbot.waitUntil(lambda: hinted.estimates == 1 and not hinted.busy, timeout=120000)
    session.content_hints.add([44.0, 40.0])
    session.style_hints.add([42.0, 44.0])
    qtbot.waitUntil(lambda: hinted.estimates == 2 and not hinted.busy, timeout=120000)
    content, style = session.pairs()
    assert len(content) == 2
    np.testing.assert_allclose(live.transform.map_points(content), style, atol=0.5)
    assert live.options["hints"]["style_points"] == style.tolist()
    assert "confidence" in hinted.status
    # undo takes the second pair's style hint back; deleting a hint takes its partner too
    assert session.undo()
    assert len(session.pairs()[0]) == 1 and len(session.content_hints.data) == 2
    qtbot.waitUntil(lambda: hinted.estimates == 3 and not hinted.busy, timeout=120000)
    session.delete(0)
    assert len(session.content_hints.data) == 1 and len(session.style_hints.data) == 0


def test_warp_widget_hint_section_starts_hint_mode_on_the_live_warp(geo_viewer, qtbot, tmp_path):
    from napari_geostyle._widgets.hint_section import HINT_HELP
    from napari_geostyle._widgets.warp_widget import GeometricWarpWidget
    from napari_geostyle.core.landmarks import read_bigwarp_csv

    widget = GeometricWarpWidget(geo_viewer)
    qtbot.addWidget(widget)
    assert "steer the estimate" in widget.hints.label.value == HINT_HELP
    widget.hints.toggle(True)  # no live warp yet: it says what to do first
    assert widget.hints.hinted is None and "Run the estimate first" in widget.hints.label.value
    widget.model_combo.value = "affine+tps"
    widget.run()
    qtbot.waitUntil(lambda: widget.live is not None or widget.last_error, timeout=120000)
    qtbot.waitUntil(lambda: not widget.busy, timeout=120000)
    widget.hints.toggle(True)
    hinted = widget.hints.hinted
    hinted.session.content_hints.add([20.0, 20.0])
    hinted.session.style_hints.add([24.0, 20.0])
    qtbot.waitUntil(lambda: hinted.estimates == 1 and not hinted.busy, timeout=120000)
    assert "confidence" in widget.hints.label.value
    widget.hints.export(tmp_path / "hints.csv")
    _content, style = read_bigwarp_csv(tmp_path / "hints.csv")
    np.testing.assert_allclose(style, [[24.0, 20.0]])
    # a saved session brings its hints back as hint layers, without estimating again
    widget.save_session(tmp_path / "session.json")
    widget.hints.toggle(False)
    assert "content hints" not in geo_viewer.layers
    widget.load_session(tmp_path / "session.json")
    restored = widget.hints.hinted
    assert restored is not None and restored is not hinted and restored.estimates == 0
    content, style = restored.session.pairs()
    np.testing.assert_allclose(content, [[20.0, 20.0]])
    np.testing.assert_allclose(style, [[24.0, 20.0]])
    assert not restored.session.undo()  # the restored hints are the start, not a change
    widget.hints.toggle(False)
    assert "content hints" not in geo_viewer.layers


def test_cli_warp_geometry_with_hints_round_trip(tmp_path, capsys):
    """warp --geometry STYLE --hints FILE.csv: the hinted point lands on the style's point."""
    import imageio.v3 as iio

    from napari_geostyle import cli
    from napari_geostyle.core.landmarks import write_bigwarp_csv

    rng = np.random.default_rng(3)
    content = (rng.random((64, 64, 3)) * 60).astype(np.uint8)
    content[33:36, 9:12] = 255
    iio.imwrite(tmp_path / "c.png", content)
    iio.imwrite(tmp_path / "s.png", (rng.random((64, 64, 3)) * 60).astype(np.uint8))
    write_bigwarp_csv(tmp_path / "h.csv", [[34.0, 10.0], [10.0, 50.0]], [[20.0, 30.0], [8.0, 54.0]])
    argv = ["warp", str(tmp_path / "c.png"), "--geometry", str(tmp_path / "s.png"), "--hints",
            str(tmp_path / "h.csv"), "-o", str(tmp_path / "w.png"), "--device", "cpu"]  # fmt: skip
    assert cli.main(argv) == 0
    assert iio.imread(tmp_path / "w.png")[20, 30].min() > 200
    assert "geometry confidence" in capsys.readouterr().err
    assert cli.main(argv[:2] + ["--hints", str(tmp_path / "h.csv"), "-o", "x.png"]) == 2
    assert "--landmarks FILE" in capsys.readouterr().err
