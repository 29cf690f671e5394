"""Run any TrackProvider on overlapping windows of a long video so memory stays bounded.

Stitching rule (one window is the authority for every frame of every track, no averaging):
- A query's *home* window is the last window starting at or before its query frame; the home window
  gives all of that window's frames.
- Forward: from the overlap with the next window, the point's last confident position (visible, and
  confidence >= min_conf when the provider reports one) becomes a new query there; the next window
  gives only the frames after the current window ends. The overlap therefore always comes from the
  window that carried the point in (the one nearer its query frame).
- Backward: symmetric, using the first confident position in the overlap with the previous window.
A point with no confident position in an overlap is not carried: it stays invisible beyond it.

Crowding (`max_live`, off by default): a query lands where an earlier track already is, as a video revisits a
place or the detector fires again on a corner it found 8 frames before; carried on, every such repeat adds a track
for the rest of the video (a clip that keeps its points in view then costs length squared). With it, in a frame
where more than `max_live` tracks are alive, a home query whose track there lies within `min_spacing` px of a track
from an earlier query frame (or one carried in) is dropped, and a point is not carried back into a window that
already tracks another point within `min_spacing` of it. Queries in free regions are always kept, as feature
replenishment in keyframe SLAM does, so short videos (under `max_live` tracks alive) are tracked as without it.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from scipy.spatial import cKDTree

from ..tracks import Tracks
from .providers import TrackProvider, check_inputs, run_chunked


def window_bounds(num_frames: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """[(start, end)) of windows of `window` frames, consecutive ones sharing `overlap` frames."""
    if overlap < 1 or window < 2 * overlap:
        raise ValueError(f"need overlap >= 1 and window >= 2 * overlap, got window={window}, overlap={overlap}")
    bounds, s = [], 0
    while True:
        e = min(s + window, num_frames)
        bounds.append((s, e))
        if e == num_frames:
            return bounds
        s += window - overlap


class _Stitcher:
    """Accumulates per-window results into (T, columns) arrays, a column per query once a window writes it.

    Columns are given out as windows reach their queries, and a dropped (crowded) query's column is reused, so
    the arrays hold the tracks kept plus one window's new queries, not every query: on a 1000-frame video, 64000
    queries of which 43000 are dropped, (T, N) arrays for all of them were the run's largest allocation.
    """

    def __init__(self, T: int, queries: np.ndarray, min_conf: float):
        self.T, self.queries, self.min_conf = T, queries, min_conf
        self.col = np.full(len(queries), -1, np.int64)  # query id -> column; -1 none yet, -2 dropped
        self.free: list = []  # columns of dropped queries
        self.xy = np.zeros((T, 0, 2), np.float32)
        self.visible = np.zeros((T, 0), bool)
        self.confidence = np.zeros((T, 0), np.float32)
        self.has_conf = True

    def _columns(self, ids: np.ndarray) -> np.ndarray:
        """Columns of query ids (M,), given out (reused first, else appended) to those without one."""
        held = self.col[ids]
        if (held == -2).any():
            raise RuntimeError("a dropped query was written again")
        new = ids[held == -1]
        if len(new):
            reuse = min(len(new), len(self.free))
            cols = np.array(self.free[len(self.free) - reuse:], np.int64)
            del self.free[len(self.free) - reuse:]
            extra = len(new) - reuse
            if extra:
                n0 = self.xy.shape[1]
                grow = max(extra, n0 // 2)  # amortised: about log(N) copies in all
                self.xy = np.concatenate([self.xy, np.zeros((self.T, grow, 2), np.float32)], 1)
                self.visible = np.concatenate([self.visible, np.zeros((self.T, grow), bool)], 1)
                self.confidence = np.concatenate([self.confidence, np.zeros((self.T, grow), np.float32)], 1)
                self.free.extend(range(n0 + grow - 1, n0 + extra - 1, -1))  # the spare ones, lowest given out first
                cols = np.concatenate([cols, np.arange(n0, n0 + extra)])
            self.col[new] = cols
            self.xy[:, cols] = self.queries[None, new, 1:]  # finite placeholder where invisible
            self.visible[:, cols], self.confidence[:, cols] = False, 0.0
        return self.col[ids]

    def _seen(self, ids: np.ndarray, f: int) -> np.ndarray:
        """The ids among `ids` that hold a column and are visible at frame f."""
        ids = ids[self.col[ids] >= 0]
        return ids[self.visible[f, self.col[ids]]]

    def write(self, ids: np.ndarray, result: Tracks, cols: np.ndarray, start: int, frames: slice) -> None:
        """Copy result columns `cols` for global `frames` (window offset `start`) into tracks `ids`."""
        local = slice(frames.start - start, frames.stop - start)
        c = self._columns(ids)
        self.xy[frames, c] = result.xy[local][:, cols]
        self.visible[frames, c] = result.visible[local][:, cols]
        if result.confidence is None:
            self.has_conf = False
        else:
            self.confidence[frames, c] = result.confidence[local][:, cols]

    def crowded(self, ids: np.ndarray, at: np.ndarray, others: np.ndarray, spacing: float, max_live: int) -> np.ndarray:
        """(len(ids),) bool: track ids[i] has a track of `others` visible within `spacing` px at frame at[i],
        where that frame would hold more than `max_live` tracks (those of `others` visible there and its ids)."""
        out = np.zeros(len(ids), bool)
        for f in np.unique(at):
            near = self._seen(others, f)
            mine = at == f
            if len(near) and len(near) + mine.sum() > max_live:
                d, _ = cKDTree(self.xy[f, self.col[near]]).query(self.xy[f, self.col[ids[mine]]], distance_upper_bound=spacing)
                out[mine] = d < spacing
        return out

    def drop(self, ids: np.ndarray) -> None:
        """Forget queries `ids` (written once, by their home window): their columns go to the next new queries."""
        c = self.col[ids]
        c = c[c >= 0]
        self.visible[:, c] = False
        self.free.extend(c.tolist())
        self.col[ids] = -2

    def carry(self, ids: np.ndarray, frames: range) -> tuple[np.ndarray, np.ndarray]:
        """Tracks among `ids` with a confident position in `frames` (searched in the given order), and
        their (M, 3) global (t, x, y) queries at the first such frame."""
        ids = ids[self.col[ids] >= 0]
        c = self.col[ids]
        order = np.asarray(list(frames))
        ok = self.visible[order][:, c]
        if self.has_conf:
            ok &= self.confidence[order][:, c] >= self.min_conf
        found = ok.any(0)
        first = order[np.argmax(ok, 0)][found]
        kept = ids[found]
        q = np.concatenate([first[:, None].astype(np.float32), self.xy[first, c[found]]], 1)
        return kept, q

    def tracks(self, image_size: tuple, keep_dropped: bool, query_frame: np.ndarray) -> Tracks:
        """The result in query order: every query's column (dropped ones visible nowhere), or with
        keep_dropped=False only the queries kept, without a (T, all queries) array. query_frame: (N,) int64."""
        ids = np.arange(len(self.queries)) if keep_dropped else np.flatnonzero(self.col != -2)
        c = self.col[ids]
        qf = query_frame[ids]
        if len(c) == self.xy.shape[1] and np.array_equal(c, np.arange(len(c))):  # already in query order (none dropped)
            return Tracks(xy=self.xy, visible=self.visible, image_size=image_size,
                          confidence=self.confidence if self.has_conf else None, query_frame=qf)
        have = c >= 0
        N = len(ids)
        xy = np.broadcast_to(self.queries[None, ids, 1:], (self.T, N, 2)).copy()
        visible = np.zeros((self.T, N), bool)
        conf = np.zeros((self.T, N), np.float32) if self.has_conf else None
        for s in range(0, N, 4096):  # gathered a block of columns at a time: no second full-size temporary
            k = np.flatnonzero(have[s:s + 4096]) + s
            xy[:, k], visible[:, k] = self.xy[:, c[k]], self.visible[:, c[k]]
            if conf is not None:
                conf[:, k] = self.confidence[:, c[k]]
        self.xy = self.visible = self.confidence = None
        return Tracks(xy=xy, visible=visible, image_size=image_size, confidence=conf, query_frame=qf)


def windowed(
    provider: TrackProvider,
    frames: np.ndarray,
    queries: np.ndarray,
    window: int = 48,
    overlap: int = 8,
    max_queries: Optional[int] = None,
    min_conf: float = 0.5,
    max_live: Optional[int] = None,
    min_spacing: float = 8.0,
    keep_dropped: bool = True,
) -> Tracks:
    """Tracks for all `queries` over all frames, calling `provider` on at most `window` frames and
    `max_queries` queries at a time.

    frames: (T, H, W, 3) uint8, any array supporting slicing (an np.memmap keeps it off RAM).
    queries: (N, 3) float32 (t, x, y). See the module docstring for the stitching rule and crowding
    (`max_live`, `min_spacing`; dropped queries come back as tracks visible nowhere, so column n is still query n;
    keep_dropped=False leaves them out instead, in query order, so no (T, N) array is ever made for them).
    """
    T, H, W = frames.shape[:3]
    queries = np.asarray(queries, np.float32).reshape(-1, 3)
    if len(queries) == 0:
        return Tracks(xy=np.zeros((T, 0, 2)), visible=np.zeros((T, 0), bool), image_size=(H, W), query_frame=np.zeros(0, np.int64))
    if queries[:, 0].min() < 0 or queries[:, 0].max() > T - 1 or (queries[:, 0] != np.round(queries[:, 0])).any():
        raise ValueError(f"query frames must be integers in [0, {T - 1}]")
    bounds = window_bounds(T, window, overlap)
    starts = np.array([s for s, _ in bounds])
    qf = np.round(queries[:, 0]).astype(np.int64)
    home = np.searchsorted(starts, qf, side="right") - 1
    out = _Stitcher(T, queries, min_conf)

    def run(k, q_global):
        s, e = bounds[k]
        q = q_global.copy()
        q[:, 0] -= s
        return run_chunked(provider, np.asarray(frames[s:e]), q, max_queries)

    # forward pass: home queries of each window plus points carried in from the previous window
    fwd_ids = np.zeros(0, np.int64)
    fwd_q = np.zeros((0, 3), np.float32)
    backward_from = []  # per window: ids whose frames in that window came from it (home + forward-carried)
    for k, (s, e) in enumerate(bounds):
        home_ids = np.flatnonzero(home == k)
        ids = np.concatenate([home_ids, fwd_ids])
        if len(ids):
            res = run(k, np.concatenate([queries[home_ids], fwd_q]))
            nh = len(home_ids)
            out.write(home_ids, res, np.arange(nh), s, slice(s, e))
            if len(fwd_ids):
                out.write(fwd_ids, res, np.arange(nh, len(ids)), s, slice(bounds[k - 1][1], e))
            if max_live is not None:
                home_ids = _uncrowded(out, home_ids, qf, fwd_ids, min_spacing, max_live)
                ids = np.concatenate([home_ids, fwd_ids])
        backward_from.append(home_ids)
        if k + 1 < len(bounds):
            fwd_ids, fwd_q = out.carry(ids, range(e - 1, bounds[k + 1][0] - 1, -1))  # last confident in overlap

    # backward pass: carry each window's home points (and those carried back into it) to earlier windows
    bwd_ids = np.zeros(0, np.int64)
    for k in range(len(bounds) - 1, 0, -1):
        s, _ = bounds[k]
        ids = np.concatenate([backward_from[k], bwd_ids])
        bwd_ids, bwd_q = out.carry(ids, range(s, bounds[k - 1][1]))  # first confident in overlap
        if max_live is not None and len(bwd_ids):
            others = np.setdiff1d(np.arange(len(queries)), ids)  # tracks that window k - 1 holds already
            keep = ~out.crowded(bwd_ids, bwd_q[:, 0].astype(np.int64), others, min_spacing, max_live)
            bwd_ids, bwd_q = bwd_ids[keep], bwd_q[keep]
        if len(bwd_ids):
            res = run(k - 1, bwd_q)
            out.write(bwd_ids, res, np.arange(len(bwd_ids)), bounds[k - 1][0], slice(bounds[k - 1][0], s))

    return out.tracks((H, W), keep_dropped, qf)


def _uncrowded(out: _Stitcher, home_ids: np.ndarray, qf: np.ndarray, carried: np.ndarray, spacing: float,
               max_live: int) -> np.ndarray:
    """The home tracks kept, query frame by query frame: where the frame holds more than `max_live` tracks, one
    within `spacing` px of a carried track or of a kept one from an earlier query frame is dropped."""
    kept = [carried]
    for f in np.unique(qf[home_ids]):
        mine = home_ids[qf[home_ids] == f]
        crowded = out.crowded(mine, np.full(len(mine), f), np.concatenate(kept), spacing, max_live)
        out.drop(mine[crowded])
        kept.append(mine[~crowded])
    return np.concatenate(kept[1:]) if len(kept) > 1 else home_ids[:0]


class WindowedProvider(TrackProvider):
    """Any provider run through `windowed`, counting tracked frames on a progress bar.

    Used for the main pass and for the cycle check's return trips, so no call sees more than `window`
    frames however long the video.
    """

    def __init__(self, inner: TrackProvider, window: int, overlap: int, max_queries: Optional[int], bar=None,
                 crowding: Optional[dict] = None):
        self.inner, self.window, self.overlap, self.max_queries, self.bar = inner, window, overlap, max_queries, bar
        self.crowding = crowding or {}  # windowed's max_live / min_spacing
        self.name = inner.name

    def _counted(self, frames, queries):
        out = self.inner(np.array(frames), queries)  # a writable in-RAM copy of one window (memmaps are read-only)
        if self.bar is not None:
            self.bar.update(len(frames))
        return out

    def _windowed(self, frames, queries, keep_dropped: bool) -> Tracks:
        return windowed(_Counted(self), frames, queries, self.window, self.overlap, self.max_queries, **self.crowding,
                        keep_dropped=keep_dropped)

    def track(self, frames, queries):
        return self._windowed(frames, queries, keep_dropped=True)

    def kept(self, frames, queries) -> Tracks:
        """As calling it, but the queries crowding drops are left out (tracks in query order, `query_frame` each
        one's frame), so no (T, N) array is made for them: a long video drops most of its queries."""
        frames, queries = check_inputs(frames, queries)
        if len(queries) == 0:
            return self(frames, queries)
        return self._windowed(frames, queries, keep_dropped=False)


class _Counted(TrackProvider):
    def __init__(self, owner: WindowedProvider):
        self.owner, self.name = owner, owner.name

    def track(self, frames, queries):
        return self.owner._counted(frames, queries)
