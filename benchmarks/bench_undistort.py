"""Undistortion's share of a reconstruct.py run (goal <= 10 %), beside pycolmap's own undistorter on the same model.

Runs `python pipelines/reconstruct.py VIDEO -o OUT --max-frames N --tracker lk --no-video -q` once, reads the
stage times of OUT/report.json (`undistort` / `total_s`), then times `pycolmap.undistort_images` on OUT/sparse/0
and OUT/images (COLMAP's image_undistorter, what 3DGS's convert.py runs) in the same process load.

    python benchmarks/bench_undistort.py [VIDEO] [--max-frames 40] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pycolmap

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from sfm_tracks.colmap.mapping import colmap_logging  # noqa: E402

DEFAULT_VIDEO = ROOT.parent / "shared" / "data" / "cotracker_videos" / "apple.mp4"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("video", nargs="?", type=Path, default=DEFAULT_VIDEO)
    ap.add_argument("--max-frames", type=int, default=40)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        cmd = [sys.executable, str(ROOT / "pipelines" / "reconstruct.py"), str(args.video), "-o", str(out),
               "--max-frames", str(args.max_frames), "--tracker", "lk", "--no-video", "-q"]
        load = os.getloadavg()
        t0 = time.time()
        subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        wall = time.time() - t0
        report = json.loads((out / "report.json").read_text())
        t0 = time.time()
        with colmap_logging(False):
            pycolmap.undistort_images(str(Path(tmp) / "colmap"), str(out / "sparse" / "0"), str(out / "images"))
        colmap_s = time.time() - t0
    und = report["timings_s"]["undistort"]
    result = {"video": str(args.video), "frames": report["frames_total"], "model_size": report["model_size"],
              "camera": report["camera"], "undistorted": report["undistorted"], "wall_s": round(wall, 2),
              "total_s": report["total_s"], "undistort_s": und, "undistort_share": round(und / report["total_s"], 4),
              "pycolmap_undistort_images_s": round(colmap_s, 2), "timings_s": report["timings_s"],
              "load_before": [round(x, 2) for x in load], "load_after": [round(x, 2) for x in os.getloadavg()]}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
