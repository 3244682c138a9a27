"""iter_stack_transfer: every frame of a stack, coherent (one geometry, warm-started texture)."""

import numpy as np
import pytest

from napari_geostyle.core.stack_transfer import iter_stack_transfer, warm_start_options

TINY = {
    "backbone": "random",
    "size": 128,
    "levels": 2,
    "iterations": 2,
    "device": "cpu",
    "preview_every": 1,
}


def _frames(count=3, shape=(48, 48)) -> np.ndarray:
    """A bright disc moving right over a gradient, ``count`` frames, uint8 RGB."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    frames = np.zeros((count, *shape, 3), np.uint8)
    for t in range(count):
        frames[t, ..., 2] = (40 + 100 * rows / shape[0]).astype(np.uint8)
        frames[t][(rows - 24) ** 2 + (cols - 12 - 4 * t) ** 2 < 64] = (230, 80, 40)
    return frames


def _style() -> np.ndarray:
    rows, cols = np.mgrid[0:48, 0:48]
    stripes = (((rows + cols) // 4) % 2 * 200 + 30).astype(np.uint8)
    return np.stack([stripes, stripes // 2, 255 - stripes], -1)


@pytest.mark.slow
def test_coherent_texture_warm_starts_later_frames_and_counts_progress(monkeypatch):
    from napari_geostyle.core import texture

    starts = []
    solve = texture.iter_texture_transfer

    def spy(content, style, **options):
        starts.append(options.get("init"))
        return solve(content, style, **options)

    monkeypatch.setattr(texture, "iter_texture_transfer", spy)
    steps = list(iter_stack_transfer(_frames(), _style(), **TINY))
    finished = [s for s in steps if s.frame_done]
    assert [s.frame for s in finished] == [0, 1, 2]
    assert [s.done for s in finished] == [False, False, True] and steps[-1].done
    # frame 0 runs both levels (2 + 2 iterations); warm-started frames the finest only (2)
    assert {s.levels for s in steps if s.frame == 0} == {2}
    assert {s.levels for s in steps if s.frame > 0} == {1}
    assert steps[-1].progress == steps[-1].total == 4 + 2 + 2
    assert [s.progress for s in steps] == sorted(s.progress for s in steps)
    for step in finished:
        assert step.image.shape == (128, 128, 3) and step.image.dtype == np.float32
    # the options check (init left to the default) and frame 0 start from the content; frame t
    # from frame t-1's result
    assert starts[:2] == [None, "content"]
    assert starts[2] is finished[0].image and starts[3] is finished[1].image


@pytest.mark.slow
def test_independent_frames_all_start_from_their_content():
    steps = list(iter_stack_transfer(_frames(), _style(), coherent=False, **TINY))
    assert {s.levels for s in steps} == {2}
    assert steps[-1].progress == steps[-1].total == 3 * 4
    # frame 0 is the same solve either way
    coherent = next(s for s in iter_stack_transfer(_frames(), _style(), **TINY) if s.frame_done)
    np.testing.assert_allclose(
        steps[[s.frame_done for s in steps].index(True)].image, coherent.image, atol=1e-5
    )


@pytest.mark.slow
def test_geometry_is_estimated_once_when_coherent():
    frames = _frames()
    geometry = frames[1][:, ::-1].copy()
    steps = list(iter_stack_transfer(frames, geometry_style=geometry, model="affine", device="cpu"))
    assert len(steps) == 3 and all(s.frame_done for s in steps) and steps[-1].done
    assert [s.progress for s in steps] == [1, 2, 3] and steps[0].total == 3
    assert steps[0].transform is steps[1].transform is steps[2].transform
    assert steps[0].image.shape == frames[0].shape
    independent = list(
        iter_stack_transfer(
            frames, geometry_style=geometry, model="affine", device="cpu", coherent=False
        )
    )
    assert independent[0].transform is not independent[1].transform


@pytest.mark.slow
def test_both_stages_yield_each_warp_before_its_texture():
    frames = _frames(2)
    steps = list(
        iter_stack_transfer(frames, _style(), frames[1][:, ::-1].copy(), model="affine", **TINY)
    )
    stages = [(s.frame, s.stage) for s in steps if s.stage == "geometry" or s.frame_done]
    assert stages == [(0, "geometry"), (0, "texture"), (1, "geometry"), (1, "texture")]
    assert steps[0].warped.shape == frames[0].shape


def test_closing_stops_at_once_and_frames_are_read_lazily():
    reads = []

    class Frames:
        def __len__(self):
            return 3

        def __getitem__(self, index):
            reads.append(index)
            return _frames(3)[index]

    steps = iter_stack_transfer(Frames(), _style(), **TINY)
    assert reads == [0]  # checked on the first frame only
    for step in steps:
        if step.frame_done:
            break
    steps.close()
    assert reads == [0, 0]


@pytest.mark.parametrize(
    "args, kwargs, words",
    [
        ((_frames(), None), {}, "texture style, a geometry style"),
        ((_frames()[:0], _style()), {}, "empty"),
        ((_frames(), _style()), {"init": "noise"}, "init"),
        ((_frames(), _style()), {"size": "big"}, "size"),
        ((_frames(), None, _style()), {"model": "spline"}, "spline"),
        ((np.zeros((2, 8, 8)), None, _style()), {}, "frame 0"),
    ],
)
def test_bad_input_is_a_value_error_before_any_work(args, kwargs, words):
    with pytest.raises(ValueError, match=words):
        iter_stack_transfer(*args, **kwargs)


def test_warm_start_options_solve_the_finest_level():
    assert warm_start_options({"levels": 3, "iterations": [5, 6, 7], "init": "x"}, True) == {
        "levels": 1,
        "iterations": 7,
    }
    assert warm_start_options({"levels": 3, "init": "x"}, False) == {"levels": 3}
