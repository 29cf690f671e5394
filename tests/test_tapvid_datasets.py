"""TAP-Vid pickle reader and the tracker runner, on tiny pickles written here."""
import pickle

import cv2
import numpy as np
import pytest

from cotracker3.evaluation.datasets import (EvalDataError, make_sample, sample_queries_strided, save_tapvid_npz,
                                            tapvid_samples)
from cotracker3.evaluation.runner import evaluate_tracker

T, N, H, W = 12, 3, 40, 60


def _entry(jpeg=False):
    rng = np.random.default_rng(1)
    video = rng.integers(0, 255, (T, H, W, 3), dtype=np.uint8)
    pts = rng.uniform(0.1, 0.9, (N, T, 2)).astype(np.float32)
    occ = np.zeros((N, T), bool)
    occ[1, :3] = True  # point 1 first visible at t=3
    occ[1, 5] = True  # ... and occluded at the stride frame t=5
    occ[2, :] = True  # point 2 never visible
    if jpeg:
        video = [cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR))[1].tobytes() for f in video]
    return {"video": video, "points": pts, "occluded": occ}


def test_first_mode_davis_layout(tmp_path):
    entry = _entry()
    path = tmp_path / "tapvid_davis.pkl"
    path.write_bytes(pickle.dumps({"bear": entry, "cows": entry}))
    samples = list(tapvid_samples(str(path), "first", allow_pickle=True))
    assert [s.name for s in samples] == ["bear", "cows"]
    s = samples[0]
    assert s.video.shape == (T, 256, 256, 3) and s.video.dtype == np.uint8
    assert s.gt_tracks.shape == (T, 2, 2) and s.gt_visible.shape == (T, 2)  # never-visible track dropped
    np.testing.assert_array_equal(s.query_points[:, 0], [0, 3])
    # (t, y, x) for tapnet, (t, x, y) for trackers; coordinates = normalised * 256
    x, y = entry["points"][1, 3] * 256
    np.testing.assert_allclose(s.query_points[1], [3, y, x], rtol=1e-6)
    np.testing.assert_allclose(s.queries_txy[1], [3, x, y], rtol=1e-6)
    np.testing.assert_allclose(s.gt_tracks[:, 0], entry["points"][0] * 256, rtol=1e-6)
    assert not s.gt_visible[:3, 1].any() and s.gt_visible[3, 1]
    s2 = make_sample("bear", entry, "first", point_scale="cotracker")
    np.testing.assert_allclose(s2.gt_tracks[:, 0], entry["points"][0] * 255, rtol=1e-6)
    np.testing.assert_allclose(entry["points"], _entry()["points"])  # entry left untouched


def test_strided_mode_and_jpeg_list_layout(tmp_path):
    path = tmp_path / "tapvid_rgb_stacking.pkl"
    path.write_bytes(pickle.dumps([_entry(jpeg=True)]))
    (s,) = tapvid_samples(str(path), "strided", resize_to=None, allow_pickle=True)
    assert s.name == "tapvid_rgb_stacking_0" and s.video.shape == (T, H, W, 3)
    # t=0: point 0; t=5: point 0 (point 1 occluded there); t=10: points 0 and 1
    np.testing.assert_array_equal(s.query_points[:, 0], [0, 5, 10, 10])
    assert s.gt_tracks.shape == (T, 4, 2)
    np.testing.assert_allclose(s.gt_tracks[:, 3], _entry()["points"][1] * [W, H], rtol=1e-6)
    q, _, _ = sample_queries_strided(np.zeros((1, 11), bool), np.zeros((1, 11, 2)))
    np.testing.assert_array_equal(q[:, 0], [0, 5, 10])


def test_kinetics_shard_directory(tmp_path):
    for k in range(2):
        (tmp_path / f"{k}_of_0010.pkl").write_bytes(pickle.dumps([_entry(), _entry()]))
    names = [s.name for s in tapvid_samples(str(tmp_path), "first", resize_to=(32, 32), allow_pickle=True)]
    assert names == ["0_of_0010_0", "0_of_0010_1", "1_of_0010_0", "1_of_0010_1"]


def test_evaluate_tracker_oracle_and_static(tmp_path):
    samples = [make_sample("v", _entry(), "first")]

    def oracle(video, queries):
        assert video.shape == (T, 256, 256, 3) and queries.shape == (2, 3)
        return samples[0].gt_tracks.copy(), samples[0].gt_visible.astype(np.float32)  # probs ok

    res = evaluate_tracker(oracle, samples)
    assert res["average"]["average_jaccard"] == 1.0 and res["average"]["occlusion_accuracy"] == 1.0

    def static(video, queries):  # stays at the query point, always visible
        return np.repeat(queries[None, :, 1:], len(video), axis=0), np.ones((len(video), len(queries)), bool)

    res = evaluate_tracker(static, samples)
    s = samples[0]
    err = np.linalg.norm(s.gt_tracks - s.queries_txy[None, :, 1:], axis=-1)
    after = np.arange(T)[:, None] > s.query_points[None, :, 0]
    scored = after & s.gt_visible
    assert res["per_video"]["v"]["pts_within_16"] == pytest.approx((err[scored] < 16).mean())
    with pytest.raises(ValueError):
        evaluate_tracker(lambda v, q: (np.zeros((T, 1, 2)), np.zeros((T, 1), bool)), samples)


