"""Reconstruction -> per-track, per-frame geometric verdict for filtering pseudo-labels.

A track's 3D point is found through the tracks' keypoint layout (database.KeypointLayout; majority vote
when COLMAP split the track). Every visible observation is measured against that point, including the
ones COLMAP dropped, so drifting tails are caught. Tracks whose point explains only a minority of
their observations are treated as dynamic: unverifiable (0), never rejected (-1).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pycolmap

from ..tracks import Tracks
from .database import COLMAP_OFFSET, KeypointLayout, usable

VERIFIED, UNVERIFIABLE, REJECTED = 1, 0, -1


@dataclass
class FilterOptions:
    verify_px: float = 3.0  # below: the observation agrees with the static 3D point
    reject_px: float = 8.0  # above: it disagrees (only on tracks that are otherwise verified)
    min_inliers: int = 3  # a track needs this many agreeing observations to "have a 3D point"
    min_inlier_fraction: float = 0.5  # ... and a majority of its measured ones; else likely dynamic


def frame_images(rec: pycolmap.Reconstruction, tracks: Tracks) -> list:
    """Registered image id of every frame (matched by name), or None."""
    by_name = {im.name: iid for iid, im in rec.images.items() if im.has_pose}
    return [by_name.get(name) for name in tracks.names()]


def track_points(rec: pycolmap.Reconstruction, tracks: Tracks, images=None, layout: KeypointLayout | None = None) -> np.ndarray:
    """(N,) point3D id per track (the one holding most of its observations), -1 if none."""
    images = frame_images(rec, tracks) if images is None else images
    layout = layout or KeypointLayout(tracks)
    N = tracks.num_tracks
    obs_n, obs_p = [], []
    for t, iid in enumerate(images):
        if iid is None:
            continue
        idx, points = observed_points(rec.images[iid])
        track_keypoint = idx < layout.count(t)
        obs_n.append(layout.track_ids(t, idx[track_keypoint]))
        obs_p.append(points[track_keypoint])
    pid = np.full(N, -1, dtype=np.int64)
    if not obs_n or not sum(map(len, obs_n)):
        return pid
    n, p = np.concatenate(obs_n), np.concatenate(obs_p)
    span = int(p.max()) + 1
    keys, counts = np.unique(n * span + p, return_counts=True)  # one key per (track, point) pair
    order = np.lexsort((-counts, keys // span))  # per track, the most frequent point first
    n, p = keys[order] // span, keys[order] % span
    first = np.r_[True, n[1:] != n[:-1]]
    pid[n[first]] = p[first]
    return pid


def observed_points(image: pycolmap.Image) -> tuple:
    """(keypoint indices (M,), point3D ids (M,)) of an image's keypoints that observe a 3D point, in keypoint order.

    One pass over COLMAP's list of observing keypoints: indexing `image.points2D[k]` per keypoint costs ~10x more.
    """
    idx = np.asarray(image.get_observation_point2D_idxs(), dtype=np.int64)
    observing = image.get_observation_points2D()
    return idx, np.fromiter((q.point3D_id for q in observing), np.int64, len(observing))


def project(rec: pycolmap.Reconstruction, image: pycolmap.Image, X: np.ndarray) -> np.ndarray:
    """(M, 2) COLMAP pixels of world points X (M, 3) in a registered image; NaN behind the camera."""
    return project_with(rec.cameras[image.camera_id], image.cam_from_world(), X)


def project_with(camera: pycolmap.Camera, cam_from_world: pycolmap.Rigid3d, X: np.ndarray) -> np.ndarray:
    """(M, 2) COLMAP pixels of world points X (M, 3) seen by `camera` at pose `cam_from_world`; NaN behind it."""
    P = cam_from_world.matrix()
    Xc = X @ P[:, :3].T + P[:, 3]
    uv = np.full((len(X), 2), np.nan)
    front = Xc[:, 2] > 1e-9
    if front.any():
        uv[front] = camera.img_from_cam(Xc[front])
    return uv


def reprojection_errors(reconstruction: pycolmap.Reconstruction, tracks: Tracks, include_invisible: bool = False,
                        layout: KeypointLayout | None = None) -> np.ndarray:
    """(T, N) px distance between each observation and its track's reprojected 3D point.

    NaN where the track has no 3D point, the frame is not registered or the observation is not
    visible (unless include_invisible, then any finite prediction is measured); inf behind the camera.
    """
    rec = reconstruction
    T, N = tracks.xy.shape[:2]
    err = np.full((T, N), np.nan)
    images = frame_images(rec, tracks)
    pid = track_points(rec, tracks, images, layout)
    has = np.nonzero(pid >= 0)[0]
    if not len(has):
        return err
    X = np.array([rec.points3D[int(p)].xyz for p in pid[has]])
    measured = np.isfinite(tracks.xy).all(-1) if include_invisible else usable(tracks)
    for t, iid in enumerate(images):
        if iid is None:
            continue
        uv = project(rec, rec.images[iid], X) - COLMAP_OFFSET
        e = np.linalg.norm(uv - tracks.xy[t, has], axis=1)
        e[np.isnan(uv[:, 0])] = np.inf
        err[t, has] = np.where(measured[t, has], e, np.nan)
    return err


def verdicts(errors: np.ndarray, options: FilterOptions | None = None) -> np.ndarray:
    """(T, N) int8 labels from a (T, N) error array: 1 verified, -1 rejected, 0 unverifiable."""
    o = options or FilterOptions()
    measured = ~np.isnan(errors)
    with np.errstate(invalid="ignore"):
        inlier = errors < o.verify_px
        outlier = errors > o.reject_px
    n_in = inlier.sum(0)
    supported = (n_in >= o.min_inliers) & (n_in >= o.min_inlier_fraction * measured.sum(0))
    labels = np.zeros(errors.shape, dtype=np.int8)
    labels[inlier & supported] = VERIFIED
    labels[outlier & supported] = REJECTED
    return labels


def supported_tracks(errors: np.ndarray, options: FilterOptions | None = None) -> np.ndarray:
    """(N,) bool: the track's 3D point explains enough of its observations to count as static."""
    return (verdicts(errors, options) == VERIFIED).any(0)


def geometric_filter(reconstruction: pycolmap.Reconstruction, tracks: Tracks, errors: np.ndarray | None = None,
                     **options) -> np.ndarray:
    """(T, N) int8 verdict per observation: 1 verified, -1 rejected, 0 unverifiable. See FilterOptions."""
    errors = reprojection_errors(reconstruction, tracks) if errors is None else errors
    return verdicts(errors, FilterOptions(**options))
