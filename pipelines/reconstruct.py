"""Video or image folder in, COLMAP model out:

    python pipelines/reconstruct.py INPUT -o OUTDIR [--tracker auto|cotracker3|cotracker3-online|lk] [--checkpoint PATH]
        [--device cpu|cuda] [--max-frames N] [--stride K] [--max-side PX] [--camera-model NAME]
        [--intrinsics fx,fy,cx,cy] [--mask-dir DIR] [--mapper incremental|global] [--matches auto|off|all] [--no-keyframes]
        [--no-view-check]
        [--features accurate|fast|colmap|accurate-dsp] [--cycle N] [--no-refine] [--frames N | --fps F] [--no-undistort]
        [--overwrite]
    python pipelines/reconstruct.py --demo [-o OUTDIR]     # synthetic static scene, compared with its true cameras

Writes OUTDIR/{images/, sparse/0/, points.ply, tracks.npz, transforms.json, report.json, tracks.mp4}, plus masks/
with --mask-dir, and OUTDIR/undistorted/ (PINHOLE cameras, the layout 3DGS's convert.py makes) when the model has
lens distortion; the summary names the folder for each trainer (3DGS -s, nerfstudio --data, COLMAP).
--frames N / --fps F: the sharpest decoded frame of each of N slots (or of each 1/F s) is kept, near-duplicates
(little motion in a quick Lucas-Kanade pass over all frames) skipped, and only the kept frames are tracked and
enter the model and the exports; report.json says why each other frame was dropped.
Masks (--mask-dir): one per frame, named like the frame (`frame_000000.png` for videos) or COLMAP-style
(`<image name>.png`), at the input size; nonzero pixels are kept (COLMAP's convention), zero pixels get no
queries and observations landing on them are dropped. --intrinsics are in input-image pixels with COLMAP's
convention (principal point measured from the image corner) and are kept fixed.
A folder of images of different sizes (a photo collection) is tracked on a common canvas, each image scaled to
--max-side at its top-left; every image then gets its own camera (COLMAP's per-image camera mode), images/
holds each at its own size, and --intrinsics (one camera) are refused.
Bad input exits with status 2 and one line `error: ...`; nothing is written to OUTDIR then. OUTDIR must not
be, contain or lie inside an input (sfm_tracks/outdir.py says what may be written, replaced and cleaned up).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

import numpy as np  # noqa: E402

from cotracker3 import CheckpointError  # noqa: E402
from pipelines.cli import ArgumentParser, add_fast_flag, fail, positive_float, positive_int  # noqa: E402
from sfm_tracks import ReconstructionError, VideoError  # noqa: E402
from sfm_tracks.colmap.feature_matches import FEATURE_MODES, MATCH_MODES  # noqa: E402
from sfm_tracks.outputs import trainers_note  # noqa: E402
from sfm_tracks.pipeline import run  # noqa: E402
from sfm_tracks.progress import show_progress  # noqa: E402
from sfm_tracks.tracking.choice import TRACKERS, tracker_mode  # noqa: E402

logger = logging.getLogger("reconstruct")

DEMO = {"seed": 0, "num_frames": 24, "size": 256, "camera_mode": "orbit"}  # orbit: parallax for self-calibration


def parse_args(argv=None) -> argparse.Namespace:
    ap = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", nargs="?", type=Path, help="video file or image folder (none: --demo)")
    ap.add_argument("-o", "--output", type=Path, help="output folder (demo default: ./demo_reconstruction)")
    ap.add_argument("--demo", action="store_true", help="reconstruct a synthetic static scene rendered on the fly")
    ap.add_argument("--tracker", choices=TRACKERS, default="auto",
                    help="auto (default): CoTracker3 with official or explicit weights, else the best tracker shipped "
                         "(decided by the weights' stored score against Lucas-Kanade; today Lucas-Kanade)")
    ap.add_argument("--checkpoint", default="default", help="weights file, or 'default' (official from the torch hub cache, else ours)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    add_fast_flag(ap)
    ap.add_argument("--max-frames", type=positive_int, help="use at most N frames (after --stride)")
    ap.add_argument("--stride", type=positive_int, default=1, help="use every K-th frame")
    pick = ap.add_mutually_exclusive_group()
    pick.add_argument("--frames", type=positive_int, metavar="N",
                      help="keep about N frames for the model: the sharpest of each of N equal slots, near-duplicates skipped")
    pick.add_argument("--fps", type=positive_float, metavar="F",
                      help="video: keep the sharpest frame of each 1/F s slot, near-duplicates skipped (above the video's rate: every frame)")
    ap.add_argument("--max-side", type=positive_int, default=1024, help="downscale frames to this long side for tracking and the model")
    ap.add_argument("--camera-model", default=None, help="SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL (default), RADIAL, OPENCV")
    ap.add_argument("--intrinsics", help="fx,fy,cx,cy (or f,cx,cy) in input pixels, COLMAP convention; kept fixed")
    ap.add_argument("--mask-dir", type=Path, help="per-frame masks, nonzero = keep")
    ap.add_argument("--mapper", choices=("incremental", "global"), default="incremental")
    ap.add_argument("--matches", choices=MATCH_MODES, default="auto",
                    help="SIFT feature matches next to the tracks: auto (image sets, weak links between frames, loop closure), "
                         "off (tracks only) or all (every scheduled pair plus loop closure)")
    ap.add_argument("--no-keyframes", action="store_true",
                    help="map every video frame (default: map keyframes chosen by parallax and track overlap, register the rest by absolute pose)")
    ap.add_argument("--no-view-check", action="store_true",
                    help="keep frames the model places at other frames' viewpoints without seeing their points, or at "
                         "the centre of a frame they have parallax with (default: deregister them, report.json says "
                         "'conflicting views' or 'no parallax in the model')")
    ap.add_argument("--features", choices=FEATURE_MODES, default="accurate",
                    help="SIFT settings where SIFT matches run: accurate (default; upsampled first octave on every frame, "
                         "8192 features, peak threshold 0.003), fast (no upsampling on frames >= 800 px, 4096 features: "
                         "faster, less accurate poses), colmap (COLMAP's defaults exactly, peak threshold 0.0067), "
                         "accurate-dsp (accurate plus domain-size pooling); BENCHMARKS.md has the figures")
    ap.add_argument("--cycle", type=int, default=0, metavar="N", help="forward-backward cycle check with N anchors per side (0: off)")
    ap.add_argument("--refine", action=argparse.BooleanOptionalAction, default=None,
                    help="sub-pixel refinement of every observation against its track's query patch, with guards that mark "
                         "doubtful observations unreliable (default: on for videos, off for image folders, where it lowered pose "
                         "accuracy; sfm_tracks/tracking/refine.py); --no-refine: raw tracker output")
    ap.add_argument("--points-per-frame", type=positive_int, default=512, help="at most N queries per query frame")
    ap.add_argument("--window", type=positive_int, default=48, help="frames per tracker call (long videos are tracked in windows)")
    ap.add_argument("--overwrite", action="store_true", help="replace OUTDIR when it holds a previous result of ours (never any other folder)")
    ap.add_argument("--no-video", action="store_true", help="skip tracks.mp4")
    ap.add_argument("--no-undistort", action="store_true", help="skip OUTDIR/undistorted/ (the pinhole copy for 3DGS-style trainers)")
    ap.add_argument("-q", "--quiet", action="store_true", help="only warnings and the summary (no log lines, no progress bars)")
    return ap.parse_args(argv)


def config(args) -> dict:
    intrinsics = None
    if args.intrinsics:
        try:
            intrinsics = [float(v) for v in args.intrinsics.split(",")]
        except ValueError:
            raise VideoError(f"--intrinsics must be comma-separated numbers, got {args.intrinsics!r}") from None
    model = args.camera_model or ("PINHOLE" if intrinsics else "SIMPLE_RADIAL")
    return {
        "input": {"max_frames": args.max_frames, "stride": args.stride, "max_side": args.max_side},
        "queries": {"max_points_per_frame": args.points_per_frame},
        "tracker": {"name": args.tracker, "checkpoint": args.checkpoint, "device": args.device, "window": args.window,
                    "mode": tracker_mode(args.fast, args.device)},
        "refine": {"enabled": "auto" if args.refine is None else args.refine},
        "filters": {"cycle_anchors": args.cycle},
        "camera": {"model": model.upper(), "intrinsics": intrinsics},
        "mapping": {"mapper": args.mapper, "matches": args.matches, "keyframes": not args.no_keyframes,
                    "features": args.features, "check_views": not args.no_view_check},
        "select": {"frames": args.frames, "fps": args.fps},
        "output": {"video": not args.no_video, "undistort": not args.no_undistort},
    }


def demo_scene():
    """A static synthetic room with a moving camera: frames, names and the true cameras."""
    from cotracker3.data.synthetic import generate_clip

    clip = generate_clip(DEMO["seed"], num_frames=DEMO["num_frames"], height=DEMO["size"], width=DEMO["size"], num_tracks=8, dynamic=False,
                         camera_mode=DEMO["camera_mode"])
    names = [f"frame_{t:06d}.png" for t in range(DEMO["num_frames"])]
    return clip["video"], names, clip["cam_from_world"].astype(np.float64), clip["intrinsics"]


def pose_accuracy(rec, names: list, gt: np.ndarray) -> dict:
    """Pose errors of a model against true (T, 3, 4) cam_from_world matched by image name."""
    from sfm_tracks.colmap.metrics import aligned_pose_errors, relative_pose_errors

    by_name = {im.name: im.cam_from_world().matrix() for im in rec.images.values() if im.has_pose}
    est = np.array([by_name.get(n, np.full((3, 4), np.nan)) for n in names])
    rel = relative_pose_errors(est, gt)
    ab = aligned_pose_errors(est, gt)
    return {"registered": f"{ab['num_registered']}/{len(names)}",
            "rel_rotation_deg_mean": float(rel["rotation_deg"].mean()), "rel_rotation_deg_max": float(rel["rotation_deg"].max()),
            "rotation_deg_mean": float(ab["rotation_deg"].mean()), "rotation_deg_max": float(ab["rotation_deg"].max()),
            "center_rel_mean": float(ab["center_rel"].mean()), "center_rel_max": float(ab["center_rel"].max())}


def summary(report: dict, out_dir: Path) -> str:
    t = report["timings_s"]
    return (f"{out_dir}: {report['frames_registered']}/{report['frames_total']} frames registered, {report['points3d']} points, "
            f"reprojection error {report['mean_reprojection_error_px']:.2f} px, mean track length {report['mean_track_length']:.1f}; "
            f"tracker {report['tracker']} ({report['checkpoint']}; {report['tracker_choice']}); {report['total_s']:.0f} s "
            f"(" + ", ".join(f"{k} {v:.1f}" for k, v in t.items()) + ")" + matches_note(report.get("matches"))
            + selection_note(report.get("frame_selection")) + "; give trainers: " + trainers_note(report["trainers"], report["undistorted"]))


def selection_note(sel) -> str:
    """What --frames / --fps did, for the summary line."""
    if not sel or sel["num_kept"] == sel["num_decoded"] and not sel["rule"].startswith("--"):
        return ""
    return f"; frames: {sel['num_kept']} of {sel['num_decoded']} kept ({sel['rule']})"


def matches_note(m) -> str:
    """What --matches did, for the summary line."""
    if not m:
        return ""
    if not m["enabled"]:
        return f"; feature matches: none ({m['reason']})"
    sift = m.get("sift") or {}
    return (f"; feature matches: SIFT (first octave {sift.get('first_octave')}, <= {sift.get('max_num_features')} features) "
            f"on {m['sift_pairs']} pairs of {m['sift_frames']} frames ({m['reason']})")


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(asctime)s %(name)s %(message)s")
    shown = show_progress(not args.quiet)
    try:
        return _main(args)
    finally:  # -q silences this call only: a caller that runs main and then other steps gets its bars back
        show_progress(shown)


def _main(args) -> int:
    demo = args.demo or args.input is None
    out_dir = args.output or (Path("demo_reconstruction") if demo else None)
    if out_dir is None:
        return fail("-o OUTDIR is required")
    try:
        if args.device == "cuda" and args.tracker != "lk":
            import torch

            if not torch.cuda.is_available():
                raise VideoError("--device cuda: no CUDA device available to torch")
        if demo:
            frames, names, gt, K = demo_scene()
            source = (frames, names)
        else:
            source = args.input
        report = run(source, out_dir, config(args), mask_dir=args.mask_dir, overwrite=args.overwrite)
    except (VideoError, CheckpointError, ReconstructionError, OSError) as e:  # OSError: unreadable input, full or read-only disk
        return fail(e)
    except KeyboardInterrupt:  # the work folder and the parents made for -o are already gone (outdir.staging)
        print("error: interrupted; nothing was written", file=sys.stderr)
        return 130
    print(summary(report, out_dir))
    if demo:
        kept = report["frame_selection"]["kept"]  # --frames: judge the frames that entered the model
        acc = pose_accuracy(report["model"], kept, gt[[names.index(n) for n in kept]])
        print(f"demo vs ground truth: {acc['registered']} registered; relative rotation error mean {acc['rel_rotation_deg_mean']:.3f} deg "
              f"(max {acc['rel_rotation_deg_max']:.3f}); rotation error after alignment mean {acc['rotation_deg_mean']:.3f} deg; "
              f"camera centre error after Sim(3) alignment mean {100 * acc['center_rel_mean']:.2f} % of the camera path size "
              f"(max {100 * acc['center_rel_max']:.2f} %); focal {report['camera']['params'][0]:.1f} px (true {K[0, 0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
