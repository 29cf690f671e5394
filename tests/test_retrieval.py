"""Pair selection for photo sets: retrieval from the set's own SIFT vocabulary, and the SIFT settings by mode."""
import numpy as np
import pytest
import torch

from sfm_tracks import Tracks
from sfm_tracks.colmap import retrieval
from sfm_tracks.colmap.feature_matches import MatchOptions, plan_matches, sift_settings
from sfm_tracks.colmap.mapping import reconstruct
from sfm_tracks.colmap.metrics import pair_errors, pose_auc, relative_pose_errors
from sfm_tracks.errors import ReconstructionError


def test_top_k_pairs_is_symmetric_and_bounded():
    S = np.array([[1, .9, .1, .2], [.9, 1, .3, .1], [.1, .3, 1, .8], [.2, .1, .8, 1]])
    assert retrieval.top_k_pairs(S, 1) == {(0, 1), (2, 3)}
    assert len(retrieval.top_k_pairs(S, 2)) <= 4 * 2 and retrieval.top_k_pairs(S, 10) == {(i, j) for i in range(4) for j in range(i + 1, 4)}


def test_images_sharing_words_retrieve_each_other():
    # three "places", each with its own 40 descriptor prototypes; 4 noisy views of each place, shuffled
    rng = np.random.default_rng(0)
    places = [rng.uniform(0, 255, (40, 128)) for _ in range(3)]
    place_of = rng.permutation(np.repeat(np.arange(3), 4))
    descs = [np.clip(places[p][rng.choice(40, 200)] + rng.normal(0, 8, (200, 128)), 0, 255).astype(np.uint8) for p in place_of]
    pairs, info, _ = retrieval.retrieval_pairs(descs, neighbours=3, words=64)
    assert info["method"] == "retrieval" and info["words"] >= 16
    assert all(place_of[i] == place_of[j] for i, j in pairs)  # each image's 3 nearest are the 3 other views of its place
    assert len(pairs) == 3 * 6


def test_sift_settings_by_mode():
    acc = sift_settings("accurate", (800, 1200))
    assert acc["first_octave"] == -1 and acc["max_num_features"] == 8192 and acc["peak_threshold"] == pytest.approx(0.003)
    assert sift_settings("colmap", (800, 1200))["peak_threshold"] == pytest.approx(0.02 / 3)
    assert sift_settings("fast", (800, 1200))["first_octave"] == 0 and sift_settings("fast", (480, 640))["first_octave"] == -1
    assert sift_settings("accurate-dsp", (480, 640))["domain_size_pooling"] is True
    with pytest.raises(ValueError, match="features must be one of"):
        sift_settings("fastest", (480, 640))


def test_pair_errors_and_auc():
    rng = np.random.default_rng(1)
    from scipy.spatial.transform import Rotation
    gt = np.concatenate([Rotation.random(6, random_state=2).as_matrix(), rng.normal(size=(6, 3, 1))], 2)
    assert pose_auc(pair_errors(gt, gt)) == pytest.approx(1.0)
    est = gt.copy()
    est[5] = np.nan  # one frame unregistered: its 5 pairs of 15 fail
    e = pair_errors(est, gt)
    assert np.isinf(e).sum() == 5 and pose_auc(e) == pytest.approx(10 / 15)


def test_large_photo_set_uses_retrieval_in_plan():
    ok = np.zeros((60, 0), bool)
    plan = plan_matches(ok, [(0, 1)], "auto", image_set=True)
    assert plan.selection == "retrieval" and plan.pairs == []  # pairs come once the descriptors exist
    small = plan_matches(np.zeros((12, 0), bool), [(0, 1)], "auto", image_set=True)
    assert small.selection == "exhaustive" and len(small.pairs) == 66
    old = plan_matches(ok, [(0, 1)], "auto", image_set=True, options=MatchOptions(retrieval=False))
    assert old.selection == "schedule"


