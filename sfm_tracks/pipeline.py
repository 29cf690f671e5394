"""Video (or image folder) -> tracks -> COLMAP model, as small steps composed by `run` with a plain config dict.

Steps: load frames (`inputs`: uint8, resized to `max_side`, kept in a memory-mapped file so a 1000-frame video
never sits in RAM; photos of different sizes on a padded canvas) -> select queries (SIFT + grid on frames
spread over the video) -> track (any TrackProvider,
always through `windowed`, so a tracker only ever sees `window` frames) -> refine (every provider's tracks, one
code path: `tracking.refine`) -> filters -> `reconstruct` (plus
SIFT matches where tracks do not connect the frames, `mapping.matches`) ->
outputs (`export`, images and masks, and OUT/undistorted for trainers that take only pinhole cameras,
`colmap.undistort`). With `select.frames` / `select.fps`, `selection` first picks the sharp, spread-out
frames (sharpness scored while decoding) and only those go on to queries, tracking and the model.
All outputs are written into a staging folder next to OUTDIR and renamed into place at the end, so a
failure never leaves a half-written model behind; `outdir` says what may be written or replaced and how a
killed run's leftovers are cleaned.
"""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import numpy as np
import pycolmap

from .colmap.cameras import MODELS, CameraSpec
from .colmap.degeneracy import FORWARD_MAX_DEG, forward_motion_deg
from .colmap.export import export, replace_dir
from .colmap.mapping import reconstruct
from .colmap.undistort import pinhole_cleanup, undistort_if_distorted
from .errors import ReconstructionError
from .inputs import PADDING_MARGIN_PX, exclude_padding, load_frames, load_masks, mixed_sizes, take_frames
from .outdir import InputError, check_overlap, check_replaceable, staging
from .outputs import trainer_folders, write_frame_outputs, write_masks
from .progress import progress
from .selection import SELECT_CONF, choose_frames, spread
from .tracking.filters import apply_filters, cycle_consistency, low_confidence, off_padding, stuck_at_border, too_short
from .tracking.choice import make_provider, tracker_key, tracker_reason
from .tracking.providers import LucasKanadeProvider, TrackProvider
from .tracking.refine import DEFAULT_CONF as REFINE_CONF, refine_tracks
from .tracking.queries import explain_no_tracks, flat_frames, query_rows
from .tracking.windowed import WindowedProvider, window_bounds
from .tracks import Tracks
from .video import IMAGE_EXTENSIONS, video_rate

logger = logging.getLogger(__name__)


DEFAULT_CONF = {
    "input": {"max_frames": None, "stride": 1, "max_side": 1024},
    "queries": {"query_every": 8, "min_query_frames": 4, "max_points_per_frame": 512, "method": "sift+grid", "min_distance": 8.0},
    "tracker": {"name": "auto", "checkpoint": "default", "device": "cpu", "mode": "exact", "window": 48, "overlap": 8, "max_queries": 2048,
                "max_live": 4096, "min_spacing": 8.0},  # windowed.py: crowded queries dropped above 4096 live tracks
    # sub-pixel refinement of every provider's tracks (tracking/refine.py); enabled: "auto" refines videos and not
    # image folders (on the photo sets with true cameras it lowered AUC@5: temple 0.590 -> 0.570; BENCHMARKS.md);
    # tracks on flat or edge-like patches are hidden where 200 textured observations a frame remain (forward:100:
    # rotation error 0.073 -> 0.018 deg)
    "refine": dict(REFINE_CONF, enabled="auto", hide_low_texture="auto"),
    "filters": {
        "cycle_anchors": 0,  # >0: forward-backward cycle check with that many anchors per side (costs ~1 extra tracking pass)
        "cycle_threshold_px": 3.0,
        "min_conf": {"lk": 0.05, "cotracker3": 0.5, "cotracker3-online": 0.5},
        "border_margin_px": 1.0,
        "border_min_frames": 3,
        "min_length": 3,
        "mask_observations": True,  # with masks: also drop observations that land on excluded pixels
    },
    "camera": {"model": "SIMPLE_RADIAL", "intrinsics": None},  # intrinsics in input-image pixels, COLMAP convention
    "mapping": {"mapper": "incremental", "matches": "auto", "keyframes": True, "features": "accurate", "check_views": True},
    # matches: SIFT next to the tracks, auto | off | all; keyframes: a video's keyframes are mapped, the other frames
    # registered by absolute pose (colmap/keyframes.py); features: SIFT settings, accurate | fast | colmap | accurate-dsp
    # (feature_matches); check_views: frames laid at others' viewpoints (colmap/consistency.py, colmap/colocated.py)
    "select": SELECT_CONF,  # frame selection: frames (a target count) or fps (slots of 1/fps s); None: every frame
    "output": {"video": True, "fps": 10.0, "undistort": True},  # undistort: OUT/undistorted/ when the model has distortion
}


