"""`pipelines/reconstruct.py` with its defaults on every static real set, beside classical COLMAP, in one run.

For each set the default command runs once (`python pipelines/reconstruct.py INPUT -o OUT -q`, wall time of
the whole process), then the classical pycolmap pipeline (SIFT on CPU, sequential matching for videos and
frame sequences, exhaustive for photo sets, incremental mapping, COLMAP's default options) runs on exactly
the frames the command used (OUT/images, at the model's resolution). Both models are compared with the
set's reference: for `gt_sets/` (temple, nerf_mic, kitti) independent or exact ground truth, judged by
AUC@5 and the median pair error over all frame pairs (unregistered frames count as failures); elsewhere
the shared `reference_colmap/` model (a classical pycolmap model of the original images, not ground truth;
cake has none because COLMAP fails on it). Data licences are research / non-commercial: results only.

    python benchmarks/bench_reconstruct.py [--data DIR] [--sets apple,cat,...] [--json FILE]
        [--variant NAME='ARGS' ...] [--repeat N] [-- EXTRA ARGS]

Extra arguments after `--` go to every reconstruct.py call (e.g. `-- --tracker lk --matches off`).
Each --variant runs reconstruct.py once more per set with ARGS added (e.g. --variant fast='--features fast'),
against the same COLMAP run.
--repeat N runs each set's commands and COLMAP N times in turn (bench_sfm.repeated_rows: median times, the median
of the side-by-side ratios, the poses of the first run, and whether every run gave the same accuracy).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pycolmap

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench_sfm import DEFAULT_DATA, REPEAT_KEYS, _table, add_repeat_option, bench_colmap_sift, run_repeated, split_extra  # noqa: E402
from sfm_tracks.colmap.metrics import aligned_pose_errors, pair_errors, pose_auc, relative_pose_errors  # noqa: E402

logger = logging.getLogger("bench_reconstruct")


def _video_key(name: str) -> str:
    """frame_000042.png (our video frame names) -> 00042.png (the reference models' names)."""
    return f"{int(Path(name).stem.split('_')[-1]):05d}.png"


# name -> (input relative to the data folder, reference model folder, gt_cameras.json or None, kind);
# kind: video, sequence (an image folder of consecutive frames: COLMAP matches sequentially) or images
SETS = {
    "temple": ("gt_sets/middlebury_temple_sparse/images", "gt_sets/middlebury_temple_sparse/gt_cameras.json", "images"),
    "nerf_mic": ("gt_sets/nerf_mic/images", "gt_sets/nerf_mic/gt_cameras.json", "images"),
    "kitti": ("gt_sets/kitti_seq_a/images", "gt_sets/kitti_seq_a/gt_cameras.json", "sequence"),
    "apple": ("cotracker_videos/apple.mp4", "cotracker_videos/reference_colmap/apple", "video"),
    "cat": ("cotracker_videos/cat.mp4", "cotracker_videos/reference_colmap/cat", "video"),
    "ngp_fox": ("ngp_fox/images", "ngp_fox/reference_colmap", "images"),
    "kitchen": ("vggsfm_examples/kitchen/images", "vggsfm_examples/kitchen/reference_colmap", "images"),
    "statue": ("vggsfm_examples/statue/images", "vggsfm_examples/statue/reference_colmap", "images"),
    "british_museum": ("vggsfm_examples/british_museum/images", "vggsfm_examples/british_museum/reference_colmap", "images"),
    "cake": ("vggsfm_examples/cake/images", None, "images"),
}


def reference(model_dir) -> dict:
    """{image name: (3, 4) cam_from_world} of a reference model or a gt_cameras.json; {} when there is none."""
    if model_dir is not None and str(model_dir).endswith(".json"):
        cams = json.loads(Path(model_dir).read_text())["cameras"]
        return {n: np.concatenate([np.array(c["R_cw"]), np.array(c["t_cw"])[:, None]], 1) for n, c in cams.items()}
    if model_dir is None or not (Path(model_dir) / "images.bin").exists():
        return {}
    rec = pycolmap.Reconstruction(str(model_dir))
    return {im.name: im.cam_from_world().matrix() for im in rec.images.values() if im.has_pose}


def pose_agreement(rec, names: list, keys: list, ref: dict, truth: bool = False) -> dict:
    """Median rotation errors (pairwise relative, and after Sim(3) alignment) and camera-centre error in % of
    the path size, over the frames the reference has; frames the model lacks count as missing, not as errors.
    truth (ground-truth cameras): also AUC@5 and the median pair error over all pairs, where a pair with an
    unregistered frame counts as a failure, and the largest rotation error after alignment."""
    if rec is None or not ref:
        return {"auc5": 0.0, "pair_err_med_deg": float("inf")} if truth else {}
    by_name = {im.name: im.cam_from_world().matrix() for im in rec.images.values() if im.has_pose}
    pairs = [(by_name.get(n, np.full((3, 4), np.nan)), ref[k]) for n, k in zip(names, keys) if k in ref]
    est, gt = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    out = {}
    if truth:
        errs = pair_errors(est, gt)
        out = {"auc5": pose_auc(errs, 5.0), "pair_err_med_deg": float(np.median(errs))}
    if np.isfinite(est).all((1, 2)).sum() < 3:
        return out
    rel, ab = relative_pose_errors(est, gt), aligned_pose_errors(est, gt)
    out.update({"rel_rot_med_deg": float(np.median(rel["rotation_deg"])), "rot_med_deg": float(np.median(ab["rotation_deg"])),
                "centre_med_pct": 100 * float(np.median(ab["center_rel"]))})
    if truth:
        out["rot_max_deg"] = float(ab["rotation_deg"].max())
    return out


def how(report: dict) -> str:
    """Which tracker ran and what the feature matches did, as the report says."""
    m = report.get("matches") or {}
    sift = (f"SIFT ({(m.get('sift') or {}).get('first_octave', '?')} octave) on {m['sift_pairs']} pairs "
            f"({m.get('pair_selection', '?')}, {m['loop_pairs']} loop)" if m.get("enabled") else "no SIFT")
    return f"{report['tracker']}; {sift}; {report.get('mapping', {}).get('mapper', 'incremental')} mapper"


def run_default(source: Path, out: Path, extra: list) -> tuple:
    """The default command as a user runs it -> (report or None, wall s, error line or None)."""
    cmd = [sys.executable, str(ROOT / "pipelines" / "reconstruct.py"), str(source), "-o", str(out), "-q", *extra]
    t0 = time.time()
    # this checkout's package, not whichever one is installed (a worktree's run would measure the installed code)
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "SFM_TRACKS_NO_DOWNLOAD": "1", "PYTHONPATH": str(ROOT)})
    wall = time.time() - t0
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return None, wall, lines[-1] if lines else f"exit {proc.returncode}"
    return json.loads((out / "report.json").read_text()), wall, None


