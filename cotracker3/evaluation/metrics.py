"""TAP-Vid metrics (Doersch et al. 2022) as tapnet's ``compute_tapvid_metrics`` defines them.

Conventions (tapnet's, *not* CoTracker's model convention):
- ``query_points`` (B, N, 3) = (t, y, x): query frame index first, then **row, column**.
  Only the frame index is used here. (CoTracker models take queries as (t, x, y).)
- ``gt_tracks`` / ``pred_tracks`` (B, N, T, 2) = (x, y) raster pixels, track-major (N before T).
- ``gt_occluded`` / ``pred_occluded`` (B, N, T) bool, True = occluded.
- The benchmark protocol scores coordinates at 256x256 resolution: rescale both tracks with
  :func:`rescale_xy` before calling (TAP-Vid readers already work at 256x256).

Which frames are scored ("evaluation points"):
- ``first`` mode: frames strictly after the query frame (the query is the first visible frame,
  so everything before it is known to be occluded and is not scored).
- ``strided`` mode: every frame except the query frame itself (tracking runs both ways).
``score_before_query=True`` reproduces CoTracker's copy of this function
(cotracker/evaluation/core/eval_utils.py), whose ``first`` branch in effect also scores the frames
before the query (all GT-occluded): only occlusion accuracy and Jaccard can change.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

THRESHOLDS = (1, 2, 4, 8, 16)  # pixels at 256x256
TAPVID_SIZE = (256, 256)  # (H, W)


def rescale_xy(xy: np.ndarray, from_hw: tuple[int, int], to_hw: tuple[int, int] = TAPVID_SIZE) -> np.ndarray:
    """(..., 2) pixel (x, y) at ``from_hw`` -> pixels at ``to_hw`` (TAP-Vid: coord = u * size)."""
    scale = np.array([to_hw[1] / from_hw[1], to_hw[0] / from_hw[0]])
    return np.asarray(xy, dtype=np.float64) * scale


def evaluation_points(query_frames: np.ndarray, num_frames: int, query_mode: str,
                      score_before_query: bool = False) -> np.ndarray:
    """(B, N) int query frames -> (B, N, T) bool mask of the scored (point, frame) pairs."""
    t = np.arange(num_frames)
    q = np.round(np.asarray(query_frames)).astype(np.int64)[..., None]
    if query_mode == "first" and not score_before_query:
        return t > q
    if query_mode in ("first", "strided"):
        return t != q
    raise ValueError(f"unknown query mode {query_mode!r}")


def compute_tapvid_metrics(
    query_points: np.ndarray,
    gt_occluded: np.ndarray,
    gt_tracks: np.ndarray,
    pred_occluded: np.ndarray,
    pred_tracks: np.ndarray,
    query_mode: str,
    *,
    trackwise: bool = False,
    score_before_query: bool = False,
    thresholds: Iterable[float] = THRESHOLDS,
) -> dict[str, np.ndarray]:
    """TAP-Vid metrics per video (B,) or, with ``trackwise``, per track (B, N).

    Returns ``occlusion_accuracy``; ``pts_within_{d}`` (fraction of GT-visible scored points
    predicted within d px, strict ``<``, ignoring predicted occlusion) and their mean
    ``average_pts_within_thresh`` (delta_avg); ``jaccard_{d}`` = TP / (TP + FP + FN) with
    TP = GT-visible, predicted visible and within d; and their mean ``average_jaccard`` (AJ).
    Ratios with a zero denominator are NaN (numpy division), as in tapnet.
    The benchmark number is the plain mean over videos (see :func:`mean_metrics`).
    """
    gt_occluded = np.asarray(gt_occluded, dtype=bool)
    pred_occluded = np.asarray(pred_occluded, dtype=bool)
    B, N, T = gt_occluded.shape
    if np.shape(gt_tracks) != (B, N, T, 2) or np.shape(pred_tracks) != (B, N, T, 2):
        raise ValueError("tracks must be (B, N, T, 2) like gt_occluded (B, N, T)")
    axis = (2,) if trackwise else (1, 2)
    evals = evaluation_points(np.asarray(query_points)[..., 0], T, query_mode, score_before_query)

    out = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        out["occlusion_accuracy"] = np.sum((pred_occluded == gt_occluded) & evals, axis=axis) / np.sum(evals, axis=axis)
        visible, pred_visible = ~gt_occluded, ~pred_occluded
        sq_dist = np.sum((np.asarray(pred_tracks, np.float64) - np.asarray(gt_tracks, np.float64)) ** 2, axis=-1)
        n_visible = np.sum(visible & evals, axis=axis)
        within_all, jaccard_all = [], []
        for d in thresholds:
            within = sq_dist < d**2
            correct = within & visible
            frac = np.sum(correct & evals, axis=axis) / n_visible
            tp = np.sum(correct & pred_visible & evals, axis=axis)
            # FP: predicted visible but GT occluded or too far; TP + FN = number of GT-visible points.
            fp = np.sum(pred_visible & (~visible | ~within) & evals, axis=axis)
            jac = tp / (n_visible + fp)
            out[f"pts_within_{d}"], out[f"jaccard_{d}"] = frac, jac
            within_all.append(frac)
            jaccard_all.append(jac)
    out["average_jaccard"] = np.mean(np.stack(jaccard_all, axis=-1), axis=-1)
    out["average_pts_within_thresh"] = np.mean(np.stack(within_all, axis=-1), axis=-1)
    return out


def mean_metrics(per_video: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Benchmark aggregate: unweighted mean of each metric over videos (tapnet/CoTracker)."""
    per_video = list(per_video)
    if not per_video:
        return {}
    return {k: float(np.mean([float(np.squeeze(m[k])) for m in per_video])) for k in per_video[0]}
