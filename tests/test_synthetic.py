"""The synthetic generator's ground-truth contract: tracks, visibility, depth and cameras agree."""
import numpy as np
import pytest

from cotracker3.data.synthetic import generate_clip

T, H, W, N = 8, 64, 64, 96


@pytest.fixture(scope="module")
def clip():
    return generate_clip(3, num_frames=T, height=H, width=W, num_tracks=N, dynamic=True)


@pytest.fixture(scope="module")
def static_clip():
    return generate_clip(11, num_frames=T, height=H, width=W, num_tracks=N, dynamic=False)


def _project(points_world, cam_from_world, K):
    """(T, N, 3) world points -> (T, N, 2) pixels and (T, N) camera z, in float64."""
    R, t = cam_from_world[..., :3].astype(np.float64), cam_from_world[..., 3].astype(np.float64)
    cam = np.einsum("tij,tnj->tni", R, points_world.astype(np.float64)) + t[:, None]
    uv = cam[..., :2] / cam[..., 2:3] @ np.diag(np.diag(K)[:2]).astype(np.float64) + K[:2, 2]
    return uv, cam[..., 2]


def test_shapes_and_types(clip):
    assert clip["video"].shape == (T, H, W, 3) and clip["video"].dtype == np.uint8
    assert clip["tracks"].shape == (T, N, 2) and clip["tracks"].dtype == np.float32
    assert clip["visibility"].shape == (T, N) and clip["visibility"].dtype == bool
    assert clip["depth"].shape == (T, H, W) and clip["depth"].dtype == np.float32
    assert clip["intrinsics"].shape == (3, 3) and clip["cam_from_world"].shape == (T, 3, 4)
    assert clip["points_world"].shape == (T, N, 3)
    assert clip["is_static"].shape == (N,) and clip["object_id"].shape == (N,)
    assert np.isfinite(clip["depth"]).all() and (clip["depth"] > 0).all()
    # a dynamic clip has moving tracked points, and they sit on objects
    assert (~clip["is_static"]).any()
    assert (clip["object_id"][~clip["is_static"]] > 0).all()
    R = clip["cam_from_world"][..., :3]
    np.testing.assert_allclose(R @ R.transpose(0, 2, 1), np.broadcast_to(np.eye(3), R.shape), atol=1e-5)


def test_projection_reproduces_tracks(clip):
    uv, z = _project(clip["points_world"], clip["cam_from_world"], clip["intrinsics"])
    front = z > 0.1
    assert front.mean() > 0.5
    err = np.abs(uv - clip["tracks"])[front]
    assert err.max() < 1e-3, err.max()


def test_static_points_do_not_move(clip):
    pw = clip["points_world"][:, clip["is_static"]]
    np.testing.assert_allclose(pw, np.broadcast_to(pw[:1], pw.shape), atol=1e-5)
    moving = clip["points_world"][:, ~clip["is_static"]]
    assert np.abs(moving - moving[:1]).max() > 1e-2


def test_visibility_matches_depth_test(clip):
    tracks, vis, depth = clip["tracks"], clip["visibility"], clip["depth"]
    _, z = _project(clip["points_world"], clip["cam_from_world"], clip["intrinsics"])
    x, y = np.round(tracks[..., 0]).astype(int), np.round(tracks[..., 1]).astype(int)
    inside = (z > 0) & (x >= 0) & (x < W) & (y >= 0) & (y < H)
    t_idx = np.broadcast_to(np.arange(T)[:, None], x.shape)
    d = np.where(inside, depth[t_idx, y.clip(0, H - 1), x.clip(0, W - 1)], 0)
    depth_vis = inside & (np.abs(d - z) < 0.03 * z)
    assert not (vis & ~inside).any()
    agree = (depth_vis == vis).mean()
    assert agree > 0.95, agree
    # disagreements sit on depth edges, where the rounded pixel may show the other surface
    t_c, y_c, x_c = t_idx, y.clip(0, H - 1), x.clip(0, W - 1)
    pad = np.pad(depth, ((0, 0), (1, 1), (1, 1)), mode="edge")
    nbhd = np.stack([pad[t_c, y_c + dy, x_c + dx] for dy in range(3) for dx in range(3)])
    smooth = nbhd.max(0) < 1.05 * nbhd.min(0)
    assert (depth_vis == vis)[smooth].mean() > 0.98
    assert 0.2 < vis.mean() < 1.0  # some occlusion / leaving the view happens, but most is seen
    # every track is visible in the frame it was sampled in
    assert vis[clip["query_frame"], np.arange(N)].all()