def bench_set(label: str, data: Path, work: Path, extra: list, variants: dict) -> list:
    """Rows for one set: reconstruct.py with `extra` (+ each variant's arguments), then COLMAP on its frames."""
    rel_input, rel_ref, kind = SETS[label]
    truth = str(rel_ref).endswith(".json")
    ref = reference(data / rel_ref if rel_ref else None)
    key = _video_key if kind == "video" else (lambda n: n)
    rows, first = [], None
    for vname, vargs in {"": [], **variants}.items():
        out = work / (label + (f"_{vname}" if vname else ""))
        case = f"{label}: reconstruct.py" + (f" [{vname}]" if vname else "")
        report, wall, err = run_default(data / rel_input, out, extra + vargs)
        if err:
            rows.append({"case": case, "error": err, "time_s": wall})
            logger.info("%s", rows[-1])
            continue
        rec = pycolmap.Reconstruction(str(out / "sparse" / "0"))
        names = sorted(p.name for p in (out / "images").iterdir())
        keys = [key(n) for n in names]
        rows.append({"case": case, "frames": len(names),
                     "registered": f"{report['frames_registered']}/{report['frames_total']}", "points": report["points3d"],
                     "reproj_px": report["mean_reprojection_error_px"], "time_s": wall,
                     "how": how(report), **pose_agreement(rec, names, keys, ref, truth)})
        rows[-1]["_reg"] = {im.name for im in rec.images.values() if im.has_pose}
        logger.info("%s", rows[-1])
        first = first or (out, names, keys, len(rows) - 1)
    if first is None:
        if kind != "video":  # no OUT/images: COLMAP gets the input photos themselves
            res = bench_colmap_sift(data / rel_input, "exhaustive", max_features=None)
            rows.append({"case": f"{label}: COLMAP SIFT exhaustive (input photos)", "registered": res["registered"],
                         "points": res.get("points", 0), "time_s": res["time_s"], "how": res["time_split"]})
        return rows
    out, names, keys, _ = first
    matcher = "exhaustive" if kind == "images" else "sequential"
    res, crec = bench_colmap_sift(out / "images", matcher, max_features=None, return_model=True)
    rows.append({"case": f"{label}: COLMAP SIFT {matcher}", "frames": len(names),
                 "registered": res["registered"], "points": res.get("points", 0), "reproj_px": res.get("reproj_px", float("nan")),
                 "time_s": res["time_s"], "how": res["time_split"], **pose_agreement(crec, names, keys, ref, truth)})
    colmap_reg = {im.name for im in crec.images.values() if im.has_pose} if crec is not None else set()
    for r in rows[:-1]:
        if "error" not in r:
            r["time_ratio"] = r["time_s"] / max(rows[-1]["time_s"], 1e-9)
            r["colmap_only"] = len(colmap_reg - r.pop("_reg"))  # frames COLMAP registers and this run does not
    logger.info("%s", rows[-1])
    return rows


