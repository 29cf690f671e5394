"""Query selection: which (t, x, y) points a tracker should follow.

SfM wants well-spread, re-detectable points on several frames (a point first seen mid-video must be
queried mid-video), so queries are SIFT keypoints topped up with grid points, on query frames spread
over the whole video, thinned to a minimum spacing. All coordinates are in tracker convention
(x = 0 at the centre of the first pixel column).

OpenCV convention, verified in tests: cv2 keypoints also put pixel centres at integer coordinates, but
stock SIFT (upscaled first octave) is biased by about +0.25 px; `enable_precise_upscale=True` removes
the bias, so keypoint coordinates are used as they are.
"""
from __future__ import annotations

from typing import Iterator, Optional, Sequence

import cv2
import numpy as np

from ..selection import spread
from ..threads import ordered_map
from ..video import grey

METHODS = ("sift", "grid", "sift+grid")


def _allowed(xy: np.ndarray, shape: tuple, mask: Optional[np.ndarray], border: float) -> np.ndarray:
    """(M,) True for points at least `border` px inside the image and on True pixels of `mask`."""
    h, w = shape
    ok = (xy[:, 0] >= border) & (xy[:, 1] >= border) & (xy[:, 0] <= w - 1 - border) & (xy[:, 1] <= h - 1 - border)
    if mask is not None and len(xy):
        xi = np.clip(np.round(xy[:, 0]).astype(int), 0, w - 1)
        yi = np.clip(np.round(xy[:, 1]).astype(int), 0, h - 1)
        ok &= mask[yi, xi]
    return ok