@pytest.fixture(scope="module")
def shuffled_orbit():
    """60 photos of one full turn around a synthetic room (the training generator), in random order."""
    from cotracker3.data.scene import sample_scene
    from cotracker3.data.synthetic import generate_clip

    torch.set_num_threads(2)
    H, W, T = 192, 256, 60
    scene = sample_scene(0, H, W, dynamic=False, camera_mode="orbit")
    step = 360 * 24 / (T * abs(np.degrees(scene.camera.angle_rate) * 24))  # angle_rate is per 24 frames of scene time
    clip = generate_clip(0, num_frames=T, height=H, width=W, num_tracks=8, dynamic=False, camera_mode="orbit", frame_step=step)
    order = np.random.default_rng(0).permutation(T)
    return clip["video"][order], clip["cam_from_world"][order].astype(np.float64), clip["intrinsics"]


def _photo_set(video, K, match_options):
    T, H, W = video.shape[:3]
    tracks = Tracks(xy=np.zeros((T, 0, 2)), visible=np.zeros((T, 0), bool), image_size=(H, W))  # SIFT only
    tracks.image_names = [f"img_{t:02d}.png" for t in range(T)]
    report = {}
    camera = {"model": "PINHOLE", "params": [K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5]}
    rec = reconstruct(tracks, camera=camera, frames=video, image_set=True, report=report, match_options=match_options)
    est = np.full((T, 3, 4), np.nan)
    for im in rec.images.values():
        if im.has_pose:
            est[int(im.name[4:6])] = im.cam_from_world().matrix()
    return rec, est, report.pop("matches"), report


def test_retrieval_registers_a_60_photo_set_the_old_35_photo_rule_splits(shuffled_orbit):
    video, poses, K = shuffled_orbit
    rec, est, matches, mapping = _photo_set(video, K, {})
    assert matches["pair_selection"] == "retrieval" and matches["retrieval"]["neighbours"] == 15
    assert mapping["verify_trials"] == [20, 2000]  # SIFT pairs of a large photo set: RANSAC capped (BENCHMARKS)
    assert matches["sift_pairs"] < 60 * 59 // 2 // 3  # a third of exhaustive matching at most
    assert rec.num_reg_images() == 60
    rel = relative_pose_errors(est, poses)
    assert np.median(rel["rotation_deg"]) < 1.5 and rel["rotation_deg"].max() < 5.0  # measured 0.90 / 2.07 deg
    # the rule it replaces (above 35 photos: the track schedule's pairs, here in shuffled order) leaves most out
    old, _, old_matches, _ = _photo_set(video, K, {"retrieval": False})
    assert old_matches["pair_selection"] == "schedule" and old.num_reg_images() < 40  # measured 19/60


def test_photos_left_out_are_matched_with_more_neighbours_and_mapped_again(shuffled_orbit):
    """Too few retrieved neighbours split the set; the photos left out send every photo back to its
    retrieval_more nearest, and the second model, which registers more, is kept (nerf_mic: 56 -> 100 of 100)."""
    video, poses, K = shuffled_orbit
    few, _, few_matches, few_mapping = _photo_set(video, K, {"retrieval_neighbours": 3, "retrieval_more": 0})
    assert "retrieval_more" not in few_mapping and "more" not in few_matches["retrieval"]
    assert few.num_reg_images() < 60
    rec, est, matches, mapping = _photo_set(video, K, {"retrieval_neighbours": 3, "retrieval_more": 15})
    more = mapping["retrieval_more"]
    # the first round repeats the run above (25/60 in 41 local runs, 24 once in a CI run on a loaded host: the photo
    # route is not always reproducible from run to run, BENCHMARKS), so its count is checked within this run
    assert more["kept"] and more["registered"][0] < 60 and more["registered"][1] == rec.num_reg_images() == 60, more
    assert matches["retrieval"]["more"]["pairs"] == more["pairs_added"] > 0
    assert matches["sift_pairs"] == few_matches["sift_pairs"] + more["pairs_added"]
    rel = relative_pose_errors(est, poses)
    assert np.median(rel["rotation_deg"]) < 1.5 and rel["rotation_deg"].max() < 5.0  # the bounds of the full mapping
    # one neighbour each: 44 verified pairs, which a rotation alone explains; the first round builds no model
    with pytest.raises(ReconstructionError, match="pure rotation"):
        _photo_set(video, K, {"retrieval_neighbours": 1, "retrieval_more": 0})
    rec, _, _, mapping = _photo_set(video, K, {"retrieval_neighbours": 1, "retrieval_more": 15})
    assert rec.num_reg_images() == 60 and mapping["retrieval_more"]["registered"][0] == 0
    assert "pure rotation" in mapping["retrieval_more"]["first_error"]


