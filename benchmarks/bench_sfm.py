"""SfM bridge benchmark: time and accuracy of tracks -> reconstruction, and the classical SIFT pipeline.

Synthetic: known scenes (sfm_tracks.testing) with 10% outlier tracks and a moving object.
Real: pycolmap SIFT + sequential/exhaustive matching + incremental mapping on /work/shared/data image
sets, and (ngp_fox) Lucas-Kanade tracks through our track route, compared with instant-ngp's COLMAP poses.
The real data is research / non-commercial (see each SOURCE.md); results only, never ship the images.

    python benchmarks/bench_sfm.py [--data DIR] [--skip-real] [--sizes 30x500,100x1500]
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
from typing import Callable

import numpy as np
import pycolmap

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sfm_tracks import LucasKanadeProvider, Tracks, geometric_filter, read_frames, reconstruct, select_queries  # noqa: E402
from sfm_tracks.colmap.metrics import poses_by_frame, relative_pose_errors  # noqa: E402
from sfm_tracks.testing import GOOD, MOVING, synthetic_scene  # noqa: E402

logger = logging.getLogger("bench_sfm")
DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def bench_synthetic(T: int, N: int, mapper: str = "incremental", seed: int = 0) -> dict:
    scene = synthetic_scene(num_frames=T, num_tracks=N, outlier_fraction=0.1, moving_fraction=0.08, seed=seed)
    t0 = time.time()
    rec = reconstruct(scene.tracks, mapper=mapper)
    dt = time.time() - t0
    err = relative_pose_errors(poses_by_frame(rec, scene.tracks), scene.cam_from_world)
    labels = geometric_filter(rec, scene.tracks)
    vis = scene.tracks.visible
    good, out, mov = vis & (scene.kind == GOOD)[None], vis & (scene.offset > 6), vis & (scene.kind == MOVING)[None]
    rec.update_point_3d_errors()
    return {"case": f"synthetic {T}x{N} ({mapper})", "time_s": dt, "registered": f"{rec.num_reg_images()}/{T}",
            "rot_mean_deg": err["rotation_deg"].mean(), "rot_max_deg": err["rotation_deg"].max(),
            "reproj_px": rec.compute_mean_reprojection_error(), "points": rec.num_points3D(),
            "good_verified": (labels[good] == 1).mean(), "outlier_not_verified": (labels[out] != 1).mean(),
            "moving_verified": (labels[mov] == 1).mean(), "moving_rejected": (labels[mov] == -1).mean()}


def reference_poses(transforms_json: Path) -> dict:
    """{image name: (3, 4) cam_from_world, OpenCV axes} from an instant-ngp transforms.json."""
    d = json.loads(Path(transforms_json).read_text())
    out = {}
    for f in d["frames"]:
        c2w = np.array(f["transform_matrix"], dtype=np.float64)
        c2w[:3, 1:3] *= -1
        out[Path(f["file_path"]).name] = np.linalg.inv(c2w)[:3]
    return out


def _pose_errors(rec: pycolmap.Reconstruction, names: list, ref: dict) -> dict:
    by_name = {im.name: im for im in rec.images.values() if im.has_pose}
    est = np.array([by_name[n].cam_from_world().matrix() if n in by_name else np.full((3, 4), np.nan) for n in names])
    gt = np.array([ref[n] for n in names])
    e = relative_pose_errors(est, gt)
    return {"rot_median_deg": float(np.median(e["rotation_deg"])), "tdir_median_deg": float(np.median(e["translation_deg"]))}


def bench_colmap_sift(image_dir: Path, matcher: str, ref: dict | None = None, max_features: int | None = 4096, return_model: bool = False):
    """Classical pycolmap pipeline: SIFT (CPU), sequential or exhaustive matching, incremental mapping.

    Returns the result dict, or (dict, largest model or None) with `return_model`."""
    names = sorted(p.name for p in image_dir.iterdir() if p.suffix.lower() in (".jpg", ".png", ".jpeg"))
    # one shared camera for same-size frames; photos of different sizes one camera each (as reconstruct.py does)
    sizes = {(b.width, b.height) for b in (pycolmap.Bitmap.read(str(image_dir / n), False) for n in names)}
    camera_mode = pycolmap.CameraMode.SINGLE if len(sizes) == 1 else pycolmap.CameraMode.PER_IMAGE
    with tempfile.TemporaryDirectory() as work:
        db = os.path.join(work, "database.db")
        t0 = time.time()
        eo = pycolmap.FeatureExtractionOptions()
        if max_features:  # None: COLMAP's default
            eo.sift.max_num_features = max_features
        eo.num_threads = -1
        ro = pycolmap.ImageReaderOptions(camera_model="SIMPLE_RADIAL")
        pycolmap.extract_features(db, str(image_dir), image_names=names, camera_mode=camera_mode,
                                  reader_options=ro, extraction_options=eo, device=pycolmap.Device.cpu)
        t_extract = time.time() - t0
        t0 = time.time()
        if matcher == "sequential":
            pycolmap.match_sequential(db, pairing_options=pycolmap.SequentialPairingOptions(overlap=10), device=pycolmap.Device.cpu)
        else:
            pycolmap.match_exhaustive(db, device=pycolmap.Device.cpu)
        t_match = time.time() - t0
        t0 = time.time()
        out = os.path.join(work, "sparse")
        os.makedirs(out)
        models = pycolmap.incremental_mapping(db, str(image_dir), out, pycolmap.IncrementalPipelineOptions(num_threads=-1, random_seed=0))
        t_map = time.time() - t0
    res = {"case": f"SIFT {matcher}: {image_dir.parent.name}/{image_dir.name}", "images": len(names),
           "time_s": t_extract + t_match + t_map, "time_split": f"extract {t_extract:.0f} s, match {t_match:.0f} s, map {t_map:.0f} s"}
    if not models:
        res["registered"] = f"0/{len(names)}"
        return (res, None) if return_model else res
    rec = max(models.values(), key=lambda r: r.num_reg_images())
    rec.update_point_3d_errors()
    res.update(registered=f"{rec.num_reg_images()}/{len(names)}", points=rec.num_points3D(),
               reproj_px=rec.compute_mean_reprojection_error())
    if ref:
        res.update(_pose_errors(rec, names, ref))
    return (res, rec) if return_model else res


def lk_tracks(image_dir: Path) -> Tracks:
    """Classical tracks from the project's own Lucas-Kanade provider (SIFT + grid queries on spread frames)."""
    frames, names = read_frames(image_dir)
    tracks = LucasKanadeProvider()(frames, select_queries(frames))
    keep = tracks.visible.sum(0) >= 3
    out = tracks.select(tracks=keep)
    out.image_names = names
    return out


