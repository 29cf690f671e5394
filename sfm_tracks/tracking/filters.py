"""Track filters: (T, N) or (N,) boolean keep-masks, and `apply_filters` to turn them into new Tracks.

`cycle_consistency` is the project's single forward-backward check (pseudo-labelling reuses it).
Definition (Kalal et al.'s forward-backward error, per point and frame): frame t of a track passes
when tracking its position at t back to the query frame q lands within `threshold` px of the query
point. Labels are then made monotone outward from q: a frame is kept only if a passing check lies at
or beyond it (seen from q) before the first failing check. So a track that drifts at frame 50 keeps
its clean frames before 50 and loses frame 50 and everything after.

Why not one backward track from the track's end point compared frame by frame: after a drift the end
point sits on a different surface point, and the backward track follows *that* point, so it agrees
with the forward track on the drifted part and disagrees on the clean part -- exactly the wrong
labels. Checks must return to the query frame, from several anchor frames along the track.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..tracks import Tracks
from .providers import TrackProvider


def first_visible_frame(visible: np.ndarray) -> np.ndarray:
    """(N,) index of each track's first visible frame (0 for tracks never visible)."""
    return np.argmax(visible, axis=0)


def _accept_outward(passed: np.ndarray, failed: np.ndarray, region: np.ndarray) -> np.ndarray:
    """(T, N) frames of `region` up to the last pass before the first failure, axis 0 running outward."""
    prefail = np.cumsum(failed & region, axis=0) == 0
    good = passed & region & prefail
    reached = np.logical_or.accumulate(good[::-1], axis=0)[::-1]  # some good check at or beyond t
    return reached & region


def cycle_consistent_mask(
    forward_xy: np.ndarray,
    backward_xy: np.ndarray,
    forward_visible: np.ndarray,
    backward_visible: np.ndarray,
    threshold: float,
    query_frame: Optional[np.ndarray] = None,
    checked: Optional[np.ndarray] = None,
) -> np.ndarray:
    """(T, N) bool: frames of each track that survive the forward-backward cycle check.

    forward_xy: (T, N, 2) the tracks under test; forward_visible: (T, N).
    backward_xy: (T, N, 2) where the return trip started at (t, forward_xy[t]) lands at the query frame;
    backward_visible: (T, N) whether it arrived there visible.
    query_frame: (N,) defaults to each track's first visible frame.
    checked: (T, N) frames that had a return trip; defaults to all visible frames.
    """
    T, N = forward_visible.shape
    q = first_visible_frame(forward_visible) if query_frame is None else np.asarray(query_frame, np.int64)
    checked = forward_visible if checked is None else checked & forward_visible
    origin = forward_xy[q, np.arange(N)]  # (N, 2) query points
    gap = np.linalg.norm(backward_xy - origin[None], axis=-1)
    passed = checked & backward_visible & (gap <= threshold)
    failed = checked & ~passed
    t = np.arange(T)[:, None]
    after = _accept_outward(passed, failed, t > q[None])
    before = _accept_outward(passed[::-1], failed[::-1], (t < q[None])[::-1])[::-1]
    return (after | before | (t == q[None])) & forward_visible


def anchor_frames(visible: np.ndarray, query_frame: int, count: Optional[int]) -> np.ndarray:
    """Sorted visible frames to check on each side of the query frame: `count` evenly spread per side, the
    outermost always included; count=None checks every visible frame (exact per-frame labels)."""
    frames = np.flatnonzero(visible)
    out = []
    for side in (frames[frames > query_frame], frames[frames < query_frame][::-1]):
        if count is None or len(side) <= count:
            out.append(side)
        elif count > 0:
            pick = np.round(np.linspace(len(side) - 1, 0, count, endpoint=False)).astype(int)[::-1]
            out.append(side[np.unique(pick)])
    return np.sort(np.concatenate(out)) if out else np.zeros(0, np.int64)


def _return_trips(provider, frames, start, xy, target, max_queries):
    """Track (M,) points from frames `start` at `xy` (M, 2) to frames `target`: ((M, 2) xy, (M,) visible).

    Trips are sorted by the frame span they need and each chunk of `max_queries` only gets the frames
    of its span, so the provider never tracks through frames no trip in the chunk needs.
    """
    lo, hi = np.minimum(start, target), np.maximum(start, target)
    order = np.lexsort((hi, lo))
    out_xy = np.zeros((len(start), 2), np.float32)
    out_vis = np.zeros(len(start), bool)
    step = max_queries or len(start)
    for i in range(0, len(order), step):
        m = order[i : i + step]
        a, b = int(lo[m].min()), int(hi[m].max()) + 1
        queries = np.concatenate([(start[m] - a)[:, None].astype(np.float32), xy[m]], 1)
        res = provider(np.asarray(frames[a:b]), queries)
        out_xy[m] = res.xy[target[m] - a, np.arange(len(m))]
        out_vis[m] = res.visible[target[m] - a, np.arange(len(m))]
    return out_xy, out_vis


