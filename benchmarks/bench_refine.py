"""Refinement (sfm_tracks/tracking/refine.py): tracking precision and pose error on the generator's exact ground truth.

    PYTHONPATH=. python benchmarks/bench_refine.py [--seeds 0 1] [--size 384x512] [--frames 24] [--trackers lk,cotracker3]
        [--pose-seeds 0] [--pose-frames 40]

Precision: the generator's own queries (a random frame and pixel each), tracked at full resolution by each
tracker, before and after refine_tracks; pixel error against the exact tracks on observations that the
ground truth and the tracker both call visible (query observations excluded). Rows: all such observations
(before refinement only); those still visible after refinement (refined ones plus the unrefined low-texture
ones), before and after; those refined (passed every guard), before and after; the share hidden as unreliable. CoTracker3 runs with the shipped weights (cotracker3/weights), fast mode.
Pose: pipelines/reconstruct.py (Lucas-Kanade, true intrinsics) on a static generator clip, with and without
refinement, rotation error after alignment and camera-centre error against the exact cameras.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pycolmap

from cotracker3.data.synthetic import generate_clip
from pipelines.reconstruct import main as reconstruct_main, pose_accuracy
from sfm_tracks.tracking.providers import LucasKanadeProvider
from sfm_tracks.tracking.refine import REFERENCE, REFINED, refine_tracks

SHIPPED = Path(__file__).resolve().parents[1] / "cotracker3" / "weights" / "cotracker3_small_offline.safetensors"


def provider(name: str):
    if name == "lk":
        return LucasKanadeProvider()
    from sfm_tracks.tracking.cotracker import CoTrackerProvider
    return CoTrackerProvider(str(SHIPPED), mode="fast")


def errors(xy, gt, mask) -> np.ndarray:
    return np.linalg.norm(xy - gt, axis=-1)[mask]


def fmt(e: np.ndarray) -> str:
    return f"{e.mean():.3f} | {np.median(e):.3f} | {np.percentile(e, 90):.3f}" if len(e) else "- | - | -"


def precision(trackers, seeds, frames, size, refine_conf=None) -> None:
    H, W = size
    print("\n| tracker | observations | count | before: mean | median | p90 px | after: mean | median | p90 px | hidden by refine | track s | refine s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    clips = [generate_clip(s, num_frames=frames, height=H, width=W, num_tracks=256, dynamic=False) for s in seeds]
    for name in trackers:
        prov = provider(name)
        sets = {"all visible before refinement": [], "visible after refinement": [], "refined (passed every guard)": []}
        hidden, t_track, t_ref = [], 0.0, 0.0
        for clip in clips:
            qf, n = clip["query_frame"], np.arange(clip["tracks"].shape[1])
            queries = np.concatenate([qf[:, None], clip["tracks"][qf, n]], 1).astype(np.float32)
            t0 = time.perf_counter()
            tracks = prov(clip["video"], queries)
            t1 = time.perf_counter()
            ref = refine_tracks(clip["video"], tracks, refine_conf, tracker=name)
            t_track, t_ref = t_track + t1 - t0, t_ref + time.perf_counter() - t1
            gt, gv = clip["tracks"], clip["visibility"]
            seen = tracks.visible & gv & (ref.status != REFERENCE)
            masks = (seen, seen & ref.tracks.visible, seen & (ref.status == REFINED))
            for key, m in zip(sets, masks):
                sets[key].append((errors(tracks.xy, gt, m), errors(ref.tracks.xy, gt, m)))
            hidden.append(seen & ~ref.tracks.visible)
        share = sum(h.sum() for h in hidden) / max(sum(len(b) for b, _ in sets["all visible before refinement"]), 1)
        for i, (key, parts) in enumerate(sets.items()):
            before, after = (np.concatenate([p[j] for p in parts]) for j in (0, 1))
            after_cell = "- | - | -" if i == 0 else fmt(after)
            tail = f"{share:.1%} | {t_track:.1f} | {t_ref:.1f}" if i == 0 else " | | "
            print(f"| {prov.name if i == 0 else ''} | {key} | {len(before)} | {fmt(before)} | {after_cell} | {tail} |")


def pose(seeds, frames, size) -> None:
    H, W = size
    print("\n| seed (camera) | refine | registered | rot mean deg | rot max deg | centre mean % | wall s |")
    print("|---|---|---|---|---|---|---|")
    for seed in seeds:
        clip = generate_clip(seed, num_frames=frames, height=H, width=W, num_tracks=8, dynamic=False, camera_mode="orbit")
        K = clip["intrinsics"]
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            names = [f"img_{t:03d}.png" for t in range(frames)]
            (d / "images").mkdir()
            for name, f in zip(names, clip["video"]):
                cv2.imwrite(str(d / "images" / name), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
            for refine in (False, True):
                out = d / f"out_{refine}"
                argv = [str(d / "images"), "-o", str(out), "--tracker", "lk", "-q", "--no-video", "--matches", "off",
                        "--intrinsics", f"{K[0, 0]},{K[1, 1]},{K[0, 2] + 0.5},{K[1, 2] + 0.5}", "--refine" if refine else "--no-refine"]
                t0 = time.perf_counter()
                if reconstruct_main(argv) != 0:
                    print(f"| {seed} (orbit) | {refine} | failed | | | | |")
                    continue
                wall = time.perf_counter() - t0
                acc = pose_accuracy(pycolmap.Reconstruction(str(out / "sparse" / "0")), names, clip["cam_from_world"].astype(np.float64))
                print(f"| {seed} (orbit) | {'on' if refine else 'off'} | {acc['registered']} | {acc['rotation_deg_mean']:.4f} | "
                      f"{acc['rotation_deg_max']:.4f} | {100 * acc['center_rel_mean']:.3f} | {wall:.1f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    ap.add_argument("--size", default="384x512", help="HxW of the rendered clips (full resolution)")
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--trackers", default="lk,cotracker3")
    ap.add_argument("--pose-seeds", type=int, nargs="*", default=[0])
    ap.add_argument("--pose-frames", type=int, default=40)
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    print(f"# {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    if args.seeds:
        precision(args.trackers.split(","), args.seeds, args.frames, size)
    if args.pose_seeds:
        pose(args.pose_seeds, args.pose_frames, size)


if __name__ == "__main__":
    main()
