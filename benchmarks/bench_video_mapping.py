"""Videos with ground-truth cameras: `pipelines/reconstruct.py` (defaults) beside classical COLMAP, in one run.

Cases: synthetic static clips from `generate_clip` (exact poses; `MODE:FRAMES[:SEED]`, 640x360, camera_mode orbit /
sideways / forward, scene seed 0 unless given), `kitti` (51 real forward-driving frames with GPS/INS poses, gt_sets/kitti_seq_a) and
`kitti-calibrated` (the same, with its true calibration given; no COLMAP row: the `kitti` case has it) and
`photos:FRAMES[:SEED]` (a photo set: FRAMES views of one full orbit around a generator scene, written as PNGs in
shuffled order, so reconstruct.py treats it as an image folder and COLMAP matches it exhaustively). Each other
case is written as an mp4 (so reconstruct.py treats it as a video), run once through reconstruct.py of each
`--root` checkout (wall time of the whole process; e.g. `--root /work/main` gives the before row), then through
COLMAP (CPU SIFT, sequential matching, incremental mapping) on exactly the frames the first command used.
Accuracy against the true poses: gauge-free relative rotation errors over all frame pairs, and the camera-centre
error after a Sim(3) alignment in % of the path size.

    python benchmarks/bench_video_mapping.py [--cases orbit:40,sideways:40,forward:40,kitti] [--root DIR ...] [--repeat N] [--json F]

--repeat N runs each case N times in turn (each root, then COLMAP; bench_sfm.repeated_rows: median times, the median
of the side-by-side ratios, the poses of the first run, and whether every run gave the same accuracy).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pycolmap

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from bench_reconstruct import reference  # noqa: E402
from bench_sfm import DEFAULT_DATA, REPEAT_KEYS, _table, add_repeat_option, bench_colmap_sift, run_repeated, split_extra  # noqa: E402
from sfm_tracks import write_video  # noqa: E402
from sfm_tracks.colmap.metrics import aligned_pose_errors, relative_pose_errors  # noqa: E402


def synthetic_case(mode: str, num_frames: int, seed: int = 0) -> tuple:
    from cotracker3.data.synthetic import generate_clip

    clip = generate_clip(seed, num_frames=num_frames, height=360, width=640, num_tracks=8, dynamic=False, camera_mode=mode)
    return clip["video"], clip["cam_from_world"].astype(np.float64)


def photo_case(num_frames: int, seed: int = 0) -> tuple:
    """num_frames views spread over one full turn of the orbit camera (640x360), in a seeded random order."""
    from cotracker3.data.scene import sample_scene
    from cotracker3.data.synthetic import generate_clip

    rate = abs(np.degrees(sample_scene(seed, 360, 640, dynamic=False, camera_mode="orbit").camera.angle_rate))
    step = 360 / (num_frames * rate)  # scene time per frame for one turn (angle_rate: degrees per unit of scene time)
    clip = generate_clip(seed, num_frames=num_frames, height=360, width=640, num_tracks=8, dynamic=False,
                         camera_mode="orbit", frame_step=step)
    order = np.random.default_rng(seed).permutation(num_frames)
    return clip["video"][order], clip["cam_from_world"][order].astype(np.float64)


def kitti_intrinsics(data: Path) -> list:
    """reconstruct.py arguments that give kitti_seq_a's true calibration (fx, fy, cx, cy, COLMAP convention)."""
    cam = next(iter(json.loads((data / "gt_sets" / "kitti_seq_a" / "gt_cameras.json").read_text())["cameras"].values()))
    K = np.array(cam["K"])
    return ["--camera-model", "PINHOLE", "--intrinsics", ",".join(str(v) for v in (K[0, 0], K[1, 1], K[0, 2], K[1, 2]))]


def kitti_case(data: Path) -> tuple:
    folder = data / "gt_sets" / "kitti_seq_a"
    cams = reference(folder / "gt_cameras.json")
    names = sorted(cams)
    frames = [cv2.cvtColor(cv2.imread(str(folder / "images" / n), cv2.IMREAD_GRAYSCALE), cv2.COLOR_GRAY2RGB) for n in names]
    frames = [f[: f.shape[0] // 2 * 2, : f.shape[1] // 2 * 2] for f in frames]  # even sizes for yuv420p
    return np.stack(frames), np.array([cams[n] for n in names])


def accuracy(rec, names: list, gt: np.ndarray) -> dict:
    """names[t] is frame t of the case; rows without a pose count as unregistered."""
    if rec is None:
        return {}
    by_name = {im.name: im.cam_from_world().matrix() for im in rec.images.values() if im.has_pose}
    est = np.array([by_name.get(n, np.full((3, 4), np.nan)) for n in names])
    if np.isfinite(est).all((1, 2)).sum() < 3:
        return {}
    rel, ab = relative_pose_errors(est, gt), aligned_pose_errors(est, gt)
    return {"rel_rot_mean_deg": float(rel["rotation_deg"].mean()), "rel_rot_max_deg": float(rel["rotation_deg"].max()),
            "centre_med_pct": 100 * float(np.median(ab["center_rel"]))}


def run_ours(root: Path, video: Path, out: Path, extra: list) -> tuple:
    cmd = [sys.executable, str(root / "pipelines" / "reconstruct.py"), str(video), "-o", str(out), "-q", *extra]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "SFM_TRACKS_NO_DOWNLOAD": "1", "PYTHONPATH": str(root)})
    wall = time.time() - t0
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return None, wall, lines[-1] if lines else f"exit {proc.returncode}"
    return json.loads((out / "report.json").read_text()), wall, None