def bench_lk_route(image_dir: Path, ref: dict | None) -> dict:
    t0 = time.time()
    tracks = lk_tracks(image_dir)
    t_track = time.time() - t0
    t0 = time.time()
    rec = reconstruct(tracks)
    t_rec = time.time() - t0
    labels = geometric_filter(rec, tracks)
    vis = tracks.visible
    rec.update_point_3d_errors()
    res = {"case": f"LK tracks -> reconstruct: {image_dir.parent.name}", "images": tracks.num_frames,
           "time_s": t_track + t_rec, "time_split": f"track {t_track:.0f} s, reconstruct {t_rec:.0f} s",
           "registered": f"{rec.num_reg_images()}/{tracks.num_frames}", "points": rec.num_points3D(),
           "reproj_px": rec.compute_mean_reprojection_error(), "tracks": tracks.num_tracks,
           "verified": (labels[vis] == 1).mean(), "rejected": (labels[vis] == -1).mean()}
    if ref:
        res.update(_pose_errors(rec, tracks.names(), ref))
    return res


def _fmt(v):
    return f"{v:.3f}" if isinstance(v, (float, np.floating)) else str(v)


def split_extra(argv: list) -> tuple[list, list]:
    """(this script's arguments, the ones after `--` that go to every reconstruct.py call)."""
    if "--" not in argv:
        return list(argv), []
    k = argv.index("--")
    return list(argv[:k]), list(argv[k + 1:])


REPEAT_KEYS = ["time_runs", "time_ratios", "same_model", "varied"]  # the columns `repeated_rows` adds


