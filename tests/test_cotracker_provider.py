"""The CoTracker3 providers agree with the predictors they wrap and cover both time directions."""
import numpy as np
import torch

from cotracker3 import CoTrackerOnlinePredictor
from sfm_tracks.tracking.cotracker import CoTrackerOnlineProvider, CoTrackerProvider
from tests.synthetic import translating_video

SMALL = dict(latent_dim=32, hidden_size=48, corr_hidden=32, num_virtual_tracks=4, space_depth=1, model_resolution=(32, 48))


def _queries():
    return np.array([[0, 10.0, 12.0], [5, 30.0, 20.0], [11, 50.0, 40.0]], np.float32)


def test_offline_provider_matches_predictor():
    torch.manual_seed(0)
    prov = CoTrackerProvider(checkpoint=None, window_len=8, iters=2, **SMALL)
    frames = translating_video(T=12, H=48, W=64)
    tracks = prov(frames, _queries())
    assert tracks.xy.shape == (12, 3, 2) and tracks.confidence.shape == (12, 3)
    np.testing.assert_array_equal(tracks.query_frame, [0, 5, 11])
    np.testing.assert_allclose(tracks.xy[[0, 5, 11], [0, 1, 2]], _queries()[:, 1:], atol=1e-4)
    assert tracks.visible[[0, 5, 11], [0, 1, 2]].all()
    video = torch.from_numpy(frames).permute(0, 3, 1, 2)[None].float()
    xy, _, vis, _ = prov.predictor(video, queries=torch.from_numpy(_queries())[None], backward_tracking=True, return_scores=True, iters=2)
    np.testing.assert_allclose(tracks.xy, xy[0].numpy(), atol=1e-5)
    assert "random" in prov.checkpoint_source


def test_online_provider_streams_both_directions():
    torch.manual_seed(0)
    prov = CoTrackerOnlineProvider(checkpoint=None, window_len=8, iters=2, **SMALL)
    frames = translating_video(T=12, H=48, W=64)
    q = _queries()
    tracks = prov(frames, q)
    assert tracks.xy.shape == (12, 3, 2) and np.isfinite(tracks.xy).all()
    np.testing.assert_allclose(tracks.xy[[0, 5, 11], [0, 1, 2]], q[:, 1:], atol=1e-4)
    # Frames after the query come from the forward stream, as the online predictor gives them.
    pred = CoTrackerOnlinePredictor(window_len=8, **SMALL)
    pred.model.load_state_dict(prov.predictor.model.state_dict())
    video = torch.from_numpy(frames).permute(0, 3, 1, 2)[None].float()
    pred(video[:, :1], is_first_step=True, queries=torch.from_numpy(q)[None])
    for ind in range(0, 12 - 4, 4):
        fwd = pred(video[:, ind:ind + 8], iters=2)[0][0].numpy()
    np.testing.assert_allclose(tracks.xy[6:, 1], fwd[6:, 1], atol=1e-4)
    # Frames before a late query are not the forward stream's placeholder (the query position itself).
    assert np.abs(tracks.xy[:5, 2] - fwd[:5, 2]).max() > 1e-3


def test_positions_outside_the_image_are_not_visible():
    """Random weights drift points off the frame; such positions must not count as observations
    (the cycle filter re-queries visible positions, and the predictor rejects out-of-image queries)."""
    torch.manual_seed(0)
    prov = CoTrackerProvider(checkpoint=None, window_len=8, iters=2, vis_threshold=0.0, **SMALL)
    frames = translating_video(T=12, H=48, W=64)
    q = np.array([[0, 1.0, 1.0], [0, 62.5, 46.5], [6, 0.0, 47.0]], np.float32)
    tracks = prov(frames, q)
    x, y = tracks.xy[..., 0], tracks.xy[..., 1]
    outside = (x < -0.5) | (x > 63.5) | (y < -0.5) | (y > 47.5)
    assert outside.any() and not (tracks.visible & outside).any()
    assert tracks.visible[[0, 0, 6], [0, 1, 2]].all()


def test_unavailable_device_is_a_value_error():
    import pytest

    if torch.cuda.is_available():
        bad = "cuda:999"
        with pytest.raises((ValueError, RuntimeError)):
            CoTrackerProvider(checkpoint=None, device=bad, window_len=8, **SMALL)
        return
    with pytest.raises(ValueError, match="no CUDA device"):
        CoTrackerProvider(checkpoint=None, device="cuda", window_len=8, **SMALL)
    with pytest.raises(ValueError, match="device must be"):
        CoTrackerProvider(checkpoint=None, device="gpu0", window_len=8, **SMALL)
