"""consistency.py on hand-built models: a group of frames laid onto another group's viewpoints, seeing none of
its points, is cut off; a consistent model and a revisit whose frames are chained by shared points are not."""
import numpy as np
import pycolmap

from sfm_tracks.colmap import consistency as cs

W, H, F = 640, 480, 500.0


def _pose(x: float, yaw_deg: float = 0.0) -> np.ndarray:
    """(3, 4) cam_from_world of a camera at (x, 0, 0) looking along +z, turned by yaw about y."""
    a = np.radians(yaw_deg)
    R = np.array([[np.cos(a), 0, -np.sin(a)], [0, 1, 0], [np.sin(a), 0, np.cos(a)]])
    return np.concatenate([R, -R @ np.array([[x], [0.0], [0.0]])], 1)


def _model(poses: list, sees: list, points: np.ndarray) -> pycolmap.Reconstruction:
    """Images at poses (each (3, 4)); image k observes the points (M, 3) whose indices are in sees[k]."""
    rec = pycolmap.Reconstruction()
    rec.add_camera_with_trivial_rig(pycolmap.Camera(model="SIMPLE_PINHOLE", width=W, height=H, params=[F, W / 2, H / 2], camera_id=1))
    for k, P in enumerate(poses):
        X = points @ P[:, :3].T + P[:, 3]
        xy = F * X[:, :2] / X[:, 2:] + [W / 2, H / 2]
        rec.add_image_with_trivial_frame(pycolmap.Image(name=f"{k:02d}.png", keypoints=xy, camera_id=1, image_id=k + 1),
                                         pycolmap.Rigid3d(P))
    for n, xyz in enumerate(points):
        els = [pycolmap.TrackElement(k + 1, n) for k, s in enumerate(sees) if n in s]
        if len(els) >= 2:
            rec.add_point3D(xyz, pycolmap.Track(els))
    return rec


def _cloud(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(-1.5, 1.5, n), rng.uniform(-1, 1, n), rng.uniform(4, 6, n)], 1)


def _names(rec, ids) -> list:
    return sorted(rec.images[i].name for i in ids)


def test_group_laid_onto_another_without_its_points_is_cut_off():
    points = _cloud(600)
    a, b = set(range(300)), set(range(300, 600))  # the same place, two disjoint sets of points (a wrong merge)
    poses = [_pose(x, yaw) for x, yaw in ((-0.4, -5), (-0.1, 0), (0.2, 3), (0.5, 6))] + [_pose(x) for x in (-0.3, 0.0, 0.3)]
    rec = _model(poses, [a] * 4 + [b] * 3, points)
    ids, summary = cs.conflicting_images(rec, cs.ConsistencyOptions())
    assert _names(rec, ids) == ["04.png", "05.png", "06.png"]  # the smaller group goes
    assert summary["conflicting_pairs"] == 12 and summary["lowest_score"] == 0.0
    # the same poses seeing the same points: nothing to check, nothing removed
    ids, summary = cs.conflicting_images(_model(poses, [a] * 7, points), cs.ConsistencyOptions())
    assert ids == [] and summary["pairs_checked"] == 0


def test_far_apart_frames_and_revisits_chained_by_shared_points_stay():
    points = _cloud(600)
    a, b = set(range(300)), set(range(300, 600))
    # the same two point sets, but the second group looks the other way: no close pair, nothing to judge
    poses = [_pose(x) for x in (-0.3, 0.0, 0.3)] + [_pose(x, 180) for x in (-0.3, 0.0, 0.3)]
    rec = _model(poses, [a] * 3 + [b] * 3, np.concatenate([points[:300], points[300:] * [1, 1, -1]]))
    assert cs.conflicting_images(rec, cs.ConsistencyOptions())[0] == []
    # a video that comes back to its first viewpoint with new tracks: frames 0 and 5 share 50 of 300 points and
    # conflict, but each frame shares >= 250 with the next, so no cut separates them and no frame goes
    windows = [set(range(50 * k, 50 * k + 300)) for k in range(6)]
    poses = [_pose(x) for x in (0.0, 0.1, 0.2, 0.3, 0.15)] + [_pose(0.0)]
    ids, summary = cs.conflicting_images(_model(poses, windows, _cloud(550)), cs.ConsistencyOptions())
    assert ids == [] and summary["conflicting_pairs"] == 1


def test_frames_with_too_few_points_are_not_judged():
    points = _cloud(330)
    a, b = set(range(300)), set(range(300, 330))  # the second group sees only 30 points ...
    poses = [_pose(x) for x in (-0.3, 0.0, 0.3)] * 2
    rec = _model(poses, [a] * 3 + [b] * 3, points)
    assert _names(rec, cs.conflicting_images(rec, cs.ConsistencyOptions())[0]) == ["03.png", "04.png", "05.png"]
    # ... enough to be judged at min_points 20, not at 40
    assert cs.conflicting_images(rec, cs.ConsistencyOptions(min_points=40))[0] == []