def add_repeat_option(ap: argparse.ArgumentParser) -> None:
    """--repeat N (at least 1) for a benchmark that runs ours and COLMAP in turn (`run_repeated`)."""
    def at_least_one(text: str) -> int:
        n = int(text)
        if n < 1:
            raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
        return n

    ap.add_argument("--repeat", type=at_least_one, default=1, metavar="N",
                    help="run each case N times, ours and COLMAP in turn; report medians (default 1)")


def run_repeated(bench: Callable[[Path], list], work: Path, repeat: int, accuracy_keys: tuple) -> list:
    """bench(folder) -> rows, run `repeat` times in turn, each in its own folder under `work` -> its rows, merged by
    `repeated_rows` when repeat > 1 (so each time ratio compares runs taken side by side)."""
    runs = []
    for i in range(repeat):
        (work / f"run{i}").mkdir(exist_ok=True)
        runs.append(bench(work / f"run{i}"))
    return runs[0] if repeat == 1 else repeated_rows(runs, accuracy_keys)


def repeated_rows(runs: list, accuracy_keys: tuple) -> list:
    """The same rows from N runs taken in turn (ours, COLMAP, ours, ...) -> the first run's rows, with time_s the
    median, time_ratio the median of the N side-by-side ratios, the runs' times and ratios, `same_model`: every
    run gave the same values of `accuracy_keys`, and else `varied`: each differing key's values, run by run.

    Why: this host's speed drifts by up to 30 % within an hour, so one run's ratio near a bar lands on either side."""
    rows = runs[0]
    for k, row in enumerate(rows):
        same = [r[k] for r in runs]
        times = [r["time_s"] for r in same]
        row["time_s"], row["time_runs"] = float(np.median(times)), [round(t, 2) for t in times]
        ratios = [r["time_ratio"] for r in same if "time_ratio" in r]
        if ratios:
            row["time_ratio"], row["time_ratios"] = float(np.median(ratios)), [round(q, 3) for q in ratios]
        varied = {a: [_round(r.get(a)) for r in same] for a in accuracy_keys if any(r.get(a) != row.get(a) for r in same)}
        row["same_model"] = not varied
        if varied:
            row["varied"] = varied
    return rows


def _round(v):
    return round(v, 5) if isinstance(v, float) else v


def _table(rows: list, keys: list) -> None:
    if not rows:
        return
    print("\n| case | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for r in rows:
        print(f"| {r['case']} | " + " | ".join(_fmt(r.get(k, "")) for k in keys) + " |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared data folder (default: ../shared/data)")
    ap.add_argument("--sizes", default="30x500,30x1500,100x500,100x1500", help="synthetic frames x tracks")
    ap.add_argument("--global-mapper", action="store_true", help="also run the synthetic cases with GLOMAP")
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    results = []
    for size in args.sizes.split(","):
        T, N = map(int, size.split("x"))
        for mapper in ["incremental"] + (["global"] if args.global_mapper else []):
            results.append(bench_synthetic(T, N, mapper))
            logger.info("%s", results[-1])
    if not args.skip_real:
        data = args.data.resolve()
        fox = data / "ngp_fox"
        ref = reference_poses(fox / "transforms.json") if (fox / "transforms.json").exists() else None
        if (fox / "images").is_dir():
            results.append(bench_lk_route(fox / "images", ref))
            logger.info("%s", results[-1])
            results.append(bench_colmap_sift(fox / "images", "sequential", ref))
            logger.info("%s", results[-1])
        kitchen = data / "vggsfm_examples" / "kitchen" / "images"
        if kitchen.is_dir():
            results.append(bench_colmap_sift(kitchen, "sequential"))
            logger.info("%s", results[-1])
    synth = [r for r in results if r["case"].startswith("synthetic")]
    real = [r for r in results if not r["case"].startswith("synthetic")]
    _table(synth, ["registered", "time_s", "rot_mean_deg", "rot_max_deg", "reproj_px", "points", "good_verified",
                   "outlier_not_verified", "moving_verified", "moving_rejected"])
    _table(real, ["images", "registered", "time_s", "time_split", "reproj_px", "points", "rot_median_deg",
                  "tdir_median_deg", "tracks", "verified", "rejected"])
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, load average "
          f"{os.getloadavg()[0]:.1f}; pycolmap {pycolmap.__version__}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
