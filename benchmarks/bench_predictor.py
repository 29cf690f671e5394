"""One `CoTrackerPredictor` call with backward tracking (what every provider call does), exact and fast mode.

Official architecture with random weights (speed does not depend on them), T=24, N=256 queries at random
frames, 384x512, iters 4, 2 threads. Pass a checkout to time that tree's code (e.g. an older commit in a
worktree), so two trees can be compared in one session:

    python benchmarks/bench_predictor.py [TREE] [--modes exact,fast]
"""
import argparse
import sys
import time
from pathlib import Path

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("tree", nargs="?", default=str(Path(__file__).resolve().parents[1]))
ap.add_argument("--modes", default="exact,fast")
args = ap.parse_args()
sys.path.insert(0, args.tree)
import torch  # noqa: E402

from cotracker3 import CoTrackerPredictor  # noqa: E402

torch.set_num_threads(2)
torch.manual_seed(0)
video = torch.rand(1, 24, 3, 384, 512) * 255
q = torch.cat([torch.randint(0, 24, (1, 256, 1)).float(), torch.rand(1, 256, 1) * 511, torch.rand(1, 256, 1) * 383], -1)
for mode in args.modes.split(","):
    pred = CoTrackerPredictor(checkpoint=None, window_len=60, mode=mode)
    with torch.no_grad():
        t0 = time.time()
        tracks = pred(video, queries=q, backward_tracking=True, iters=4)[0]
        dt = time.time() - t0
    print(f"{args.tree} {mode}: {dt:.1f} s per call (mean |track| {float(tracks.abs().mean()):.4f} px: equal trees give equal numbers)")
