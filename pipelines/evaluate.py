"""Evaluate a tracker on TAP-Vid-layout data or on BADJA's bear; print and write JSON metrics.

    python -m pipelines.evaluate --checkpoint default --data synthetic -o metrics.json
    python -m pipelines.evaluate --checkpoint lk --data tapvid_davis.pkl --query-mode strided
    python -m pipelines.evaluate --checkpoint runs/small/w.safetensors --badja

``--checkpoint``: a weights file, ``default`` (official weights if cached, else the embedded
small ones), or ``lk`` (pyramidal Lucas-Kanade, OpenCV, chained frame to frame: a baseline).
``--data synthetic`` writes (once) and reads a synthetic TAP-Vid-layout set.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from cotracker3.evaluation import evaluate_keypoints, evaluate_tracker, load_badja_npz, tapvid_samples
from cotracker3.predictor import CoTrackerPredictor
from cotracker3.training.evaluation import cotracker_predict_fn, synthetic_eval_set
from sfm_tracks import LucasKanadeProvider, read_frames
from sfm_tracks.providers import add_fast_flag, tracker_mode

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # the team's data, beside the repository
BADJA_VIDEO = SHARED_DATA / "cotracker_videos" / "bear.mp4"
BADJA_KEYPOINTS = SHARED_DATA / "badja_bear_davis" / "bear" / "keypoints_480p.npz"
SYNTHETIC_DIR = Path("runs/eval")


def lk_predict_fn():
    """The project's Lucas-Kanade provider (the same tracker relabel.py uses as a teacher) as a predict fn."""
    provider = LucasKanadeProvider()

    def predict(video: np.ndarray, queries: np.ndarray):
        tracks = provider(video, queries)
        return tracks.xy, tracks.visible

    return predict


def make_predict_fn(checkpoint: str, iters: int, query_mode: str, fast: Optional[bool] = None):
    if checkpoint == "lk":
        return lk_predict_fn(), "sfm_tracks LucasKanadeProvider (pyramidal LK, 21x21, 3 levels, forward-backward step check)"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    mode = tracker_mode(fast, device)
    predictor = CoTrackerPredictor(checkpoint=checkpoint, mode=mode).eval().to(device)
    return cotracker_predict_fn(predictor, iters=iters), f"{predictor.checkpoint_source}, {mode} mode"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="default", help="weights path, 'default' or 'lk'")
    p.add_argument("--data", default="synthetic", help="TAP-Vid pickle (or Kinetics shard folder) or 'synthetic'")
    p.add_argument("--query-mode", choices=["first", "strided"], default="first")
    p.add_argument("--badja", action="store_true", help="BADJA bear keypoints instead of --data")
    p.add_argument("--num-clips", type=int, default=10, help="synthetic set size")
    p.add_argument("--seed", type=int, default=1_000_000, help="synthetic set seed")
    p.add_argument("--iters", type=int, default=6)
    p.add_argument("--threads", type=int)
    add_fast_flag(p)
    p.add_argument("-o", "--output", help="write the metrics JSON here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    predict, source = make_predict_fn(args.checkpoint, args.iters, args.query_mode, args.fast)
    t0 = time.perf_counter()
    if args.badja:
        metrics = evaluate_keypoints(predict, read_frames(BADJA_VIDEO)[0], load_badja_npz(BADJA_KEYPOINTS))
        result = {"data": f"BADJA bear ({BADJA_VIDEO})", "average": metrics}
    else:
        data = args.data
        if data == "synthetic":
            data = str(synthetic_eval_set(SYNTHETIC_DIR / f"synthetic_{args.num_clips}_{args.seed}.pkl",
                                          args.num_clips, args.seed, 24, (256, 256), 256))
        result = evaluate_tracker(predict, tapvid_samples(data, args.query_mode))
        result["data"] = data
        result["query_mode"] = args.query_mode
    result.update(tracker=source, seconds=round(time.perf_counter() - t0, 1))
    avg = result["average"]
    print(f"{source}\n{result['data']}")
    for k in ("average_jaccard", "average_pts_within_thresh", "occlusion_accuracy"):
        if k in avg:
            print(f"  {k:28s} {100 * avg[k]:6.2f}")
    for k, v in avg.items():
        if k.startswith("pck") or k == "mean_error_px":
            print(f"  {k:28s} {v:8.3f}")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