def _bilinear(img, xy):
    """img (H, W, 3), xy (M, 2) -> (M, 3) float."""
    x0, y0 = np.floor(xy[:, 0]).astype(int), np.floor(xy[:, 1]).astype(int)
    fx, fy = xy[:, 0] - x0, xy[:, 1] - y0
    x0, y0 = x0.clip(0, W - 2), y0.clip(0, H - 2)
    g = lambda yy, xx: img[yy, xx].astype(np.float64)
    top = g(y0, x0) * (1 - fx)[:, None] + g(y0, x0 + 1) * fx[:, None]
    bot = g(y0 + 1, x0) * (1 - fx)[:, None] + g(y0 + 1, x0 + 1) * fx[:, None]
    return top * (1 - fy)[:, None] + bot * fy[:, None]


def test_visible_points_keep_their_colour(clip):
    video, tracks, vis = clip["video"], clip["tracks"], clip["visibility"]
    ref = np.stack([_bilinear(video[t], tracks[t]) for t in range(T)])  # (T, N, 3)
    q = clip["query_frame"]
    anchor = ref[q, np.arange(N)]  # colour at the query frame
    along = np.abs(ref - anchor[None]).mean(-1)[vis].mean()
    rng = np.random.default_rng(0)
    shuffled = anchor[rng.permutation(N)]
    random_pairs = np.abs(ref - shuffled[None]).mean(-1)[vis].mean()
    assert along < 0.35 * random_pairs, (along, random_pairs)


def test_same_seed_is_bit_identical():
    a = generate_clip(7, num_frames=4, height=32, width=48, num_tracks=16)
    b = generate_clip(7, num_frames=4, height=32, width=48, num_tracks=16)
    c = generate_clip(8, num_frames=4, height=32, width=48, num_tracks=16)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k
    assert not np.array_equal(a["video"], c["video"])


def test_static_scene_depth_is_consistent_with_cameras(static_clip):
    c = static_clip
    assert c["is_static"].all()
    K = c["intrinsics"].astype(np.float64)
    depth, P = c["depth"].astype(np.float64), c["cam_from_world"].astype(np.float64)
    # real baseline between first and last camera (needed for SfM)
    centres = -np.einsum("tji,tj->ti", P[..., :3], P[..., 3])
    assert np.linalg.norm(centres[-1] - centres[0]) > 0.3
    a, b = 0, T - 1
    y, x = np.mgrid[0:H, 0:W]
    rays = np.stack([(x - K[0, 2]) / K[0, 0], (y - K[1, 2]) / K[1, 1], np.ones_like(x, float)], -1)
    cam_a = rays * depth[a][..., None]
    world = np.einsum("ji,hwj->hwi", P[a, :, :3], cam_a - P[a, :, 3])
    cam_b = world @ P[b, :, :3].T + P[b, :, 3]
    z = cam_b[..., 2]
    u = K[0, 0] * cam_b[..., 0] / z + K[0, 2]
    v = K[1, 1] * cam_b[..., 1] / z + K[1, 2]
    ui, vi = np.round(u).astype(int), np.round(v).astype(int)
    ok = (z > 0.1) & (ui >= 0) & (ui < W) & (vi >= 0) & (vi < H)
    assert ok.mean() > 0.3
    zb = depth[b][vi[ok], ui[ok]]
    rel = np.abs(zb - z[ok]) / z[ok]
    # unoccluded reprojections land on the same surface; occlusions and depth edges are a minority
    assert np.mean(rel < 0.02) > 0.8, np.mean(rel < 0.02)
    # and the colour there matches, far better than an unrelated pixel
    match = rel < 0.01
    ca = c["video"][a][ok][match].astype(float)
    cb = np.stack([_bilinear(c["video"][b], np.stack([u[ok][match], v[ok][match]], -1))])[0]
    err = np.abs(ca - cb).mean()
    rand = np.abs(ca - ca[np.random.default_rng(1).permutation(len(ca))]).mean()
    assert err < 0.4 * rand, (err, rand)