def thin_points(xy: np.ndarray, min_distance: float, budget: Optional[int] = None, taken: Optional[np.ndarray] = None) -> np.ndarray:
    """Greedy spacing: keep points in the given (priority) order unless closer than `min_distance` to a kept one.

    xy: (M, 2) candidates, best first. taken: (K, 2) points already kept elsewhere (e.g. SIFT points
    when topping up with grid points); they block their neighbourhood but are not returned.
    Returns indices into `xy` (at most `budget`). Exact distances via a spatial hash of cell `min_distance`.
    """
    d2 = float(min_distance) ** 2
    cell = max(float(min_distance), 1e-6)
    buckets: dict = {}

    def key(p):
        return int(np.floor(p[0] / cell)), int(np.floor(p[1] / cell))

    def free(p):
        cx, cy = key(p)
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for q in buckets.get((cx + dx, cy + dy), ()):
                    if (p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 < d2:
                        return False
        return True

    for p in [] if taken is None else np.asarray(taken, np.float64):
        buckets.setdefault(key(p), []).append(p)
    keep = []
    for i, p in enumerate(np.asarray(xy, np.float64)):
        if budget is not None and len(keep) >= budget:
            break
        if free(p):
            keep.append(i)
            buckets.setdefault(key(p), []).append(p)
    return np.asarray(keep, np.int64)


def sift_points(frame: np.ndarray, max_points: int, min_distance: float = 8.0, mask: Optional[np.ndarray] = None, border: float = 4.0) -> np.ndarray:
    """(M, 2) float32 SIFT keypoint positions (strongest first), spaced by `min_distance`, M <= max_points."""
    gray = grey(frame)
    sift = cv2.SIFT_create(enable_precise_upscale=True)
    kps = sift.detect(gray, None)
    if not kps:
        return np.zeros((0, 2), np.float32)
    kps = sorted(kps, key=lambda k: -k.response)
    xy = np.array([k.pt for k in kps], np.float32)
    xy = xy[_allowed(xy, gray.shape, mask, border)]
    return xy[thin_points(xy, min_distance, max_points)]


def grid_points(shape: tuple, spacing: float, mask: Optional[np.ndarray] = None, border: float = 4.0) -> np.ndarray:
    """(M, 2) float32 points of a regular grid with `spacing` px, centred in the image, inside `border`."""
    h, w = shape

    def axis(n):
        inner = n - 1 - 2 * border
        if inner < 0:
            return np.zeros(0, np.float32)
        k = int(inner // spacing) + 1
        start = border + (inner - (k - 1) * spacing) / 2
        return (start + spacing * np.arange(k)).astype(np.float32)

    gx, gy = np.meshgrid(axis(w), axis(h))
    xy = np.stack([gx.ravel(), gy.ravel()], -1)
    return xy[_allowed(xy, (h, w), mask, border)]


def frame_points(frame: np.ndarray, method: str = "sift+grid", max_points: int = 512, min_distance: float = 8.0, mask: Optional[np.ndarray] = None, border: float = 4.0, grid_spacing: Optional[float] = None) -> np.ndarray:
    """(M, 2) float32 query positions on one (H, W, 3) frame.

    "sift+grid" takes SIFT keypoints first and tops up textureless regions with grid points that
    keep `min_distance` from them, so weak-texture areas still get tracks.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    shape = frame.shape[:2]
    spacing = grid_spacing or 2 * min_distance
    if method == "grid":
        xy = grid_points(shape, spacing, mask, border)
        return xy[thin_points(xy, min_distance, max_points)]
    xy = sift_points(frame, max_points, min_distance, mask, border)
    if method == "sift+grid" and len(xy) < max_points:
        grid = grid_points(shape, spacing, mask, border)
        extra = grid[thin_points(grid, min_distance, max_points - len(xy), taken=xy)]
        xy = np.concatenate([xy, extra])
    return xy.astype(np.float32)


def select_queries(
    frames: np.ndarray,
    num_query_frames: int = 4,
    max_points_per_frame: int = 512,
    method: str = "sift+grid",
    min_distance: float = 8.0,
    masks: Optional[np.ndarray] = None,
    query_frames: Optional[Sequence[int]] = None,
    border: float = 4.0,
) -> np.ndarray:
    """(N, 3) float32 (t, x, y) queries on `num_query_frames` frames spread over the video.

    frames: (T, H, W, 3) uint8. masks: optional (T, H, W) bool, False pixels get no queries (e.g.
    moving objects or a watermark). `query_frames` overrides the spread-out default.
    """
    qf = spread(len(frames), num_query_frames) if query_frames is None else np.asarray(query_frames, np.int64)
    out = list(query_rows(frames, qf, method, max_points_per_frame, min_distance, masks, border))
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 3), np.float32)


def query_rows(frames: np.ndarray, query_frames: Sequence[int], method: str = "sift+grid", max_points_per_frame: int = 512,
               min_distance: float = 8.0, masks: Optional[np.ndarray] = None, border: float = 4.0) -> Iterator[np.ndarray]:
    """(M, 3) float32 (t, x, y) queries of each frame of `query_frames`, in that order, as they are ready.

    Frames are worked on side by side: OpenCV's SIFT releases the GIL (cat's 11 query frames: 0.41 -> 0.19 s on two cores).
    """
    def rows(t: int) -> np.ndarray:
        xy = frame_points(frames[t], method, max_points_per_frame, min_distance, None if masks is None else masks[t], border)
        return np.concatenate([np.full((len(xy), 1), t, np.float32), xy], 1)

    return ordered_map(rows, query_frames)


def empty_cells(xy: np.ndarray, visible: np.ndarray, shape: tuple, cell_size: int) -> np.ndarray:
    """(H, W) bool pixel mask of coarse grid cells that contain no visible point.

    xy: (N, 2) positions at one frame, visible: (N,) bool.
    """
    h, w = shape
    gh, gw = -(-h // cell_size), -(-w // cell_size)
    occupied = np.zeros((gh, gw), bool)
    p = xy[visible]
    inside = (p[:, 0] > -0.5) & (p[:, 1] > -0.5) & (p[:, 0] < w - 0.5) & (p[:, 1] < h - 0.5)
    p = p[inside]
    occupied[np.floor((p[:, 1] + 0.5) / cell_size).astype(int), np.floor((p[:, 0] + 0.5) / cell_size).astype(int)] = True
    cells = ~occupied
    return np.repeat(np.repeat(cells, cell_size, 0), cell_size, 1)[:h, :w]


def reseed_queries(
    tracks,
    frames: np.ndarray,
    cell_size: int = 64,
    every: int = 8,
    cooldown: int = 24,
    method: str = "sift+grid",
    max_points_per_frame: int = 256,
    min_distance: float = 8.0,
    masks: Optional[np.ndarray] = None,
    border: float = 4.0,
) -> np.ndarray:
    """(M, 3) float32 new (t, x, y) queries where the image has lost its tracks.

    Every `every`-th frame, coarse `cell_size` cells with no visible track get new SIFT/grid queries at
    that frame. A cell seeded at frame t is not seeded again before t + `cooldown`, since the new
    queries are not tracked yet and would otherwise be duplicated on every check.
    """
    T, H, W = frames.shape[:3]
    if tracks.num_frames != T:
        raise ValueError(f"{tracks.num_frames} track frames for {T} video frames")
    gh, gw = -(-H // cell_size), -(-W // cell_size)
    last_seeded = np.full((gh, gw), -(10**9))
    out = []
    for t in range(0, T, every):
        empty = empty_cells(tracks.xy[t], tracks.visible[t], (H, W), cell_size)
        cool = (t - last_seeded) >= cooldown
        allowed = empty & np.repeat(np.repeat(cool, cell_size, 0), cell_size, 1)[:H, :W]
        if masks is not None:
            allowed &= masks[t]
        if not allowed.any():
            continue
        xy = frame_points(frames[t], method, max_points_per_frame, min_distance, allowed, border)
        if len(xy):
            ci = np.floor((xy[:, 1] + 0.5) / cell_size).astype(int), np.floor((xy[:, 0] + 0.5) / cell_size).astype(int)
            last_seeded[ci] = t
            out.append(np.concatenate([np.full((len(xy), 1), t, np.float32), xy], 1))
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 3), np.float32)


def flat_frames(frames, qf: np.ndarray) -> Optional[str]:
    """Why nothing can be tracked when the query frames `qf` are each one flat colour, else None."""
    deviation = [float(np.asarray(frames[t]).std()) for t in qf]
    if max(deviation) < 1.0:
        return (f"no trackable texture: query frames {list(map(int, qf))} are each a single flat colour "
                f"(pixel standard deviation <= {max(deviation):.2f})")
    return None


def explain_no_tracks(frames, qf: np.ndarray, stats: dict, min_length: int) -> str:
    """Why filtering left no track, in terms of the input: no texture, or the tracker lost every point."""
    keypoints = sum(len(sift_points(np.asarray(frames[t]), 64)) for t in qf)
    if keypoints == 0:
        return (f"no trackable texture: SIFT found no keypoints in query frames {list(map(int, qf))} and none of the "
                f"{stats['tracks_in']} grid queries was followed for >= {min_length} frames")
    rejected = ", ".join(f"{k} {v}" for k, v in stats.items() if k not in ("tracks_in", "tracks_out"))
    return (f"no track was followed for >= {min_length} frames: all {stats['tracks_in']} tracks were lost or filtered "
            f"(rejected observations: {rejected}); the frames may change too much between neighbours")