MIN_SIDE = 32  # px per side at tracking resolution: below it queries and LK windows do not fit


def check_conf(conf: dict) -> None:
    """Refuse settings that would fail deep inside a step (InputError naming the CLI option)."""
    tc, fc = conf["tracker"], conf["filters"]
    if tc["window"] < 2:
        raise InputError(f"--window must be >= 2 frames, got {tc['window']}")
    if fc["cycle_anchors"] < 0:
        raise InputError(f"--cycle must be >= 0 (0: off), got {fc['cycle_anchors']}")
    if (conf["input"]["max_side"] or MIN_SIDE) < MIN_SIDE:
        raise InputError(f"--max-side must be >= {MIN_SIDE} px, got {conf['input']['max_side']}")
    sc = conf["select"]
    if sc["frames"] is not None and sc["fps"] is not None:
        raise InputError("--frames and --fps both choose frames; give one of them")
    if sc["frames"] is not None and (not isinstance(sc["frames"], (int, np.integer)) or sc["frames"] < 1):
        raise InputError(f"--frames must be an integer >= 1, got {sc['frames']}")
    if sc["fps"] is not None and not (np.isfinite(sc["fps"]) and sc["fps"] > 0):
        raise InputError(f"--fps must be a finite number > 0, got {sc['fps']}")


def source_rate(source, conf: dict) -> Optional[float]:
    """The video's frame rate when --fps needs it (InputError for image folders and in-memory frames)."""
    if conf["select"]["fps"] is None:
        return None
    if isinstance(source, tuple) or Path(source).is_dir() or Path(source).suffix.lower() in IMAGE_EXTENSIONS:
        raise InputError("--fps needs a video file (image folders and in-memory frames have no frame rate); use --frames N")
    if not Path(source).is_file():
        raise InputError(f"no such file or folder: {source}")
    rate = video_rate(source)
    if not rate:
        raise InputError(f"--fps: {source} states no frame rate; use --frames N")
    return rate


def merge_conf(base: dict, override: Optional[dict]) -> dict:
    """Deep copy of `base` updated with `override` (nested dicts merged, unknown keys rejected)."""
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        if k not in out:
            raise KeyError(f"unknown config key {k!r}; valid: {sorted(out)}")
        out[k] = merge_conf(out[k], v) if isinstance(out[k], dict) and isinstance(v, dict) and k != "min_conf" else v
    return out


class Timer:
    """Wall time per named stage, in the order the stages ended; stages run beside others overlap them, so the
    run's time is `wall()`, not their sum."""

    def __init__(self):
        self.times: dict = {}
        self.start = time.time()

    def wall(self) -> float:
        return round(time.time() - self.start, 3)

    @contextlib.contextmanager
    def __call__(self, name: str):
        t0 = time.time()
        logger.debug("stage %s ...", name)
        try:
            yield
        finally:
            self.times[name] = round(self.times.get(name, 0.0) + time.time() - t0, 3)


# ---------------------------------------------------------------------------------------------- tracking

def checkpoint_source(provider: TrackProvider) -> str:
    return getattr(provider, "checkpoint_source", "none (classical tracker, no weights)")


def query_frames(num_frames: int, conf: dict) -> np.ndarray:
    """Indices of the frames that get queries: one every `query_every` (at least `min_query_frames`)."""
    return spread(num_frames, max(conf["min_query_frames"], int(np.ceil(num_frames / conf["query_every"]))))