def test_static_scene_tracks_reproject(static_clip):
    uv, z = _project(static_clip["points_world"], static_clip["cam_from_world"], static_clip["intrinsics"])
    front = z > 0.1
    assert np.abs(uv - static_clip["tracks"])[front].max() < 1e-3
    assert (static_clip["object_id"] >= 0).all()


def test_dataset_samples_follow_the_contract():
    import torch
    from torch.utils.data import DataLoader

    from cotracker3.data.dataset import SyntheticTrackingDataset, SyntheticTrackingStream, collate_clips

    ds = SyntheticTrackingDataset(seq_len=6, crop_size=(48, 64), num_tracks=24, seed=5, eraser_prob=0.3, extra_frames=2)
    loader = DataLoader(SyntheticTrackingStream(ds), batch_size=2, num_workers=2, collate_fn=collate_clips)
    it = iter(loader)
    batches = [next(it), next(it)]
    b = batches[0]
    assert b["video"].shape == (2, 6, 3, 48, 64) and b["video"].dtype == torch.float32
    assert 0 <= b["video"].min() and b["video"].max() <= 255 and b["video"].max() > 50
    assert b["trajectory"].shape == (2, 6, 24, 2) and b["visibility"].shape == (2, 6, 24)
    assert b["valid"].shape == (2, 6, 24) and b["query_frame"].shape == (2, 24)
    for batch in batches:
        q = batch["query_frame"]
        vis_at_query = batch["visibility"].gather(1, q[:, None]).squeeze(1)  # (B, N)
        assert vis_at_query[batch["valid"][:, 0]].all()
        xy = batch["trajectory"][batch["visibility"]]
        assert (xy[:, 0] >= -0.5).all() and (xy[:, 0] <= 63.5).all() and (xy[:, 1] <= 47.5).all()
    # workers render different clips: batch b comes from worker b % 2, which makes items b, b+2, ...
    seeds = batches[0]["seed"] + batches[1]["seed"]
    assert len(set(seeds)) == 4
    assert seeds == [ds[i]["seed"] for i in (0, 2, 1, 3)]
    assert torch.equal(batches[1]["trajectory"][1], ds[3]["trajectory"])
    # some tracks take their query after their first visible frame (uniform query sampling)
    first = torch.stack([ds[i]["visibility"].float().argmax(0) for i in range(2)])
    queries = torch.stack([ds[i]["query_frame"] for i in range(2)])
    assert (queries >= first).all()


def test_tapvid_eval_set_round_trips(tmp_path):
    import pickle

    from cotracker3.data.tapvid_eval import tapvid_points_to_pixels, write_tapvid_eval_set

    data = write_tapvid_eval_set(tmp_path / "eval.pkl", num_clips=2, seed=3, num_frames=T, height=H, width=W, num_tracks=N)
    with open(tmp_path / "eval.pkl", "rb") as f:
        loaded = pickle.load(f)
    assert sorted(loaded) == ["synthetic_000", "synthetic_001"]
    v = loaded["synthetic_000"]
    assert v["video"].shape == (T, H, W, 3) and v["video"].dtype == np.uint8
    assert v["points"].shape == (N, T, 2) and v["occluded"].shape == (N, T) and v["occluded"].dtype == bool
    clip = generate_clip(3, num_frames=T, height=H, width=W, num_tracks=N)
    np.testing.assert_allclose(tapvid_points_to_pixels(v["points"], H, W), clip["tracks"], atol=1e-4)
    np.testing.assert_array_equal(v["occluded"], ~clip["visibility"].T)
    seen = ~v["occluded"]
    assert (v["points"][seen] >= 0).all() and (v["points"][seen] <= 1).all()
