"""warp_image / warp_tensor / sampling_map, checked against skimage.transform.warp."""

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter, map_coordinates
from skimage.transform import warp as sk_warp

from napari_geostyle.core import images
from napari_geostyle.core import transforms as T
from napari_geostyle.core import warp as W

SHAPE = (48, 64)


def smooth_image(shape=SHAPE, channels=3, seed=0):
    noise = np.random.default_rng(seed).random(shape + (channels,))
    image = gaussian_filter(noise, (2, 2, 0))
    image = (image - image.min()) / (image.max() - image.min())
    return image.astype(np.float32)


def tps_transform(seed=0, displacement=2.5):
    rng = np.random.default_rng(seed)
    rows = np.linspace(8, SHAPE[0] - 8, 3)
    cols = np.linspace(8, SHAPE[1] - 8, 3)
    src = np.stack(np.meshgrid(rows, cols, indexing="ij"), -1).reshape(-1, 2) + rng.uniform(
        -3, 3, (9, 2)
    )
    return T.fit_tps(src, src + rng.normal(0, displacement, src.shape))


def sk_reference(image, transform, output_shape=None, mode="edge", preserve_range=False):
    """skimage.warp's inverse_map takes (x, y) output coordinates, returns (x, y) content ones."""

    def inverse_map(xy):
        return transform.sample_points(xy[:, ::-1])[:, ::-1]

    return sk_warp(
        image,
        inverse_map,
        output_shape=output_shape,
        order=1,
        mode=mode,
        preserve_range=preserve_range,
    )


def test_tps_warp_matches_skimage():
    image = smooth_image()
    tf = tps_transform()
    ours = W.warp_image(image, tf)
    assert ours.dtype == np.float32 and ours.shape == image.shape
    oracle = sk_reference(image.astype(np.float64), tf)
    np.testing.assert_allclose(ours[2:-2, 2:-2], oracle[2:-2, 2:-2], atol=1e-4)


def test_affine_warp_matches_skimage_with_other_output_shape():
    image = smooth_image(channels=1)[..., 0]
    tf = T.AffineTransform([[0.9, 0.1, 3.0], [-0.08, 1.05, -4.0]])
    ours = W.warp_image(image, tf, output_shape=(40, 70))
    assert ours.shape == (40, 70)
    oracle = sk_reference(image.astype(np.float64), tf, output_shape=(40, 70))
    np.testing.assert_allclose(ours[2:-2, 2:-2], oracle[2:-2, 2:-2], atol=1e-4)


def test_uint8_stays_uint8_and_matches_skimage():
    image = (smooth_image() * 255).round().astype(np.uint8)
    tf = tps_transform(1)
    ours = W.warp_image(image, tf)
    assert ours.dtype == np.uint8
    oracle = sk_reference(image, tf, preserve_range=True)
    assert np.abs(ours.astype(int) - np.rint(oracle)).max() <= 1


def test_identity_warp_returns_the_image():
    identity = T.AffineTransform(np.eye(3))
    for image in [
        (smooth_image() * 255).astype(np.uint8),
        (smooth_image(channels=1)[..., 0] * 65535).astype(np.uint16),
        smooth_image(channels=4).astype(np.float64),
        np.arange(48 * 64, dtype=np.int16).reshape(SHAPE) - 1000,
    ]:
        out = W.warp_image(image, identity)
        assert out.dtype == image.dtype and out.shape == image.shape
        np.testing.assert_allclose(out, image, atol=1e-6 if image.dtype.kind == "f" else 0)


def test_bool_mask_stays_a_mask_and_moves_with_the_image():
    mask = np.zeros(SHAPE, bool)
    mask[10:30, 20:40] = True
    shift = T.AffineTransform([[1.0, 0.0, 3.0], [0.0, 1.0, -5.0]])  # rows +3, cols -5
    out = W.warp_image(mask, shift)
    assert out.dtype == bool and out.shape == mask.shape
    np.testing.assert_array_equal(out, np.roll(mask, (3, -5), axis=(0, 1)))


def test_feature_lands_where_map_points_says():
    # Coordinate ramps: bilinear sampling reproduces a linear image exactly, so the warped ramps
    # read back the content (row, col) that each output pixel shows.
    rows, cols = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]].astype(np.float32)
    ramps = np.stack([rows, cols, np.zeros_like(rows)], axis=2)
    tf = tps_transform(2)
    warped = W.warp_image(ramps, tf)
    features = np.array([[20.0, 30.0], [12.5, 40.25], [30.0, 18.0]])
    landed = tf.map_points(features)
    assert np.abs(landed - features).max() > 1.0  # the features did move
    seen = np.stack(
        [map_coordinates(warped[..., axis], landed.T, order=1) for axis in range(2)], axis=1
    )
    np.testing.assert_allclose(seen, features, atol=0.02)


