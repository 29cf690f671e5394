"""Keyframe mapping of videos: keyframe choice, and every frame registered as accurately as full mapping."""
import numpy as np
import pycolmap
import pytest

from sfm_tracks import reconstruct
from sfm_tracks.colmap.database import pair_schedule
from sfm_tracks.colmap.keyframes import KeyframeOptions, absolute_pose, select_keyframes
from sfm_tracks.colmap.metrics import poses_by_frame, relative_pose_errors
from sfm_tracks.testing import synthetic_scene


def test_keyframes_follow_displacement_and_overlap():
    T, N = 40, 100
    xy = np.zeros((T, N, 2))
    xy[:, :, 0] = np.arange(T)[:, None] * 2.0  # every track moves 2 px per frame
    ok = np.ones((T, N), bool)
    opts = KeyframeOptions(parallax=0.1, min_overlap=0.5, max_gap=100, min_shared=10)  # 10 px on a 100 px image
    keys = select_keyframes(xy, ok, (50, 100), opts)
    assert keys.tolist() == list(range(0, T, 5)) + [T - 1]
    ok[20:, :60] = False  # most tracks lost at frame 20: a keyframe there, although it moved only 0-8 px
    keys = select_keyframes(xy, ok, (50, 100), opts)
    assert 20 in keys.tolist()
    ok[:] = True
    keys = select_keyframes(xy, ok, (50, 100), KeyframeOptions(parallax=10.0, max_gap=7))
    assert np.diff(keys).max() <= 7 and keys[0] == 0 and keys[-1] == T - 1


def test_keyframes_are_reused_when_the_camera_comes_back():
    """A camera going back and forth over one stretch (a looped clip) maps the stretch's keyframes once."""
    T, N = 160, 100
    phase = np.abs((np.arange(T) + 40) % 80 - 40) - 40 + 40  # 0, 1, ..., 40, 39, ..., 0, 1, ...: a triangle wave
    xy = np.zeros((T, N, 2))
    xy[:, :, 0] = phase[:, None] * 2.0  # 2 px per frame, as above
    ok = np.ones((T, N), bool)
    opts = KeyframeOptions(parallax=0.1, min_overlap=0.5, max_gap=100, min_shared=10)
    keys = select_keyframes(xy, ok, (50, 100), opts)
    first_pass = select_keyframes(xy[:41], ok[:41], (50, 100), opts)
    assert len(first_pass) == 9  # every 5 frames, as in the test above
    assert set(keys.tolist()) <= set(first_pass.tolist()) | {T - 1}  # no new keyframe on the way back or again
    # other tracks on the way back (new points, as after a cut): those views get keyframes once more, then reused
    old = np.ones((T, N), bool)
    old[41:] = False
    keys = select_keyframes(np.concatenate([xy, xy], 1), np.concatenate([old, ~old], 1), (50, 100), opts)
    assert ((keys > 41) & (keys <= 80)).sum() >= 7 and not ((keys > 81) & (keys < T - 1)).any()


def test_sparse_long_links_keep_neighbours():
    full, sparse = pair_schedule(200, 3), pair_schedule(200, 3, links=4)
    assert {p for p in full if p[1] - p[0] <= 3} <= set(sparse)  # every neighbour pair stays
    assert {p[1] - p[0] for p in sparse} == {p[1] - p[0] for p in full}  # and every stride still links frames
    assert len(sparse) < 0.65 * len(full)  # 965 of 1542 pairs


@pytest.fixture(scope="module")
def scene():
    return synthetic_scene(num_frames=30, num_tracks=500, noise_px=1.0, outlier_fraction=0.1, moving_fraction=0.08, seed=0)


def test_keyframe_mapping_registers_every_frame_as_accurately_as_full_mapping(scene):
    """Tolerance: mean relative rotation error within 0.02 deg and the worst pair within 0.03 deg of full mapping
    (1 px noise puts full mapping at ~0.075 mean / ~0.19 deg max on this orbit)."""
    full = reconstruct(scene.tracks, keyframes=False)
    report = {}
    # this orbit moves ~55 px per frame: a large parallax threshold gives a real keyframe subset
    rec = reconstruct(scene.tracks, keyframe={"parallax": 0.4}, report=report)
    kf = report["keyframes"]
    assert kf["keyframes"] <= 10 and kf["registered_by_pose"] >= 20 and kf["unregistered"] == []
    assert rec.num_reg_images() == full.num_reg_images() == scene.tracks.num_frames
    e_full = relative_pose_errors(poses_by_frame(full, scene.tracks), scene.cam_from_world)["rotation_deg"]
    e_kf = relative_pose_errors(poses_by_frame(rec, scene.tracks), scene.cam_from_world)["rotation_deg"]
    assert e_kf.mean() <= e_full.mean() + 0.02 and e_kf.max() <= e_full.max() + 0.03, (e_kf.mean(), e_full.mean(), e_kf.max(), e_full.max())
    assert abs(rec.cameras[1].params[0] - full.cameras[1].params[0]) < 3.0  # the same focal length found
    assert rec.num_points3D() >= 0.97 * full.num_points3D()