def cycle_consistency(
    provider: TrackProvider,
    frames: np.ndarray,
    tracks: Tracks,
    threshold_px: float = 3.0,
    anchors: Optional[int] = 8,
    max_queries: Optional[int] = 4096,
) -> np.ndarray:
    """(T, N) bool keep-mask from forward-backward cycles run with `provider` (see module docstring).

    Each track is re-queried at `anchors` frames per side of its query frame (None = every visible
    frame) and the provider tracks those back to the query frame -- the provider handles the time
    direction. Frames between the last passing and the first failing anchor are rejected, so fewer
    anchors cost clean frames, never keep drifted ones (up to the anchor spacing at the track's end).
    """
    T, N = tracks.visible.shape
    q = tracks.query_frame if tracks.query_frame is not None else first_visible_frame(tracks.visible)
    rows, cols = [], []
    for n in range(N):
        a = anchor_frames(tracks.visible[:, n], int(q[n]), anchors)
        rows.append(a)
        cols.append(np.full(len(a), n))
    rows, cols = np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64)
    checked = np.zeros((T, N), bool)
    backward_xy = np.zeros((T, N, 2), np.float32)
    backward_visible = np.zeros((T, N), bool)
    if len(rows):
        back_xy, back_vis = _return_trips(provider, frames, rows, tracks.xy[rows, cols], q[cols], max_queries)
        checked[rows, cols] = True
        backward_xy[rows, cols] = back_xy
        backward_visible[rows, cols] = back_vis
    return cycle_consistent_mask(tracks.xy, backward_xy, tracks.visible, backward_visible, threshold_px, q, checked)


def low_confidence(tracks: Tracks, min_conf: float) -> np.ndarray:
    """(T, N) keep-mask: confidence >= min_conf. Tracks without confidence are kept (nothing to judge)."""
    if tracks.confidence is None:
        return np.ones(tracks.visible.shape, bool)
    return tracks.confidence >= min_conf


def _run_length(flags: np.ndarray) -> np.ndarray:
    """(T, N) length of the run of True (along axis 0) that each True entry belongs to; 0 elsewhere."""
    T = flags.shape[0]
    fwd = np.zeros(flags.shape, np.int64)
    bwd = np.zeros(flags.shape, np.int64)
    for t in range(T):
        fwd[t] = np.where(flags[t], (fwd[t - 1] if t else 0) + 1, 0)
    for t in range(T - 1, -1, -1):
        bwd[t] = np.where(flags[t], (bwd[t + 1] if t < T - 1 else 0) + 1, 0)
    return np.where(flags, fwd + bwd - 1, 0)


def stuck_at_border(tracks: Tracks, margin_px: float = 1.0, min_frames: int = 3) -> np.ndarray:
    """(T, N) keep-mask rejecting frames in runs of >= `min_frames` consecutive visible frames within
    `margin_px` of the image border: trackers clamp lost points there, real points pass through."""
    h, w = tracks.image_size
    x, y = tracks.xy[..., 0], tracks.xy[..., 1]
    at_border = (x < margin_px) | (y < margin_px) | (x > w - 1 - margin_px) | (y > h - 1 - margin_px)
    return ~(_run_length(at_border & tracks.visible) >= min_frames)


def off_padding(tracks: Tracks, sizes: np.ndarray, margin_px: float = 10.0) -> np.ndarray:
    """(T, N) keep-mask for frames of different sizes on one canvas (each at its top-left, black padding
    beyond): observations at least `margin_px` inside their frame's own (H_t, W_t) = sizes[t]. The padding
    is not the scene, and its edge is a strong static gradient that trackers lock on to."""
    h, w = np.asarray(sizes)[:, :1], np.asarray(sizes)[:, 1:2]
    with np.errstate(invalid="ignore"):
        return (tracks.xy[..., 0] <= w - 1 - margin_px) & (tracks.xy[..., 1] <= h - 1 - margin_px)


def too_short(tracks: Tracks, min_length: int = 2) -> np.ndarray:
    """(N,) keep-mask: tracks visible in at least `min_length` frames (fewer cannot triangulate)."""
    return tracks.visible.sum(0) >= min_length


def apply_filters(tracks: Tracks, *masks: np.ndarray, min_visible: int = 2) -> Tracks:
    """New Tracks with visible=False wherever any mask rejects ((T, N) per frame, (N,) per track),
    dropping tracks left with fewer than `min_visible` visible frames."""
    visible = tracks.visible.copy()
    for m in masks:
        m = np.asarray(m, bool)
        if m.shape not in (visible.shape, visible.shape[1:]):
            raise ValueError(f"mask shape {m.shape} fits neither (T, N) = {visible.shape} nor (N,)")
        visible &= m
    out = Tracks(tracks.xy, visible, tracks.image_size, tracks.confidence, tracks.query_frame, tracks.image_names)
    return out.select(tracks=visible.sum(0) >= min_visible)
