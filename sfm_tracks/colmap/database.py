"""Tracks -> COLMAP database: keypoints, matches on a pair schedule, two-view geometries.

Image t's keypoints are the tracks usable in frame t (`KeypointLayout`: visible, finite, inside the image), in
track order, so keypoints grow with the observations, not with frames x tracks. Optional SIFT keypoints and
matches (feature_matches.py) come after an image's track keypoints.
"""
from __future__ import annotations

import logging

import numpy as np
import pycolmap

from ..errors import ReconstructionError
from ..tracks import Tracks

logger = logging.getLogger(__name__)

COLMAP_OFFSET = 0.5  # COLMAP puts the image corner at 0, the tracker the first pixel centre


def usable(tracks: Tracks, image_sizes=None) -> np.ndarray:
    """(T, N) observations fit to enter COLMAP: visible, finite and inside the image.

    image_sizes: optional (T, 2) own size (H_t, W_t) of each frame, for frames of different sizes on one canvas.
    """
    H, W = tracks.image_size
    if image_sizes is not None:
        H, W = np.asarray(image_sizes)[:, :1], np.asarray(image_sizes)[:, 1:2]
    xy = tracks.xy
    with np.errstate(invalid="ignore"):
        inside = (xy[..., 0] >= -0.5) & (xy[..., 0] <= W - 0.5) & (xy[..., 1] >= -0.5) & (xy[..., 1] <= H - 0.5)
    return tracks.visible & np.isfinite(xy).all(-1) & inside


def check_tracks(tracks: Tracks, min_frames: int = 2, min_tracks_per_frame: int = 8, features: bool = False,
                 image_sizes=None) -> np.ndarray:
    """Reject input that cannot give a reconstruction, with the reason; return the usable mask.

    features: SIFT matches will join the tracks, so frames (or the whole input) may have too few tracks.
    """
    T, N = tracks.xy.shape[:2]
    if T < min_frames:
        raise ReconstructionError(f"need at least {min_frames} frames, got {T}")
    if features:
        min_tracks_per_frame = 0
    if N == 0 and not features:
        raise ReconstructionError("no tracks: the Tracks object is empty")
    bad = tracks.visible & ~np.isfinite(tracks.xy).all(-1)
    if bad.any():  # Tracks validates this on creation, but arrays can be edited afterwards
        t, n = np.argwhere(bad)[0]
        raise ReconstructionError(f"{int(bad.sum())} visible observations have NaN/inf coordinates (first: frame {t}, track {n})")
    names = tracks.names()
    if len(set(names)) != len(names):
        raise ReconstructionError("image names must be unique: frames are matched to images by name")
    ok = usable(tracks, image_sizes)
    good_frames = (ok.sum(1) >= min_tracks_per_frame).sum()
    if good_frames < min_frames:
        raise ReconstructionError(
            f"only {good_frames} frame(s) have >= {min_tracks_per_frame} visible tracks inside the image; need {min_frames}")
    empty = np.nonzero(ok.sum(1) == 0)[0]
    if len(empty) and not features:
        logger.warning("%d frame(s) have no visible track and cannot be registered: %s", len(empty), empty[:10].tolist())
    return ok


