"""End-to-end `pipelines/reconstruct.py` on real data, side by side with the classical COLMAP pipeline.

For each input the pipeline runs once per tracker that has weights (Lucas-Kanade always; CoTracker3 when
`resolve_checkpoint` finds weights), then pycolmap SIFT + sequential matching + incremental mapping
(bench_sfm's route) runs on exactly the frames the pipeline used (its OUTDIR/images). Poses are compared with
a reference: apple -> the shared pycolmap model (reference_colmap/apple, 640 px frames `<index:05d>.png`),
ngp_fox -> instant-ngp's transforms.json (OpenGL axes). Both references are COLMAP results, not ground truth.
Data licences are research / non-commercial (CC BY-NC 4.0, NVIDIA non-commercial): results only.

    python benchmarks/bench_reconstruct.py [--data DIR] [--max-side 640] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pycolmap

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_sfm import DEFAULT_DATA, _table, bench_colmap_sift, reference_poses  # noqa: E402
from cotracker3 import CheckpointError, resolve_checkpoint  # noqa: E402
from sfm_tracks.metrics import aligned_pose_errors, relative_pose_errors  # noqa: E402
from sfm_tracks.pipeline import run  # noqa: E402

logger = logging.getLogger("bench_reconstruct")


def available_trackers() -> list:
    out = ["lk"]
    for name, kind in (("cotracker3", "offline"),):
        try:
            resolve_checkpoint(kind, "default", allow_download=False)
            out.append(name)
        except CheckpointError:
            logger.info("no %s weights: %s not benchmarked", kind, name)
    return out


def colmap_reference(model_dir: Path) -> dict:
    """{frame index: (3, 4) cam_from_world} from a model whose images are named `<index>.png`."""
    rec = pycolmap.Reconstruction(str(model_dir))
    return {int(Path(im.name).stem): im.cam_from_world().matrix() for im in rec.images.values() if im.has_pose}


def pose_metrics(rec: pycolmap.Reconstruction, keys: list, names: list, ref: dict) -> dict:
    """Errors of `rec` (images `names`) against reference poses `ref[key]`, over frames in both."""
    by_name = {im.name: im.cam_from_world().matrix() for im in rec.images.values() if im.has_pose}
    pairs = [(by_name.get(n, np.full((3, 4), np.nan)), ref[k]) for k, n in zip(keys, names) if k in ref]
    est, gt = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    if np.isfinite(est).all((1, 2)).sum() < 3:
        return {}
    rel = relative_pose_errors(est, gt)
    ab = aligned_pose_errors(est, gt)
    return {"rel_rot_median_deg": float(np.median(rel["rotation_deg"])), "rot_median_deg": float(np.median(ab["rotation_deg"])),
            "center_rel_median_pct": 100 * float(np.median(ab["center_rel"]))}


def bench_input(label: str, source: Path, keys_of, ref: dict, trackers: list, work: Path, max_side: int, stride: int) -> list:
    """Pipeline per tracker, then SIFT on the same frames; `keys_of(names)` maps image names to reference keys."""
    rows, images = [], None
    for tracker in trackers:
        out = work / f"{label}_{tracker}"
        t0 = time.time()
        try:
            rep = run(source, out, {"input": {"max_side": max_side, "stride": stride}, "tracker": {"name": tracker}}, overwrite=True)
        except ValueError as e:
            rows.append({"case": f"{label}: pipeline ({tracker})", "error": " ".join(str(e).split())})
            continue
        rec = rep["model"]
        names = sorted(p.name for p in (out / "images").iterdir())
        images = out / "images"
        split = ", ".join(f"{k} {v:.0f}" for k, v in rep["timings_s"].items() if v >= 0.5)
        rows.append({"case": f"{label}: pipeline ({tracker})", "frames": rep["frames_total"],
                     "registered": f"{rep['frames_registered']}/{rep['frames_total']}", "points": rep["points3d"],
                     "reproj_px": rep["mean_reprojection_error_px"], "track_len": rep["mean_track_length"],
                     "time_s": time.time() - t0, "time_split": split, **pose_metrics(rec, keys_of(names), names, ref)})
        logger.info("%s", rows[-1])
    if images is not None:
        names = sorted(p.name for p in images.iterdir())
        t0 = time.time()
        res, rec = bench_colmap_sift(images, "sequential", return_model=True)
        row = {"case": f"{label}: COLMAP SIFT sequential", "frames": len(names), "registered": res["registered"],
               "points": res.get("points", 0), "reproj_px": res.get("reproj_px", float("nan")),
               "time_s": time.time() - t0, "time_split": res["time_split"]}
        if rec is not None:
            row.update(track_len=float(rec.compute_mean_track_length()), **pose_metrics(rec, keys_of(names), names, ref))
        rows.append(row)
        logger.info("%s", rows[-1])
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--max-side", type=int, default=640)
    ap.add_argument("--stride", type=int, default=1, help="use every K-th frame / image")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("SFM_TRACKS_NO_DOWNLOAD", "1")
    data = args.data.resolve()
    trackers = available_trackers()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_reconstruct_") as work:
        apple = data / "cotracker_videos" / "apple.mp4"
        ref = colmap_reference(data / "cotracker_videos" / "reference_colmap" / "apple")
        rows += bench_input("apple.mp4", apple, lambda names: [int(n[len("frame_"):-4]) for n in names], ref, trackers,
                            Path(work), args.max_side, args.stride)
        fox = data / "ngp_fox"
        rows += bench_input("ngp_fox", fox / "images", lambda names: names, reference_poses(fox / "transforms.json"), trackers,
                            Path(work), args.max_side, args.stride)
    keys = ["frames", "registered", "time_s", "time_split", "reproj_px", "points", "track_len", "rel_rot_median_deg",
            "rot_median_deg", "center_rel_median_pct", "error"]
    keys = [k for k in keys if any(k in r for r in rows)]
    _table(rows, keys)
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}; "
          f"pycolmap {pycolmap.__version__}; trackers: {trackers}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=float))


if __name__ == "__main__":
    main()