def test_keyframes_mapped_on_a_subset_of_the_tracks_keep_every_track_and_the_accuracy(scene):
    """keyframe_tracks: the mapper sees about 150 tracks a keyframe, a third of the 500 (a keyframe sees ~470 of
    them); completion triangulates the rest afterwards."""
    every, few = {}, {}
    rec_all = reconstruct(scene.tracks, keyframe={"parallax": 0.4}, report=every)
    rec = reconstruct(scene.tracks, keyframe={"parallax": 0.4}, keyframe_tracks=150, report=few)
    assert 140 <= few["keyframes"]["tracks_mapped"] <= 180 and every["keyframes"]["tracks_mapped"] == scene.tracks.num_tracks
    assert rec.num_reg_images() == scene.tracks.num_frames
    assert rec.num_points3D() >= 0.97 * rec_all.num_points3D() > 300
    e_all = relative_pose_errors(poses_by_frame(rec_all, scene.tracks), scene.cam_from_world)["rotation_deg"]
    e_few = relative_pose_errors(poses_by_frame(rec, scene.tracks), scene.cam_from_world)["rotation_deg"]
    assert e_few.mean() <= e_all.mean() + 0.02, (e_few.mean(), e_all.mean())


def test_frames_between_keyframes_get_the_same_poses_on_one_thread_or_two(scene):
    """register_frames estimates the frames' poses side by side: each RANSAC is seeded and reads only the model as it
    was on entry, so the threads change nothing (a pose computed from a half-updated model would)."""
    reports = ({}, {})
    rec1 = reconstruct(scene.tracks, keyframe={"parallax": 0.4}, num_threads=1, report=reports[0])
    rec2 = reconstruct(scene.tracks, keyframe={"parallax": 0.4}, num_threads=2, report=reports[1])
    assert reports[0]["keyframes"]["registered_by_pose"] == reports[1]["keyframes"]["registered_by_pose"] >= 20
    p1, p2 = poses_by_frame(rec1, scene.tracks), poses_by_frame(rec2, scene.tracks)
    assert np.isfinite(p1).all() and np.array_equal(p1, p2)
    assert rec1.num_points3D() == rec2.num_points3D()


def test_video_with_a_cut_maps_every_frame(tmp_path):
    """A 24-frame video that jumps 44 degrees after frame 11 (no track crosses the cut): keyframe mapping put the
    second half 16 deg off (median pair error), so such videos map every frame, with SIFT across the cut."""
    from synthetic import orbit_poses, render_room, room_planes

    from sfm_tracks.pipeline import run

    H, W, F = 192, 256, 170.0
    K = np.array([[F, 0, (W - 1) / 2], [0, F, (H - 1) / 2], [0, 0, 1]])
    poses = np.concatenate([orbit_poses(12, 16.0), orbit_poses(12, 16.0, start_deg=60.0)])  # ~1.5 deg per frame
    names = [f"frame_{t:03d}.png" for t in range(len(poses))]
    # refinement on, as by default: it once put the two halves 5.4 deg apart (BENCHMARKS.md "A video with a cut")
    conf = {"tracker": {"name": "lk"}, "output": {"video": False}, "mapping": {"matches": "auto"},
            "camera": {"model": "SIMPLE_PINHOLE", "intrinsics": [F, W / 2, H / 2]}}
    report = run((render_room(room_planes(seed=0), poses, K, H, W), names), tmp_path / "out", conf)
    assert "keyframes" not in report["mapping"]
    assert report["matches"]["weak_links"] == [11] and report["matches"]["sift_pairs"] > 0
    assert report["frames_registered"] == len(names)
    by = {im.name: im.cam_from_world().matrix() for im in report["model"].images.values() if im.has_pose}
    rel = relative_pose_errors(np.array([by[n] for n in names]), poses)
    assert rel["rotation_deg"].max() < 0.5 and np.median(rel["rotation_deg"]) < 0.3  # measured 0.15 and 0.14 deg


def test_absolute_pose_on_a_sample_finds_the_pose_and_every_outlier():
    """3000 correspondences, a quarter of them 10-40 px off: RANSAC sees 400 of them, the inlier mask covers all."""
    rng = np.random.default_rng(0)
    camera = pycolmap.Camera(model="SIMPLE_PINHOLE", width=640, height=480, params=[500.0, 320.0, 240.0])
    truth = pycolmap.Rigid3d(pycolmap.Rotation3d(np.array([0.02, -0.03, 0.01, 1.0]) / np.linalg.norm([0.02, -0.03, 0.01, 1.0])),
                             np.array([0.3, -0.1, 0.2]))
    cam = np.column_stack([rng.uniform(-2, 2, 3000), rng.uniform(-1.5, 1.5, 3000), rng.uniform(4, 8, 3000)])
    P = truth.matrix()
    world = (cam - P[:, 3]) @ P[:, :3]  # the same points in world coordinates
    xy = camera.img_from_cam(cam) + rng.normal(0, 0.3, (3000, 2))
    off = rng.random(3000) < 0.25
    angle = rng.uniform(0, 2 * np.pi, off.sum())
    xy[off] += rng.uniform(10, 40, off.sum())[:, None] * np.column_stack([np.cos(angle), np.sin(angle)])
    est = pycolmap.AbsolutePoseEstimationOptions()
    est.ransac.max_error, est.ransac.random_seed = 4.0, 0
    ref = pycolmap.AbsolutePoseRefinementOptions()
    ref.refine_focal_length = ref.refine_extra_params = False
    res = absolute_pose(xy, world, camera, est, ref)
    np.testing.assert_array_equal(res["inlier_mask"], ~off)
    assert res["num_inliers"] == (~off).sum()
    assert np.abs(res["cam_from_world"].matrix() - P).max() < 2e-3
