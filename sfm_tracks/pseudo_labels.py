"""Pseudo-labels for real videos (CoTracker3 section 3.3): imperfect teachers label, filters clean up.

Per video: draw one teacher (seeded by the video name, so reruns and shards agree), sample SIFT
queries on frames from the first quarter of the clip, track, refine every observation (`tracking.refine`, the
same step as reconstruction), keep the observations that survive
`filters.cycle_consistency` (the project's single forward-backward check) and, on top of the paper,
a 3D check from the SfM bridge: `reconstruct` the cycle-consistent tracks and `geometric_filter` them.
Rejected observations (-1) are dropped; unverifiable ones (0: dynamic content, frames without a
pose, a failed reconstruction) keep the cycle label alone, so moving objects are not thrown away.

The training side (`cotracker3.data.pseudo_labels`) only reads the label files; see LABEL_KEYS.
"""
from __future__ import annotations

import logging
import math
import zlib
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from .colmap.geometric_filter import UNVERIFIABLE, geometric_filter
from .colmap.mapping import reconstruct
from .errors import ReconstructionError
from .tracking.filters import cycle_consistency
from .tracking.providers import TrackProvider
from .tracking.queries import sift_points
from .tracking.refine import refine_tracks
from .tracks import Tracks

logger = logging.getLogger(__name__)

DEFAULT_CONF = {
    "num_queries": 256,  # tracks per video (the paper samples a fixed number of SIFT points)
    "min_queries": None,  # fewer SIFT points than this skips the video (None: num_queries)
    "query_span": 0.25,  # query frames are drawn from the first quarter of the clip
    "num_query_frames": 4,
    "min_distance": 6.0,  # px between SIFT queries on one frame
    "cycle_threshold": 3.0,  # px, forward-backward error at the query frame
    "cycle_anchors": 8,  # re-queried frames per side and track (None: every frame)
    "refine": True,  # sub-pixel refinement of the teacher's tracks (tracking/refine.py); failed guards hide observations
    "geometric_filter": True,
    "mapping": {"min_points": 20},  # sfm_tracks.MappingOptions fields
    "geometry": {},  # sfm_tracks.FilterOptions fields (verify_px, reject_px, ...)
    "seed": 0,
}


# What a label file holds: name -> (dtype kind, shape in terms of T frames, N tracks).
LABEL_KEYS = {
    "queries": ("float32", ("N", 3)),  # (t, x, y), stored-frame pixels
    "tracks": ("float32", ("T", "N", 2)),
    "visible": ("bool", ("T", "N")),  # the teacher's visibility
    "cycle_ok": ("bool", ("T", "N")),
    "geo_state": ("int8", ("T", "N")),  # 1 verified, 0 unverifiable, -1 rejected
}


class TooFewQueries(ValueError):
    """SIFT found too few keypoints in the query frames (textureless, dark or tiny video)."""


def video_rng(name: str, seed: int, purpose: str) -> np.random.Generator:
    """A generator that depends only on (seed, video name, purpose): stable across runs and shards
    (Python's hash() is salted per process, crc32 is not)."""
    return np.random.default_rng([seed, zlib.crc32(f"{purpose}:{name}".encode())])


def choose_teacher(teachers: Sequence[tuple[str, TrackProvider]], name: str, seed: int = 0,
                   epoch: int = 0) -> tuple[str, TrackProvider]:
    """One (name, provider) per video and epoch, drawn at random but reproducibly from the video name."""
    if not teachers:
        raise ValueError("no teachers")
    purpose = "teacher" if epoch == 0 else f"teacher:{epoch}"
    return teachers[int(video_rng(name, seed, purpose).integers(len(teachers)))]


def epoch_teachers(teachers: Sequence[tuple[str, TrackProvider]], name: str, seed: int, epochs: int) -> list[str]:
    """The teacher names drawn for a video's first `epochs` epochs (the paper draws one per video and epoch)."""
    return [choose_teacher(teachers, name, seed, e)[0] for e in range(epochs)]


