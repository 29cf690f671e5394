"""colocated.py and the repair after the final BA. On hand-built models: frames the model puts at one centre although
their verified pair needed a baseline lose all but the best-supported frame; a pair verified as a pure turn, or one far
enough apart, stays. On mapped synthetic scenes: the continued mapper places such a frame again, and where it cannot
(keyframe route) the result check deregisters it with its reason."""
import numpy as np
import pycolmap

from sfm_tracks import reconstruct
from sfm_tracks.colmap import colocated as co
from sfm_tracks.colmap import mappers
from sfm_tracks.colmap import unregistered as unreg
from sfm_tracks.colmap.final_model import check_result
from sfm_tracks.colmap.cameras import camera_spec, frame_cameras
from sfm_tracks.colmap.geometric_filter import frame_images
from sfm_tracks.colmap.mapping import MappingOptions
from sfm_tracks.colmap.metrics import poses_by_frame, relative_pose_errors
from sfm_tracks.testing import synthetic_scene
from tests.test_view_consistency import _cloud, _model, _pose

CALIBRATED, PANORAMIC = pycolmap.TwoViewGeometryConfiguration.CALIBRATED, pycolmap.TwoViewGeometryConfiguration.PANORAMIC


def _names(rec, ids) -> list:
    return sorted(rec.images[i].name for i in ids)


def _poses():
    """Frames 00-03 along a line 0.3 apart; 04 and 05 at 02's centre (0.0003 off, at depths of ~5), turned a little."""
    return [_pose(x) for x in (-0.3, 0.0, 0.3, 0.6)] + [_pose(0.3003, 2.0), _pose(0.2998, -1.5)]


def test_frames_put_at_one_centre_despite_parallax_keep_only_the_best_supported():
    points = _cloud(400)
    sees = [set(range(400))] * 4 + [set(range(300)), set(range(200))]  # 02 sees the most of the three
    rec = _model(_poses(), sees, points)
    pairs = [("02.png", "04.png"), ("02.png", "05.png"), ("04.png", "05.png"), ("01.png", "02.png"), ("00.png", "03.png")]
    ids, summary = co.colocated_images(rec, pairs, max_parallax_px=4.0)
    assert _names(rec, ids) == ["04.png", "05.png"]
    assert summary == {"pairs_checked": 5, "conflicting_pairs": 3, "deregistered": 2}
    # the best-supported frame of the group decides which stay: with 04 seeing most, 02 and 05 go
    sees[4] = set(range(400))
    sees[2] = set(range(250))
    rec = _model(_poses(), sees, points)
    assert _names(rec, co.colocated_images(rec, pairs, 4.0)[0]) == ["02.png", "05.png"]


def test_pure_turns_and_close_but_distinct_frames_stay():
    points = _cloud(400)
    rec = _model(_poses(), [set(range(400))] * 6, points)
    # verified with parallax, but 0.3 apart at depth ~5 is ~30 px of parallax at f = 500
    assert co.colocated_images(rec, [("01.png", "02.png"), ("02.png", "03.png")], 4.0) == (
        [], {"pairs_checked": 2, "conflicting_pairs": 0, "deregistered": 0})
    # a limit above that parallax makes them conflict, so the limit is what decides
    assert len(co.colocated_images(rec, [("01.png", "02.png")], 40.0)[0]) == 1
    # a pair missing from the model is not judged
    assert co.colocated_images(rec, [("02.png", "09.png")], 4.0)[1]["pairs_checked"] == 0


def test_only_pairs_verified_with_a_baseline_are_read(tmp_path):
    db_path = tmp_path / "database.db"
    with pycolmap.Database.open(str(db_path)) as db:
        db.write_camera(pycolmap.Camera(model="SIMPLE_PINHOLE", width=640, height=480, params=[500, 320, 240], camera_id=1),
                        use_camera_id=True)
        for k in range(4):
            db.write_image(pycolmap.Image(name=f"{k:02d}.png", camera_id=1, image_id=k + 1), use_image_id=True)
        for (i, j), config, n in (((1, 2), CALIBRATED, 40), ((1, 3), PANORAMIC, 40), ((2, 4), CALIBRATED, 5),
                                  ((3, 4), pycolmap.TwoViewGeometryConfiguration.UNCALIBRATED, 30)):
            g = pycolmap.TwoViewGeometry()
            g.config = config
            g.inlier_matches = np.stack([np.arange(n), np.arange(n)], 1).astype(np.uint32)
            db.write_two_view_geometry(i, j, g)
    # the panorama pair is a turn on the spot, the 5-inlier pair is too weak to vouch for anything
    assert sorted(co.parallax_pairs(db_path, min_inliers=15)) == [("00.png", "01.png"), ("02.png", "03.png")]


