"""Tracks -> reconstruction -> geometric verdicts on synthetic scenes with known geometry."""
import numpy as np
import pytest

from sfm_tracks import geometric_filter, reconstruct, reprojection_errors
from sfm_tracks.colmap.database import KeypointLayout, pair_schedule
from sfm_tracks.colmap.geometric_filter import frame_images
from sfm_tracks.colmap.metrics import poses_by_frame, relative_pose_errors
from sfm_tracks.testing import DRIFT, GOOD, JUMP, MOVING, synthetic_scene

OUTLIER_PX = 6.0  # an injected error this large (2x the verify threshold) must not be verified


@pytest.fixture(scope="module")
def scene():
    return synthetic_scene(num_frames=30, num_tracks=500, noise_px=1.0, outlier_fraction=0.1, moving_fraction=0.08, seed=0)


@pytest.fixture(scope="module")
def rec(scene):
    return reconstruct(scene.tracks)


def _fractions(scene, labels):
    vis = scene.tracks.visible
    good = vis & (scene.kind == GOOD)[None]
    outlier = vis & (scene.offset > OUTLIER_PX)
    moving = vis & (scene.kind == MOVING)[None]
    return (labels[good] == 1).mean(), (labels[outlier] != 1).mean(), labels[moving]


def test_scene_has_what_the_checks_need(scene):
    assert set(np.unique(scene.kind)) == {GOOD, DRIFT, JUMP, MOVING}
    assert (scene.tracks.visible & (scene.offset > OUTLIER_PX)).sum() > 300


def test_pair_schedule_grows_strides():
    pairs = pair_schedule(40, neighbours=3)
    strides = sorted({j - i for i, j in pairs})
    assert strides == [1, 2, 3, 4, 8, 16, 32] and all(0 <= i < j < 40 for i, j in pairs)


def test_all_frames_registered_and_rotations_accurate(scene, rec):
    assert rec.num_reg_images() == scene.tracks.num_frames
    err = relative_pose_errors(poses_by_frame(rec, scene.tracks), scene.cam_from_world)
    assert err["num_registered"] == 30
    rot = err["rotation_deg"]  # 435 pairs; 1 px noise puts the worst pair near 0.2 deg
    assert np.percentile(rot, 95) < 0.2 and rot.mean() < 0.1 and rot.max() < 0.3, (rot.mean(), rot.max())
    assert abs(rec.cameras[1].params[0] - 600.0) < 6.0  # focal found from the 768 px prior


def test_verdicts_separate_good_outlier_and_moving(scene, rec):
    labels = geometric_filter(rec, scene.tracks)
    assert labels.dtype == np.int8 and labels.shape == scene.tracks.visible.shape
    good, outlier_not_verified, moving = _fractions(scene, labels)
    assert good >= 0.98, good
    assert outlier_not_verified >= 0.95, outlier_not_verified
    assert (moving == 1).mean() <= 0.01  # the moving object is never verified as static structure
    assert (moving == -1).mean() <= 0.01  # ... and its (correct) tracks are not turned into negatives
    assert (labels[~scene.tracks.visible] == 0).all()


def test_moving_object_not_in_static_model(scene, rec):
    layout = KeypointLayout(scene.tracks)
    in_model = set()
    for t, iid in enumerate(frame_images(rec, scene.tracks)):
        if iid is not None:
            in_model |= set(layout.track_ids(t, rec.images[iid].get_observation_point2D_idxs()).tolist())
    moving = set(np.nonzero(scene.kind == MOVING)[0].tolist())
    good = set(np.nonzero(scene.kind == GOOD)[0].tolist())
    assert len(moving & in_model) <= 1
    assert len(good & in_model) >= 0.95 * len(good)


def test_errors_cover_observations_colmap_dropped(scene, rec):
    err = reprojection_errors(rec, scene.tracks)
    # the drifted tail of a verified track is measured against the track's point, not left NaN
    labels = geometric_filter(rec, scene.tracks, errors=err)
    tail = scene.tracks.visible & (scene.offset > 20) & (labels == 1).any(0)[None]
    assert tail.sum() > 20
    assert np.isfinite(err[tail]).all() and (err[tail] > 8).mean() > 0.95
    assert (labels[tail] == -1).mean() > 0.95
    # no error where the track is not visible
    assert np.isnan(err[~scene.tracks.visible]).all()


def test_known_cameras_route(scene):
    cam = {"model": "PINHOLE", "params": scene.colmap_params}
    rec = reconstruct(scene.tracks, camera=cam, cam_from_world=scene.cam_from_world)
    est = poses_by_frame(rec, scene.tracks)
    np.testing.assert_allclose(est, scene.cam_from_world, atol=1e-9)  # poses stay fixed
    np.testing.assert_allclose(rec.cameras[1].params, scene.colmap_params)
    good, outlier_not_verified, moving = _fractions(scene, geometric_filter(rec, scene.tracks))
    assert good >= 0.98 and outlier_not_verified >= 0.95 and (moving == 1).mean() <= 0.01

    noisy = scene.cam_from_world.copy()
    noisy[:, :, 3] += np.random.default_rng(1).normal(0, 0.01, noisy[:, :, 3].shape)
    refined = reconstruct(scene.tracks, camera=cam, cam_from_world=noisy, refine_poses=True)
    err = relative_pose_errors(poses_by_frame(refined, scene.tracks), scene.cam_from_world)
    assert err["rotation_deg"].max() < 0.2
    assert not np.allclose(poses_by_frame(refined, scene.tracks), noisy, atol=1e-6)  # poses were refined