def bench_case(case: str, data: Path, work: Path, roots: list, extra: list, colmap: bool) -> list:
    if case in ("kitti", "kitti-calibrated"):
        frames, gt = kitti_case(data)
        if case == "kitti-calibrated":  # COLMAP's row is the uncalibrated kitti case's: run that case for it
            extra, colmap = extra + kitti_intrinsics(data), False
    elif case.startswith("photos:"):
        _, T, *seed = case.split(":")
        frames, gt = photo_case(int(T), int(seed[0]) if seed else 0)
    else:
        mode, T, *seed = case.split(":")
        frames, gt = synthetic_case(mode, int(T), int(seed[0]) if seed else 0)
    photos = case.startswith("photos:")
    video = work / case.replace(":", "_")
    if photos:  # lossless PNGs named in the shuffled order, so that sorted names index gt
        video.mkdir()
        for t, f in enumerate(frames):
            cv2.imwrite(str(video / f"img_{t:04d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    else:
        video = video.with_suffix(".mp4")
        write_video(video, frames, 10, options={"crf": "12"})  # high quality: compression is not what is measured
    rows, image_dir = [], None
    for k, root in enumerate(roots):
        out = work / f"{case.replace(':', '_')}_{k}"
        report, wall, err = run_ours(root, video, out, extra)
        row = {"case": f"{case}: reconstruct.py ({root.name})", "frames": len(frames), "time_s": wall}
        if err:
            rows.append({**row, "error": err})
            continue
        names = sorted(p.name for p in (out / "images").iterdir())
        rec = pycolmap.Reconstruction(str(out / "sparse" / "0"))
        kf = (report.get("mapping") or {}).get("keyframes")
        mapper = (report.get("mapping") or {}).get("mapper", "?")
        t = report["timings_s"]
        rows.append({**row, "registered": f"{report['frames_registered']}/{report['frames_total']}", **accuracy(rec, names, gt),
                     "how": f"{'%d keyframes' % kf['keyframes'] if kf else 'all frames mapped'}; track {t.get('track', 0):.0f} s, "
                            f"reconstruct {t.get('reconstruct', 0):.0f} s; {mapper} mapper"})
        image_dir = image_dir or out / "images"
        print(rows[-1], flush=True)
    if colmap and image_dir is not None:
        names = sorted(p.name for p in image_dir.iterdir())
        matcher = "exhaustive" if photos else "sequential"
        res, crec = bench_colmap_sift(image_dir, matcher, max_features=None, return_model=True)
        rows.append({"case": f"{case}: COLMAP SIFT {matcher}", "frames": len(names), "registered": res["registered"],
                     "time_s": res["time_s"], **accuracy(crec, names, gt), "how": res["time_split"]})
        for r in rows[:-1]:
            r["time_ratio"] = r["time_s"] / max(res["time_s"], 1e-9)
        print(rows[-1], flush=True)
    return rows


def main(argv=None):
    argv, extra = split_extra(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--cases", default="orbit:40,sideways:40,forward:40,kitti")
    ap.add_argument("--root", type=Path, nargs="+", default=[HERE.parent], help="checkouts whose reconstruct.py to run")
    ap.add_argument("--no-colmap", action="store_true")
    add_repeat_option(ap)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_video_mapping_") as work:
        for case in [c for c in args.cases.split(",") if c]:
            rows += run_repeated(lambda folder: bench_case(case, args.data.resolve(), folder, [r.resolve() for r in args.root], extra,
                                                           not args.no_colmap),
                                 Path(work), args.repeat, ("registered", "rel_rot_mean_deg", "rel_rot_max_deg", "centre_med_pct"))
    keys = ["frames", "registered", "rel_rot_mean_deg", "rel_rot_max_deg", "centre_med_pct", "time_s", "time_ratio", *REPEAT_KEYS,
            "how", "error"]
    _table(rows, [k for k in keys if any(k in r for r in rows)])
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}; pycolmap "
          f"{pycolmap.__version__}; extra reconstruct.py args: {extra or 'none (defaults)'}; time_ratio = reconstruct.py wall time / "
          "COLMAP SIFT time in the same run")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=float))


if __name__ == "__main__":
    main()
