"""mode="fast" (cotracker3/fast.py): same tracks as the exact mode within the issue-13 accuracy bounds.

Bounds (fast vs exact): mean track difference <= 0.05 px, 99th percentile <= 0.5 px, visibility
decisions agreeing on >= 99.5 % of points. Checked on the official architecture with the fixtures'
deterministic weights and video; BENCHMARKS.md has the same measured on real video at full size.
"""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cotracker3 import CoTrackerOnlinePredictor, CoTrackerPredictor, CoTrackerThreeOffline, CoTrackerThreeOnline
from cotracker3.fast import flat_level, patch_correlation
from cotracker3.model import bilinear_sample, neighbourhood

FIX = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIX))
from make_weights import make_state_dict  # noqa: E402


pytestmark = pytest.mark.usefixtures("two_torch_threads")


def assert_within_bounds(fast_xy, exact_xy, fast_vis, exact_vis):
    d = (fast_xy - exact_xy).norm(dim=-1).flatten()
    assert d.mean() <= 0.05, f"mean track difference {d.mean():.4f} px"
    assert d.quantile(0.99) <= 0.5, f"p99 track difference {d.quantile(0.99):.4f} px"
    agree = (fast_vis == exact_vis).float().mean()
    assert agree >= 0.995, f"visibility agreement {agree:.4f}"


def test_patch_correlation_equals_sampling_every_neighbour():
    """One (2r+2)^2 patch + one interpolation == bilinear sampling of all (2r+1)^2 neighbours, borders included."""
    torch.manual_seed(0)
    B, S, C, h, w, n = 2, 3, 8, 10, 14, 40
    level = torch.randn(B, S, C, h, w)
    support = torch.randn(B, n, 49, C)
    xy = torch.stack([torch.rand(B, S, n) * (w + 10) - 5, torch.rand(B, S, n) * (h + 10) - 5], -1)  # many outside
    xy[0, 0, :4] = torch.tensor([[0.0, 0.0], [w - 1.0, h - 1.0], [3.0, 4.0], [w - 1.5, 0.25]])  # integer and edge cases
    local = bilinear_sample(level.flatten(0, 1), (xy[..., None, :] + neighbourhood(3)).flatten(0, 1)).view(B, S, n, 49, C)
    ref = (local @ support[:, None].transpose(-1, -2)).flatten(-2)
    got = patch_correlation(flat_level(level, torch.float32), (B, S, h, w), xy, support, 3)
    got = got.transpose(1, 2)  # point-major -> (B, S, n, 2401)
    assert got.shape == ref.shape == (B, S, n, 49 * 49)
    assert (got - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_fast_model_within_bounds_of_exact():
    z = np.load(FIX / "offline_model.npz")
    m = CoTrackerThreeOffline(stride=4, corr_radius=3, window_len=60).eval()
    m.load_state_dict(make_state_dict(str(FIX / "cotracker3_offline_state_dict.json"), 1000))
    video, q = torch.from_numpy(z["video_uint8"]).float(), torch.from_numpy(z["queries"])
    with torch.no_grad():
        exact = m(video, q, iters=4)
        fast = m(video, q, iters=4, mode="fast")
    assert not torch.equal(exact[0], fast[0])  # the fast path really ran
    np.testing.assert_allclose(exact[0].numpy(), z["out_coords"], atol=2e-4, rtol=0)  # exact is still exact after it
    assert_within_bounds(fast[0], exact[0], fast[1] > 0.9, exact[1] > 0.9)


def test_fast_online_model_within_bounds_and_mode_checked():
    """Streaming windows carry fast estimates forward; the bounds still hold at the end of the clip.

    The model runs on the 64x96 fixture video directly (model_resolution stays 384x512, so the motion
    encoding has its usual scale; a predictor at a tiny model_resolution amplifies any difference).
    """
    z = np.load(FIX / "online_model.npz")
    video, q = torch.from_numpy(z["video_uint8"]).float(), torch.from_numpy(z["queries"])
    m = CoTrackerThreeOnline(stride=4, corr_radius=3, window_len=16).eval()
    m.load_state_dict(make_state_dict(str(FIX / "cotracker3_online_state_dict.json"), 1000))
    out = {}
    with torch.no_grad():
        for mode in ("exact", "fast"):
            m.init_video_online_processing()
            for ind in z["chunk_starts"]:
                out[mode] = m(video[:, ind:ind + 16], q, iters=int(z["iters"]), is_online=True, mode=mode)
    assert_within_bounds(out["fast"][0], out["exact"][0], out["fast"][1] > 0.9, out["exact"][1] > 0.9)
    assert CoTrackerOnlinePredictor(checkpoint=None, mode="fast").mode == "fast"
    with pytest.raises(ValueError, match="mode must be one of"):
        CoTrackerPredictor(checkpoint=None, mode="turbo")


def test_fast_provider_on_shipped_weights():
    """The provider plumbs mode through; the shipped small weights stay within the bounds too."""
    from cotracker3.checkpoint import EMBEDDED_DIR, EMBEDDED_FILES
    from sfm_tracks.tracking.cotracker import CoTrackerProvider
    from synthetic import translating_video

    frames = translating_video(T=12, H=64, W=80)
    rng = np.random.default_rng(0)
    queries = np.stack([rng.integers(0, 12, 64), rng.uniform(4, 76, 64), rng.uniform(4, 60, 64)], 1).astype(np.float32)
    tracks = {}
    for mode in ("exact", "fast"):
        provider = CoTrackerProvider(checkpoint=str(EMBEDDED_DIR / EMBEDDED_FILES["offline"]), mode=mode, iters=4)
        assert provider.predictor.mode == mode
        tracks[mode] = provider.track(frames, queries)
    assert_within_bounds(torch.from_numpy(tracks["fast"].xy), torch.from_numpy(tracks["exact"].xy),
                         torch.from_numpy(tracks["fast"].visible), torch.from_numpy(tracks["exact"].visible))


def test_cli_fast_flag_defaults_to_fast_on_cpu_only():
    import argparse

    from pipelines.cli import add_fast_flag
    from sfm_tracks.tracking.choice import tracker_mode

    p = argparse.ArgumentParser()
    add_fast_flag(p)
    assert tracker_mode(p.parse_args([]).fast, "cpu") == "fast"
    assert tracker_mode(p.parse_args([]).fast, "cuda") == "exact"
    assert tracker_mode(p.parse_args(["--no-fast"]).fast, "cpu") == "exact"
    assert tracker_mode(p.parse_args(["--fast"]).fast, "cuda") == "fast"
