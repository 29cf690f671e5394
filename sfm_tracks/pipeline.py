"""Video (or image folder) -> tracks -> COLMAP model, as small steps composed by `run` with a plain config dict.

Steps: load frames (uint8, resized to `max_side`, kept in a memory-mapped file so a 1000-frame video never
sits in RAM) -> select queries (SIFT + grid on frames spread over the video) -> track (any TrackProvider,
always through `windowed`, so a tracker only ever sees `window` frames) -> filters -> `reconstruct` ->
outputs. All outputs are written into a staging folder next to OUTDIR and renamed into place at the end,
so a failure never leaves a half-written model behind.
"""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import pycolmap
from tqdm import tqdm

from .cameras import CameraSpec
from .export import export, replace_dir
from .filters import apply_filters, cycle_consistency, low_confidence, stuck_at_border, too_short
from .mapping import reconstruct
from .providers import TrackProvider, make_provider
from .queries import select_queries, spread_frames
from .tracks import Tracks
from .video import IMAGE_EXTENSIONS, VideoError, draw_tracks, iter_frames, list_images, resize_max_side, write_video
from .windowed import window_bounds, windowed

logger = logging.getLogger(__name__)


DEFAULT_CONF = {
    "input": {"max_frames": None, "stride": 1, "max_side": 1024},
    "queries": {"query_every": 8, "min_query_frames": 4, "max_points_per_frame": 512, "method": "sift+grid", "min_distance": 8.0},
    "tracker": {"name": "lk", "checkpoint": "default", "device": "cpu", "mode": "exact", "window": 48, "overlap": 8, "max_queries": 2048},
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
    "mapping": {"mapper": "incremental"},
    "output": {"video": True, "fps": 10.0},
}


class InputError(VideoError):
    """Bad user input other than the frames themselves (masks, intrinsics, output folder)."""


def merge_conf(base: dict, override: Optional[dict]) -> dict:
    """Deep copy of `base` updated with `override` (nested dicts merged, unknown keys rejected)."""
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        if k not in out:
            raise KeyError(f"unknown config key {k!r}; valid: {sorted(out)}")
        out[k] = merge_conf(out[k], v) if isinstance(out[k], dict) and isinstance(v, dict) and k != "min_conf" else v
    return out


class Timer:
    """Wall time per named stage, in the order the stages ran."""

    def __init__(self):
        self.times: dict = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        t0 = time.time()
        logger.debug("stage %s ...", name)
        try:
            yield
        finally:
            self.times[name] = round(self.times.get(name, 0.0) + time.time() - t0, 3)


# ---------------------------------------------------------------------------------------------- frames

def load_frames(source, work: Path, max_frames=None, stride: int = 1, max_side=None, min_frames: int = 2):
    """Decode frames one at a time into a uint8 memmap in `work` -> (frames (T, H, W, 3), names, input (H, W)).

    source: a video file / image folder path, or (frames array, names) already in memory (demo).
    """
    if isinstance(source, tuple):
        arr, names = source
        items = ((n, f) for n, f in zip(names[::stride][:max_frames], arr[::stride][:max_frames]))
        desc = "frames"
    else:
        items = iter_frames(source, max_frames=max_frames, stride=stride)
        desc = f"read {Path(source).name}"
    raw = work / "frames.u8"
    names, shape, in_size = [], None, None
    with open(raw, "wb") as f:
        for name, frame in tqdm(items, desc=desc, unit="frame", leave=False):
            if in_size is None:
                in_size = frame.shape[:2]
            elif frame.shape[:2] != in_size:
                raise VideoError(f"frame {name} is {frame.shape[1]}x{frame.shape[0]}, the first frame {in_size[1]}x{in_size[0]}")
            small = np.ascontiguousarray(resize_max_side(frame, max_side), dtype=np.uint8)
            shape = small.shape
            f.write(small.tobytes())
            names.append(name)
    if len(names) < min_frames:
        what = "no decodable frames" if not names else f"only {len(names)} frame(s)"
        raise VideoError(f"{source if not isinstance(source, tuple) else 'input'} gives {what}, at least {min_frames} needed")
    frames = np.memmap(raw, dtype=np.uint8, mode="r", shape=(len(names),) + shape)
    return frames, names, in_size


def _find_mask(mask_dir: Path, name: str, by_stem: dict) -> Optional[Path]:
    """COLMAP's `<image name>.png`, else any image file with the same stem."""
    colmap_style = mask_dir / f"{name}.png"
    return colmap_style if colmap_style.is_file() else by_stem.get(Path(name).stem)


