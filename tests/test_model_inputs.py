"""Bad inputs get clear errors; chunked processing gives the same outputs as unchunked."""
import pytest
import torch

from cotracker3 import CoTrackerOnlinePredictor, CoTrackerPredictor, CoTrackerThreeOffline, CoTrackerThreeOnline

SMALL = dict(latent_dim=32, hidden_size=48, corr_hidden=32, num_virtual_tracks=4, space_depth=1, model_resolution=(32, 48))


@pytest.fixture(scope="module")
def offline():
    torch.manual_seed(0)
    return CoTrackerThreeOffline(window_len=8, **SMALL).eval()


def _video(T=6, H=32, W=48):
    return torch.rand(1, T, 3, H, W) * 255


def _queries(N=5, T=6, H=32, W=48):
    g = torch.Generator().manual_seed(1)
    return torch.stack([torch.randint(0, T, (N,), generator=g).float(), torch.rand(N, generator=g) * (W - 1), torch.rand(N, generator=g) * (H - 1)], -1)[None]


@pytest.mark.parametrize("video,queries,match", [
    (torch.rand(6, 3, 32, 48), _queries(), r"\(B, T, 3, H, W\)"),
    (_video(H=30), _queries(H=30), "multiples of 4"),
    (_video(), _queries()[..., :2], r"\(B=1, N, 3\)"),
    (_video(), torch.tensor([[[0.0, float("nan"), 3.0]]]), "NaN"),
    (_video(), torch.tensor([[[6.0, 1.0, 3.0]]]), r"query frames must lie in \[0, 5\]"),
    (_video(), torch.tensor([[[-1.0, 1.0, 3.0]]]), "query frames"),
])
def test_model_rejects_bad_input(offline, video, queries, match):
    with pytest.raises(ValueError, match=match):
        offline(video, queries)


@pytest.mark.parametrize("kw,match", [
    (dict(queries=torch.tensor([[[0.0, 60.0, 3.0]]])), "outside the 48x32 image"),
    (dict(queries=torch.tensor([[[0.5, 6.0, 3.0]]])), "integers"),
    (dict(queries=torch.tensor([[[0.0, float("inf"), 3.0]]])), "NaN or Inf"),
    (dict(queries=torch.zeros(1, 0, 3)), "empty"),
    (dict(grid_size=2, grid_query_frame=9), "grid_query_frame"),
])
def test_predictor_rejects_bad_queries(kw, match):
    pred = CoTrackerPredictor(window_len=8, **SMALL)
    with pytest.raises(ValueError, match=match):
        pred(_video(), **kw)


