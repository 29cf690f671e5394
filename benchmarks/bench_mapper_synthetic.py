"""Pose accuracy of `pipelines/reconstruct.py` (LK tracks, true intrinsics) on short synthetic static clips,
incremental vs global mapper, to expose hard camera motions (forward motion with little parallax).

    python benchmarks/bench_mapper_synthetic.py [--seeds 0 1 2 3] [--tracker lk]
"""
import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pycolmap

from cotracker3.data.synthetic import generate_clip
from pipelines.reconstruct import main, pose_accuracy


def run(seed: int, mapper: str, tracker: str, T: int = 16, size: int = 192) -> dict:
    clip = generate_clip(seed, num_frames=T, height=size, width=size, num_tracks=8, dynamic=False)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        names = [f"img_{t:03d}.png" for t in range(T)]
        for name, f in zip(names, clip["video"]):
            cv2.imwrite(str(d / name), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        K = clip["intrinsics"]
        argv = [str(d), "-o", str(d / "out"), "--tracker", tracker, "-q", "--mapper", mapper, "--no-video",
                "--intrinsics", f"{K[0, 0]},{K[1, 1]},{K[0, 2] + 0.5},{K[1, 2] + 0.5}"]
        if main(argv) != 0:
            return {"registered": "failed"}
        rec = pycolmap.Reconstruction(str(d / "out" / "sparse" / "0"))
        return pose_accuracy(rec, names, clip["cam_from_world"].astype(np.float64))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--tracker", default="lk")
    args = ap.parse_args()
    for seed in args.seeds:
        row = {m: run(seed, m, args.tracker) for m in ("incremental", "global")}
        print(seed, " | ".join(f"{m}: {r['registered']} max rot {r.get('rotation_deg_max', float('nan')):.2f} deg" for m, r in row.items()))