def test_global_mapper_small_scene():
    scene = synthetic_scene(num_frames=12, num_tracks=250, outlier_fraction=0.1, seed=3)
    rec = reconstruct(scene.tracks, mapper="global", camera="SIMPLE_PINHOLE")
    assert rec.num_reg_images() == 12
    err = relative_pose_errors(poses_by_frame(rec, scene.tracks), scene.cam_from_world)
    assert err["rotation_deg"].max() < 0.3
    good, outlier_not_verified, _ = _fractions(scene, geometric_filter(rec, scene.tracks))
    assert good >= 0.97 and outlier_not_verified >= 0.95


def test_user_intrinsics_fixed_or_refined():
    scene = synthetic_scene(num_frames=12, num_tracks=250, outlier_fraction=0.0, seed=4)
    wrong = [620.0, 620.0, 330.0, 236.0]  # a slightly wrong calibration
    fixed = reconstruct(scene.tracks, camera={"model": "PINHOLE", "params": wrong})
    np.testing.assert_array_equal(fixed.cameras[1].params, wrong)
    refined = reconstruct(scene.tracks, camera={"model": "PINHOLE", "params": wrong, "refine_focal_length": True,
                                                "refine_principal_point": True})
    fx, fy, cx, cy = refined.cameras[1].params
    assert abs(fx - 600) < abs(wrong[0] - 600) and abs(fy - 600) < abs(wrong[1] - 600)
    assert (cx, cy) != (330.0, 236.0)
    default = reconstruct(scene.tracks, camera="SIMPLE_PINHOLE")  # focal from the 1.2 * max(H, W) = 768 px prior
    assert abs(default.cameras[1].params[0] - 600) < 10 and list(default.cameras[1].params[1:]) == [320, 240]


def test_same_input_same_model_and_mapper_report():
    """Seeded RANSAC everywhere, mapper and final BA on one thread: two runs give the same poses and points."""
    scene = synthetic_scene(num_frames=10, num_tracks=200, outlier_fraction=0.1, seed=5)
    reports = [{}, {}]
    a, b = (reconstruct(scene.tracks, report=r) for r in reports)
    np.testing.assert_allclose(poses_by_frame(a, scene.tracks), poses_by_frame(b, scene.tracks), rtol=0, atol=1e-9)
    assert sorted(a.points3D) == sorted(b.points3D)
    xyz = [np.array([p.xyz for _, p in sorted(r.points3D.items())]) for r in (a, b)]
    np.testing.assert_allclose(xyz[0], xyz[1], rtol=0, atol=1e-9)
    for r in reports:  # the result checks' wall times are the only fields that may differ
        assert r["view_check"].pop("seconds") >= 0 and r["colocated_check"].pop("seconds") >= 0
    assert reports[0] == reports[1] and reports[0]["mapper"] == "incremental" and reports[0]["tried"] == ["incremental"]
    assert reports[0]["rotation_only_fit"]["residual_p90_px"] > 3  # an orbit: far from a pure rotation


def test_global_mapper_fallback_when_incremental_registers_too_few():
    scene = synthetic_scene(num_frames=10, num_tracks=200, outlier_fraction=0.0, seed=6)
    report = {}
    rec = reconstruct(scene.tracks, fallback_fraction=1.01, report=report)  # no model can reach 101 %: always falls back
    assert report["tried"] == ["incremental", "global"] and report["mapper"] in ("incremental", "global")
    assert rec.num_reg_images() == 10
    off = {}
    reconstruct(scene.tracks, fallback_fraction=1.01, fallback_global=False, report=off)
    assert off["tried"] == ["incremental"]


def test_images_hold_only_their_usable_tracks(scene, rec):
    """Keypoints grow with the observations, not with frames x tracks, and every observation finds its track."""
    layout = KeypointLayout(scene.tracks)
    images = frame_images(rec, scene.tracks)
    for t, iid in enumerate(images):
        im = rec.images[iid]
        assert im.num_points2D() == layout.count(t) < scene.tracks.num_tracks
        k = np.asarray(im.get_observation_point2D_idxs())
        n = layout.track_ids(t, k)
        xy = np.array([im.points2D[int(i)].xy for i in k]) - 0.5
        assert (n >= 0).all() and np.allclose(xy, scene.tracks.xy[t, n], atol=1e-3)
    assert (layout.track_ids(0, [layout.count(0)]) == -1).all()  # past the tracks: SIFT keypoints, no track
    with pytest.raises(ValueError, match="not usable"):
        layout.slots(0, np.flatnonzero(~scene.tracks.visible[0])[:1])
