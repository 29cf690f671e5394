"""BADJA-style keypoint PCK on synthetic annotations (and the bear file's layout)."""
from pathlib import Path

import numpy as np
import pytest

from cotracker3.evaluation.badja import (KeypointAnnotations, bbox_proxy_areas, evaluate_keypoints,
                                         keypoint_pck, keypoint_queries, load_badja_npz)

BEAR = Path("badja_bear_davis") / "bear" / "keypoints_480p.npz"  # inside the team's shared data (tests/conftest.py)


def _ann():
    # 3 annotated frames (2, 7, 12) of a 15-frame video, 4 joints.
    fi = np.array([2, 7, 12])
    xy = np.array([
        [[10, 10], [20, 10], [np.nan, np.nan], [10, 30]],
        [[12, 10], [22, 10], [40, 40], [12, 30]],
        [[14, 10], [24, 10], [42, 40], [np.nan, np.nan]],
    ], float)
    xy[:, 3] = np.nan  # joint 3 never visible
    return KeypointAnnotations(fi, xy, np.isfinite(xy).all(-1), np.arange(4))


def test_queries_at_first_visible_annotated_frame():
    q, joints = keypoint_queries(_ann())
    np.testing.assert_array_equal(joints, [0, 1, 2])
    np.testing.assert_allclose(q, [[2, 10, 10], [2, 20, 10], [7, 40, 40]])


def test_pck_exact_fractions():
    ann = _ann()
    q, joints = keypoint_queries(ann)
    pred = np.zeros((15, 3, 2))
    pred[:] = np.nan  # frames that are not annotated must not matter
    # scored pairs: joint0 @7,@12; joint1 @7,@12; joint2 @12  -> 5 pairs
    pred[7, 0], pred[12, 0] = [12, 13], [14, 10]  # errors 3, 0
    pred[7, 1], pred[12, 1] = [22, 18], [24, 25]  # errors 8, 15
    pred[2] = 1e6  # query frame: not scored
    pred[12, 2] = [42, 40 + 30]  # error 30
    out = keypoint_pck(pred, ann, joints, q[:, 0].astype(int), thresholds_px=(5, 10, 20))
    assert out["num_scored"] == 5
    assert out["pck@5px"] == pytest.approx(2 / 5)
    assert out["pck@10px"] == pytest.approx(3 / 5)
    assert out["pck@20px"] == pytest.approx(4 / 5)
    assert out["mean_error_px"] == pytest.approx((3 + 0 + 8 + 15 + 30) / 5)
    # bbox proxy: frames 7 and 12 have 28x30 boxes -> thr 0.2*sqrt(840)=5.797 (frame 2: flat box)
    np.testing.assert_allclose(bbox_proxy_areas(ann), [0.0, 840.0, 840.0])
    assert out["pck@0.2sqrt(bbox)_proxy"] == pytest.approx(2 / 5)  # errors 3 and 0
    # with mask areas: frame 7 area 2500 -> thr 10; frame 12 area 10000 -> thr 20
    out = keypoint_pck(pred, ann, joints, q[:, 0].astype(int), mask_areas=np.array([1.0, 2500, 10000]))
    assert out["pck@0.2sqrt(mask)"] == pytest.approx(4 / 5)  # 3<10, 0<20, 8<10, 15<20, 30>=20
    with pytest.raises(ValueError):
        keypoint_pck(pred[:10], ann, joints, q[:, 0].astype(int))


def test_evaluate_keypoints_with_oracle():
    ann = _ann()
    gt = np.zeros((15, 4, 2))
    gt[ann.frame_index] = np.nan_to_num(ann.xy)

    def oracle(video, queries):
        _, joints = keypoint_queries(ann)
        return gt[:, joints], np.ones((15, len(joints)), bool)

    out = evaluate_keypoints(oracle, np.zeros((15, 8, 8, 3), np.uint8), ann)
    assert out["pck@5px"] == 1.0 and out["pck@0.2sqrt(bbox)_proxy"] == 1.0


@pytest.mark.shared_data
def test_bear_file_layout(shared_data):
    ann = load_badja_npz(shared_data / BEAR)
    assert ann.xy.shape == (17, 37, 2) and ann.image_size_wh == (854, 480)
    q, joints = keypoint_queries(ann)
    assert len(joints) >= 15 and np.all(np.isin(q[:, 0], ann.frame_index))
    assert np.all((q[:, 1] >= 0) & (q[:, 1] < 854) & (q[:, 2] >= 0) & (q[:, 2] < 480))
