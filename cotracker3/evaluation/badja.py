"""BADJA-style keypoint tracking evaluation on real videos (sparse human keypoint annotations).

Protocol: every joint is queried at the first annotated frame where it is visible and scored at
the later annotated frames where it is visible (the query frame itself is not scored). A joint
is correct when the predicted position is within a threshold of the annotation; predicted
visibility is ignored (PCK measures position only). Thresholds:

- ``pck@0.2sqrt(mask)``: BADJA's own metric, 0.2 * sqrt(segmentation-mask area in px) of that
  frame; only when mask areas are given.
- ``pck@{d}px``: fixed pixel radii (default 5, 10, 20 px at the annotation resolution).
- ``pck@0.2sqrt(bbox)_proxy``: a **proxy** for the mask metric when no masks ship (e.g. our
  ``bear``): 0.2 * sqrt(area of the bounding box of the frame's visible keypoints). A box is
  larger than the mask, so this is more lenient than BADJA's number and not comparable to it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .datasets import EvalDataError

PIXEL_THRESHOLDS = (5.0, 10.0, 20.0)
ALPHA = 0.2


@dataclass
class KeypointAnnotations:
    """Sparse keypoints. F annotated frames, J joints; pixels of the video they annotate.

    frame_index: (F,) int video frame of each annotation, increasing.
    xy: (F, J, 2) float (x, y), NaN where not visible.
    visible: (F, J) bool.
    joint_id: (J,) int dataset joint ids (BADJA numbering).
    """

    frame_index: np.ndarray
    xy: np.ndarray
    visible: np.ndarray
    joint_id: np.ndarray
    image_size_wh: tuple[int, int] | None = None


def load_badja_npz(path: str) -> KeypointAnnotations:
    """Read a converted BADJA file (``keypoints_480p.npz``: frame_index (F,), xy (F, J, 2),
    visible (F, J), joint_id (J,)); EvalDataError naming the file and the problem otherwise."""
    try:
        with np.load(path, allow_pickle=False) as d:
            wh = tuple(int(v) for v in d["image_size_wh"]) if "image_size_wh" in d.files else None
            frame_index, xy = d["frame_index"].astype(np.int64), d["xy"].astype(np.float64)
            visible, joint_id = d["visible"].astype(bool), d["joint_id"].astype(np.int64)
    except FileNotFoundError:
        raise EvalDataError(f"no such file: {path}") from None
    except Exception as e:  # not an npz, truncated, missing arrays, object arrays
        raise EvalDataError(f"cannot read BADJA keypoints {path}: {type(e).__name__}: {e}") from None
    F, J = len(frame_index), len(joint_id)
    if xy.shape != (F, J, 2) or visible.shape != (F, J):
        raise EvalDataError(f"{path}: xy {xy.shape} / visible {visible.shape} do not fit {F} frames x {J} joints")
    return KeypointAnnotations(frame_index, xy, visible & np.isfinite(xy).all(-1), joint_id, wh)


def keypoint_queries(ann: KeypointAnnotations) -> tuple[np.ndarray, np.ndarray]:
    """Query each ever-visible joint at its first visible annotated frame.

    Returns queries (M, 3) float32 (t, x, y) in video frames/pixels and joints (M,) column
    indices into ``ann.xy`` (joints never visible are skipped).
    """
    joints = np.flatnonzero(ann.visible.any(axis=0))
    first = np.argmax(ann.visible[:, joints], axis=0)  # annotation row
    xy = ann.xy[first, joints]
    q = np.concatenate([ann.frame_index[first][:, None], xy], axis=1)
    return q.astype(np.float32), joints


def bbox_proxy_areas(ann: KeypointAnnotations) -> np.ndarray:
    """(F,) area (px^2) of the box around each frame's visible keypoints; NaN if < 2 visible."""
    areas = np.full(len(ann.frame_index), np.nan)
    for f in range(len(areas)):
        pts = ann.xy[f, ann.visible[f]]
        if len(pts) >= 2:
            span = pts.max(0) - pts.min(0)
            areas[f] = span[0] * span[1]
    return areas


def keypoint_pck(pred_tracks, ann: KeypointAnnotations, joints: np.ndarray, query_frames: np.ndarray,
                 thresholds_px: Sequence[float] = PIXEL_THRESHOLDS, mask_areas: np.ndarray | None = None,
                 bbox_proxy: bool = True) -> dict[str, float]:
    """PCK of predicted tracks against the annotations.

    pred_tracks: (T, M, 2) (x, y) for the M queried joints (``joints`` = their columns in ann).
    query_frames: (M,) video frame of each query; only annotated frames strictly after it count.
    mask_areas: optional (F,) segmentation-mask area per annotated frame (px^2).
    Returns ``pck@...`` fractions, ``mean_error_px`` and ``num_scored`` (scored pairs).
    """
    pred = np.asarray(pred_tracks, np.float64)
    fi = ann.frame_index
    if pred.shape[0] <= fi.max() or pred.shape[1:] != (len(joints), 2):
        raise ValueError(f"pred_tracks {pred.shape} must cover frame {fi.max()} for {len(joints)} joints")
    gt = ann.xy[:, joints]  # (F, M, 2)
    scored = ann.visible[:, joints] & (fi[:, None] > np.asarray(query_frames)[None, :])
    err = np.linalg.norm(pred[fi] - gt, axis=-1)  # (F, M), NaN where invisible
    e = err[scored]
    out = {"num_scored": int(scored.sum()), "mean_error_px": float(e.mean()) if e.size else float("nan")}
    for d in thresholds_px:
        out[f"pck@{d:g}px"] = float((e < d).mean()) if e.size else float("nan")

    def _relative(areas, key):
        thr = ALPHA * np.sqrt(np.broadcast_to(np.asarray(areas, np.float64)[:, None], err.shape))
        ok = scored & np.isfinite(thr)
        out[key] = float((err[ok] < thr[ok]).mean()) if ok.any() else float("nan")

    if mask_areas is not None:
        _relative(mask_areas, "pck@0.2sqrt(mask)")
    if bbox_proxy:
        _relative(bbox_proxy_areas(ann), "pck@0.2sqrt(bbox)_proxy")
    return out


def evaluate_keypoints(predict_fn: Callable, video: np.ndarray, ann: KeypointAnnotations, **kw) -> dict[str, float]:
    """Query, run ``predict_fn(video (T,H,W,3) uint8, queries (M,3) (t,x,y)) -> (tracks (T,M,2), vis)``
    and score with :func:`keypoint_pck` (extra keyword arguments go there)."""
    queries, joints = keypoint_queries(ann)
    tracks, _ = predict_fn(video, queries)
    tracks = tracks.detach().cpu().numpy() if hasattr(tracks, "detach") else np.asarray(tracks)
    return keypoint_pck(tracks, ann, joints, queries[:, 0].astype(np.int64), **kw)
