"""Does the mapped model agree with the pairs it was built from? The relative rotations of verified frame pairs.

Incremental mapping grows a model from one initial pair. When that pair's relative pose is wrong (on kitti_seq_a,
forward driving, the pair came out PLANAR and its homography's pose was 27 deg off), every
later frame is registered against the wrong structure; the bundle adjustments then settle in a self-consistent
but bent model with small reprojection errors. The verified pairs still say what is right: each has its own
relative pose, estimated from its inliers alone, and most are correct. A model whose relative rotations
disagree with most of them is wrong as a whole, and the global mapper, which averages the rotations of all
pairs instead of trusting one, is then run on the same database (mapping.py keeps the model that agrees better).

Measured (median disagreement over the verified pairs, each pair's pose estimated again with the model's cameras):
kitti_seq_a as a calibrated video, 11 keyframes grown from a wrong initial pair: 13.2 deg (AUC@5 0.013); the
global mapper's model of the same database: 0.10 deg (AUC@5 1.000 after the remaining frames joined). Correct
incremental models: synthetic sideways/forward/orbit videos 0.11-0.15 deg, apple 0.12, statue 0.71, british_museum
0.72, ngp_fox 0.73, temple 1.50, kitchen 1.93, cat (a moving cat) 4.05. See BENCHMARKS.md, "Models bent by a wrong initial pair".
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pycolmap

from ..selection import spread
from .metrics import rotation_angle_deg

_NO_POSE = ("UNDEFINED", "DEGENERATE", "WATERMARK", "MULTIPLE")


MAX_PAIRS = 200  # a median needs no more; spread evenly over the pairs
MAX_MATCHES = 100  # per pair, spread evenly over its inliers: enough for its rotation, cheap to estimate


def rotation_disagreement(rec: pycolmap.Reconstruction, db_path: Path, max_error: float = 4.0, seed: int = 0) -> np.ndarray:
    """(P,) degrees between the model's relative rotation and the one the verified inliers of each pair give
    alone, for every verified pair whose two images the model registers.

    Each pair's pose is estimated again with the model's own cameras: the database's pair poses used the
    focal-length prior, and on uncalibrated sets they disagree with correct models by 6-17 deg.
    At most MAX_PAIRS pairs and MAX_MATCHES inliers of each are used.
    """
    ro = pycolmap.RANSACOptions()
    ro.max_error, ro.random_seed = max_error, seed
    ro.min_num_trials, ro.max_num_trials = 20, 1000  # verified inliers: high inlier ratios
    out, keypoints = [], {}
    with pycolmap.Database.open(str(db_path)) as db:
        ids, geoms = db.read_two_view_geometries()
        keep = spread(len(ids), MAX_PAIRS)
        for pid, g in ((ids[k], geoms[k]) for k in keep):
            i, j = (int(k) for k in pycolmap.pair_id_to_image_pair(pid))
            if pycolmap.TwoViewGeometryConfiguration(g.config).name in _NO_POSE or len(g.inlier_matches) < 15:
                continue
            if not (rec.exists_image(i) and rec.exists_image(j) and rec.images[i].has_pose and rec.images[j].has_pose):
                continue
            for k in (i, j):
                if k not in keypoints:
                    keypoints[k] = db.read_keypoints(k)[:, :2].astype(np.float64)
            m = np.asarray(g.inlier_matches)
            m = m[spread(len(m), MAX_MATCHES)]
            a, b = rec.images[i], rec.images[j]
            res = pycolmap.estimate_relative_pose(rec.cameras[a.camera_id], keypoints[i][m[:, 0]],
                                                  rec.cameras[b.camera_id], keypoints[j][m[:, 1]], ro)
            if res is None:
                continue
            R_pair = res["cam2_from_cam1"].rotation.matrix()
            R_model = b.cam_from_world().rotation.matrix() @ a.cam_from_world().rotation.matrix().T
            out.append(rotation_angle_deg(R_model.T @ R_pair))
    return np.asarray(out, dtype=np.float64)


def median_disagreement(rec: pycolmap.Reconstruction, db_path: Path, max_error: float = 4.0, seed: int = 0) -> float:
    """Median of rotation_disagreement in degrees; NaN when no verified pair has both images registered."""
    d = rotation_disagreement(rec, db_path, max_error, seed)
    return float(np.median(d)) if len(d) else float("nan")
