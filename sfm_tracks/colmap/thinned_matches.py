"""Large photo sets: map on the best-connected keypoints of each photo, triangulate the others on the final poses.

The incremental mapper's cost grows with its observations: its bundle adjustments revisit every point. A
photo's pose is pinned down long before all of its SIFT keypoints are in (photos:100:2, 100 textured views:
54072 points, mapping 104 s of a 300 s run). The mapper therefore sees, in each photo, its tracks and only
the SIFT keypoints that take part in the most verified pairs (those become the longest tracks); COLMAP's own
point triangulator then adds every other verified match on the mapper's poses (held fixed), and the final BA
refines the poses on all of it, as for every model. The keyframe route does the same with tracks for videos.
"""
from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pycolmap

logger = logging.getLogger(__name__)


def best_connected(inliers: dict, num_keypoints: dict, per_image: int, num_tracks: dict) -> dict:
    """{image_id: (K_i,) bool}: per image, its track keypoints (the first num_tracks[i]: always kept) and the
    `per_image` SIFT keypoints that appear in the most verified pairs (ties by keypoint index); every SIFT
    keypoint of an image with fewer matched ones.

    inliers: {(image_id1, image_id2): (M, 2) keypoint indices}; num_keypoints: {image_id: K_i}. Tracks stay
    whole: ranked by pairs, a folder of driving frames kept only the distant points its long tracks follow, and
    the mapper found no initial pair with parallax (kitti_seq_a: 4/51 registered instead of 51/51).
    """
    degree = {i: np.zeros(n, np.int64) for i, n in num_keypoints.items()}
    for (i, j), m in inliers.items():
        np.add.at(degree[i], m[:, 0], 1)
        np.add.at(degree[j], m[:, 1], 1)
    keep = {}
    for i, d in degree.items():
        mask = np.zeros(len(d), bool)
        mask[:num_tracks[i]] = True
        matched = num_tracks[i] + np.flatnonzero(d[num_tracks[i]:])
        if len(matched) <= per_image:
            mask[matched] = True
        else:
            mask[matched[np.argsort(-d[matched], kind="stable")[:per_image]]] = True
        keep[i] = mask
    return keep


def thin_database(db_path: Path, out_path: Path, per_image: int, num_tracks: dict) -> tuple:
    """A copy of the verified database at out_path whose pairs keep only inliers between kept keypoints
    (best_connected; num_tracks: {image_id: its leading track keypoints}) -> (out_path, or None when nothing
    would be left out; {"kept_inliers", "all_inliers"})."""
    shutil.copyfile(db_path, out_path)
    with pycolmap.Database.open(str(out_path)) as db:
        ids, geoms = db.read_two_view_geometries()
        pairs = {tuple(int(k) for k in pycolmap.pair_id_to_image_pair(p)): g for p, g in zip(ids, geoms)}
        inliers = {ij: np.asarray(g.inlier_matches).reshape(-1, 2) for ij, g in pairs.items()}
        counts = {im.image_id: db.num_keypoints_for_image(im.image_id) for im in db.read_all_images()}
        keep = best_connected(inliers, counts, per_image, num_tracks)
        kept = 0
        for (i, j), g in pairs.items():
            m = inliers[(i, j)]
            sub = m[keep[i][m[:, 0]] & keep[j][m[:, 1]]]
            if len(sub) < len(m):
                g.inlier_matches = sub.astype(np.uint32)
                db.update_two_view_geometry(i, j, g)
            kept += len(sub)
    stats = {"kept_inliers": kept, "all_inliers": int(sum(len(m) for m in inliers.values()))}
    if kept == stats["all_inliers"]:  # every photo has fewer matched keypoints: map the database itself
        out_path.unlink()
        return None, stats
    logger.info("mapping on each photo's %d best-connected keypoints: %d of %d verified inliers", per_image, kept,
                stats["all_inliers"])
    return out_path, stats


def triangulate_rest(rec: pycolmap.Reconstruction, db_path: Path, work: Path, options: pycolmap.IncrementalPipelineOptions,
                     ) -> pycolmap.Reconstruction:
    """Every verified match of the full database at db_path triangulated on rec's poses (held fixed), the
    mapper's points kept: COLMAP's point triangulator, with its track completion, merging and point filtering."""
    t0, before = time.time(), rec.num_points3D()
    out = Path(work) / "models" / "triangulated"
    out.mkdir(parents=True, exist_ok=True)
    rec = pycolmap.triangulate_points(rec, str(db_path), str(work), str(out), clear_points=False, options=options)
    logger.info("thinned mapping: %d points from the mapper, %d after triangulating every verified match (%.1fs)",
                before, rec.num_points3D(), time.time() - t0)
    return rec