def load_masks(mask_dir, names: list, in_size: tuple, size: tuple, work: Path) -> np.ndarray:
    """(T, H, W) bool memmap, True = pixel may be tracked (nonzero mask pixels are kept, COLMAP's rule).

    Every frame needs a mask of the input image size; anything else is an error, not a silent skip.
    """
    mask_dir = Path(mask_dir)
    if not mask_dir.is_dir():
        raise InputError(f"mask folder not found: {mask_dir}")
    by_stem = {p.stem: p for p in list_images(mask_dir)}
    missing = [n for n in names if _find_mask(mask_dir, n, by_stem) is None]
    if missing:
        raise InputError(f"mask folder {mask_dir} has no mask for {len(missing)} of {len(names)} frames (first: {missing[0]})")
    H, W = size
    masks = np.memmap(work / "masks.u8", dtype=bool, mode="w+", shape=(len(names), H, W))
    for t, n in enumerate(tqdm(names, desc="masks", unit="frame", leave=False)):
        p = _find_mask(mask_dir, n, by_stem)
        m = cv2.imdecode(np.fromfile(str(p), np.uint8), cv2.IMREAD_GRAYSCALE) if p.stat().st_size else None
        if m is None:
            raise InputError(f"cannot read mask {p}")
        if m.shape != tuple(in_size):
            raise InputError(f"mask {p.name} is {m.shape[1]}x{m.shape[0]}, its frame {in_size[1]}x{in_size[0]}")
        masks[t] = cv2.resize(m, (W, H), interpolation=cv2.INTER_NEAREST) > 0 if (H, W) != tuple(in_size) else m > 0
    masks.flush()
    return masks


# ---------------------------------------------------------------------------------------------- tracking

def checkpoint_source(provider: TrackProvider) -> str:
    return getattr(provider, "checkpoint_source", "none (classical tracker, no weights)")


class WindowedProvider(TrackProvider):
    """Any provider run through `windowed`, counting tracked frames on a progress bar.

    Used for the main pass and for the cycle check's return trips, so no call sees more than `window`
    frames however long the video.
    """

    def __init__(self, inner: TrackProvider, window: int, overlap: int, max_queries: Optional[int], bar=None):
        self.inner, self.window, self.overlap, self.max_queries, self.bar = inner, window, overlap, max_queries, bar
        self.name = inner.name

    def _counted(self, frames, queries):
        out = self.inner(np.array(frames), queries)  # a writable in-RAM copy of one window (memmaps are read-only)
        if self.bar is not None:
            self.bar.update(len(frames))
        return out

    def track(self, frames, queries):
        counted = _Counted(self)
        return windowed(counted, frames, queries, self.window, self.overlap, self.max_queries)


class _Counted(TrackProvider):
    def __init__(self, owner: WindowedProvider):
        self.owner, self.name = owner, owner.name

    def track(self, frames, queries):
        return self.owner._counted(frames, queries)


def query_points(frames, conf: dict, masks=None) -> np.ndarray:
    """SIFT + grid queries on one frame every `query_every` frames (at least `min_query_frames`)."""
    T = len(frames)
    count = max(conf["min_query_frames"], int(np.ceil(T / conf["query_every"])))
    qf = spread_frames(T, count)
    out = []
    for t in tqdm(qf, desc="queries", unit="frame", leave=False):
        out.append(select_queries(frames, query_frames=[t], max_points_per_frame=conf["max_points_per_frame"],
                                  method=conf["method"], min_distance=conf["min_distance"], masks=masks))
    return np.concatenate(out)


def track(provider: TrackProvider, frames, queries: np.ndarray, conf: dict) -> Tracks:
    """Tracks of all queries over all frames, through windows of conf['window'] frames."""
    lengths = [e - s for s, e in window_bounds(len(frames), conf["window"], conf["overlap"])]
    total = sum(lengths) + sum(lengths[:-1])  # forward pass, then the backward carries (one call per window)
    with tqdm(desc=f"track ({provider.name})", unit="frame", total=total, leave=False) as bar:
        wp = WindowedProvider(provider, conf["window"], conf["overlap"], conf["max_queries"], bar)
        return wp(frames, queries)


def mask_filter(tracks: Tracks, masks) -> np.ndarray:
    """(T, N) keep-mask: observations on kept (True) mask pixels."""
    H, W = tracks.image_size
    keep = np.ones(tracks.visible.shape, bool)
    xi = np.clip(np.round(tracks.xy[..., 0]).astype(np.int64), 0, W - 1)
    yi = np.clip(np.round(tracks.xy[..., 1]).astype(np.int64), 0, H - 1)
    for t in range(tracks.num_frames):
        keep[t] = np.asarray(masks[t])[yi[t], xi[t]]
    return keep


def filter_tracks(tracks: Tracks, conf: dict, tracker: str, provider=None, frames=None, masks=None, tconf=None) -> tuple:
    """Filtered Tracks and per-filter counts of rejected visible observations."""
    keep = {"low_confidence": low_confidence(tracks, conf["min_conf"].get(tracker, 0.5)),
            "stuck_at_border": stuck_at_border(tracks, conf["border_margin_px"], conf["border_min_frames"])}
    if masks is not None and conf["mask_observations"]:
        keep["mask"] = mask_filter(tracks, masks)
    if conf["cycle_anchors"] and provider is not None:
        with tqdm(desc="cycle check", unit="frame", leave=False) as bar:
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
    if model not in params:
        raise InputError(f"camera model {model!r} not supported; use one of {sorted(params)}")
    if model.startswith("SIMPLE") or model == "RADIAL":
        if abs(K[0] - K[1]) > 1e-3 * K[0]:
            raise InputError(f"{model} has one focal length but fx={K[0]} and fy={K[1]} differ; use PINHOLE or OPENCV")
    return CameraSpec(model=model, params=params[model])