ACCURACY = ("registered", "points", "auc5", "pair_err_med_deg", "rot_max_deg", "rel_rot_med_deg", "rot_med_deg", "centre_med_pct")


def main(argv=None):
    argv, extra = split_extra(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--sets", default=",".join(SETS), help=f"comma-separated subset of {','.join(SETS)}")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=ARGS",
                    help="also run reconstruct.py with these extra arguments, e.g. fast='--features fast' (repeatable)")
    add_repeat_option(ap)
    args = ap.parse_args(argv)
    variants = {}
    for v in args.variant:
        name, sep, rest = v.partition("=")
        if not sep or not name:
            ap.error(f"--variant must be NAME=ARGS, got {v!r}")
        variants[name] = shlex.split(rest)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    data = args.data.resolve()
    labels = [s for s in args.sets.split(",") if s]
    unknown = [s for s in labels if s not in SETS]
    if unknown:
        ap.error(f"unknown sets {unknown}; known: {sorted(SETS)}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_reconstruct_") as work:
        for label in labels:
            rows += run_repeated(lambda folder: bench_set(label, data, folder, extra, variants), Path(work), args.repeat, ACCURACY)
    keys = ["frames", "registered", "colmap_only", "auc5", "pair_err_med_deg", "rot_max_deg", "rel_rot_med_deg", "rot_med_deg", "centre_med_pct", "points", "reproj_px", "time_s",
            "time_ratio", *REPEAT_KEYS, "how", "error"]
    _table(rows, [k for k in keys if any(k in r for r in rows)])
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at the end; "
          f"pycolmap {pycolmap.__version__}; extra reconstruct.py args: {extra or 'none (defaults)'}; "
          f"time_ratio = reconstruct.py wall time / COLMAP SIFT time in the same run")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=float))


if __name__ == "__main__":
    main()
