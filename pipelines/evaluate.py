"""Evaluate a tracker on TAP-Vid-layout data or on BADJA's bear; print and write JSON metrics.

    python -m pipelines.evaluate --checkpoint default --data synthetic -o metrics.json
    python -m pipelines.evaluate --checkpoint lk --data tapvid_davis.pkl --query-mode strided
    python -m pipelines.evaluate --checkpoint runs/small/w.safetensors --badja
    python -m pipelines.evaluate --checkpoint runs/online/w.safetensors --model online --badja

``--checkpoint``: a weights file, ``default`` (official weights if cached, else the embedded
small ones), or ``lk`` (pyramidal Lucas-Kanade, OpenCV, chained frame to frame: a baseline).
``--data synthetic`` writes (once, as .npz under runs/eval/) and reads a synthetic TAP-Vid-layout set.
``--data FILE``: a TAP-Vid pickle as released (naming it here is what allows it to be unpickled, with
a reader that admits only arrays; see cotracker3.evaluation.datasets), a Kinetics shard folder, or .npz.
Bad input (paths, weights, data files, option values) gives one line ``error: ...`` and exit status 2;
the checkpoint and the output path are checked before any video is read.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

import numpy as np  # noqa: E402
import torch  # noqa: E402

from cotracker3 import CheckpointError  # noqa: E402
from cotracker3.evaluation import (EvalDataError, evaluate_keypoints, evaluate_tracker, load_badja_npz,  # noqa: E402
                                   tapvid_samples)
from cotracker3.predictor import CoTrackerPredictor  # noqa: E402
from cotracker3.training.evaluation import clamp_tapvid_queries, cotracker_predict_fn, synthetic_eval_set  # noqa: E402
from pipelines.cli import ArgumentParser, UsageError, add_fast_flag, fail, nonnegative_int, positive_int  # noqa: E402
from sfm_tracks import LucasKanadeProvider, VideoError, read_frames  # noqa: E402
from sfm_tracks.tracking.cotracker import CoTrackerOnlineProvider  # noqa: E402
from sfm_tracks.tracking.choice import tracker_mode  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # the team's data, beside the repository
BADJA_VIDEO = SHARED_DATA / "cotracker_videos" / "bear.mp4"
BADJA_KEYPOINTS = SHARED_DATA / "badja_bear_davis" / "bear" / "keypoints_480p.npz"
SYNTHETIC_DIR = Path("runs/eval")


def provider_predict_fn(provider):
    """A track provider (the same trackers relabel.py uses as teachers) as a predict fn."""

    def predict(video: np.ndarray, queries: np.ndarray):
        tracks = provider(video, clamp_tapvid_queries(queries, *video.shape[1:3]))
        return tracks.xy, tracks.visible

    return predict


def make_predict_fn(checkpoint: str, iters: int, fast: Optional[bool] = None, model: str = "offline"):
    if checkpoint == "lk":
        return (provider_predict_fn(LucasKanadeProvider()),
                "sfm_tracks LucasKanadeProvider (pyramidal LK, 21x21, 3 levels, forward-backward step check)")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    mode = tracker_mode(fast, device)
    if model == "online":  # streamed in windows, as relabel.py's cotracker3-online teacher
        provider = CoTrackerOnlineProvider(checkpoint=checkpoint, device=device, iters=iters, mode=mode)
        return provider_predict_fn(provider), f"{provider.checkpoint_source}, online, {mode} mode"
    predictor = CoTrackerPredictor(checkpoint=checkpoint, mode=mode).eval().to(device)
    return cotracker_predict_fn(predictor, iters=iters), f"{predictor.checkpoint_source}, {mode} mode"


def parse_args(argv=None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="default", help="weights path, 'default' or 'lk'")
    p.add_argument("--data", default="synthetic", help="TAP-Vid pickle, Kinetics shard folder, TAP-Vid .npz, or 'synthetic'")
    p.add_argument("--model", choices=["offline", "online"], default="offline",
                   help="online: stream the weights as the online model (the cotracker3-online teacher)")
    p.add_argument("--query-mode", choices=["first", "strided"], default="first")
    p.add_argument("--badja", action="store_true", help="BADJA bear keypoints (../shared/data) instead of --data")
    p.add_argument("--num-clips", type=positive_int, default=10, help="synthetic set size")
    p.add_argument("--seed", type=nonnegative_int, default=1_000_000, help="synthetic set seed")
    p.add_argument("--iters", type=positive_int, default=6)
    p.add_argument("--threads", type=positive_int)
    add_fast_flag(p)
    p.add_argument("-o", "--output", type=Path, help="write the metrics JSON here")
    return p.parse_args(argv)


def check_inputs(args) -> None:
    """UsageError for data that is not there or an output that cannot be written, before any work."""
    if args.badja and args.data != "synthetic":
        raise UsageError(f"--badja and --data {args.data} are alternatives: give one")
    needed = [BADJA_VIDEO, BADJA_KEYPOINTS] if args.badja else [] if args.data == "synthetic" else [Path(args.data)]
    for path in needed:
        if not path.exists():
            raise UsageError(f"no such file or folder: {path}")
    out = args.output
    if out is None:
        return
    if out.is_dir():
        raise UsageError(f"-o {out} is a folder; name the JSON file to write")
    if any(out.resolve() == p.resolve() for p in needed):
        raise UsageError(f"-o {out} is the input data; writing the metrics there would destroy it")
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise UsageError(f"-o {out}: cannot write under {parent}")


def write_json(path: Path, result: dict) -> None:
    """Atomically: a temp file beside it, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(result, indent=1))
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def evaluate(args, predict, source: str) -> dict:
    """The metrics dict (``average``, per video for TAP-Vid) of one tracker on the chosen data."""
    t0 = time.perf_counter()
    if args.badja:
        metrics = evaluate_keypoints(predict, read_frames(BADJA_VIDEO)[0], load_badja_npz(BADJA_KEYPOINTS))
        result = {"data": f"BADJA bear ({BADJA_VIDEO})", "average": metrics}
    else:
        data, named = args.data, args.data != "synthetic"
        if not named:  # our own set, cached as .npz: nothing here is ever unpickled
            data = str(synthetic_eval_set(SYNTHETIC_DIR / f"synthetic_{args.num_clips}_{args.seed}.npz",
                                          args.num_clips, args.seed, 24, (256, 256), 256))
        result = evaluate_tracker(predict, tapvid_samples(data, args.query_mode, allow_pickle=named))
        result["data"] = data
        result["query_mode"] = args.query_mode
    result.update(tracker=source, seconds=round(time.perf_counter() - t0, 1))
    return result


def print_result(result: dict) -> None:
    avg = result["average"]
    print(f"{result['tracker']}\n{result['data']}")
    for k in ("average_jaccard", "average_pts_within_thresh", "occlusion_accuracy"):
        if k in avg:
            print(f"  {k:28s} {100 * avg[k]:6.2f}")
    for k, v in avg.items():
        if k.startswith("pck") or k == "mean_error_px":
            print(f"  {k:28s} {v:8.3f}")


def main(argv=None) -> int:
    """The CLI; returns the exit status (0, or 2 for bad input with one ``error:`` line on stderr)."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        check_inputs(args)
        predict, source = make_predict_fn(args.checkpoint, args.iters, args.fast, args.model)
        result = evaluate(args, predict, source)
        print_result(result)
        if args.output:
            write_json(args.output, result)
    except (UsageError, CheckpointError, EvalDataError, VideoError, OSError) as e:
        return fail(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