# ---------------------------------------------------------------------------------------------- outputs

def write_images(folder: Path, frames, names: list) -> None:
    """The frames the model refers to, at the model's resolution, under their image names."""
    folder.mkdir(parents=True, exist_ok=True)
    for t, name in enumerate(tqdm(names, desc="write images", unit="img", leave=False)):
        ext = Path(name).suffix.lower()
        params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext in (".jpg", ".jpeg") else []
        ok, buf = cv2.imencode(ext if ext in IMAGE_EXTENSIONS else ".png", cv2.cvtColor(np.asarray(frames[t]), cv2.COLOR_RGB2BGR), params)
        if not ok:
            raise OSError(f"cannot encode image {name}")
        buf.tofile(str(folder / name))


def write_tracks_video(path: Path, frames, tracks: Tracks, fps: float, chunk: int = 32, tail: int = 8) -> None:
    """tracks.mp4, drawn and encoded a chunk of frames at a time (bounded memory)."""
    T = len(frames)

    def drawn():
        for s in tqdm(range(0, T, chunk), desc="tracks.mp4", unit="chunk", leave=False):
            a, e = max(0, s - tail), min(T, s + chunk)
            sub = tracks.select(frames=np.arange(a, e))
            yield from draw_tracks(np.asarray(frames[a:e]), sub, tail=tail)[s - a:]

    write_video(path, drawn(), fps=fps)


def model_stats(rec: pycolmap.Reconstruction, num_frames: int) -> dict:
    return {"frames_total": num_frames, "frames_registered": rec.num_reg_images(), "points3d": rec.num_points3D(),
            "mean_reprojection_error_px": round(float(rec.compute_mean_reprojection_error()), 4),
            "mean_track_length": round(float(rec.compute_mean_track_length()), 3)}


def _prepare_outdir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise InputError(f"output folder {out_dir} exists and is not empty (pass --overwrite to replace it)")


# ---------------------------------------------------------------------------------------------- run

def run(source, out_dir, conf: Optional[dict] = None, mask_dir=None, provider: Optional[TrackProvider] = None,
        overwrite: bool = False) -> dict:
    """The whole pipeline; returns the report (also written to OUTDIR/report.json) plus 'model' (pycolmap).

    source: video file / image folder path, or (frames (T, H, W, 3) uint8, names) in memory.
    provider: an already constructed TrackProvider (else built from conf['tracker']).
    """
    conf = merge_conf(DEFAULT_CONF, conf)
    out_dir = Path(out_dir).resolve()
    _prepare_outdir(out_dir, overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    timer = Timer()
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.work-", dir=out_dir.parent))
    try:
        staging = work / "out"
        staging.mkdir()
        ic, tc = conf["input"], conf["tracker"]
        with timer("read"):
            frames, names, in_size = load_frames(source, work, ic["max_frames"], ic["stride"], ic["max_side"])
        size = frames.shape[1:3]
        spec = camera_spec(conf["camera"], in_size, size)
        masks = None
        if mask_dir is not None:
            with timer("masks"):
                masks = load_masks(mask_dir, names, in_size, size, work)
        with timer("load_tracker"):
            provider = provider or make_provider(tc["name"], tc["checkpoint"], tc["device"], tc["mode"])
        with timer("queries"):
            queries = query_points(frames, conf["queries"], masks)
        logger.info("%d queries on %d frames of %dx%d", len(queries), len(frames), size[1], size[0])
        with timer("track"):
            raw = track(provider, frames, queries, tc)
            raw.image_names = names
        with timer("filter"):
            tracks, filter_stats = filter_tracks(raw, conf["filters"], tc["name"], provider, frames, masks, tc)
        logger.info("filters: %s", filter_stats)
        with timer("reconstruct"):
            rec = reconstruct(tracks, camera=spec, **conf["mapping"])
        with timer("export"):
            export(rec, staging, tracks, frames)
            write_images(staging / "images", frames, names)
        if conf["output"]["video"]:
            with timer("video"):
                write_tracks_video(staging / "tracks.mp4", frames, tracks, conf["output"]["fps"])
        cam = rec.cameras[next(iter(rec.cameras))]
        report = {
            **model_stats(rec, len(names)),
            "input": str(source) if not isinstance(source, tuple) else "in-memory frames",
            "input_size": list(in_size), "model_size": list(size),
            "tracker": provider.name, "checkpoint": checkpoint_source(provider),
            "queries": int(len(queries)), "tracks": {**filter_stats, "mean_visible_frames": round(float(tracks.visible.sum(0).mean()), 3)},
            "camera": {"model": cam.model_name, "params": [round(float(p), 6) for p in cam.params]},
            "timings_s": timer.times, "total_s": round(sum(timer.times.values()), 3),
            "config": conf,
        }
        (staging / "report.json").write_text(json.dumps(report, indent=1, default=str))
        del frames, masks  # release the memmaps before the work folder goes
        replace_dir(staging, out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["model"] = rec
    return report

