"""Evaluation glue for training and the CLI: CoTracker predict functions and the synthetic eval set.

Visibility is scored as ``vis probability > 0.5`` (tapnet's convention), not the predictor's
deployment threshold (0.9), so that a weakly trained model's occlusion accuracy is not dominated
by calibration; positions are what matters most for SfM.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cotracker3.evaluation import evaluate_tracker, tapvid_samples
from cotracker3.predictor import CoTrackerPredictor


def clamp_tapvid_queries(queries: np.ndarray, H: int, W: int) -> np.ndarray:
    """(N, 3) txy float32 copy with x, y inside [-0.5, W - 0.5] x [-0.5, H - 0.5]: TAP-Vid pixels
    (points * (W, H)) reach W at the far edge, the trackers accept up to W - 0.5."""
    q = np.array(queries, np.float32)
    q[:, 1] = q[:, 1].clip(-0.5, W - 0.5)
    q[:, 2] = q[:, 2].clip(-0.5, H - 0.5)
    return q


def cotracker_predict_fn(predictor: CoTrackerPredictor, iters: int = 6, backward_tracking: bool = True):
    """``predict_fn(video (T,H,W,3) uint8, queries (N,3) txy) -> (tracks (T,N,2), vis probs (T,N))``."""
    device = next(predictor.parameters()).device

    @torch.no_grad()
    def predict(video: np.ndarray, queries: np.ndarray):
        v = torch.from_numpy(np.ascontiguousarray(video)).permute(0, 3, 1, 2)[None].float().to(device)
        q = torch.from_numpy(clamp_tapvid_queries(queries, *video.shape[1:3]))[None].to(device)
        tracks, _, vis, _ = predictor(v, q, backward_tracking=backward_tracking, return_scores=True, iters=iters)
        return tracks[0].float().cpu().numpy(), vis[0].float().cpu().numpy()

    return predict


def synthetic_eval_set(path: Path, num_clips: int, seed: int, num_frames: int, size, num_tracks: int) -> Path:
    """Write (once) a TAP-Vid-layout pickle of synthetic clips; reuse it if it exists."""
    path = Path(path)
    if not path.is_file():
        from cotracker3.data.tapvid_eval import write_tapvid_eval_set

        write_tapvid_eval_set(path, num_clips=num_clips, seed=seed, num_frames=num_frames, height=size[0],
                              width=size[1], num_tracks=num_tracks)
    return path


def evaluate_model(model, eval_conf: dict, pickle_path: Path) -> dict:
    """TAP-Vid average metrics of a (training) model on the eval pickle; restores train mode."""
    was_training = model.training
    predictor = CoTrackerPredictor.from_model(model)  # the live model, no rebuild
    # the trainer's own eval set or the file named with --eval-data: the user vouches for it
    samples = tapvid_samples(str(pickle_path), eval_conf["query_mode"], resize_to=None, allow_pickle=True)
    result = evaluate_tracker(cotracker_predict_fn(predictor, eval_conf["iters"]), samples)
    model.train(was_training)
    return result["average"]
