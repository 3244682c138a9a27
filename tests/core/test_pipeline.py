import numpy as np
import pytest
from skimage import data
from skimage import transform as sktf

import napari_geostyle as gs

TINY = {
    "size": 48,
    "levels": 2,
    "iterations": 2,
    "backbone": "random",
    "device": "cpu",
    "preview_every": 1,
}


@pytest.fixture(scope="module")
def content():
    return sktf.resize(data.astronaut(), (64, 64), anti_aliasing=True).astype(np.float32)


@pytest.mark.slow
def test_both_stages_give_an_image_the_warp_and_the_transform(content):
    texture = data.brick()[:80, :80]
    geometry = sktf.rotate(content, 10, mode="reflect").astype(np.float32)
    result = gs.geometric_style_transfer(
        content, geometry_style=geometry, texture_style=texture, model="affine", **TINY
    )
    assert result.image.dtype == np.float32 and result.image.shape == (48, 48, 3)
    assert 0.0 <= result.image.min() and result.image.max() <= 1.0
    assert result.warped.shape == content.shape and result.warped.dtype == content.dtype
    # the warp shown is the warp returned
    np.testing.assert_allclose(result.warped, gs.warp_image(content, result.transform), atol=1e-5)
    assert result.options["model"] == "affine"


@pytest.mark.slow
def test_steps_stream_geometry_first_then_texture_with_a_final_result(content):
    steps = list(
        gs.iter_geometric_style_transfer(content, data.brick()[:64, :64], model="affine", **TINY)
    )
    assert steps[0].stage == "geometry" and steps[0].warped is not None
    texture_steps = steps[1:]
    assert all(s.stage == "texture" for s in texture_steps)
    assert [s.progress for s in texture_steps] == list(range(1, len(texture_steps) + 1))
    assert texture_steps[-1].done and texture_steps[-1].result is not None
    assert not any(s.done for s in texture_steps[:-1])


def test_a_given_transform_skips_the_estimate(content):
    shift = gs.fit_affine([[0, 0], [0, 30], [30, 0]], [[3, 2], [3, 32], [33, 2]])
    result = gs.geometric_style_transfer(content, data.brick()[:64, :64], transform=shift, **TINY)
    assert result.transform is shift
    np.testing.assert_allclose(result.warped, gs.warp_image(content, shift))


@pytest.mark.slow
def test_closing_stops_the_texture_stage(content):
    steps = gs.iter_geometric_style_transfer(
        content, data.brick()[:64, :64], model="affine", **TINY
    )
    next(steps), next(steps)
    steps.close()
    with pytest.raises(StopIteration):
        next(steps)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"style": None}, "style image"),
        ({"model": "perspective"}, "unknown model"),
        ({"method": "magic"}, "unknown method"),
        ({"content": np.zeros((8, 8, 3))}, "32 x 32"),
        ({"geometry_style": np.full((64, 64), np.nan)}, "NaN"),
        # texture options too: not after minutes of geometric stage
        ({"levels": 0}, "levels"),
        ({"iterations": [1, 2, 3], "levels": 2}, "iterations"),
        ({"backbone": "no/such/weights.pth"}, "no VGG-19 weights file"),
    ],
)
def test_bad_input_is_refused_before_any_work(content, kwargs, message):
    args = {"content": content, "style": data.brick()[:64, :64]}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        gs.iter_geometric_style_transfer(**args)


@pytest.mark.slow
def test_cli_transfer_with_geometry_writes_both_images(tmp_path, content):
    import imageio.v3 as iio

    from napari_geostyle import cli

    paths = {name: tmp_path / f"{name}.png" for name in ("content", "geometry", "texture")}
    iio.imwrite(paths["content"], (content * 255).astype(np.uint8))
    iio.imwrite(paths["geometry"], (np.rot90(content) * 255).astype(np.uint8))
    iio.imwrite(paths["texture"], data.brick()[:64, :64])
    out, warped = tmp_path / "out.png", tmp_path / "warped.png"
    code = cli.main([
        "transfer", str(paths["content"]), "--texture", str(paths["texture"]),
        "--geometry", str(paths["geometry"]), "--model", "affine", "-o", str(out),
        "--warped-output", str(warped), "--size", "48", "--levels", "2", "--iterations", "2",
        "--backbone", "random", "--device", "cpu",
    ])  # fmt: skip
    assert code == 0
    assert iio.imread(out).shape == (48, 48, 3)
    assert iio.imread(warped).shape == (64, 64, 3)


def test_cli_transfer_with_a_missing_geometry_file_is_one_line(tmp_path, capsys, content):
    import imageio.v3 as iio

    from napari_geostyle import cli

    iio.imwrite(tmp_path / "c.png", (content * 255).astype(np.uint8))
    code = cli.main(
        [
            "transfer",
            str(tmp_path / "c.png"),
            "--texture",
            str(tmp_path / "c.png"),
            "--geometry",
            str(tmp_path / "nope.png"),
            "-o",
            str(tmp_path / "o.png"),
        ]
    )
    assert code == 2
    assert "no image file" in capsys.readouterr().err