def test_alpha_and_channels_are_warped_alike():
    rgb = smooth_image()
    alpha = smooth_image(channels=1, seed=5)
    rgba = np.concatenate([rgb, alpha], axis=2)
    tf = tps_transform(3)
    out = W.warp_image(rgba, tf)
    assert out.shape == rgba.shape
    np.testing.assert_allclose(out[..., 3], W.warp_image(alpha[..., 0], tf), atol=1e-6)
    np.testing.assert_allclose(out[..., :3], W.warp_image(rgb, tf), atol=1e-6)


def test_padding_modes():
    image = np.full(SHAPE, 200, np.uint8)
    shift = T.AffineTransform(
        [[1.0, 0.0, 10.0], [0.0, 1.0, -12.0]]
    )  # uncovers a top and right band
    border = W.warp_image(image, shift)
    assert border.min() == 200  # no black borders by default
    zeros = W.warp_image(image, shift, padding="zeros")
    assert zeros[:9].max() == 0 and zeros[:, -11:].max() == 0 and zeros[20, 20] == 200
    reflection = W.warp_image(
        np.tile(np.arange(64, dtype=np.float32), (48, 1)), shift, padding="reflection"
    )
    # output column 63 samples content column 75; reflected about the image edge (63.5): 52
    np.testing.assert_allclose(reflection[20, -1], 52.0, atol=1e-4)


def test_tiles_give_the_same_result(monkeypatch):
    image = smooth_image()
    tf = T.AffineTransform([[1.0, 0.05, 1.0], [0.0, 1.0, 0.0]]).then(tps_transform(4))
    whole = W.warp_image(image, tf)
    monkeypatch.setattr(W, "_TILE_PIXELS", 3 * SHAPE[1] + 5)  # 3-row tiles, a ragged last tile
    tiled = W.warp_image(image, tf)
    # each tile samples its own content crop: the same values up to float32 rounding
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-6)


def test_warp_tensor_matches_warp_image_and_is_differentiable():
    image = smooth_image()
    tf = tps_transform(5)
    tensor = images.image_to_tensor(image).requires_grad_(True)
    warped = W.warp_tensor(tensor, tf, output_shape=(40, 50))
    assert warped.shape == (1, 3, 40, 50)
    np.testing.assert_allclose(
        images.tensor_to_image(warped), W.warp_image(image, tf, (40, 50)), atol=1e-6
    )
    warped.sum().backward()
    assert tensor.grad is not None and tensor.grad.abs().sum() > 0


def test_sampling_map_is_the_sample_map_on_the_pixel_grid():
    tf = tps_transform(6)
    field = W.sampling_map(tf, (10, 12))
    assert field.shape == (10, 12, 2) and field.dtype == np.float64
    np.testing.assert_allclose(field[3, 7], tf.sample_points([3.0, 7.0])[0], atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mode": "cubic"}, "mode"),
        ({"padding": "black"}, "padding"),
        ({"device": "tpu"}, "device"),
        ({"output_shape": (0, 5)}, "positive"),
    ],
)
def test_bad_options_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        W.warp_image(smooth_image(), T.AffineTransform(np.eye(3)), **kwargs)


@pytest.mark.parametrize(
    "image, transform, message",
    [
        (np.zeros((2, 8, 8, 3)), T.AffineTransform(np.eye(3)), "2D image"),
        (np.zeros((8, 8, 5)), T.AffineTransform(np.eye(3)), "channels"),
        (np.zeros((8, 8)), np.eye(3), "transform"),
        (np.full((8, 8), np.nan), T.AffineTransform(np.eye(3)), "NaN"),
    ],
)
def test_bad_inputs_raise(image, transform, message):
    with pytest.raises(ValueError, match=message):
        W.warp_image(image, transform)


def test_warp_tensor_rejects_non_tensors():
    with pytest.raises(ValueError, match="float tensor"):
        W.warp_tensor(np.zeros((1, 3, 4, 4)), T.AffineTransform(np.eye(3)))
    with pytest.raises(ValueError, match="float tensor"):
        W.warp_tensor(torch.zeros(3, 4, 4), T.AffineTransform(np.eye(3)))


# --------------------------------------------------------------------------- exact for every dtype
def _shift(rows=2.0, cols=-3.0):
    return T.AffineTransform([[1.0, 0.0, rows], [0.0, 1.0, cols]])


