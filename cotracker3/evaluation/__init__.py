"""Evaluation: TAP-Vid metrics and readers, BADJA keypoint PCK, a tracker-agnostic runner."""
from .badja import KeypointAnnotations, evaluate_keypoints, keypoint_pck, keypoint_queries, load_badja_npz
from .datasets import EvalDataError, TapVidSample, make_sample, tapvid_samples
from .metrics import compute_tapvid_metrics, mean_metrics, rescale_xy
from .runner import evaluate_tracker, sample_metrics

__all__ = [
    "KeypointAnnotations", "evaluate_keypoints", "keypoint_pck", "keypoint_queries", "load_badja_npz",
    "EvalDataError", "TapVidSample", "make_sample", "tapvid_samples",
    "compute_tapvid_metrics", "mean_metrics", "rescale_xy",
    "evaluate_tracker", "sample_metrics",
]