def motion_tracks(frames, names: list, masks, conf: dict) -> Tracks:
    """Lucas-Kanade tracks over all decoded frames, only to measure motion for frame selection (cheap on CPU)."""
    queries = query_points(frames, conf["queries"], masks)
    tracks = track(LucasKanadeProvider(), frames, queries, conf["tracker"])
    tracks.image_names = names
    return tracks


def query_points(frames, conf: dict, masks=None) -> np.ndarray:
    """SIFT + grid queries on the frames of `query_frames`."""
    qf = query_frames(len(frames), conf)
    rows = query_rows(frames, qf, conf["method"], conf["max_points_per_frame"], conf["min_distance"], masks)
    return np.concatenate(list(progress(rows, total=len(qf), desc="queries", unit="frame", leave=False)))


def track(provider: TrackProvider, frames, queries: np.ndarray, conf: dict) -> Tracks:
    """Tracks of the queries over all frames, through windows of conf['window'] frames; queries dropped as crowded
    (conf['max_live']) are left out."""
    lengths = [e - s for s, e in window_bounds(len(frames), conf["window"], conf["overlap"])]
    total = sum(lengths) + sum(lengths[:-1])  # forward pass, then the backward carries (one call per window)
    with progress(desc=f"track ({provider.name})", unit="frame", total=total, leave=False) as bar:
        wp = WindowedProvider(provider, conf["window"], conf["overlap"], conf["max_queries"], bar,
                              {k: conf[k] for k in ("max_live", "min_spacing") if k in conf})
        return wp.kept(frames, queries)


def mask_filter(tracks: Tracks, masks) -> np.ndarray:
    """(T, N) keep-mask: observations on kept (True) mask pixels."""
    H, W = tracks.image_size
    keep = np.ones(tracks.visible.shape, bool)
    xi = np.clip(np.round(tracks.xy[..., 0]).astype(np.int64), 0, W - 1)
    yi = np.clip(np.round(tracks.xy[..., 1]).astype(np.int64), 0, H - 1)
    for t in range(tracks.num_frames):
        keep[t] = np.asarray(masks[t])[yi[t], xi[t]]
    return keep


def filter_tracks(tracks: Tracks, conf: dict, tracker: str, provider=None, frames=None, masks=None, tconf=None,
                  sizes=None) -> tuple:
    """Filtered Tracks and per-filter counts of rejected visible observations.

    sizes: (T, 2) each frame's own size when frames of different sizes share a padded canvas.
    """
    keep = {"low_confidence": low_confidence(tracks, conf["min_conf"].get(tracker, 0.5)),
            "stuck_at_border": stuck_at_border(tracks, conf["border_margin_px"], conf["border_min_frames"])}
    if sizes is not None:
        keep["padding"] = off_padding(tracks, sizes, PADDING_MARGIN_PX)
    if masks is not None and conf["mask_observations"]:
        keep["mask"] = mask_filter(tracks, masks)
    if conf["cycle_anchors"] and provider is not None:
        with progress(desc="cycle check", unit="frame", leave=False) as bar:
            wp = WindowedProvider(provider, tconf["window"], tconf["overlap"], tconf["max_queries"], bar)
            keep["cycle"] = cycle_consistency(wp, frames, tracks, conf["cycle_threshold_px"], conf["cycle_anchors"], tconf["max_queries"])
    stats = {k: int((tracks.visible & ~m).sum()) for k, m in keep.items()}
    out = apply_filters(tracks, *keep.values(), too_short(tracks, conf["min_length"]), min_visible=conf["min_length"])
    stats.update(tracks_in=tracks.num_tracks, tracks_out=out.num_tracks)
    return out, stats


# ---------------------------------------------------------------------------------------------- camera

