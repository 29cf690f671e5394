import cv2
import numpy as np
from scipy.spatial.distance import pdist

from sfm_tracks import Tracks
from sfm_tracks.selection import spread
from sfm_tracks.tracking.queries import empty_cells, frame_points, grid_points, reseed_queries, select_queries, sift_points


def _textured(T=6, H=96, W=128, seed=0):
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 256, (H, W, 3), dtype=np.uint8), (0, 0), 1.5)
    return np.stack([base] * T)


def test_sift_points_use_pixel_centre_convention():
    yy, xx = np.mgrid[0:96, 0:128].astype(np.float32)
    img = (255 * np.exp(-((xx - 40) ** 2 + (yy - 50) ** 2) / (2 * 3.0**2))).astype(np.uint8)
    xy = sift_points(np.stack([img] * 3, -1), max_points=1)
    # stock cv2 SIFT would report (40.24, 50.24)
    np.testing.assert_allclose(xy[0], [40, 50], atol=0.05)


def test_spread():
    np.testing.assert_array_equal(spread(10, 4), [0, 3, 6, 9])
    np.testing.assert_array_equal(spread(3, 8), [0, 1, 2])
    assert len(spread(0, 5)) == 0


def test_select_queries_spread_spacing_budget():
    frames = _textured()
    q = select_queries(frames, num_query_frames=3, max_points_per_frame=40, min_distance=10)
    assert q.dtype == np.float32 and q.shape[1] == 3
    ts = np.unique(q[:, 0])
    np.testing.assert_array_equal(ts, [0, 2, 5])  # not only frame 0
    for t in ts:
        xy = q[q[:, 0] == t, 1:]
        assert 20 <= len(xy) <= 40
        assert pdist(xy).min() >= 10.0 - 1e-4
        assert xy.min() >= 4 and xy[:, 0].max() <= 127 - 4 and xy[:, 1].max() <= 95 - 4


def test_mask_excludes_region():
    frames = _textured(T=2)
    masks = np.ones(frames.shape[:3], bool)
    masks[:, :, 64:] = False
    q = select_queries(frames, num_query_frames=2, max_points_per_frame=200, min_distance=6, masks=masks)
    assert len(q) > 20 and q[:, 1].max() < 64


def test_sift_plus_grid_fills_flat_regions():
    frames = _textured(T=1)
    frames[:, :, 64:] = 128  # right half is flat: no SIFT there
    sift = frame_points(frames[0], "sift", 500, 8)
    both = frame_points(frames[0], "sift+grid", 500, 8)
    assert sift[:, 0].max() < 70
    assert (both[:, 0] > 80).sum() > 10
    assert pdist(both).min() >= 8.0 - 1e-4


def test_grid_points_centred_inside_border():
    xy = grid_points((20, 30), spacing=10, border=2)
    assert set(np.unique(xy[:, 0])) == {4.5, 14.5, 24.5}
    assert set(np.unique(xy[:, 1])) == {4.5, 14.5}


def test_empty_cells():
    cells = empty_cells(np.array([[5.0, 5.0], [40.0, 5.0]]), np.array([True, False]), (32, 48), 16)
    assert not cells[:16, :16].any() and cells[:16, 16:].all() and cells[16:].all()


def test_reseed_fills_only_lost_regions():
    frames = _textured(T=20)
    T, H, W = frames.shape[:3]
    xy = grid_points((H, W), 8.0)  # dense tracks everywhere ...
    N = len(xy)
    vis = np.ones((T, N), bool)
    vis[10:, xy[:, 0] >= 64] = False  # ... until the right half loses them at frame 10
    tracks = Tracks(xy=np.broadcast_to(xy, (T, N, 2)), visible=vis, image_size=(H, W))
    q = reseed_queries(tracks, frames, cell_size=32, every=4, cooldown=100, min_distance=6)
    assert len(q) > 5
    assert set(np.unique(q[:, 0])) == {12.0}  # first checked frame after the loss; cooldown stops repeats
    assert q[:, 1].min() >= 64 - 0.5
