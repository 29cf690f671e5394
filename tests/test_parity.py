"""Numerical parity with the official CoTracker3 on the reference fixtures (tests/fixtures/ORIGIN.md).

Tolerances are the ones the fixture README recommends for a float32 re-implementation on CPU.
"""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cotracker3 import CoTrackerOnlinePredictor, CoTrackerPredictor, CoTrackerThreeOffline, CoTrackerThreeOnline

FIX = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIX))
from make_weights import checksums, make_state_dict  # noqa: E402

COORD_ATOL = 2e-4
PROB_ATOL = 5e-6


def weights(kind):
    return make_state_dict(str(FIX / f"cotracker3_{kind}_state_dict.json"), 1000)


def close_rel(a, ref, rel=2e-5):
    a, ref = np.asarray(a), np.asarray(ref)
    assert a.shape == ref.shape, (a.shape, ref.shape)
    assert np.abs(a - ref).max() <= rel * np.abs(ref).max(), np.abs(a - ref).max() / np.abs(ref).max()


@pytest.fixture(autouse=True)
def _threads(two_torch_threads):
    torch.manual_seed(0)
    yield


@pytest.mark.parametrize("kind", ["offline", "online"])
def test_weight_recipe_matches_checksums(kind):
    """The fixtures are only meaningful if this torch draws the same random weights."""
    import json

    ref = json.load(open(FIX / "weights_checksums_seed1000.json"))[kind]
    got = checksums(weights(kind))
    assert got.keys() == ref.keys()
    for k in got:
        assert np.allclose(got[k], ref[k], rtol=1e-6, atol=1e-9), k


@pytest.mark.parametrize("cls,kind", [(CoTrackerThreeOffline, "offline"), (CoTrackerThreeOnline, "online")])
def test_state_dict_names_shapes_order(cls, kind):
    import json

    entries = json.load(open(FIX / f"cotracker3_{kind}_state_dict.json"))["entries"]
    window = 60 if kind == "offline" else 16
    sd = cls(stride=4, corr_radius=3, window_len=window).state_dict()
    assert [(k, list(v.shape)) for k, v in sd.items()] == [(n, s) for n, s, _ in entries]
    assert sum(v.numel() for k, v in sd.items() if k != "time_emb") == 25385700


def test_time_embedding_buffer_is_official():
    m = CoTrackerThreeOffline(window_len=60)
    assert torch.equal(m.time_emb, weights("offline")["time_emb"])


@pytest.fixture(scope="module")
def offline_run():
    """Run the offline fixture once, capturing the intermediates the fixture records."""
    z = np.load(FIX / "offline_model.npz")
    m = CoTrackerThreeOffline(stride=4, corr_radius=3, window_len=60).eval()
    m.load_state_dict(weights("offline"))
    cap = {"uf_in": [], "uf_out": [], "corr_in": [], "corr_emb": []}
    h = [
        m.updateformer.register_forward_hook(lambda mod, i, o: cap["uf_in"].append(i[0]) or cap["uf_out"].append(o)),
        m.corr_mlp.register_forward_hook(lambda mod, i, o: cap["corr_in"].append(i[0])),
    ]
    orig = m.correlation_embedding
    m.correlation_embedding = lambda *a: cap["corr_emb"].append(orig(*a)) or cap["corr_emb"][-1]
    torch.manual_seed(0)
    with torch.no_grad():
        out = m(torch.from_numpy(z["video_uint8"]).float(), torch.from_numpy(z["queries"]), iters=int(z["iters"]), is_train=True)
    for x in h:
        x.remove()
    return z, m, out, cap


def test_offline_model_outputs(offline_run):
    z, _, (coords, vis, conf, train), _ = offline_run
    np.testing.assert_allclose(coords.numpy(), z["out_coords"], atol=COORD_ATOL, rtol=0)
    np.testing.assert_allclose(vis.numpy(), z["out_vis"], atol=PROB_ATOL, rtol=0)
    np.testing.assert_allclose(conf.numpy(), z["out_conf"], atol=PROB_ATOL, rtol=0)
    per_iter = torch.stack(train[0][0]).numpy()
    np.testing.assert_allclose(per_iter, z["dbg_coords_per_iter"], atol=COORD_ATOL, rtol=0)


def test_offline_model_intermediates(offline_run):
    z, m, _, cap = offline_run
    pts = z["dbg_points"]
    video = torch.from_numpy(z["video_uint8"]).float()
    with torch.no_grad():
        fnet0 = m.fnet(2 * (video[0, :1] / 255.0) - 1.0)[0]
        close_rel(fnet0.numpy(), z["dbg_fnet_out_frame0"])
        close_rel(m.time_embedding(8, torch.float32).numpy(), z["dbg_time_emb_interp"])
        q = torch.from_numpy(z["queries"])
        pyramid = m.pyramid(m.encode(2 * (video / 255.0) - 1.0))
        support0 = m.support_features(pyramid, q[..., 0].long(), q[..., 1:] / 4)[0]  # (B, N, 49, C)
        close_rel(support0[:, pts].permute(0, 2, 1, 3).numpy(), z["dbg_track_feat_support_lvl0"])
    T, N = 8, 16
    corr0 = cap["corr_in"][0].reshape(1, T, N, 2401)
    close_rel(corr0[:, :, pts].numpy(), z["dbg_corr_volume_it0_lvl0"])
    close_rel(cap["corr_emb"][0][:, :, pts].numpy(), z["dbg_corr_emb_it0"])
    close_rel(cap["uf_in"][0][:, pts].numpy(), z["dbg_updateformer_in_it0"])
    close_rel(torch.stack(cap["uf_out"]).numpy(), z["dbg_updateformer_out"])


