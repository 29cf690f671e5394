"""TAP-Vid metrics on small cases worked out by hand."""
import numpy as np
import pytest

from cotracker3.evaluation.metrics import compute_tapvid_metrics, evaluation_points, mean_metrics, rescale_xy

KEYS = ["occlusion_accuracy", "average_jaccard", "average_pts_within_thresh"] + [
    f"{k}_{d}" for k in ("pts_within", "jaccard") for d in (1, 2, 4, 8, 16)]


def _run(q_frames, gt_occ, gt_xy, pred_occ, pred_xy, mode, **kw):
    q = np.zeros((1, len(q_frames), 3))
    q[0, :, 0] = q_frames
    return compute_tapvid_metrics(q, gt_occ[None], gt_xy[None], pred_occ[None], pred_xy[None], mode, **kw)


def test_perfect_prediction_scores_one():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 256, (3, 7, 2))
    occ = np.zeros((3, 7), bool)
    occ[1, 5:] = True
    for mode in ("first", "strided"):
        m = _run([0, 2, 4], occ, gt, occ, gt, mode)
        assert set(KEYS) <= set(m)
        for k in KEYS:
            assert m[k].shape == (1,) and m[k][0] == 1.0, k


def test_known_offsets_give_exact_fractions():
    # Two points, T=4, queried at t=0 ("first"): scored frames are t=1,2,3 -> 6 pairs, all visible.
    gt = np.zeros((2, 4, 2))
    pred = gt.copy()
    pred[:, 0] = 100.0  # huge error at the query frame must not count
    pred[0, 1] = [1.5, 0.0]  # 1.5 px: within 2,4,8,16
    pred[0, 2] = [1.0, 0.0]  # exactly 1 px: thresholds are strict, so within 2.. only
    pred[0, 3] = [0.5, 0.0]  # within all
    pred[1, 1:] = [3.0, 4.0]  # 5 px: within 8,16 at t=1..3
    occ = np.zeros((2, 4), bool)
    m = _run([0, 0], occ, gt, occ, pred, "first")
    expected = {1: 1 / 6, 2: 3 / 6, 4: 3 / 6, 8: 1.0, 16: 1.0}
    for d, v in expected.items():
        assert m[f"pts_within_{d}"][0] == pytest.approx(v)
        assert m[f"jaccard_{d}"][0] == pytest.approx(v / (1 + (1 - v)))  # TP=6v, GT=6, FP=6(1-v)
    assert m["average_pts_within_thresh"][0] == pytest.approx(np.mean(list(expected.values())))
    assert m["occlusion_accuracy"][0] == 1.0


def test_occlusion_mistakes_jaccard_by_hand():
    # One track, T=6, strided query at t=2 -> scored frames 0,1,3,4,5.
    # GT visible at 0..3, occluded at 4,5. Pred occluded at 1 (miss), visible at 5 (false alarm),
    # and 3 px off at t=3.
    gt = np.zeros((1, 6, 2))
    pred = gt.copy()
    pred[0, 3] = [3.0, 0.0]
    gt_occ = np.array([[0, 0, 0, 0, 1, 1]], bool)
    pred_occ = np.array([[0, 1, 0, 0, 1, 0]], bool)
    m = _run([2], gt_occ, gt, pred_occ, pred, "strided")
    assert m["occlusion_accuracy"][0] == pytest.approx(3 / 5)  # wrong at t=1 and t=5
    # GT-visible scored: t=0,1,3. Within 1,2 px: t=0,1; within >=4 px: t=0,1,3.
    assert m["pts_within_1"][0] == pytest.approx(2 / 3) and m["pts_within_4"][0] == 1.0
    # d in {1,2}: TP = {0}; FP = {5 (GT occluded), 3 (too far)}; J = 1 / (3 + 2)
    # d >= 4:     TP = {0, 3}; FP = {5};                         J = 2 / (3 + 1)
    assert m["jaccard_1"][0] == pytest.approx(0.2) and m["jaccard_2"][0] == pytest.approx(0.2)
    for d in (4, 8, 16):
        assert m[f"jaccard_{d}"][0] == pytest.approx(0.5)
    assert m["average_jaccard"][0] == pytest.approx(0.38)
    assert m["average_pts_within_thresh"][0] == pytest.approx(13 / 15)


