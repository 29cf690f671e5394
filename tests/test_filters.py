import numpy as np
import pytest

from sfm_tracks import Tracks
from sfm_tracks.tracking.filters import (
    anchor_frames,
    apply_filters,
    cycle_consistency,
    cycle_consistent_mask,
    low_confidence,
    stuck_at_border,
    too_short,
)
from tests.synthetic import TranslationProvider, gt_positions, translating_video

V = (1.0, 0.5)
T = 30


def _drifting_tracks():
    """Track 0 clean; track 1 jumps 6 px at frame 15; track 2 drifts 0.5 px/frame from 15 (> 3 px from 22);
    track 3 is queried at frame 10 and jumps 6 px at frames <= 4 (drift going backward in time)."""
    q = np.array([[0, 10, 20], [0, 12, 25], [0, 15, 10], [10, 30, 30]], np.float32)
    xy = gt_positions(q, T, V)
    xy[15:, 1, 0] += 6
    xy[15:, 2, 0] += 0.5 * np.arange(1, T - 14)
    xy[:5, 3, 1] += 6
    vis = np.ones((T, 4), bool)
    return Tracks(xy=xy, visible=vis, image_size=(64, 80), query_frame=q[:, 0].astype(int))


def test_drift_rejected_from_drift_frame_on_not_before():
    frames = translating_video(T=T, velocity=V, stamp=True)
    keep = cycle_consistency(TranslationProvider(V), frames, _drifting_tracks(), threshold_px=3.0, anchors=None)
    t = np.arange(T)
    np.testing.assert_array_equal(keep[:, 0], True)
    np.testing.assert_array_equal(keep[:, 1], t < 15)
    np.testing.assert_array_equal(keep[:, 2], t < 15 + 6)  # 0.5 px/frame exceeds 3 px at frame 21
    np.testing.assert_array_equal(keep[:, 3], t > 4)


def test_fewer_anchors_never_keep_drifted_frames():
    frames = translating_video(T=T, velocity=V, stamp=True)
    prov = TranslationProvider(V)
    keep = cycle_consistency(prov, frames, _drifting_tracks(), threshold_px=3.0, anchors=4, max_queries=5)
    assert keep[:, 0].all()
    assert not keep[15:, 1].any() and keep[:8, 1].all()  # clean frames up to an anchor survive
    assert not keep[:5, 3].any() and keep[10:, 3].all()
    assert all(n <= 5 for _, n in prov.calls)


def test_end_point_only_check_would_mislabel():
    """Documents the trap: a backward track from the drifted end point agrees with the drifted part."""
    tracks = _drifting_tracks()
    end_back = gt_positions(np.array([[T - 1, *tracks.xy[T - 1, 1]]]), T, V)[:, 0]
    gap = np.linalg.norm(end_back - tracks.xy[:, 1], axis=-1)
    assert (gap[15:] < 1e-3).all() and (gap[:15] > 3).all()


def test_cycle_consistent_mask_pure():
    Tn = 8
    fwd = np.zeros((Tn, 2, 2), np.float32)
    back = np.zeros((Tn, 2, 2), np.float32)
    back[5, 0] = [4, 0]  # track 0 fails its check at frame 5
    bvis = np.ones((Tn, 2), bool)
    bvis[2, 1] = False  # track 1 loses the return trip from frame 2 (query frame 4)
    keep = cycle_consistent_mask(fwd, back, np.ones((Tn, 2), bool), bvis, 1.0, query_frame=np.array([0, 4]))
    np.testing.assert_array_equal(keep[:, 0], np.arange(Tn) < 5)
    np.testing.assert_array_equal(keep[:, 1], np.arange(Tn) > 2)
    # unchecked frames between a pass and the end are kept only up to the last pass
    checked = np.zeros((Tn, 2), bool)
    checked[3] = True
    keep = cycle_consistent_mask(fwd, np.zeros_like(back), np.ones((Tn, 2), bool), np.ones((Tn, 2), bool), 1.0, np.array([0, 0]), checked)
    np.testing.assert_array_equal(keep[:, 0], np.arange(Tn) <= 3)


def test_anchor_frames():
    vis = np.ones(20, bool)
    vis[18:] = False
    a = anchor_frames(vis, 5, 3)
    assert 17 in a and 0 in a and 5 not in a
    assert len(a[a > 5]) == 3 and len(a[a < 5]) == 3
    np.testing.assert_array_equal(anchor_frames(vis, 5, None), [t for t in range(18) if t != 5])


def _tracks_for_simple_filters():
    xy = np.full((6, 3, 2), 20.0, np.float32)
    xy[:, 1] = [[0.0, 30.0]] * 6  # track 1 clamped to the left border for all frames
    xy[2, 2] = [79.0, 5.0]  # track 2 touches the right border for one frame only
    vis = np.ones((6, 3), bool)
    conf = np.full((6, 3), 0.9, np.float32)
    conf[3:, 0] = 0.2
    return Tracks(xy=xy, visible=vis, image_size=(40, 80), confidence=conf)


def test_simple_filters_and_apply():
    tr = _tracks_for_simple_filters()
    lc = low_confidence(tr, 0.5)
    np.testing.assert_array_equal(lc[:, 0], [True] * 3 + [False] * 3)
    sb = stuck_at_border(tr, margin_px=1.0, min_frames=3)
    assert not sb[:, 1].any() and sb[:, 2].all() and sb[:, 0].all()
    assert low_confidence(Tracks(tr.xy, tr.visible, tr.image_size), 0.5).all()
    short = too_short(tr.select(frames=[0]), 2)
    assert not short.any()
    out = apply_filters(tr, lc, sb, too_short(tr, 2))
    assert out.num_tracks == 2  # track 1 dropped: no visible frame left
    np.testing.assert_array_equal(out.visible[:, 0], lc[:, 0])
    with pytest.raises(ValueError, match="mask shape"):
        apply_filters(tr, np.ones(5, bool))
