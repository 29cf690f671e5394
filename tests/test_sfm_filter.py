"""Verdict rules on hand-made error tables (no mapping needed), and the track -> 3D point vote they rest on."""
from collections import Counter

import numpy as np
import pycolmap

from sfm_tracks import reconstruct
from sfm_tracks.colmap.database import KeypointLayout
from sfm_tracks.colmap.geometric_filter import FilterOptions, frame_images, observed_points, track_points, verdicts
from sfm_tracks.testing import synthetic_scene


def test_verdict_rules():
    nan, inf = np.nan, np.inf
    err = np.array([
        # static  drifting  dynamic  short  unmeasured
        [0.5,     0.4,      0.3,     1.0,   nan],
        [1.0,     2.0,      9.0,     1.0,   nan],
        [2.9,     1.5,      20.,     nan,   nan],
        [0.2,     5.0,      30.,     nan,   nan],
        [nan,     12.,      50.,     nan,   nan],
        [1.1,     inf,      70.,     nan,   nan],
    ])
    labels = verdicts(err)
    assert labels.dtype == np.int8
    np.testing.assert_array_equal(labels[:, 0], [1, 1, 1, 1, 0, 1])
    np.testing.assert_array_equal(labels[:, 1], [1, 1, 1, 0, -1, -1])  # 3 px < 5 px < 8 px: unsure, not rejected
    np.testing.assert_array_equal(labels[:, 2], 0)  # point explains 1 of 6 observations: dynamic, never negative
    np.testing.assert_array_equal(labels[:, 3], 0)  # 2 inliers < min_inliers
    np.testing.assert_array_equal(labels[:, 4], 0)
    # the majority rule is what protects dynamic tracks: drop it and they become negatives
    loose = verdicts(err, FilterOptions(min_inlier_fraction=0.1, min_inliers=1))
    np.testing.assert_array_equal(loose[:, 2], [1, -1, -1, -1, -1, -1])


def test_track_points_vote_matches_a_keypoint_by_keypoint_count():
    """The vectorised vote (one pass per image, (track, point) integer keys) against a plain count over every
    keypoint, on a model where one track's observations were split between two points (3 against 2 frames)."""
    scene = synthetic_scene(num_frames=12, num_tracks=150, noise_px=0.3, outlier_fraction=0.0, seed=5)
    tracks = scene.tracks
    rec = reconstruct(tracks)
    layout, images = KeypointLayout(tracks), frame_images(rec, tracks)
    p = max(rec.points3D, key=lambda q: rec.points3D[q].track.length())
    elements = sorted((e.image_id, e.point2D_idx) for e in rec.points3D[p].track.elements)
    assert len(elements) >= 5
    xyz = rec.points3D[p].xyz.copy()
    for iid, k in elements[:2]:  # the minority: two observations moved to a point of their own
        rec.delete_observation(iid, k)
    split = rec.add_point3D(xyz, pycolmap.Track([pycolmap.TrackElement(iid, k) for iid, k in elements[:2]]))

    votes = Counter()
    for t, iid in enumerate(images):
        if iid is None:
            continue
        im = rec.images[iid]
        for k, q in enumerate(im.points2D):
            if q.has_point3D() and k < layout.count(t):
                votes[(int(layout.track_ids(t, [k])[0]), q.point3D_id)] += 1
    expected = np.full(tracks.num_tracks, -1)
    for (n, q), c in sorted(votes.items(), key=lambda kv: (kv[1], -kv[0][1])):  # most frequent (then lowest id) last: it wins
        expected[n] = q
    got = track_points(rec, tracks, images, layout)
    np.testing.assert_array_equal(got, expected)
    assert p in got and split not in got
    idx, ids = observed_points(rec.images[elements[0][0]])
    assert split in ids and (np.diff(idx) > 0).all()