def test_a_second_round_that_fails_keeps_the_first_model(tmp_path):
    from sfm_tracks.colmap.mapping import _mapped_with_more_pairs

    class Model:
        def num_reg_images(self):
            return 40

    def fails(path):
        raise ReconstructionError("pure rotation")

    first, report = Model(), {"matches": {"sift_pairs": 10}, "mapper": "incremental"}
    kept = _mapped_with_more_pairs(first, None, lambda: 5, tmp_path / "database.db", 60, report, fails)
    assert kept is first and report["matches"]["sift_pairs"] == 10 and report["mapper"] == "incremental"
    assert report["retrieval_more"] == {"pairs_added": 5, "registered": [40, 0], "second_error": "pure rotation", "kept": False}
    with pytest.raises(ReconstructionError, match="pure rotation"):  # no first model either: the error stands
        _mapped_with_more_pairs(None, ReconstructionError("no pair"), lambda: 5, tmp_path / "database.db", 60, {}, fails)


def test_thinned_mapping_registers_the_60_photo_set_as_well(shuffled_orbit):
    """The mapper on each photo's 100 best-connected keypoints, the other matches triangulated on its poses."""
    video, poses, K = shuffled_orbit
    T, H, W = video.shape[:3]
    tracks = Tracks(xy=np.zeros((T, 0, 2)), visible=np.zeros((T, 0), bool), image_size=(H, W))
    tracks.image_names = [f"img_{t:02d}.png" for t in range(T)]
    report = {}
    rec = reconstruct(tracks, camera={"model": "PINHOLE", "params": [K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5]},
                      frames=video, image_set=True, report=report, photo_mapped_keypoints=100)
    thinned = report["mapped_inliers"]
    assert thinned["per_photo"] == 100 and 0 < thinned["kept_inliers"] < thinned["all_inliers"]
    assert thinned["points_triangulated"] > thinned["points_mapped"]  # the matches left out of mapping became points
    assert rec.num_reg_images() == 60
    est = np.full((T, 3, 4), np.nan)
    for im in rec.images.values():
        est[int(im.name[4:6])] = im.cam_from_world().matrix()
    rel = relative_pose_errors(est, poses)
    assert np.median(rel["rotation_deg"]) < 1.5 and rel["rotation_deg"].max() < 5.0  # the bounds of the full mapping


def test_best_connected_keeps_the_keypoints_of_the_most_pairs():
    from sfm_tracks.colmap.thinned_matches import best_connected

    inliers = {(1, 2): np.array([[0, 0], [1, 1], [2, 2]]), (1, 3): np.array([[0, 0], [2, 1]]), (2, 3): np.array([[0, 0]])}
    keep = best_connected(inliers, {1: 4, 2: 3, 3: 2}, per_image=2, num_tracks={1: 0, 2: 0, 3: 0})
    assert keep[1].tolist() == [True, False, True, False]  # keypoints 0 and 2 are in two pairs each, 1 in one, 3 in none
    assert keep[2].tolist() == [True, True, False]  # 0 in two pairs; 1 and 2 tie at one: the lower index
    assert keep[3].tolist() == [True, True]  # fewer matched keypoints than per_image: all kept
    # image 1's first keypoint is a track: kept whatever its pairs, and the SIFT ones compete for per_image
    keep = best_connected(inliers, {1: 4, 2: 3, 3: 2}, per_image=1, num_tracks={1: 2, 2: 0, 3: 0})
    assert keep[1].tolist() == [True, True, True, False]
