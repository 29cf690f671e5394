"""Frames the model puts at one viewpoint although their verified matches show parallax.

A small or distant object seen through a narrow field of view leaves a near-ambiguity between orbiting it and
turning on the spot: the incremental mapper can register several photos at one camera centre, each turned a
little, and every reprojection error stays small. Two-view verification had already judged each such pair: it
needed an essential or fundamental matrix, because no homography explained its inliers to verify_max_error px,
so the pair has parallax. A model in which a point at the pair's median depth moves less than that between the
two frames (f x baseline / depth) contradicts the verification, and at most one of the frames can be right. Of
each group of such frames the one with most points stays; the others are deregistered (and placed again by the
continued mapper: mappers.colocated_remapped).

Measured on nerf_mic (100 renders of a thin microphone, final model of 2026-12-07): four photos that lie 4-21 deg
apart on the true sphere share one centre. Their 6 verified pairs sit at 0.06-0.3 % of the point depth (0.7-3.2 px
of parallax), and two of the four are 7 and 22 deg wrong. The next closest verified pair, at 1.4 % (15.6 px), is
truly that close (1.4 %).
"""
from __future__ import annotations

import numpy as np
import pycolmap

from . import consistency as cons

PARALLAX = ("CALIBRATED", "UNCALIBRATED")  # verified with E or F: the inliers need a baseline


def parallax_pairs(db_path, min_inliers: int) -> list:
    """[(name, name)] of the pairs that verification found need a baseline, with at least min_inliers inliers."""
    with pycolmap.Database.open(str(db_path)) as db:
        names = {im.image_id: im.name for im in db.read_all_images()}
        ids, geoms = db.read_two_view_geometries()
    out = []
    for pid, g in zip(ids, geoms):
        if pycolmap.TwoViewGeometryConfiguration(g.config).name in PARALLAX and len(g.inlier_matches) >= min_inliers:
            i, j = (int(k) for k in pycolmap.pair_id_to_image_pair(pid))
            out.append((names[i], names[j]))
    return out


def colocated_images(rec: pycolmap.Reconstruction, pairs: list, max_parallax_px: float) -> tuple:
    """(image ids to deregister, summary for the report) of a registered model; the model is not changed.

    pairs: [(name, name)] that have parallax (parallax_pairs). A pair conflicts when a point at the nearer frame's
    median point depth moves under max_parallax_px between the two frames in the model."""
    v = cons.views(rec)
    row = {rec.images[int(i)].name: k for k, i in enumerate(v.image_ids)}
    both = np.array([(row[a], row[b]) for a, b in pairs if a in row and b in row], np.int64).reshape(-1, 2)
    summary = {"pairs_checked": len(both), "conflicting_pairs": 0, "deregistered": 0}
    if not len(both) or len(v.image_ids) < 3:
        return [], summary
    depth = cons.median_depths(v, cons.sample_points(rec, v, cons.ConsistencyOptions()))
    focal = np.array([c.mean_focal_length() for c in v.cameras])
    i, j = both[:, 0], both[:, 1]
    baseline = np.linalg.norm(v.centres[i] - v.centres[j], axis=1)
    parallax = np.fmax(focal[i], focal[j]) * baseline / np.fmin(depth[i], depth[j])  # NaN without depth: no conflict
    bad = both[parallax < max_parallax_px]
    points = np.array([rec.images[int(k)].num_points3D for k in v.image_ids])
    kept, dropped = set(), []
    for k in sorted(set(bad.ravel().tolist()), key=lambda k: -points[k]):  # the best-supported frame of a group stays
        partners = set(bad[bad[:, 0] == k, 1].tolist()) | set(bad[bad[:, 1] == k, 0].tolist())
        if partners & kept:
            dropped.append(k)
        else:
            kept.add(k)
    summary.update(conflicting_pairs=len(bad), deregistered=len(dropped))
    return [int(v.image_ids[k]) for k in dropped], summary
