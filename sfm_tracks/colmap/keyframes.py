"""Keyframe mapping for videos: map the frames that add geometry, register the rest by absolute pose.

Neighbouring video frames add almost no parallax, yet the incremental mapper spends a registration, a local
bundle adjustment and several verified pairs on each. As in COLMAP's video workflows and keyframe SLAM, a
frame becomes a keyframe when the tracks have moved far enough since the last one (median displacement) or
too many of them were lost (shared-track fraction). Only keyframes go through verification and mapping; every
other frame is then placed by PnP (pycolmap's LO-RANSAC absolute pose plus refinement) on the 3D points of
its tracks, its inlier observations join those points, and the caller triangulates the remaining tracks and
runs one bundle adjustment over all frames.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pycolmap

from ..selection import spread
from ..threads import ordered_map
from ..tracks import Tracks
from .database import COLMAP_OFFSET, KeypointLayout
from .geometric_filter import frame_images, project_with, track_points

logger = logging.getLogger(__name__)


@dataclass
class KeyframeOptions:
    min_frames: int = 20  # shorter videos are mapped in full: keyframes would save little
    parallax: float = 0.02  # new keyframe when the median track moved this fraction of the long image side ...
    min_overlap: float = 0.6  # ... or fewer than this fraction of the last keyframe's tracks is still seen ...
    max_gap: int = 10  # ... or this many frames have passed
    min_shared: int = 30  # the frame before a keyframe that would share fewer tracks is taken instead


def select_keyframes(xy: np.ndarray, ok: np.ndarray, image_size: tuple, options: KeyframeOptions) -> np.ndarray:
    """Sorted keyframe indices from (T, N, 2) track positions and the (T, N) usable mask; first and last included.

    Frames without any usable track are never keyframes (they cannot be mapped).
    """
    T = len(ok)
    frames = np.nonzero(ok.any(1))[0]
    if len(frames) == 0:
        return frames
    limit = options.parallax * max(image_size)
    keys = [int(frames[0])]
    ref, since, prev = keys[0], keys[0], keys[0]  # the keyframe t is compared with, and when it became that
    for t in frames[1:]:
        n_shared = int((ok[ref] & ok[t]).sum())
        moved = _moved(xy, ok, ref, t)
        lost = n_shared < options.min_overlap * max(int(ok[ref].sum()), 1)
        away = moved >= limit or lost or n_shared < options.min_shared
        if away or t - since >= options.max_gap:
            back = _revisited(xy, ok, np.array(keys), ref, int(t), limit, options) if away else None
            if back is not None:  # an earlier keyframe still sees this view: compare with it, add none
                ref, since = back, int(t)
            else:  # past the threshold at t: take t, or the frame before it when t already shares too few tracks
                keys.append(int(t) if n_shared >= options.min_shared or prev == ref else prev)
                ref = since = keys[-1]
        prev = int(t)
    if keys[-1] != frames[-1]:
        keys.append(int(frames[-1]))
    out = np.unique(np.array(keys, dtype=np.int64))
    logger.info("keyframes: %d of %d frames (parallax %.1f px, overlap %.0f%%, gap %d)", len(out), T, limit,
                100 * options.min_overlap, options.max_gap)
    return out


def _revisited(xy: np.ndarray, ok: np.ndarray, keys: np.ndarray, ref: int, t: int, limit: float,
               options: KeyframeOptions):
    """An earlier keyframe (not `ref`) that frame t sees as if no keyframe were due: it shares at least
    `min_overlap` of that keyframe's tracks and they moved less than `limit` px; None if there is none.

    A camera that comes back (a video looping over one place, a walk back and forth) then reuses its keyframes
    instead of adding new ones at old viewpoints, so the mapped keyframes grow with the ground covered, not with
    the video's length.
    """
    cand = keys[keys != ref]
    if not len(cand):
        return None
    shared = (ok[cand] & ok[t]).sum(1)
    cand = cand[(shared >= options.min_shared) & (shared >= options.min_overlap * ok[cand].sum(1))]
    if not len(cand):
        return None
    mine = np.flatnonzero(ok[t])
    sample = mine[np.linspace(0, len(mine) - 1, min(len(mine), 256)).astype(int)]  # enough for a median
    seen = ok[cand][:, sample]
    d = np.linalg.norm(xy[cand][:, sample] - xy[t, sample], axis=-1)
    med = np.array([np.median(row[m]) if m.any() else np.inf for row, m in zip(d, seen)])
    k = int(cand[int(np.argmin(med))])
    return k if _moved(xy, ok, k, t) < limit else None


def _moved(xy: np.ndarray, ok: np.ndarray, a: int, b: int) -> float:
    """Median displacement (px) of the tracks frames a and b share; inf when they share none."""
    both = ok[a] & ok[b]
    return float(np.median(np.linalg.norm(xy[b, both] - xy[a, both], axis=-1))) if both.any() else np.inf


def register_frames(rec: pycolmap.Reconstruction, tracks: Tracks, ok: np.ndarray, frames, max_error: float = 4.0,
                    min_inliers: int = 15, seed: int = 0, layout: KeypointLayout | None = None, threads: int = -1) -> list:
    """Add each frame of `frames` that is not yet in `rec` by PnP on its tracks' 3D points; return those added.

    A frame is added with its track keypoints (database.KeypointLayout), its pose, and its PnP inliers as
    observations of the tracks' points. All frames share the model's one camera, which stays fixed here.
    Each frame's pose depends only on the points the model had on entry, and each RANSAC is seeded, so the poses
    are estimated on `threads` threads (-1: `threads.workers()`; pycolmap releases the GIL) with the result of one thread.
    """
    layout = layout or KeypointLayout(tracks)
    images = frame_images(rec, tracks)
    pid = track_points(rec, tracks, images, layout)
    cam_ids = {rec.images[i].camera_id for i in images if i is not None}
    if len(cam_ids) != 1:
        raise ValueError(f"keyframe registration needs one shared camera, the model has {len(cam_ids)}")
    cam_id = cam_ids.pop()
    camera = rec.cameras[cam_id]
    has = pid >= 0
    xyz = np.zeros((tracks.num_tracks, 3))
    xyz[has] = np.array([rec.points3D[int(p)].xyz for p in pid[has]]) if has.any() else np.zeros((0, 3))
    est = pycolmap.AbsolutePoseEstimationOptions()
    est.ransac.max_error = max_error
    est.ransac.random_seed = seed
    ref = pycolmap.AbsolutePoseRefinementOptions()
    ref.refine_focal_length = False
    ref.refine_extra_params = False
    todo = [(int(t), np.nonzero(ok[t] & has)[0]) for t in frames if images[int(t)] is None]
    todo = [(t, n) for t, n in todo if len(n) >= min_inliers]

    def pose(job: tuple):
        t, n = job
        return absolute_pose(tracks.xy[t, n].astype(np.float64) + COLMAP_OFFSET, xyz[n], camera, est, ref)

    poses = list(ordered_map(pose, todo, threads))
    names = tracks.names()
    existing = set(rec.images)
    added = []
    for (t, n), res in zip(todo, poses):
        if res is None or res["num_inliers"] < min_inliers:
            continue
        iid = t + 1
        if iid in existing:  # the mapper's own unregistered copy of this frame
            rec.frames[rec.images[iid].frame_id].rig_from_world = res["cam_from_world"]
            rec.register_frame(rec.images[iid].frame_id)
        else:
            im = pycolmap.Image(name=names[t], keypoints=layout.keypoints(t), camera_id=cam_id, image_id=iid)
            rec.add_image_with_trivial_frame(im, res["cam_from_world"])
        inliers = n[np.asarray(res["inlier_mask"], bool)]
        for k, slot in zip(inliers, layout.slots(t, inliers)):
            rec.add_observation(int(pid[k]), pycolmap.TrackElement(iid, int(slot)))
        added.append(t)
    logger.info("registered %d of %d frames by absolute pose on the keyframes' points", len(added), len(frames))
    return added


def absolute_pose(xy: np.ndarray, xyz: np.ndarray, camera: pycolmap.Camera, est: pycolmap.AbsolutePoseEstimationOptions,
                  ref: pycolmap.AbsolutePoseRefinementOptions, max_sample: int = 400):
    """pycolmap's LO-RANSAC absolute pose of (M, 2) COLMAP pixels on (M, 3) points, refined on all its inliers ->
    {"cam_from_world", "num_inliers", "inlier_mask"} or None.

    A frame between keyframes sees thousands of tracked points, and every RANSAC trial scores them all. RANSAC runs
    on at most `max_sample` evenly spread correspondences; the inliers among all of them (reprojection error within
    the RANSAC bound) are then refined together, as estimate_and_refine does (apple's 50 frames: 1.23 -> 0.62 s).
    Refining on the sample alone is faster still, but the final BA then takes twice as long (BENCHMARKS).
    """
    if len(xy) <= max_sample:
        return pycolmap.estimate_and_refine_absolute_pose(xy, xyz, camera, est, ref)
    sample = spread(len(xy), max_sample)
    res = pycolmap.estimate_absolute_pose(xy[sample], xyz[sample], camera, est)
    if res is None:
        return None
    with np.errstate(invalid="ignore"):  # NaN behind the camera: an outlier
        inliers = np.linalg.norm(project_with(camera, res["cam_from_world"], xyz) - xy, axis=1) <= est.ransac.max_error
    refined = pycolmap.refine_absolute_pose(res["cam_from_world"], xy, xyz, inliers, camera, ref)
    if refined is None:
        return None
    return {"cam_from_world": refined["cam_from_world"], "num_inliers": int(inliers.sum()), "inlier_mask": inliers}


class FrameSubset:
    """frames[index[k]] as item k, without copying: a memmapped video stays on disk."""

    def __init__(self, frames, index: np.ndarray):
        self.frames, self.index = frames, np.asarray(index)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k):
        return self.frames[int(self.index[k])]