def test_first_mode_ignores_frames_before_query():
    # Query at t=2; GT occluded before. Predicting "visible" at t=0 is free in tapnet's
    # first mode but is a false positive in CoTracker's copy (score_before_query=True).
    gt = np.zeros((1, 5, 2))
    gt_occ = np.array([[1, 1, 0, 0, 0]], bool)
    pred_occ = np.array([[0, 1, 0, 0, 0]], bool)
    m = _run([2], gt_occ, gt, pred_occ, gt, "first")
    assert m["average_jaccard"][0] == 1.0 and m["occlusion_accuracy"][0] == 1.0
    m2 = _run([2], gt_occ, gt, pred_occ, gt, "first", score_before_query=True)
    assert m2["average_jaccard"][0] == pytest.approx(2 / 3)  # TP 2 / (GT 2 + FP 1)
    assert m2["occlusion_accuracy"][0] == pytest.approx(3 / 4)  # t=0,1,3,4 scored


def test_evaluation_points_and_trackwise():
    ev = evaluation_points(np.array([[0, 2]]), 4, "first")
    np.testing.assert_array_equal(ev[0], [[0, 1, 1, 1], [0, 0, 0, 1]])
    ev = evaluation_points(np.array([[0, 2]]), 4, "strided")
    np.testing.assert_array_equal(ev[0], [[0, 1, 1, 1], [1, 1, 0, 1]])
    with pytest.raises(ValueError):
        evaluation_points(np.array([[0]]), 4, "last")
    gt = np.zeros((2, 3, 2))
    pred = gt.copy()
    pred[1] += 20.0
    occ = np.zeros((2, 3), bool)
    m = _run([0, 0], occ, gt, occ, pred, "first", trackwise=True)
    np.testing.assert_allclose(m["pts_within_16"], [[1.0, 0.0]])


def test_rescale_and_mean():
    np.testing.assert_allclose(rescale_xy(np.array([[427.0, 240.0]]), (480, 854)), [[128.0, 128.0]])
    assert mean_metrics([{"a": np.array([1.0])}, {"a": np.array([0.0])}]) == {"a": 0.5}


@pytest.mark.parametrize("mode", ["first", "strided"])
def test_matches_elementwise_definition_on_random_data(mode):
    """Vectorised metrics == a literal per-(point, frame) count of the TAP-Vid definitions."""
    rng = np.random.default_rng(3)
    B, N, T = 2, 9, 11
    gt = rng.uniform(0, 256, (B, N, T, 2))
    pred = gt + rng.normal(0, 6, gt.shape)
    gt_occ, pred_occ = rng.uniform(size=(B, N, T)) < 0.3, rng.uniform(size=(B, N, T)) < 0.3
    q = np.zeros((B, N, 3))
    q[..., 0] = rng.integers(0, T, (B, N))
    m = compute_tapvid_metrics(q, gt_occ, gt, pred_occ, pred, mode)
    for b in range(B):
        oa = vis = fp = tp = within = 0
        d = 4
        for n in range(N):
            for t in range(T):
                if t == q[b, n, 0] or (mode == "first" and t < q[b, n, 0]):
                    continue
                close = np.linalg.norm(pred[b, n, t] - gt[b, n, t]) < d
                oa += pred_occ[b, n, t] == gt_occ[b, n, t]
                if not gt_occ[b, n, t]:
                    vis += 1
                    within += close
                    tp += close and not pred_occ[b, n, t]
                if not pred_occ[b, n, t] and (gt_occ[b, n, t] or not close):
                    fp += 1
        n_eval = sum(1 for n in range(N) for t in range(T)
                     if t != q[b, n, 0] and not (mode == "first" and t < q[b, n, 0]))
        assert m["occlusion_accuracy"][b] == pytest.approx(oa / n_eval)
        assert m["pts_within_4"][b] == pytest.approx(within / vis)
        assert m["jaccard_4"][b] == pytest.approx(tp / (vis + fp))