class _Planted:
    """Unpickling this calls os.system: what a hostile 'dataset' would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return os.system, (f"touch {self.marker}",)


def test_pickles_only_when_allowed_and_only_arrays(tmp_path):
    path = tmp_path / "set.pkl"
    path.write_bytes(pickle.dumps({"bear": _entry()}))
    with pytest.raises(EvalDataError, match="is a pickle, which can run code when read: it is read only when named explicitly"):
        list(tapvid_samples(str(path)))
    for protocol in (2, 3, 4, 5):  # what any numpy/python writes: admitted by the restricted unpickler
        path.write_bytes(pickle.dumps({"bear": _entry(), "jpeg": _entry(jpeg=True)}, protocol=protocol))
        assert len(list(tapvid_samples(str(path), allow_pickle=True, resize_to=None))) == 2
    marker = tmp_path / "pwned"
    path.write_bytes(pickle.dumps({"bear": {**_entry(), "video": _Planted(marker)}}))
    with pytest.raises(EvalDataError, match=r"refusing to load (posix|os)\.system"):
        list(tapvid_samples(str(path), allow_pickle=True))
    assert not marker.exists()


def test_npz_layout_needs_no_pickle(tmp_path):
    data = {"bear": _entry(), "cows": _entry()}
    save_tapvid_npz(data, tmp_path / "set.npz")
    assert [p.name for p in tmp_path.iterdir()] == ["set.npz"]  # no temp file left
    (tmp_path / "set.pkl").write_bytes(pickle.dumps(data))
    a = list(tapvid_samples(str(tmp_path / "set.npz"), "strided"))
    b = list(tapvid_samples(str(tmp_path / "set.pkl"), "strided", allow_pickle=True))
    assert [s.name for s in a] == ["bear", "cows"]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.video, y.video)
        np.testing.assert_array_equal(x.gt_tracks, y.gt_tracks)
        np.testing.assert_array_equal(x.query_points, y.query_points)


def test_bad_tapvid_files_name_the_problem(tmp_path):
    good = pickle.dumps({"bear": _entry()})
    nan = _entry()
    nan["points"][0, 4] = np.nan
    cases = {
        "missing.pkl": (None, "no such file or folder"),
        "empty.pkl": (b"", "cannot read TAP-Vid pickle .*EOFError"),
        "truncated.pkl": (good[: len(good) // 2], "cannot read TAP-Vid pickle"),
        "text.pkl": (b"video,points\n1,2\n", "cannot read TAP-Vid pickle"),
        "number.pkl": (pickle.dumps(3), "holds a int, not a dict or list"),
        "nokeys.pkl": (pickle.dumps({"bear": {"video": _entry()["video"]}}), "entry 'bear' lacks points, occluded"),
        "frames.pkl": (pickle.dumps({"bear": {**_entry(), "occluded": np.zeros((N, T + 1), bool)}}), "do not fit a 12-frame video"),
        "gray.pkl": (pickle.dumps({"bear": {**_entry(), "video": np.zeros((T, H, W), np.uint8)}}), r"video has shape \(12, 40, 60\)"),
        "nan.pkl": (pickle.dumps({"bear": nan}), "visible points must be finite"),
        "badjpeg.pkl": (pickle.dumps([{**_entry(), "video": [b"not a jpeg"] * T}]), "could not decode a video frame"),
        "float.pkl": (pickle.dumps({"bear": {**_entry(), "video": _entry()["video"] / 255.0}}), "video must be uint8 RGB .*float64"),
        "hidden.pkl": (pickle.dumps({"bear": {**_entry(), "occluded": np.ones((N, T), bool)}}), "bear: no point is visible"),
        "broken.npz": (b"PK\x03\x04 not really", "cannot read TAP-Vid .npz"),
    }
    for name, (content, message) in cases.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
        with pytest.raises(EvalDataError, match=message):
            list(tapvid_samples(str(tmp_path / name), allow_pickle=True))
    (tmp_path / "shards").mkdir()
    with pytest.raises(EvalDataError, match="no .pkl files in"):
        list(tapvid_samples(str(tmp_path / "shards"), allow_pickle=True))


def test_synthetic_eval_set_as_npz(tmp_path):
    from cotracker3.data.tapvid_eval import write_tapvid_eval_set

    data = write_tapvid_eval_set(tmp_path / "s.npz", num_clips=2, seed=5, num_frames=4, height=32, width=32, num_tracks=8)
    assert [p.name for p in tmp_path.iterdir()] == ["s.npz"]
    samples = list(tapvid_samples(str(tmp_path / "s.npz"), resize_to=None))  # no pickle, no permission needed
    assert [s.name for s in samples] == sorted(data)
    np.testing.assert_array_equal(samples[1].video, data["synthetic_001"]["video"])