@pytest.mark.parametrize(
    "dtype, extreme",
    [(np.int32, 2**31 - 1), (np.int32, -(2**31)), (np.uint32, 2**32 - 1), (np.int64, -(2**32))],
)
@pytest.mark.parametrize("mode", ["bilinear", "nearest", "bicubic"])
def test_wide_integers_come_back_exactly(dtype, extreme, mode):
    image = np.zeros(SHAPE, dtype)
    image[10:20, 10:30] = extreme
    image[30, 40] = extreme - 1 if extreme > 0 else extreme + 1
    out = W.warp_image(image, T.AffineTransform(np.eye(3)), mode=mode)
    assert out.dtype == image.dtype
    np.testing.assert_array_equal(out, image)
    moved = W.warp_image(image, _shift(), mode=mode)  # a whole-pixel shift moves values as they are
    np.testing.assert_array_equal(moved[12:22, 7:27], image[10:20, 10:30])
    assert moved[32, 37] == image[30, 40]


def test_nearest_keeps_label_ids_above_2_to_the_24_distinct():
    labels = np.zeros(SHAPE, np.uint32)
    labels[5:25, 5:30] = 2**24 + 1
    labels[25:45, 30:60] = 2**24 + 2  # merged with its neighbour in float32
    out = W.warp_image(labels, tps_transform(7), mode="nearest")
    assert set(np.unique(out)) <= {0, 2**24 + 1, 2**24 + 2}
    assert {2**24 + 1, 2**24 + 2} <= set(np.unique(out))


def test_nearest_matches_grid_sample_nearest():
    image = smooth_image()
    tf = tps_transform(8)
    for padding in W.PADDINGS:
        ours = W.warp_image(image, tf, mode="nearest", padding=padding)
        tensor = images.image_to_tensor(image)
        reference = images.tensor_to_image(
            W.warp_tensor(tensor, tf, mode="nearest", padding=padding)
        )
        # rounding ties may go either way through the normalised coordinates
        assert np.mean(ours == reference) > 0.999


@pytest.mark.parametrize("padding", W.PADDINGS)
@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_crops_match_whole_image_sampling(monkeypatch, padding, mode):
    # a shift that reads far past two edges: the crops must pad exactly as the whole image does
    image = smooth_image()
    tf = T.AffineTransform([[1.1, 0.2, -30.0], [-0.15, 0.9, 40.0]])
    tensor = images.image_to_tensor(image)
    reference = images.tensor_to_image(W.warp_tensor(tensor, tf, mode=mode, padding=padding))
    monkeypatch.setattr(W, "_CROP_PIXELS", 40)  # forces blocks down to a few pixels
    crops = []
    original = W._crop_tensor
    monkeypatch.setattr(W, "_crop_tensor", lambda *a: crops.append(original(*a)) or crops[-1])
    ours = W.warp_image(image, tf, mode=mode, padding=padding)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=2e-5)
    assert len(crops) > 20 and max(c.shape[-2] * c.shape[-1] for c in crops) < image[..., 0].size


def test_only_crops_are_converted_to_float(monkeypatch):
    # the memory bound: no tile converts (much) more than it reads, never the whole image
    image = (smooth_image((256, 256)) * 255).astype(np.uint8)
    tf = T.AffineTransform([[0.97, 0.05, 3.0], [-0.05, 0.97, 4.0]])
    whole = W.warp_image(image, tf)
    monkeypatch.setattr(W, "_TILE_PIXELS", 32 * 256)
    sizes = []
    original = W._crop_tensor
    monkeypatch.setattr(W, "_crop_tensor", lambda *a: sizes.append(original(*a)) or sizes[-1])
    tiled = W.warp_image(image, tf)
    assert len(sizes) == 8
    assert max(t.shape[-2] * t.shape[-1] for t in sizes) < 256 * 256 / 4
    assert np.abs(tiled.astype(int) - whole).max() <= 1


def test_float64_beyond_float32_range_is_warped_not_nan():
    image = np.full(SHAPE, 1e300)
    image[10:20, 10:20] = -1e300
    out = W.warp_image(image, _shift())
    assert out.dtype == np.float64 and np.all(np.isfinite(out))
    np.testing.assert_array_equal(out[12:22, 7:17], -1e300)


def test_float16_overshoot_stays_finite():
    image = np.zeros(SHAPE, np.float16)
    image[::2] = np.finfo(np.float16).max  # bicubic rings past the largest float16
    out = W.warp_image(image, tps_transform(9), mode="bicubic")
    assert out.dtype == np.float16 and np.all(np.isfinite(out))


def test_huge_int64_needs_nearest():
    image = np.full(SHAPE, 2**60, np.int64)
    with pytest.raises(ValueError, match="nearest"):
        W.warp_image(image, _shift())
    np.testing.assert_array_equal(W.warp_image(image, _shift(), mode="nearest"), image)


def test_grad_tensor_is_refused_and_plain_tensor_accepted():
    tensor = torch.rand(16, 16, requires_grad=True)
    with pytest.raises(ValueError, match="detach"):
        W.warp_image(tensor, T.AffineTransform(np.eye(3)))
    out = W.warp_image(tensor.detach(), T.AffineTransform(np.eye(3)))
    np.testing.assert_allclose(out, tensor.detach().numpy(), atol=1e-6)
