"""--frames N on a synthetic video whose every fifth frame is blurred, against every frame, same cameras judged.

The demo's scene (cotracker3 generator, orbit, 24 frames at 256 px) is written as a 10 fps mp4 with frames
2, 7, 12, ... Gaussian-blurred (`sfm_tracks.testing.blur_every`). reconstruct.py runs once with `--frames N`
and once on every frame (Lucas-Kanade); both models' poses of the frames the selection kept are aligned to
the true cameras (`pipelines.reconstruct.pose_accuracy`).

    python benchmarks/bench_frame_selection.py [--frames 8] [--sigma 2.5] [--intrinsics] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pycolmap

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from cotracker3.data.synthetic import generate_clip  # noqa: E402
from pipelines.reconstruct import main as reconstruct, pose_accuracy  # noqa: E402
from sfm_tracks import write_video  # noqa: E402
from sfm_tracks.testing import blur_every  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--sigma", type=float, default=2.5)
    ap.add_argument("--intrinsics", action="store_true", help="give both runs the true intrinsics (no self-calibration)")
    ap.add_argument("--json", type=Path, help="also write the result here")
    args = ap.parse_args(argv)
    T, S = 24, 256
    clip = generate_clip(0, num_frames=T, height=S, width=S, num_tracks=8, dynamic=False, camera_mode="orbit")
    frames, blurred = blur_every(clip["video"], sigma=args.sigma)
    gt = clip["cam_from_world"].astype(np.float64)
    K = clip["intrinsics"]
    extra = ["--tracker", "lk", "--no-video", "-q"]
    if args.intrinsics:
        extra += ["--intrinsics", f"{K[0, 0]},{K[1, 1]},{K[0, 2] + 0.5},{K[1, 2] + 0.5}"]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "blur.mp4"
        write_video(video, frames, fps=10)
        for key, flags in (("selected", ["--frames", str(args.frames)]), ("every_frame", [])):
            out = Path(tmp) / key
            assert reconstruct([str(video), "-o", str(out)] + extra + flags) == 0
            report = json.loads((out / "report.json").read_text())
            if key == "selected":
                kept = report["frame_selection"]["kept"]
            idx = [int(n[6:12]) for n in kept]
            acc = pose_accuracy(pycolmap.Reconstruction(str(out / "sparse" / "0")), kept, gt[idx])
            results[key] = {"frames_in_model": report["frames_total"], "total_s": report["total_s"],
                            **{k: round(v, 4) if isinstance(v, float) else v for k, v in acc.items()}}
    results["kept"] = kept
    results["kept_blurred"] = [n for n in kept if blurred[int(n[6:12])]]
    text = json.dumps({"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, **results}, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