def camera_spec(conf: dict, in_size: tuple, size: tuple) -> CameraSpec:
    """CameraSpec for the tracking resolution; user intrinsics (fx, fy, cx, cy or f, cx, cy, in input
    pixels, COLMAP convention) are scaled to it and kept fixed, distortion starts at 0."""
    model, K = conf["model"], conf["intrinsics"]
    if model not in MODELS:
        raise InputError(f"camera model {model!r} not supported; use one of {', '.join(MODELS)}")
    if K is None:
        return CameraSpec(model=model)
    K = [float(v) for v in K]
    if len(K) == 3:
        K = [K[0], K[0], K[1], K[2]]
    if len(K) != 4 or min(K[:2]) <= 0:
        raise InputError(f"intrinsics must be fx,fy,cx,cy (or f,cx,cy) with positive focal lengths, got {conf['intrinsics']}")
    sy, sx = size[0] / in_size[0], size[1] / in_size[1]
    fx, fy, cx, cy = K[0] * sx, K[1] * sy, K[2] * sx, K[3] * sy
    params = {"SIMPLE_PINHOLE": [(fx + fy) / 2, cx, cy], "PINHOLE": [fx, fy, cx, cy],
              "SIMPLE_RADIAL": [(fx + fy) / 2, cx, cy, 0.0], "RADIAL": [(fx + fy) / 2, cx, cy, 0.0, 0.0],
              "OPENCV": [fx, fy, cx, cy, 0.0, 0.0, 0.0, 0.0]}
    if model.startswith("SIMPLE") or model == "RADIAL":
        if abs(K[0] - K[1]) > 1e-3 * K[0]:
            raise InputError(f"{model} has one focal length but fx={K[0]} and fy={K[1]} differ; use PINHOLE or OPENCV")
    return CameraSpec(model=model, params=params[model])


# ---------------------------------------------------------------------------------------------- outputs

def camera_report(rec: pycolmap.Reconstruction, calibrated: bool = False) -> dict:
    """The shared camera (model, params), or with one camera per image: model and each image's size and params.
    An uncalibrated forward-moving camera also gets a warning: its translations carry the principal point's error."""
    def params(cam):
        return [round(float(p), 6) for p in cam.params]
    cams = rec.cameras
    first = cams[min(cams)]
    if len(cams) == 1:
        out = {"model": first.model_name, "params": params(first)}
        angle = forward_motion_deg(rec)
        if not calibrated and angle < FORWARD_MAX_DEG:
            out["warning"] = (f"forward motion (path {angle:.0f} deg off the viewing axis): translation directions are off by "
                              "the principal point's error (assumed at the image centre, which forward motion cannot correct, "
                              "about 1 deg per 1.7 % of the focal length); give --intrinsics for accurate poses")
            logger.warning("%s", out["warning"])
        return out
    per_image = {im.name: {"width": int(cams[im.camera_id].width), "height": int(cams[im.camera_id].height),
                           "params": params(cams[im.camera_id])} for im in sorted(rec.images.values(), key=lambda i: i.image_id)}
    return {"model": first.model_name, "num_cameras": len(cams), "per_image": per_image}


def model_stats(rec: pycolmap.Reconstruction, num_frames: int) -> dict:
    return {"frames_total": num_frames, "frames_registered": rec.num_reg_images(), "points3d": rec.num_points3D(),
            "mean_reprojection_error_px": round(float(rec.compute_mean_reprojection_error()), 4),
            "mean_track_length": round(float(rec.compute_mean_track_length()), 3)}


# ---------------------------------------------------------------------------------------------- run

