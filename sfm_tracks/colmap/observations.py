"""A model's observations as arrays, for the steps that judge them one by one: each observation's reprojection
error, which observations are SIFT keypoints rather than tracks, and deleting a chosen subset."""
from __future__ import annotations

import numpy as np
import pycolmap

from . import database as dbm
from ..tracks import Tracks
from .geometric_filter import frame_images, observed_points, project


def observation_errors(rec: pycolmap.Reconstruction) -> tuple:
    """Every observation of a 3D point in the registered images -> (image ids (M,), keypoint indices (M,),
    reprojection errors (M,) px, inf behind the camera as in `reprojection_errors`; point3D ids (M,))."""
    ids, idx, err, pts = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0)], [np.zeros(0, np.int64)]
    points = {pid: p.xyz for pid, p in rec.points3D.items()}
    for iid, im in rec.images.items():
        if not im.has_pose:
            continue
        k, observed = observed_points(im)
        if not len(k):
            continue
        xy = np.array([q.xy for q in im.get_observation_points2D()])
        uv = project(rec, im, np.array([points[p] for p in observed.tolist()]))
        e = np.linalg.norm(uv - xy, axis=1)
        e[np.isnan(uv[:, 0])] = np.inf
        ids.append(np.full(len(e), iid))
        idx.append(k)
        err.append(e)
        pts.append(observed)
    return np.concatenate(ids), np.concatenate(idx), np.concatenate(err), np.concatenate(pts)


def sift_observations(rec: pycolmap.Reconstruction, tracks: Tracks, layout: dbm.KeypointLayout, ids: np.ndarray,
                      idx: np.ndarray) -> np.ndarray:
    """(M,) bool: which observations (image ids, keypoint indices) are SIFT keypoints, not tracks (KeypointLayout)."""
    frame_of = {iid: t for t, iid in enumerate(frame_images(rec, tracks)) if iid is not None}
    images, inverse = np.unique(ids, return_inverse=True)
    return idx >= np.array([layout.count(frame_of[i]) if i in frame_of else 0 for i in images], np.int64)[inverse]


def delete_observations(rec: pycolmap.Reconstruction, ids: np.ndarray, idx: np.ndarray, drop: np.ndarray) -> None:
    """Delete the observations (image ids, keypoint indices) where `drop`."""
    manager = pycolmap.ObservationManager(rec)
    for iid, k in zip(ids[drop].tolist(), idx[drop].tolist()):
        if rec.images[iid].points2D[k].has_point3D():  # deleting a 2-view point frees both
            manager.delete_observation(iid, k)
