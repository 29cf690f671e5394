"""Scaling of reconstruct.py with video length: wall time and peak memory at 250, 500, 1000 frames.

A shared video is resized (long side `--side`) and played back and forth (ping-pong) to each length, so
longer clips revisit the same scene as a long handheld video does, then `pipelines/reconstruct.py` runs on it
with defaults, one process per length, in the same run. Peak memory is the child's maximum resident set size
(os.wait4), and split by sampling /proc every 0.2 s: peak_anon_gb is what the run allocates itself (peak_anon_at_s:
when, in seconds from the start, to set beside the stage times), peak_file_gb the resident pages of mapped files (the
frames' memmap among them, which the kernel can drop and read again). Stage
times come from its report.json, and its log is kept beside the output.

    python benchmarks/bench_scaling.py VIDEO [--frames 250 500 1000] [--root DIR] [-o WORK] [--json F] [--extra '...']
        [--reference MODEL] [--score-only]

--reference: a COLMAP model of the video's own frames (image names carry the frame index, e.g. the shared
reference_colmap/apple): each looped frame is matched to its source frame and the relative rotation error over all
frame pairs is reported (gauge-free). --score-only scores the existing WORK/outN models without running anything.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from bench_mapping_settings import reference_poses  # noqa: E402
from sfm_tracks import read_frames, write_video  # noqa: E402
from sfm_tracks.colmap.metrics import relative_pose_errors  # noqa: E402


def looped_frames(video: Path, num_frames: int, side: int) -> np.ndarray:
    """(num_frames, H, W, 3) uint8: the video resized to long side `side`, played forwards then backwards."""
    frames, _ = read_frames(video)
    h, w = frames.shape[1:3]
    s = side / max(h, w)
    size = (int(round(w * s / 2)) * 2, int(round(h * s / 2)) * 2)
    small = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
    return small[np.resize(pingpong(len(small)), num_frames)]


def pingpong(n: int) -> np.ndarray:
    """Source frame of each looped frame over one period: 0, 1, ..., n - 1, n - 2, ..., 1."""
    return np.r_[np.arange(n), np.arange(n - 2, 0, -1)]


def loop_accuracy(model: Path, reference: Path, num_frames: int) -> dict:
    """Relative rotation error (deg) of a looped clip's model against a model of the source frames."""
    est = reference_poses(str(model), num_frames)
    source = reference_poses(str(reference), num_frames)  # the source frames' poses, then NaN
    gt = source[np.resize(pingpong(int(np.flatnonzero(np.isfinite(source).all((1, 2))).max()) + 1), num_frames)]
    rot = relative_pose_errors(est, gt)["rotation_deg"]
    return {"rel_rot_mean_deg": round(float(rot.mean()), 4), "rel_rot_median_deg": round(float(np.median(rot)), 4),
            "rel_rot_max_deg": round(float(rot.max()), 4)}


