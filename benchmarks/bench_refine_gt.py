"""reconstruct.py defaults on a set of ../shared/data/gt_sets with and without refinement, against its true cameras.

    PYTHONPATH=. python benchmarks/bench_refine_gt.py kitti_seq_a --no-refine default

Per run: registered frames, median over all frame pairs of max(rotation error, translation-direction error),
median rotation error, AUC@5 of that pair error (registered pairs), reprojection error, wall seconds.
"""
import json, sys, tempfile, time, numpy as np, pycolmap
from pathlib import Path
from pipelines.reconstruct import main
from sfm_tracks.colmap.metrics import relative_pose_errors, aligned_pose_errors
root = Path("/work/shared/data/gt_sets") / sys.argv[1]
gt = json.load(open(root / "gt_cameras.json"))["cameras"]
names = sorted(gt)
G = np.array([np.concatenate([np.array(gt[n]["R_cw"]), np.array(gt[n]["t_cw"])[:, None]], 1) for n in names])
for flag in sys.argv[2:]:
    with tempfile.TemporaryDirectory() as d:
        t0 = time.time()
        rc = main([str(root / "images"), "-o", f"{d}/o", "-q", "--no-video"] + ([flag] if flag != "default" else []))
        wall = time.time() - t0
        rec = pycolmap.Reconstruction(f"{d}/o/sparse/0")
        rep = json.load(open(f"{d}/o/report.json"))
    by = {im.name: im.cam_from_world().matrix() for im in rec.images.values() if im.has_pose}
    est = np.array([by.get(n, np.full((3, 4), np.nan)) for n in names])
    rel = relative_pose_errors(est, G)
    err = np.maximum(rel["rotation_deg"], rel.get("translation_deg", rel["rotation_deg"]))
    auc5 = float(np.mean([np.clip(1 - e / 5, 0, 1) if np.isfinite(e) else 0 for e in err])) if "translation_deg" in rel else float("nan")
    print(sys.argv[1], flag, f"{len(by)}/{len(names)}", "AUC@5", round(auc5, 4), "median pair err", round(float(np.nanmedian(err)), 3),
          "rot med", round(float(np.nanmedian(rel["rotation_deg"])), 3), "reproj", rep["mean_reprojection_error_px"], "wall", round(wall, 1), flush=True)