def sample_queries(frames: np.ndarray, conf: dict, rng: np.random.Generator) -> np.ndarray:
    """(N, 3) float32 SIFT queries on random frames of the first `query_span` of the clip.

    Raises TooFewQueries when fewer than `min_queries` keypoints exist, as the official recipe
    drops such samples rather than falling back to arbitrary points.
    """
    T = len(frames)
    span = max(1, math.ceil(T * conf["query_span"]))
    k = min(conf["num_query_frames"], span)
    qf = np.sort(rng.choice(span, size=k, replace=False))
    per_frame = math.ceil(conf["num_queries"] / k)
    pts = []
    for t in qf:
        xy = sift_points(frames[t], 4 * per_frame, conf["min_distance"])
        pts.append(np.concatenate([np.full((len(xy), 1), t, np.float32), xy], 1))
    pts = np.concatenate(pts)
    need = conf["min_queries"] or conf["num_queries"]
    if len(pts) < need:
        raise TooFewQueries(f"SIFT found {len(pts)} keypoints on frames {qf.tolist()}, need {need}")
    pick = rng.choice(len(pts), size=min(conf["num_queries"], len(pts)), replace=False)
    q = pts[np.sort(pick)]
    return q[np.lexsort((q[:, 0],))].astype(np.float32)


def geometric_states(tracks: Tracks, keep: np.ndarray, mapping: Optional[dict] = None, geometry: Optional[dict] = None) -> tuple[np.ndarray, str]:
    """((T, N) int8 verdicts, note) for the `keep` observations of `tracks`; all 0 (and the reason in
    `note`) when the tracks cannot be reconstructed. Track indices are preserved."""
    kept = Tracks(tracks.xy, tracks.visible & keep, tracks.image_size, tracks.confidence, tracks.query_frame)
    try:
        rec = reconstruct(kept, **(mapping or {}))
    except ReconstructionError as e:
        return np.full(kept.visible.shape, UNVERIFIABLE, np.int8), f"reconstruction failed: {e}"
    state = geometric_filter(rec, kept, **(geometry or {})).astype(np.int8)
    state[~kept.visible] = UNVERIFIABLE
    return state, f"reconstruction: {rec.num_reg_images()}/{tracks.num_frames} frames, {rec.num_points3D()} points"


@dataclass
class Labels:
    queries: np.ndarray
    tracks: np.ndarray
    visible: np.ndarray
    cycle_ok: np.ndarray
    geo_state: np.ndarray
    teacher: str
    note: str = ""
    stats: dict = field(default_factory=dict)

    @property
    def label_mask(self) -> np.ndarray:
        """(T, N) observations a student is trained on."""
        return self.visible & self.cycle_ok & (self.geo_state >= 0)


def label_stats(visible, cycle_ok, geo_state) -> dict:
    """Observation counts after each filter (what the relabel summary adds up)."""
    after_cycle = visible & cycle_ok
    return {
        "visible": int(visible.sum()),
        "after_cycle": int(after_cycle.sum()),
        "verified": int((after_cycle & (geo_state == 1)).sum()),
        "unverifiable": int((after_cycle & (geo_state == 0)).sum()),
        "rejected": int((after_cycle & (geo_state == -1)).sum()),
        "kept": int((after_cycle & (geo_state >= 0)).sum()),
    }


def label_video(frames: np.ndarray, teachers: Sequence[tuple[str, TrackProvider]], name: str, conf: Optional[dict] = None) -> Labels:
    """Pseudo-labels for one (T, H, W, 3) uint8 video; `name` seeds the teacher and query draws."""
    conf = {**DEFAULT_CONF, **(conf or {})}
    teacher_name, teacher = choose_teacher(teachers, name, conf["seed"])
    return label_with_teacher(frames, teacher_name, teacher, video_queries(frames, name, conf), conf)


def video_queries(frames: np.ndarray, name: str, conf: dict) -> np.ndarray:
    """The video's SIFT queries, the same for every teacher (seeded by the video name)."""
    return sample_queries(frames, conf, video_rng(name, conf["seed"], "queries"))


def label_with_teacher(frames: np.ndarray, teacher_name: str, teacher: TrackProvider, queries: np.ndarray,
                       conf: dict) -> Labels:
    """Pseudo-labels of one teacher for given queries: track, refine, cycle check, 3D check."""
    tracks = teacher(frames, queries)
    if conf.get("refine", True):
        tracks = refine_tracks(frames, tracks, tracker=teacher_name).tracks
    cycle_ok = cycle_consistency(teacher, frames, tracks, conf["cycle_threshold"], conf["cycle_anchors"])
    if conf["geometric_filter"]:
        geo_state, note = geometric_states(tracks, cycle_ok, conf["mapping"], conf["geometry"])
    else:
        geo_state, note = np.zeros(cycle_ok.shape, np.int8), "geometric filter off"
    return Labels(queries, tracks.xy.astype(np.float32), tracks.visible, cycle_ok & tracks.visible, geo_state, teacher_name,
                  note, label_stats(tracks.visible, cycle_ok, geo_state))
