import warnings

import numpy as np
import pytest

from sfm_tracks.tracking.providers import LucasKanadeProvider, TrackProvider
from tests.synthetic import TranslationProvider, gt_positions, translating_video

V = (1.5, -0.5)


def test_lucas_kanade_tracks_both_directions():
    frames = translating_video(T=12, velocity=V)
    q = np.array([[0, 30, 30], [6, 40.3, 25.7], [11, 45, 35], [6, 20, 40]], np.float32)
    tr = LucasKanadeProvider()(frames, q)
    gt = gt_positions(q, 12, V)
    assert tr.xy.shape == (12, 4, 2)
    np.testing.assert_array_equal(tr.query_frame, [0, 6, 11, 6])
    inside = (gt[..., 0] > 3) & (gt[..., 0] < 76) & (gt[..., 1] > 3) & (gt[..., 1] < 60)
    assert tr.visible[inside].mean() > 0.95
    err = np.linalg.norm(tr.xy - gt, axis=-1)[tr.visible]
    assert np.median(err) < 0.1 and err.max() < 0.5
    # the mid-video and last-frame queries have positions before their query frame
    assert tr.visible[:6, 1].all() and tr.visible[:11, 2].sum() >= 9
    assert tr.confidence[6, 1] == 1.0 and (tr.confidence[tr.visible] > 0).all()
    assert (tr.confidence[~tr.visible] == 0).all()


def test_lucas_kanade_loses_occluded_point_for_good():
    frames = translating_video(T=12, velocity=V)
    rng = np.random.default_rng(5)
    frames[5:7, 10:40, 35:60] = rng.integers(0, 256, (2, 30, 25, 3), dtype=np.uint8)  # occluder on frames 5-6
    q = np.array([[0, 30, 30], [0, 8, 55]], np.float32)
    tr = LucasKanadeProvider()(frames, q)
    assert tr.visible[:5, 0].all()
    assert not tr.visible[5:, 0].any()  # lost stays lost in that direction
    assert tr.visible[:, 1].all()  # a point away from the occluder is unaffected
    assert np.isfinite(tr.xy).all()


def test_undefined_error_of_a_failed_point_raises_no_warning():
    """OpenCV leaves a failed point's patch error undefined; a signalling NaN there made numpy warn on photo sets."""
    frames = translating_video(T=4, velocity=V)
    lk = LucasKanadeProvider()
    snan = np.frombuffer(np.uint32(0x7F800001).tobytes(), np.float32)[0]

    def failing(a, b, p):
        q = p.reshape(-1, 2).copy()
        return q, np.array([True, False]), np.array([1.0, snan], np.float32)

    lk._lk = failing
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, ok, conf = lk._step(frames[0, ..., 0], frames[1, ..., 0], np.array([[30, 30], [40, 20]], np.float32))
    assert not ok[1] and np.isfinite(conf).all()


def test_leaving_the_image_is_lost():
    frames = translating_video(T=12, velocity=(4.0, 0.0))
    tr = LucasKanadeProvider()(frames, np.array([[0, 60, 30]], np.float32))
    gt = gt_positions([[0, 60, 30]], 12, (4.0, 0.0))
    assert not tr.visible[gt[:, 0, 0] > 79.5, 0].any()


def test_provider_validation_and_empty_queries():
    frames = translating_video(T=4)
    lk = LucasKanadeProvider()
    empty = lk(frames, np.zeros((0, 3)))
    assert empty.xy.shape == (4, 0, 2)
    with pytest.raises(ValueError, match="query frames"):
        lk(frames, np.array([[4, 1, 1]]))
    with pytest.raises(ValueError, match="uint8"):
        lk(frames.astype(np.float32), np.array([[0, 1, 1]]))
    with pytest.raises(TypeError):
        TrackProvider()


def test_gt_fake_is_exact():
    frames = translating_video(T=10, velocity=V, stamp=True)
    q = np.array([[3, 30, 30]], np.float32)
    tr = TranslationProvider(V)(frames, q)
    np.testing.assert_allclose(tr.xy, gt_positions(q, 10, V), atol=1e-5)


@pytest.mark.parametrize("frames,queries,match", [
    (np.zeros((4, 32, 32, 3), np.float32), [[0, 5, 5]], r"uint8 RGB.*\* 255"),
    (np.zeros((4, 32, 32), np.uint8), [[0, 5, 5]], r"\(T, H, W, 3\) uint8"),
    (np.zeros((0, 32, 32, 3), np.uint8), [[0, 5, 5]], "at least one frame"),
    (np.zeros((4, 32, 32, 3), np.uint8), [[0, 5], [1, 6]], r"\(N, 3\).*shape \(2, 2\)"),
    (np.zeros((4, 32, 32, 3), np.uint8), np.zeros((3, 2)), r"\(N, 3\).*shape \(3, 2\)"),
    (np.zeros((4, 32, 32, 3), np.uint8), [[0, np.nan, 5]], "NaN"),
    (np.zeros((4, 32, 32, 3), np.uint8), [[4, 5, 5]], r"integers in \[0, 3\]"),
    (np.zeros((4, 32, 32, 3), np.uint8), [[0, 40, 5]], "outside the 32x32 frames"),
    (np.zeros((4, 32, 32, 3), np.uint8), [[0, 1], [2, 3, 4]], r"\(N, 3\) array"),
])
def test_provider_refuses_bad_input(frames, queries, match):
    with pytest.raises(ValueError, match=match):
        LucasKanadeProvider()(frames, queries)


def test_provider_accepts_lists_and_tensors():
    import torch

    frames = translating_video(T=6, velocity=V)
    q = [[0, 30.0, 30.0], [3, 40.0, 25.0]]
    ref = LucasKanadeProvider()(frames, np.array(q, np.float32))
    for queries in (q, torch.tensor(q), np.array(q, np.float64)):
        out = LucasKanadeProvider()(list(frames), queries)
        np.testing.assert_array_equal(out.xy, ref.xy)
