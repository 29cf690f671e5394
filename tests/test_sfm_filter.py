"""Verdict rules on hand-made error tables (no mapping needed)."""
import numpy as np

from sfm_tracks.colmap.geometric_filter import FilterOptions, verdicts


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
