"""Track providers: anything that turns (frames, queries) into `Tracks`.

The pipeline, the filters and the VGGSfM adapter only see `TrackProvider`, so CoTracker3, the classical
Lucas-Kanade baseline and test fakes are interchangeable. A provider must return positions in both time
directions: a point queried mid-video also has positions before its query frame.

Adding CoTracker3 needs only `track()`: convert frames to a (1, T, 3, H, W) float tensor (0..255),
queries to (1, N, 3), call the predictor with backward_tracking=True and wrap the outputs in `Tracks`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Optional

import cv2
import numpy as np

from ..tracks import Tracks
from ..video import grey


def check_inputs(frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate (T, H, W, 3) uint8 frames and (N, 3) (t, x, y) queries; returns them as arrays.

    Lists and tensors are converted; anything else ValueErrors naming the expected shape, dtype or range.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        hint = " (float frames in 0..1? use (frames * 255).round().astype(np.uint8))" if frames.dtype.kind == "f" else ""
        raise ValueError(f"frames must be (T, H, W, 3) uint8 RGB, got {frames.shape} {frames.dtype}{hint}")
    T, H, W = frames.shape[:3]
    if T == 0 or H < 2 or W < 2:
        raise ValueError(f"frames must hold at least one frame of 2x2 pixels, got {frames.shape}")
    try:
        queries = np.asarray(queries, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise ValueError(f"queries must be an (N, 3) array of (t, x, y), got {type(queries).__name__} ({e})") from None
    if queries.size == 0:
        return frames, np.zeros((0, 3), np.float32)
    if queries.ndim != 2 or queries.shape[1] != 3:
        raise ValueError(f"queries must be an (N, 3) array of (t, x, y), got shape {queries.shape}")
    if not np.isfinite(queries).all():
        raise ValueError("queries contain NaN or Inf")
    t, x, y = queries.T
    if (t != np.round(t)).any() or t.min() < 0 or t.max() > T - 1:
        raise ValueError(f"query frames must be integers in [0, {T - 1}]")
    if x.min() < -0.5 or x.max() > W - 0.5 or y.min() < -0.5 or y.max() > H - 0.5:
        raise ValueError(f"queries lie outside the {W}x{H} frames (x in [-0.5, {W - 0.5}], y in [-0.5, {H - 0.5}] allowed)")
    return frames, queries


class TrackProvider(ABC):
    """`provider(frames (T, H, W, 3) uint8, queries (N, 3) float32 (t, x, y)) -> Tracks` (T frames, N tracks).

    Subclasses implement `track`; `__call__` validates inputs and stamps `query_frame`, so every
    provider behaves the same at the edges (no queries, bad frame indices).
    """

    name: str = "provider"

    def __call__(self, frames: np.ndarray, queries: np.ndarray) -> Tracks:
        frames, queries = check_inputs(frames, queries)
        T, H, W = frames.shape[:3]
        if len(queries) == 0:
            return Tracks(xy=np.zeros((T, 0, 2)), visible=np.zeros((T, 0), bool), image_size=(H, W), query_frame=np.zeros(0, np.int64))
        tracks = self.track(frames, queries)
        if tracks.xy.shape[:2] != (T, len(queries)):
            raise RuntimeError(f"{self.name} returned {tracks.xy.shape[:2]} tracks for {(T, len(queries))}")
        tracks.query_frame = queries[:, 0].astype(np.int64)
        return tracks

    @abstractmethod
    def track(self, frames: np.ndarray, queries: np.ndarray) -> Tracks:
        """Track validated, non-empty queries through all frames, both directions in time."""


class LucasKanadeProvider(TrackProvider):
    """Classical pyramidal Lucas-Kanade: a CPU baseline and a stand-in until a learned tracker is loaded.

    Every frame step tracks all live points at once; a point is lost (for the rest of that time direction)
    when LK fails, the forward-backward error of the step exceeds `fb_threshold` px, the LK patch error
    exceeds `max_error`, or it leaves the image. Confidence is the running minimum over steps of
    exp(-patch_error / error_scale), 1 at the query frame, 0 once lost.
    """

    name = "lucas-kanade"

    def __init__(self, win_size: int = 21, max_level: int = 3, fb_threshold: float = 1.0, max_error: float = 30.0, error_scale: float = 10.0, iterations: int = 30):
        self.win_size = (win_size, win_size)
        self.max_level = max_level
        self.fb_threshold = fb_threshold
        self.max_error = max_error
        self.error_scale = error_scale
        self.criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, iterations, 0.01)

    def _lk(self, a: np.ndarray, b: np.ndarray, p: np.ndarray):
        q, st, err = cv2.calcOpticalFlowPyrLK(a, b, p.reshape(-1, 1, 2), None, winSize=self.win_size, maxLevel=self.max_level, criteria=self.criteria)
        return q.reshape(-1, 2), st.reshape(-1).astype(bool), err.reshape(-1)

    def _step(self, a: np.ndarray, b: np.ndarray, p0: np.ndarray):
        """Track (M, 2) points from image a to b: (positions, ok (M,) bool, step confidence (M,))."""
        p1, st, err = self._lk(a, b, p0)
        pb, stb, _ = self._lk(b, a, p1)
        h, w = a.shape
        fb = np.linalg.norm(pb - p0, axis=1)
        inside = (p1[:, 0] >= -0.5) & (p1[:, 1] >= -0.5) & (p1[:, 0] <= w - 0.5) & (p1[:, 1] <= h - 0.5)
        ok = st & stb & (fb <= self.fb_threshold) & (err <= self.max_error) & inside & np.isfinite(p1).all(1)
        # OpenCV leaves the error of a failed point undefined (NaN seen on photo sets): it is never read, so zero it
        return p1, ok, np.exp(-np.where(ok, np.maximum(err, 0), 0) / self.error_scale)

    def _sweep(self, gray, xy, vis, conf, qf, forward: bool) -> None:
        T, N = vis.shape
        alive = np.zeros(N, bool)
        steps = range(T - 1) if forward else range(T - 1, 0, -1)
        for t in steps:
            u = t + 1 if forward else t - 1
            alive |= qf == t
            behind = qf <= t if forward else qf >= t
            xy[u, behind] = xy[t, behind]  # lost points keep their last position (finite, invisible)
            idx = np.flatnonzero(alive)
            if not len(idx):
                continue
            p1, ok, step_conf = self._step(gray[t], gray[u], np.ascontiguousarray(xy[t, idx]))
            good = idx[ok]
            xy[u, good] = p1[ok]
            vis[u, good] = True
            conf[u, good] = np.minimum(conf[t, good], step_conf[ok])
            alive[idx[~ok]] = False

    def track(self, frames: np.ndarray, queries: np.ndarray) -> Tracks:
        T, H, W = frames.shape[:3]
        N = len(queries)
        gray = [grey(f) for f in frames]
        qf = queries[:, 0].astype(np.int64)
        xy = np.zeros((T, N, 2), np.float32)
        vis = np.zeros((T, N), bool)
        conf = np.zeros((T, N), np.float32)
        xy[qf, np.arange(N)] = queries[:, 1:]
        vis[qf, np.arange(N)] = True
        conf[qf, np.arange(N)] = 1.0
        self._sweep(gray, xy, vis, conf, qf, forward=True)
        self._sweep(gray, xy, vis, conf, qf, forward=False)
        return Tracks(xy=xy, visible=vis, image_size=(H, W), confidence=conf)


def run_chunked(provider: TrackProvider, frames: np.ndarray, queries: np.ndarray, max_queries: Optional[int]) -> Tracks:
    """provider() on query chunks of at most `max_queries`, concatenated along tracks."""
    if not max_queries or len(queries) <= max_queries:
        return provider(frames, queries)
    parts = [provider(frames, queries[i : i + max_queries]) for i in range(0, len(queries), max_queries)]
    conf = None if any(p.confidence is None for p in parts) else np.concatenate([p.confidence for p in parts], 1)
    return Tracks(
        xy=np.concatenate([p.xy for p in parts], 1),
        visible=np.concatenate([p.visible for p in parts], 1),
        image_size=parts[0].image_size,
        confidence=conf,
        query_frame=queries[:, 0].astype(np.int64),
    )