def test_predictor_rejects_bad_video():
    pred = CoTrackerPredictor(window_len=8, **SMALL)
    v = _video()
    v[0, 1, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        pred(v, grid_size=2)
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        pred(torch.rand(6, 32, 48, 3), grid_size=2)


def test_online_predictor_needs_first_step():
    pred = CoTrackerOnlinePredictor(window_len=8, **SMALL)
    with pytest.raises(RuntimeError, match="is_first_step"):
        pred(_video(T=8))
    pred(_video(T=8), is_first_step=True, grid_size=2)
    with pytest.raises(ValueError, match="at most 8 frames"):
        pred(_video(T=9))


def test_online_model_needs_init():
    m = CoTrackerThreeOnline(window_len=8, **SMALL)
    with pytest.raises(RuntimeError, match="init_video_online_processing"):
        m(_video(T=8), _queries(T=8), is_online=True)


def test_chunked_correlation_is_identical(offline):
    video, queries = _video(), _queries(N=9)
    with torch.no_grad():
        ref = offline(video, queries, iters=2)
        offline.corr_chunk_size = 4
        try:
            chunked = offline(video, queries, iters=2, fmaps_chunk_size=2)
        finally:
            offline.corr_chunk_size = None
    for a, b in zip(ref[:3], chunked[:3]):
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()


def test_predictor_scores_and_query_overwrite():
    torch.manual_seed(0)
    pred = CoTrackerPredictor(window_len=8, **SMALL)
    q = torch.tensor([[[2.0, 10.0, 7.0], [0.0, 40.0, 20.0]]])
    tracks, visible, vis, conf = pred(_video(), queries=q, backward_tracking=True, return_scores=True)
    assert tracks.shape == (1, 6, 2, 2) and visible.dtype == torch.bool and vis.shape == conf.shape == (1, 6, 2)
    assert torch.allclose(tracks[0, 2, 0], q[0, 0, 1:], atol=1e-4) and visible[0, 2, 0]
    assert ((vis >= 0) & (vis <= 1)).all() and ((conf >= 0) & (conf <= 1)).all()
    assert torch.equal(visible[0, 3:, 0], vis[0, 3:, 0] > 0.9)


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_backward_pass_reuses_the_forward_features_bit_for_bit(mode, monkeypatch):
    """Frames encode independently: the reversed video's features are the forward ones flipped, so the
    predictor encodes once for both directions and its outputs equal two full model calls exactly."""
    torch.manual_seed(0)
    pred = CoTrackerPredictor(window_len=8, mode=mode, **SMALL)
    raw = _video()
    video = pred._resize(raw)
    assert torch.equal(pred.model.features(video.flip(1), mode=mode), pred.model.features(video, mode=mode).flip(1))
    q = torch.tensor([[[2.0, 10.0, 7.0], [5.0, 40.0, 20.0]]])
    shared = pred(raw, queries=q, backward_tracking=True, return_scores=True)
    monkeypatch.delattr(CoTrackerThreeOffline, "features")  # the predictor then lets each pass encode itself
    twice = pred(raw, queries=q, backward_tracking=True, return_scores=True)
    for a, b in zip(shared, twice):
        assert torch.equal(a, b)


def test_dense_grid_encodes_the_video_once(monkeypatch):
    """Dense tracking (queries=None, grid_size=0) runs step^2 sub-grid passes over one encoding of the
    video; the outputs equal passes that each encode the video themselves."""
    torch.manual_seed(0)
    pred = CoTrackerPredictor(window_len=8, **SMALL)
    raw = _video(T=3, H=4, W=160)  # W // 80 = 2: four sub-grid passes of 80 x 2 points
    calls = []
    features = CoTrackerThreeOffline.features

    def counted(self, *a, **k):
        calls.append(1)
        return features(self, *a, **k)

    monkeypatch.setattr(CoTrackerThreeOffline, "features", counted)
    once = pred(raw, grid_size=0, backward_tracking=True, iters=1)
    assert len(calls) == 1 and once[0].shape == (1, 3, 4 * 80 * 2, 2)
    monkeypatch.delattr(CoTrackerThreeOffline, "features")  # every pass encodes inside the model
    each = pred(raw, grid_size=0, backward_tracking=True, iters=1)
    for a, b in zip(once, each):
        assert torch.equal(a, b)


def test_predictor_converts_numpy_and_list_inputs():
    """numpy / list queries and a numpy video give exactly the tensor results."""
    import numpy as np

    torch.manual_seed(0)
    pred = CoTrackerPredictor(window_len=8, **SMALL)
    video, q = _video(), torch.tensor([[[2.0, 10.0, 7.0], [0.0, 40.0, 20.0]]])
    ref = pred(video, queries=q)
    for queries in (q.numpy(), q.tolist(), q.numpy().astype(np.float64)):
        out = pred(video.numpy(), queries=queries)
        assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])
    online = CoTrackerOnlinePredictor(window_len=8, **SMALL)
    assert online(_video(T=8).numpy(), is_first_step=True, queries=q.tolist()) == (None, None)


@pytest.mark.parametrize("kw,match", [
    (dict(queries=[[0.0, 1.0, 2.0]]), r"\(B, N, 3\).*queries\[None\]"),
    (dict(queries=[[[0.0, 1.0]], [[1.0, 2.0, 3.0]]]), r"queries must be a tensor or array \(B, N, 3\)"),
    (dict(queries="0,1,2"), r"queries must be numbers|queries must be a tensor"),
    (dict(queries=[[[0.0, float("nan"), 2.0]]]), "NaN"),
    (dict(grid_size=-3), "grid_size must be an integer >= 0"),
    (dict(grid_size=2.5), "grid_size must be an integer"),
    (dict(grid_size=2, grid_query_frame=1.5), "grid_query_frame must be an integer"),
    (dict(grid_size=2, segm_mask=torch.ones(32, 48)), r"segm_mask must be \(1, 1, H, W\)"),
])
def test_predictor_refuses_bad_api_input(kw, match):
    pred = CoTrackerPredictor(window_len=8, **SMALL)
    with pytest.raises(ValueError, match=match):
        pred(_video(), **kw)


@pytest.mark.parametrize("video,match", [
    (torch.ones(1, 6, 3, 32, 48, dtype=torch.bool), "dtype torch.bool"),
    (torch.rand(1, 6, 32, 48, 3) * 255, r"\(B, T, 3, H, W\)"),
    ("video.mp4", "video must be a tensor or array"),
    ([[1, 2], [3]], "video must be a tensor or array"),
])
def test_predictor_refuses_bad_video(video, match):
    pred = CoTrackerPredictor(window_len=8, **SMALL)
    with pytest.raises(ValueError, match=match):
        pred(video, grid_size=2)


def test_online_predictor_refuses_bad_grid():
    pred = CoTrackerOnlinePredictor(window_len=8, **SMALL)
    for g in (0, -1):
        with pytest.raises(ValueError, match="grid_size"):
            pred(_video(T=8), is_first_step=True, grid_size=g)


def test_video_scaled_to_one_warns():
    """A 0..1 float video is the classic range mistake: warned about, while a 0..255 one is not."""
    import warnings

    pred = CoTrackerPredictor(window_len=8, **SMALL)
    with pytest.warns(UserWarning, match="multiply by 255"):
        pred(_video() / 255, grid_size=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pred(_video(), grid_size=2)
        pred(_video().to(torch.uint8), grid_size=2)
