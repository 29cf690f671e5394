"""Run any point tracker over TAP-Vid samples and aggregate the metrics.

``predict_fn(video, queries) -> (tracks, visible)`` contract:
- video: (T, H, W, 3) uint8 RGB (the sample's video, 256x256 for the TAP-Vid protocol);
- queries: (N, 3) float32 (t, x, y) in video pixels (note: x before y, unlike tapnet);
- tracks: (T, N, 2) (x, y) video pixels; visible: (T, N) bool, or probabilities that are
  thresholded at ``vis_threshold``. numpy arrays or torch tensors both work.
The tracker decides how to handle frames before a query frame (strided mode scores them:
CoTracker's evaluator runs a second pass on the time-reversed video for those).
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from .datasets import TapVidSample
from .metrics import compute_tapvid_metrics, mean_metrics

PredictFn = Callable[[np.ndarray, np.ndarray], tuple]


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def sample_metrics(sample: TapVidSample, tracks, visible, vis_threshold: float = 0.5,
                   score_before_query: bool = False) -> dict[str, float]:
    """Metrics of one prediction (tracks (T, N, 2), visible (T, N)) for one sample."""
    tracks, visible = _np(tracks).astype(np.float64), _np(visible)
    T, N = sample.gt_visible.shape
    if tracks.shape != (T, N, 2) or visible.shape != (T, N):
        raise ValueError(f"prediction shapes {tracks.shape}, {visible.shape}; expected {(T, N, 2)}, {(T, N)}")
    if visible.dtype != bool:
        visible = visible > vis_threshold
    m = compute_tapvid_metrics(
        sample.query_points[None], ~sample.gt_visible.T[None], sample.gt_tracks.transpose(1, 0, 2)[None],
        ~visible.T[None], tracks.transpose(1, 0, 2)[None], sample.query_mode,
        score_before_query=score_before_query)
    return {k: float(v[0]) for k, v in m.items()}


def evaluate_tracker(predict_fn: PredictFn, samples: Iterable[TapVidSample], vis_threshold: float = 0.5,
                     score_before_query: bool = False) -> dict:
    """Run ``predict_fn`` on every sample; return ``{"per_video": {name: metrics}, "average": metrics}``.

    ``average`` is the unweighted mean over videos, the number TAP-Vid tables report (x100).
    """
    per_video = {}
    for s in samples:
        tracks, visible = predict_fn(s.video, s.queries_txy)
        per_video[s.name] = sample_metrics(s, tracks, visible, vis_threshold, score_before_query)
    return {"per_video": per_video, "average": mean_metrics(per_video.values())}