def test_online_model_streaming_and_full_clip():
    z = np.load(FIX / "online_model.npz")
    m = CoTrackerThreeOnline(stride=4, corr_radius=3, window_len=16).eval()
    m.load_state_dict(weights("online"))
    video, q = torch.from_numpy(z["video_uint8"]).float(), torch.from_numpy(z["queries"])
    pts = z["dbg_points"]
    cap = {"uf_in": [], "uf_out": []}
    h = m.updateformer.register_forward_hook(lambda mod, i, o: cap["uf_in"].append(i[0]) or cap["uf_out"].append(o))
    m.init_video_online_processing()
    iters = int(z["iters"])
    with torch.no_grad():
        for k, ind in enumerate(z["chunk_starts"]):
            coords, vis, conf, _ = m(video[:, ind:ind + 16], q, iters=iters, is_online=True)
            np.testing.assert_allclose(coords.numpy(), z[f"call{k}_coords"], atol=COORD_ATOL, rtol=0)
            np.testing.assert_allclose(vis.numpy(), z[f"call{k}_vis"], atol=PROB_ATOL, rtol=0)
            np.testing.assert_allclose(conf.numpy(), z[f"call{k}_conf"], atol=PROB_ATOL, rtol=0)
        h.remove()
        close_rel(torch.stack(cap["uf_out"][::iters]).numpy(), z["dbg_updateformer_out_call_it0"])
        close_rel(cap["uf_in"][iters][:, pts].numpy(), z["dbg_updateformer_in_call1_it0"])
        fnet0 = m.fnet(2 * (video[0, :1] / 255.0) - 1.0)[0]
        close_rel(fnet0.numpy(), z["dbg_fnet_out_frame0"])
        # Full-clip mode (training layout) gives the same tracks as streaming.
        coords, vis, conf, _ = m(video, q, iters=iters)
    np.testing.assert_allclose(coords.numpy(), z["out_coords"], atol=COORD_ATOL, rtol=0)
    np.testing.assert_allclose(vis.numpy(), z["out_vis"], atol=PROB_ATOL, rtol=0)


def test_offline_predictor():
    z = np.load(FIX / "offline_predictor.npz")
    pred = CoTrackerPredictor(checkpoint=None, window_len=60)
    pred.model.load_state_dict(weights("offline"))
    video = torch.from_numpy(z["video_uint8"]).float()
    tracks, visible, vis, conf = pred(video, grid_size=int(z["grid_size"]), grid_query_frame=int(z["grid_query_frame"]),
                                      backward_tracking=bool(z["backward_tracking"]), return_scores=True)
    np.testing.assert_allclose(tracks.numpy(), z["out_tracks"], atol=COORD_ATOL, rtol=0)
    np.testing.assert_array_equal(visible.numpy(), z["out_visibility"])
    # Float scores: forward pass from the query frame on, backward pass before it.
    qt = int(z["grid_query_frame"])
    np.testing.assert_allclose(vis[:, qt:].numpy(), z["dbg_model_vis_fwd"][:, qt:], atol=PROB_ATOL, rtol=0)
    np.testing.assert_allclose(vis[:, :qt].numpy(), z["dbg_model_vis_bwd"][:, ::-1][:, :qt], atol=PROB_ATOL, rtol=0)
    np.testing.assert_allclose(conf[:, qt:].numpy(), z["dbg_model_conf_fwd"][:, qt:], atol=PROB_ATOL, rtol=0)
    resized = pred._resize(video)[0, 0, :, ::8, ::8]
    close_rel(resized.numpy(), z["dbg_resized_frame0_sub8"])


def test_online_predictor():
    z = np.load(FIX / "online_predictor.npz")
    pred = CoTrackerOnlinePredictor(checkpoint=None, window_len=16)
    pred.model.load_state_dict(weights("online"))
    assert pred.step == 8
    video = torch.from_numpy(z["video_uint8"]).float()
    assert pred(video_chunk=video, is_first_step=True, queries=torch.from_numpy(z["queries"]), add_support_grid=True) == (None, None)
    np.testing.assert_allclose(pred.queries.numpy(), z["dbg_model_queries"], atol=1e-4, rtol=0)
    for k, ind in enumerate(z["chunk_starts"]):
        tracks, visible = pred(video_chunk=video[:, ind:ind + 16], add_support_grid=True)
        np.testing.assert_allclose(tracks.numpy(), z[f"call{k}_tracks"], atol=COORD_ATOL, rtol=0)
        np.testing.assert_array_equal(visible.numpy(), z[f"call{k}_visibility"])
