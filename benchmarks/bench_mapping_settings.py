"""Mapping settings, before/after in one run: time, registered frames and rotation agreement with a reference.

    python benchmarks/bench_mapping_settings.py TRACKS.npz --reference MODEL_DIR [--variants before fast_ba ...]
    python benchmarks/bench_mapping_settings.py --synthetic        # the orbit of tests/test_sfm_mapping.py, vs truth
    python benchmarks/bench_mapping_settings.py TRACKS.npz --truth CAMS.npy  # (T, 3, 4) true cam_from_world per frame

TRACKS.npz: the filtered tracks a `reconstruct.py` run wrote (e.g. apple.mp4 --tracker lk --max-side 640).
Reference: a COLMAP model of the same frames (images matched by frame index). Rotation agreement is the
gauge-free pairwise relative rotation error (sfm_tracks.colmap.metrics.relative_pose_errors). Each variant runs
`reconstruct()` with the MappingOptions given below; stage times come from the mapping log.
"""
import argparse
import logging
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's packages, not an installed copy

import numpy as np  # noqa: E402
import pycolmap  # noqa: E402

from sfm_tracks import Tracks, reconstruct  # noqa: E402
from sfm_tracks.colmap.metrics import poses_by_frame, relative_pose_errors  # noqa: E402
from sfm_tracks.testing import synthetic_scene  # noqa: E402

BEFORE = {"fast_ba": False, "deterministic": False, "verify_trials": (100, 10000)}  # settings before this change
VARIANTS = {
    "before": BEFORE,
    "fast_ba": {**BEFORE, "fast_ba": True},
    "trials_20_200": {**BEFORE, "verify_trials": (20, 200)},
    "trials_20": {**BEFORE, "verify_trials": (20, 10000)},
    "one_thread": {**BEFORE, "deterministic": True},
    "default": {},  # today's MappingOptions defaults
    "default_threads": {"deterministic": False},  # the defaults with a multithreaded mapper: the cost of determinism
    "full_mapping": {"keyframes": False, "long_links": None},  # every frame mapped, every long stride (before keyframes)
    "keyframes_only": {"long_links": None},  # keyframes, but every long stride between them
    "global": {"mapper": "global"},  # the defaults with the global mapper (GLOMAP) on the keyframes
    "full_global": {"keyframes": False, "long_links": None, "mapper": "global"},
    "direct_ba": {"ba_direct_max_images": 10**6},  # final BA with a direct sparse Schur solver at any size (before)
    "iterative_ba": {"ba_direct_max_images": 51},  # final BA with the iterative Schur solver above 51 frames
    "ba_ratio": {"pipeline": {"ba_global_frames_ratio": 1.2, "ba_global_frames_freq": 10**6}},  # mapper's global BA at 20 % growth
    "all_tracks": {"keyframe_tracks": 10**9},  # keyframes mapped on every track (before keyframe_tracks)
    "tracks_1000": {"keyframe_tracks": 1000},  # about this many tracks a keyframe (default 700)
    "tracks_400": {"keyframe_tracks": 400},
    "tracks_200": {"keyframe_tracks": 200},
    "all_points": {"ba_points": 10**9},  # final BA on every point (before ba_points)
    "points_1000": {"ba_points": 1000},  # final BA on about this many points a frame (default 2000)
    "all_observations": {"ba_max_observations": 10**12},  # no total bound on the final BA (before ba_max_observations)
}


class StageTimes(logging.Handler):
    """Collect '<stage> ... (12.3s)' timings from sfm_tracks.colmap.mapping's log."""

    def __init__(self):
        super().__init__()
        self.times = {}

    def emit(self, record):
        msg = record.getMessage()
        m = re.search(r"\((\d+\.\d)s\)$", msg)
        if m:
            self.times[msg.split(":")[0].split(" (")[0]] = float(m.group(1))


def reference_poses(model_dir: str, num_frames: int) -> np.ndarray:
    """(T, 3, 4) poses of a COLMAP model whose image names carry the frame index, NaN where missing."""
    ref = pycolmap.Reconstruction(model_dir)
    out = np.full((num_frames, 3, 4), np.nan)
    for im in ref.images.values():
        if im.has_pose:
            out[int(re.findall(r"\d+", im.name)[-1])] = im.cam_from_world().matrix()
    return out


def run_variant(tracks: Tracks, gt: np.ndarray, options: dict) -> dict:
    handler = StageTimes()
    log = logging.getLogger("sfm_tracks.colmap.mapping")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    t0 = time.time()
    try:
        rec = reconstruct(tracks, **options)
    finally:
        log.removeHandler(handler)
    wall = time.time() - t0
    est = poses_by_frame(rec, tracks)
    both = np.isfinite(est).all((1, 2)) & np.isfinite(gt).all((1, 2))
    err = relative_pose_errors(np.where(both[:, None, None], est, np.nan), np.where(both[:, None, None], gt, 0))
    rec.update_point_3d_errors()
    return {"registered": rec.num_reg_images(), "rot_mean": float(err["rotation_deg"].mean()), "rot_max": float(err["rotation_deg"].max()),
            "reproj": rec.compute_mean_reprojection_error(), "points": rec.num_points3D(), "wall": wall, "stages": handler.times,
            "poses": est}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tracks", nargs="?")
    ap.add_argument("--reference")
    ap.add_argument("--truth", help=".npy of (T, 3, 4) true cam_from_world, frame t of the tracks in row t")
    ap.add_argument("--synthetic", action="store_true")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--repeat", type=int, default=1, help="run each variant N times and report the largest pose difference")
    args = ap.parse_args()
    if args.synthetic:
        scene = synthetic_scene(num_frames=30, num_tracks=500, noise_px=1.0, outlier_fraction=0.1, moving_fraction=0.08, seed=0)
        tracks, gt = scene.tracks, scene.cam_from_world
    else:
        tracks = Tracks.load(args.tracks)
        gt = np.load(args.truth)[:, :3] if args.truth else reference_poses(args.reference, tracks.num_frames)
    base = None
    for name in args.variants:
        runs = [run_variant(tracks, gt, VARIANTS[name]) for _ in range(args.repeat)]
        r = runs[0]
        base = base or r["wall"]
        diff = max((float(np.nanmax(np.abs(x["poses"] - r["poses"]))) if np.array_equal(np.isnan(x["poses"]), np.isnan(r["poses"]))
                    else np.inf for x in runs[1:]), default=0.0)
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r["stages"].items())
        print(f"{name:14s} {r['registered']}/{tracks.num_frames} reg | rot vs ref mean {r['rot_mean']:.3f} max {r['rot_max']:.3f} deg | "
              f"{r['points']} pts {r['reproj']:.3f} px | {r['wall']:.1f} s ({r['wall'] / base:.2f}x) [{stages}]"
              + (f" | {args.repeat} runs: max pose difference {diff:.1e}" if args.repeat > 1 else ""), flush=True)


if __name__ == "__main__":
    main()