def run(source, out_dir, conf: Optional[dict] = None, mask_dir=None, provider: Optional[TrackProvider] = None,
        overwrite: bool = False) -> dict:
    """The whole pipeline; returns the report (also written to OUTDIR/report.json) plus 'model' (pycolmap).

    source: video file / image folder path, or (frames (T, H, W, 3) uint8, names) in memory.
    provider: an already constructed TrackProvider (else built from conf['tracker'] before any frame is decoded).
    overwrite: replace OUTDIR when it holds a previous result of ours (never anything else, see `outdir`).
    """
    conf = merge_conf(DEFAULT_CONF, conf)
    check_conf(conf)
    conf["tracker"]["overlap"] = min(conf["tracker"]["overlap"], conf["tracker"]["window"] // 2)  # short windows
    out_dir = Path(out_dir).absolute()
    tc = conf["tracker"]
    explicit_ckpt = tc["checkpoint"] if provider is None and tc["checkpoint"] not in (None, "default") else None
    explicit_ckpt = explicit_ckpt if explicit_ckpt and Path(explicit_ckpt).is_file() else None
    check_overlap(out_dir, {"input": None if isinstance(source, tuple) else source, "mask folder": mask_dir, "checkpoint": explicit_ckpt})
    check_replaceable(out_dir, overwrite)
    rate = source_rate(source, conf)
    timer = Timer()
    with timer("load_tracker"):  # weights first: a bad checkpoint must not cost a full decode
        provider = provider or make_provider(tc["name"], tc["checkpoint"], tc["device"], tc["mode"])
    with staging(out_dir) as work:
        rec, report = _run_in(work, source, out_dir, conf, mask_dir, provider, timer, rate)
    report["model"] = rec
    return report


def _run_in(work: Path, source, out_dir: Path, conf: dict, mask_dir, provider: TrackProvider, timer: Timer,
            rate: Optional[float] = None) -> tuple:
    """The pipeline's steps inside the work folder; the finished result replaces out_dir -> (model, report)."""
    staging_out = work / "out"
    staging_out.mkdir()
    ic, tc, fc = conf["input"], conf["tracker"], conf["filters"]
    min_frames = max(2, fc["min_length"])
    with timer("read"):
        frames, names, in_sizes, sizes, scores = load_frames(source, work, ic["max_frames"], ic["stride"], ic["max_side"], min_frames,
                                                             f" (a track must be seen in >= {fc['min_length']} frames)",
                                                             conf["select"]["score_side"])
    size, in_size, small = frames.shape[1:3], in_sizes[0].tolist(), int(np.argmin(sizes.min(1)))
    padded = mixed_sizes(sizes)  # frames of different sizes share a canvas: its padding is not the scene
    if sizes[small].min() < MIN_SIDE:
        what = f"image {names[small]} is" if padded else "frames are"
        raise InputError(f"{what} {sizes[small][1]}x{sizes[small][0]} px at tracking resolution "
                         f"(input {in_sizes[small][1]}x{in_sizes[small][0]}, --max-side {ic['max_side']}); need >= {MIN_SIDE} px on each side")
    mixed = padded or mixed_sizes(in_sizes)  # the report then gives every frame's sizes
    if mixed and conf["camera"]["intrinsics"] is not None:
        raise InputError(f"--intrinsics describe one camera, but the {len(names)} images come in {len(np.unique(in_sizes, axis=0))} "
                         "sizes and each gets its own camera; leave --intrinsics out")
    spec = camera_spec(conf["camera"], in_size, size)
    logger.info("tracker: %s (%s)", provider.name, tracker_reason(provider))
    masks, mask_files = None, None
    if mask_dir is not None:
        with timer("masks"):
            masks = load_masks(mask_dir, names, in_sizes, sizes, size, work)
            mask_files = write_masks(work, masks, names, sizes)  # the user's masks, before padding is excluded
    if padded:  # no queries and no observations in the black padding around smaller frames
        masks = exclude_padding(masks, sizes, size, work)
    with timer("select"):
        kept, selection = choose_frames(names, scores, conf["select"], ic["stride"], rate, min_frames,
                                        lambda: motion_tracks(frames, names, masks, conf))
    if len(kept) < len(names):  # from here on only the kept frames exist
        frames, masks = take_frames(frames, kept, work), None if masks is None else take_frames(masks, kept, work)
        names, in_sizes, sizes = [names[t] for t in kept], in_sizes[kept], sizes[kept]
        mask_files = None if mask_files is None else {n: mask_files[n] for n in names}
    qf = query_frames(len(frames), conf["queries"])
    problem = flat_frames(frames, qf)
    if problem:
        raise InputError(problem)
    with timer("queries"):
        queries = query_points(frames, conf["queries"], masks)
    if len(queries) == 0:
        raise InputError("no query points: the masks exclude every pixel of the query frames" if masks is not None
                         else f"no query points fit in {size[1]}x{size[0]} px frames")
    logger.info("%d queries on %d frames of %dx%d", len(queries), len(frames), size[1], size[0])
    with timer("track"):
        raw = track(provider, frames, queries, tc)  # without the queries dropped onto points already tracked
        empty = ~raw.visible.any(0)  # and without tracks the tracker saw nowhere: later stages hold only tracked columns
        raw = raw.select(tracks=~empty) if empty.any() else raw
        crowded = len(queries) - raw.num_tracks
        raw.image_names = names
    image_set = not isinstance(source, tuple) and Path(source).is_dir()
    enabled = conf["refine"]["enabled"]
    refine_stats = {"enabled": False, "why": "off (image folder; --refine turns it on)" if enabled == "auto" else "off (--no-refine)"}
    if (not image_set) if enabled == "auto" else enabled:
        with timer("refine"):
            refinement = refine_tracks(frames, raw, conf["refine"], tracker_key(provider))
        raw, refine_stats = refinement.tracks, {"enabled": True, **refinement.stats()}
        del refinement  # its (T, N) status and shift arrays are in the stats now
        logger.info("refine: %s", refine_stats)
    with timer("filter"):
        tracks, filter_stats = filter_tracks(raw, fc, tracker_key(provider), provider, frames, masks, tc, sizes if padded else None)
    del raw  # later stages need only the filtered copy (a 1000-frame video: about 0.3 GB of (T, N) arrays)
    logger.info("filters: %s", filter_stats)
    if tracks.num_tracks == 0 and conf["mapping"]["matches"] == "off":
        raise ReconstructionError(explain_no_tracks(frames, qf, filter_stats, fc["min_length"]))
    # Images and tracks.mp4 need only the frames and tracks, so they are written beside the mapper, which releases
    # the GIL and mostly runs on one core (apple: 3.6 s of writing overlaps mapping; about 1 s saved, BENCHMARKS).
    with ThreadPoolExecutor(max_workers=1) as beside:
        frame_outputs = beside.submit(write_frame_outputs, staging_out, frames, names, sizes, tracks, conf["output"], timer)
        with timer("reconstruct"):
            mapping_report = {}
            try:
                rec = reconstruct(tracks, camera=spec, frames=frames, report=mapping_report, image_set=image_set, work_dir=str(work / "colmap"),
                                  image_sizes=sizes if padded else None, **conf["mapping"])
            except ReconstructionError as e:
                if tracks.num_tracks:
                    raise
                # SIFT matches could not stand in for the missing tracks either: the input is what is wrong.
                raise ReconstructionError(f"{explain_no_tracks(frames, qf, filter_stats, fc['min_length'])} ({e})") from None
        with timer("export"):
            frame_outputs.result()
            pinhole = pinhole_cleanup(rec)  # a pinhole model is the splatting folder itself: same 2 px rule as undistorted/
            if mask_files is not None:
                (staging_out / "masks").mkdir()
                for rel in mask_files.values():
                    (work / rel).rename(staging_out / rel)
            export(rec, staging_out, tracks, image_dir=staging_out / "images", mask_paths=mask_files)
    with timer("undistort"):
        undistorted = pinhole or undistort_if_distorted(rec, staging_out, conf["output"]["undistort"], mask_files)
    report = {
        **model_stats(rec, len(names)),
        "input": str(source) if not isinstance(source, tuple) else "in-memory frames",
        "input_size": in_sizes.tolist() if mixed else list(in_size), "model_size": sizes.tolist() if mixed else list(size),
        "tracker": provider.name, "checkpoint": checkpoint_source(provider),
        "queries": int(len(queries)), "queries_crowded": int(crowded), "tracks": {**filter_stats, "mean_visible_frames": round(float(tracks.visible.sum(0).mean()), 3) if tracks.num_tracks else 0.0},
        "tracker_choice": tracker_reason(provider), "refine": refine_stats,
        "matches": mapping_report.pop("matches", None), "mapping": mapping_report,
        "camera": camera_report(rec, calibrated=spec.params is not None),
        "frame_selection": selection, "undistorted": undistorted, "trainers": trainer_folders(out_dir, undistorted),
        "timings_s": timer.times, "total_s": timer.wall(),
        "config": conf,
    }
    (staging_out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    del frames, masks  # release the memmaps before the work folder goes
    replace_dir(staging_out, out_dir)
    return rec, report