def sample_memory(pid: int, peak: dict, now: float = 0.0) -> None:
    """Raise peak's RssAnon / RssFile (kB) to the process's current values (Linux /proc; nothing elsewhere), and
    note in peak["anon_at"] the time `now` of the highest RssAnon.

    Peak RSS counts the pages of the memory-mapped frames that were read, which the kernel may drop and read
    again: RssAnon is the memory the run itself holds, RssFile the mapped files' resident pages."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in peak:
                kb = int(value.split()[0])
                if key == "RssAnon" and kb > peak[key]:
                    peak["anon_at"] = now
                peak[key] = max(peak[key], kb)
    except (OSError, ValueError, IndexError):
        pass


def run_once(root: Path, clip: Path, out: Path, extra: list) -> dict:
    """reconstruct.py of checkout `root` on `clip` -> wall time, peak RSS and the report's stage times."""
    cmd = [sys.executable, str(root / "pipelines" / "reconstruct.py"), str(clip), "-o", str(out), "--no-video", "--overwrite", *extra]
    log = out.with_suffix(".log")  # the run's INFO log: the stage times inside reconstruct
    t0 = time.time()
    peak = {"RssAnon": 0, "RssFile": 0, "anon_at": 0.0}
    with open(log, "w") as f:
        # PYTHONPATH: the checkout's own package (cwd alone leaves the installed one first on the path)
        proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.DEVNULL, stderr=f, env={**os.environ, "PYTHONPATH": str(root)})
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            sample_memory(proc.pid, peak, time.time() - t0)
            time.sleep(0.2)
    wall = time.time() - t0
    err = log.read_text(errors="replace").strip().splitlines()
    row = {"wall_s": round(wall, 1), "peak_rss_gb": round(usage.ru_maxrss / 2**20, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
           "peak_anon_gb": round(peak["RssAnon"] / 2**20, 2), "peak_file_gb": round(peak["RssFile"] / 2**20, 2),
           "peak_anon_at_s": round(peak["anon_at"], 1)}
    if os.waitstatus_to_exitcode(status) != 0:
        return {**row, "error": err[-1] if err else "failed"}
    rep = json.loads((out / "report.json").read_text())
    return {**row, "registered": f"{rep['frames_registered']}/{rep['frames_total']}", "points": rep["points3d"],
            "tracks": rep["tracks"]["tracks_out"], "keyframes": (rep["mapping"].get("keyframes") or {}).get("keyframes"),
            "stages_s": {k: round(v, 1) for k, v in rep["timings_s"].items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video", type=Path)
    ap.add_argument("--frames", type=int, nargs="+", default=[250, 500, 1000])
    ap.add_argument("--side", type=int, default=640, help="long side of the looped clip (px)")
    ap.add_argument("--root", type=Path, default=HERE.parent, help="checkout whose reconstruct.py runs")
    ap.add_argument("-o", "--work", type=Path, default=Path("runs/scaling"))
    ap.add_argument("--json", type=Path)
    ap.add_argument("--extra", default="", help="more reconstruct.py options, one string")
    ap.add_argument("--reference", type=Path, help="COLMAP model of the source video's frames, to score the poses")
    ap.add_argument("--score-only", action="store_true", help="score the existing WORK/outN models, run nothing")
    a = ap.parse_args()
    extra = shlex.split(a.extra)
    a.work.mkdir(parents=True, exist_ok=True)
    if a.score_only:
        if a.reference is None:
            ap.error("--score-only needs --reference")
        for n in a.frames:
            print(json.dumps({"frames": n, **loop_accuracy(a.work / f"out{n}" / "sparse" / "0", a.reference, n)}))
        return
    rows = []
    for n in a.frames:
        clip = a.work / f"{a.video.stem}_loop{n}.mp4"
        if not clip.exists():
            write_video(clip, looped_frames(a.video, n, a.side), fps=25, options={"crf": "12"})
        load = os.getloadavg()[0]
        row = {"frames": n, "load_before": round(load, 1), **run_once(a.root.resolve(), clip.resolve(), (a.work / f"out{n}").resolve(), extra)}
        if a.reference is not None and "error" not in row:
            row.update(loop_accuracy(a.work / f"out{n}" / "sparse" / "0", a.reference, n))
        rows.append(row)
        print(json.dumps(row), flush=True)
    if len(rows) > 1 and all("error" not in r for r in rows):
        base = rows[0]
        for r in rows[1:]:
            print(f"{r['frames']} frames: {r['frames'] / base['frames']:.1f}x the frames, {r['wall_s'] / base['wall_s']:.2f}x the time, "
                  f"{r['peak_rss_gb'] / base['peak_rss_gb']:.2f}x the peak memory, "
                  f"{r['peak_anon_gb'] / max(base['peak_anon_gb'], 1e-9):.2f}x the peak allocated (anonymous) memory")
    if a.json:
        a.json.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                      "command": " ".join(sys.argv), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
