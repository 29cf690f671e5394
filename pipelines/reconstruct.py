"""Video or image folder in, COLMAP model out:

    python pipelines/reconstruct.py INPUT -o OUTDIR [--tracker cotracker3|cotracker3-online|lk] [--checkpoint PATH]
        [--device cpu|cuda] [--max-frames N] [--stride K] [--max-side PX] [--camera-model NAME]
        [--intrinsics fx,fy,cx,cy] [--mask-dir DIR] [--mapper incremental|global] [--cycle N] [--overwrite]
    python pipelines/reconstruct.py --demo [-o OUTDIR]     # synthetic static scene, compared with its true cameras

Writes OUTDIR/{images/, sparse/0/, points.ply, tracks.npz, transforms.json, report.json, tracks.mp4}.
Masks (--mask-dir): one per frame, named like the frame (`frame_000000.png` for videos) or COLMAP-style
(`<image name>.png`), at the input size; nonzero pixels are kept (COLMAP's convention), zero pixels get no
queries and observations landing on them are dropped. --intrinsics are in input-image pixels with COLMAP's
convention (principal point measured from the image corner) and are kept fixed.
Bad input exits with status 2 and one line `error: ...`; nothing is written to OUTDIR then.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

import numpy as np  # noqa: E402

from cotracker3 import CheckpointError  # noqa: E402
from sfm_tracks import ReconstructionError, VideoError  # noqa: E402
from sfm_tracks.pipeline import run  # noqa: E402
from sfm_tracks.providers import TRACKERS, add_fast_flag, make_provider, tracker_mode  # noqa: E402

logger = logging.getLogger("reconstruct")

DEMO = {"seed": 0, "num_frames": 24, "size": 256, "camera_mode": "orbit"}  # orbit: parallax for self-calibration


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", nargs="?", type=Path, help="video file or image folder (none: --demo)")
    ap.add_argument("-o", "--output", type=Path, help="output folder (demo default: ./demo_reconstruction)")
    ap.add_argument("--demo", action="store_true", help="reconstruct a synthetic static scene rendered on the fly")
    ap.add_argument("--tracker", choices=TRACKERS, default="cotracker3")
    ap.add_argument("--checkpoint", default="default", help="weights file, or 'default' (official from the torch hub cache, else ours)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    add_fast_flag(ap)
    ap.add_argument("--max-frames", type=positive_int, help="use at most N frames (after --stride)")
    ap.add_argument("--stride", type=positive_int, default=1, help="use every K-th frame")
    ap.add_argument("--max-side", type=positive_int, default=1024, help="downscale frames to this long side for tracking and the model")
    ap.add_argument("--camera-model", default=None, help="SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL (default), RADIAL, OPENCV")
    ap.add_argument("--intrinsics", help="fx,fy,cx,cy (or f,cx,cy) in input pixels, COLMAP convention; kept fixed")
    ap.add_argument("--mask-dir", type=Path, help="per-frame masks, nonzero = keep")
    ap.add_argument("--mapper", choices=("incremental", "global"), default="incremental")
    ap.add_argument("--cycle", type=int, default=0, metavar="N", help="forward-backward cycle check with N anchors per side (0: off)")
    ap.add_argument("--points-per-frame", type=positive_int, default=512, help="at most N queries per query frame")
    ap.add_argument("--window", type=positive_int, default=48, help="frames per tracker call (long videos are tracked in windows)")
    ap.add_argument("--overwrite", action="store_true", help="replace a non-empty OUTDIR")
    ap.add_argument("--no-video", action="store_true", help="skip tracks.mp4")
    ap.add_argument("-q", "--quiet", action="store_true", help="only warnings and the summary")
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
        "filters": {"cycle_anchors": args.cycle},
        "camera": {"model": model.upper(), "intrinsics": intrinsics},
        "mapping": {"mapper": args.mapper},
        "output": {"video": not args.no_video},
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
    from sfm_tracks.metrics import aligned_pose_errors, relative_pose_errors

    by_name = {im.name: im.cam_from_world().matrix() for im in rec.images.values() if im.has_pose}
    est = np.array([by_name.get(n, np.full((3, 4), np.nan)) for n in names])
    rel = relative_pose_errors(est, gt)
    ab = aligned_pose_errors(est, gt)
    return {"registered": f"{ab['num_registered']}/{len(names)}",
            "rel_rotation_deg_mean": float(rel["rotation_deg"].mean()), "rel_rotation_deg_max": float(rel["rotation_deg"].max()),
            "rotation_deg_mean": float(ab["rotation_deg"].mean()), "rotation_deg_max": float(ab["rotation_deg"].max()),
            "center_rel_mean": float(ab["center_rel"].mean()), "center_rel_max": float(ab["center_rel"].max())}


def pick_demo_tracker(args):
    """The best tracker available: CoTracker3 with official or explicit weights, else Lucas-Kanade.

    The small weights shipped in cotracker3/weights track worse than Lucas-Kanade (their model card),
    so the demo does not use them unless asked with --checkpoint.
    """
    if args.tracker == "lk":
        return None
    from cotracker3.checkpoint import EMBEDDED_DIR, resolve_checkpoint

    try:
        path, source = resolve_checkpoint("online" if args.tracker.endswith("online") else "offline", args.checkpoint or "default")
        if args.checkpoint in (None, "default") and path.parent == EMBEDDED_DIR:
            print(f"note: only {source} found; they track worse than Lucas-Kanade (cotracker3/weights/MODEL_CARD.md), "
                  "so the demo uses --tracker lk (put the official scaled_offline.pth in the torch hub cache for CoTracker3)")
            args.tracker = "lk"
            return None
        return make_provider(args.tracker, args.checkpoint, args.device, tracker_mode(args.fast, args.device))
    except CheckpointError as e:
        print(f"note: {e}; the demo falls back to the Lucas-Kanade tracker (--tracker lk)")
        args.tracker = "lk"
        return None


def summary(report: dict, out_dir: Path) -> str:
    t = report["timings_s"]
    return (f"{out_dir}: {report['frames_registered']}/{report['frames_total']} frames registered, {report['points3d']} points, "
            f"reprojection error {report['mean_reprojection_error_px']:.2f} px, mean track length {report['mean_track_length']:.1f}; "
            f"tracker {report['tracker']} ({report['checkpoint']}); {report['total_s']:.0f} s "
            f"(" + ", ".join(f"{k} {v:.1f}" for k, v in t.items()) + ")")


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(asctime)s %(name)s %(message)s")
    demo = args.demo or args.input is None
    out_dir = args.output or (Path("demo_reconstruction") if demo else None)
    if out_dir is None:
        print("error: -o OUTDIR is required", file=sys.stderr)
        return 2
    try:
        if args.device == "cuda" and args.tracker != "lk":
            import torch

            if not torch.cuda.is_available():
                raise VideoError("--device cuda: no CUDA device available to torch")
        provider = None
        if demo:
            provider = pick_demo_tracker(args)
            frames, names, gt, K = demo_scene()
            source = (frames, names)
        else:
            source = args.input
        report = run(source, out_dir, config(args), mask_dir=args.mask_dir, provider=provider, overwrite=args.overwrite)
    except (VideoError, CheckpointError, ReconstructionError, FileNotFoundError, NotADirectoryError, PermissionError) as e:
        msg = " ".join(str(e).split())  # one line, whatever the source message looks like
        print(f"error: {msg}", file=sys.stderr)
        return 2
    print(summary(report, out_dir))
    if demo:
        acc = pose_accuracy(report["model"], names, gt)
        print(f"demo vs ground truth: {acc['registered']} registered; relative rotation error mean {acc['rel_rotation_deg_mean']:.3f} deg "
              f"(max {acc['rel_rotation_deg_max']:.3f}); rotation error after alignment mean {acc['rotation_deg_mean']:.3f} deg; "
              f"camera centre error after Sim(3) alignment mean {100 * acc['center_rel_mean']:.2f} % of the camera path size "
              f"(max {100 * acc['center_rel_max']:.2f} %); focal {report['camera']['params'][0]:.1f} px (true {K[0, 0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