def pair_schedule(num_frames: int, neighbours: int = 3, max_stride: int | None = None, links: int | None = None) -> list:
    """Frame pairs (i, j), i < j: all strides up to `neighbours`, then strides 4, 8, 16, ...

    Short strides keep the chain connected; long ones add the parallax that pins the geometry down.
    links: a long stride s > neighbours starts only at every max(1, s // links)-th frame, so all long strides
    together add about links / 2 pairs per frame instead of one per stride (None: from every frame).
    """
    strides = set(range(1, neighbours + 1))
    s = 2
    while s < num_frames and (max_stride is None or s <= max_stride):
        strides.add(s)
        s *= 2
    step = {s: 1 if links is None or s <= neighbours else max(1, s // links) for s in strides}
    return [(i, i + s) for s in sorted(strides) for i in range(0, num_frames - s, step[s])]


class KeypointLayout:
    """Which track each keypoint of a frame's image is: image t's first `count(t)` keypoints are the tracks
    usable in frame t (`usable(tracks)`, canvas rule), in track order; SIFT keypoints follow them.

    The layout is a function of the tracks alone, so a model and the tracks it was built from are enough to
    find every track's observations again (geometric_filter.track_points).
    """

    def __init__(self, tracks: Tracks):
        self.tracks = tracks
        self.ids = [np.flatnonzero(m) for m in usable(tracks)]  # ids[t]: track ids of image t's keypoints

    def count(self, t: int) -> int:
        return len(self.ids[t])

    def slots(self, t: int, n: np.ndarray) -> np.ndarray:
        """Keypoint indices in frame t of tracks n (each must be usable there)."""
        k = np.searchsorted(self.ids[t], n)
        if len(k) and (k.max() >= len(self.ids[t]) or (self.ids[t][k] != n).any()):
            raise ValueError(f"frame {t}: some tracks are not usable there, so they have no keypoint")
        return k

    def track_ids(self, t: int, k: np.ndarray) -> np.ndarray:
        """Track id of each keypoint index k in frame t; -1 for keypoints after the tracks (SIFT)."""
        k = np.asarray(k, np.int64)
        inside = k < len(self.ids[t])
        return np.where(inside, self.ids[t][np.where(inside, k, 0)] if len(self.ids[t]) else -1, -1)

    def keypoints(self, t: int) -> np.ndarray:
        """(count(t), 2) float64 keypoints of frame t in COLMAP's pixel convention."""
        return self.tracks.xy[t, self.ids[t]].astype(np.float64) + COLMAP_OFFSET


def write_database(db_path, tracks: Tracks, camera, pairs, ok=None, min_matches: int = 15,
                   extra=None, frames=None, layout: "KeypointLayout | None" = None) -> int:
    """Write the camera(s), the images, their track keypoints (KeypointLayout) and the raw matches of `pairs`
    (the tracks usable, `ok`, in both frames); return #pairs.

    camera: one pycolmap.Camera shared by all frames, or a list of T (cameras.frame_cameras), frame t's first.
    extra: optional feature_matches.SiftMatches; each image's SIFT keypoints follow its track keypoints
    and each pair's SIFT matches are appended to its shared tracks (pairs outside the schedule included).
    frames: optional subset of frame indices to write (keyframes); image ids stay frame index + 1.
    layout: the tracks' KeypointLayout, if already made.
    """
    ok = usable(tracks) if ok is None else ok
    layout = layout or KeypointLayout(tracks)
    names = tracks.names()
    cams = list(camera) if isinstance(camera, (list, tuple)) else [camera] * tracks.num_frames
    if len(cams) != tracks.num_frames:
        raise ValueError(f"{len(cams)} cameras for {tracks.num_frames} frames")
    extra_matches = extra.matches if extra is not None else {}
    written = 0
    with pycolmap.Database.open(str(db_path)) as db:
        for cam in {c.camera_id: c for c in cams}.values():
            db.write_camera(cam, use_camera_id=True)
        for t in (range(tracks.num_frames) if frames is None else frames):
            t = int(t)
            db.write_image(pycolmap.Image(name=names[t], camera_id=cams[t].camera_id, image_id=t + 1), use_image_id=True)
            kp = layout.keypoints(t).astype(np.float32)
            db.write_keypoints(t + 1, kp if extra is None else np.concatenate([kp, extra.keypoints[t]]))
        scheduled = [tuple(p) for p in pairs]
        for i, j in scheduled + sorted(set(extra_matches) - set(scheduled)):
            m = _pair_matches(i, j, ok, layout, extra_matches)
            if len(m) >= min_matches:
                db.write_matches(i + 1, j + 1, m)
                written += 1
    return written


def update_matches(db_path, ok: np.ndarray, layout: "KeypointLayout", extra, min_matches: int = 15) -> int:
    """Bring db_path (written by write_database with the same tracks and keypoints) up to date with extra.matches,
    which has gained pairs: write each pair whose raw matches (shared tracks and SIFT) differ from the database's
    and drop its verification; return #pairs written. COLMAP's verification then checks only those, as it skips
    pairs that already have a two-view geometry (and those pairs are unchanged, so their results would be too)."""
    written = 0
    with pycolmap.Database.open(str(db_path)) as db:
        for i, j in sorted(extra.matches):
            m = _pair_matches(i, j, ok, layout, extra.matches)
            if db.exists_matches(i + 1, j + 1):
                if np.array_equal(np.asarray(db.read_matches(i + 1, j + 1)).reshape(-1, 2), m):
                    continue
                db.delete_matches(i + 1, j + 1)  # a track pair that now has SIFT matches too
                if db.exists_two_view_geometry(i + 1, j + 1):
                    db.delete_two_view_geometry(i + 1, j + 1)
            if len(m) >= min_matches:
                db.write_matches(i + 1, j + 1, m)
                written += 1
    return written


def _pair_matches(i: int, j: int, ok: np.ndarray, layout: "KeypointLayout", extra_matches: dict) -> np.ndarray:
    """(M, 2) uint32 keypoint indices of pair (i, j): the tracks usable in both, then its SIFT matches, if any."""
    common = np.flatnonzero(ok[i] & ok[j])
    m = np.stack([layout.slots(i, common), layout.slots(j, common)], 1).astype(np.uint32)
    if (i, j) in extra_matches:
        m = np.concatenate([m, extra_matches[(i, j)].astype(np.uint32) + np.array([layout.count(i), layout.count(j)], np.uint32)])
    return m


def verify(db_path, max_error: float = 4.0, min_inliers: int = 15, num_threads: int = -1, seed: int = 0,
           trials: tuple = (100, 10000)) -> None:
    """COLMAP's geometric verification of all matched pairs (E/F/H model selection, RANSAC inliers).

    Every pair's RANSAC is seeded, so the result does not depend on how pairs are spread over threads.
    trials: (min, max) RANSAC iterations per model.
    """
    tvo = pycolmap.TwoViewGeometryOptions()
    tvo.ransac.max_error = max_error
    tvo.ransac.min_num_trials, tvo.ransac.max_num_trials = trials
    tvo.min_num_inliers = min_inliers
    tvo.compute_relative_pose = True
    tvo.ransac.random_seed = seed
    vo = pycolmap.GeometricVerifierOptions(num_threads=num_threads)
    pycolmap.geometric_verification(str(db_path), verifier_options=vo, two_view_geometry_options=tvo)


def two_view_stats(db_path) -> dict:
    """Counts of verified pair configurations. They say nothing reliable about the baseline (tracks of a
    turning camera come out PLANAR or CALIBRATED): see degeneracy.check_not_pure_rotation for that."""
    configs = {}
    with pycolmap.Database.open(str(db_path)) as db:
        for g in db.read_two_view_geometries()[1]:
            name = pycolmap.TwoViewGeometryConfiguration(g.config).name
            configs[name] = configs.get(name, 0) + 1
    return {"configs": configs,
            "num_verified": sum(v for k, v in configs.items() if k not in ("UNDEFINED", "DEGENERATE"))}