def test_frame_laid_at_a_neighbours_centre_is_placed_again(tmp_path):
    """The repair end to end: a mapped orbit with one frame moved onto its neighbour's centre (the wrong pose an
    orbit taken for a turn gives) is found from the mapping database and placed back by the continued mapper."""
    scene = synthetic_scene(num_frames=10, num_tracks=300, noise_px=0.5, outlier_fraction=0.0, seed=3)
    rec = reconstruct(scene.tracks, work_dir=str(tmp_path))
    good = relative_pose_errors(poses_by_frame(rec, scene.tracks), scene.cam_from_world)["rotation_deg"].max()
    images = frame_images(rec, scene.tracks)
    a, b = rec.images[images[4]], rec.images[images[5]]
    pose = b.cam_from_world().matrix()
    pose[:, 3] = -pose[:, :3] @ a.projection_center()  # 5 keeps its rotation, at 4's centre
    rec.frames[b.frame_id].rig_from_world = pycolmap.Rigid3d(pose)
    report = {}
    opts = MappingOptions(report=report)
    spec = camera_spec(None)
    db_path = tmp_path / "database.db"
    fixed = mappers.colocated_remapped(rec, co.parallax_pairs(db_path, 15), db_path, tmp_path, scene.tracks, spec, opts,
                                       frame_cameras(spec, scene.tracks.image_size, scene.tracks.num_frames))
    assert report["colocated_remap"]["deregistered"] == 1 and report["colocated_remap"]["kept"]
    poses = poses_by_frame(fixed, scene.tracks)
    err = relative_pose_errors(poses, scene.cam_from_world)
    assert err["num_registered"] == 10 and err["rotation_deg"].max() < max(2 * good, 0.2), (good, err["rotation_deg"].max())
    centres = [-P[:3, :3].T @ P[:3, 3] for P in poses[4:6]]
    assert np.linalg.norm(centres[0] - centres[1]) > 0.1 * np.linalg.norm(np.ptp([-P[:3, :3].T @ P[:3, 3] for P in poses], 0))


def test_keyframe_route_leaves_the_frame_to_the_result_check(tmp_path):
    """A video mapped on keyframes holds frames placed by absolute pose that the database lacks, so the mapper
    cannot continue the model: the repair steps aside and the result check deregisters the frame, with its reason."""
    scene = synthetic_scene(num_frames=60, num_tracks=400, noise_px=0.5, outlier_fraction=0.0, seed=3)
    report = {}
    rec = reconstruct(scene.tracks, work_dir=str(tmp_path), report=report)
    assert report["keyframes"]["registered_by_pose"] > 0
    db_path = tmp_path / "database.db"
    byname = {im.name: im for im in rec.images.values()}
    a, b = (byname[n] for n in co.parallax_pairs(db_path, 15)[10])
    pose = b.cam_from_world().matrix()
    pose[:, 3] = -pose[:, :3] @ a.projection_center()
    rec.frames[b.frame_id].rig_from_world = pycolmap.Rigid3d(pose)
    report = {}
    opts = MappingOptions(report=report)
    spec = camera_spec(None)
    parallax = co.parallax_pairs(db_path, 15)
    same = mappers.colocated_remapped(rec, parallax, db_path, tmp_path, scene.tracks, spec, opts,
                                      frame_cameras(spec, scene.tracks.image_size, scene.tracks.num_frames))
    assert same is rec and not report["colocated_remap"]["kept"] and same.num_reg_images() == 60
    dropped = check_result(rec, scene.tracks, opts, parallax)
    assert list(dropped.values()) == [unreg.COLOCATED] and rec.num_reg_images() == 59
    assert report["colocated_check"]["deregistered"] == 1


def test_a_model_with_frames_placed_again_gets_the_final_bundle_adjustment(monkeypatch):
    """The continued mapper's model is refitted like every model: a pose it leaves 1 deg off comes back."""
    scene = synthetic_scene(num_frames=10, num_tracks=300, noise_px=0.5, outlier_fraction=0.0, seed=3)

    def placed_again(rec, parallax, db_path, work, tracks, spec, opts, cameras):
        again = pycolmap.Reconstruction(rec)
        image = again.images[frame_images(again, tracks)[5]]
        turn = pycolmap.Rigid3d(pycolmap.Rotation3d(np.array([0.0, np.radians(1.0), 0.0])), np.zeros(3))
        again.frames[image.frame_id].rig_from_world = turn * image.cam_from_world()
        return again

    monkeypatch.setattr(mappers, "colocated_remapped", placed_again)
    err = relative_pose_errors(poses_by_frame(reconstruct(scene.tracks), scene.tracks), scene.cam_from_world)
    assert err["rotation_deg"].max() < 0.1, err["rotation_deg"].max()
