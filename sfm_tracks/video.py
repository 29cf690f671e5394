"""Frame I/O: read a video file or an image folder as RGB frames, write the `tracks.mp4` visualisation.

Everything downstream works on (T, H, W, 3) uint8 RGB frames in display orientation, so this module is
the one place that knows about containers, codecs, rotation metadata and image files.
"""
from __future__ import annotations

import itertools
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Optional, Sequence

import av
import cv2
import numpy as np

from .progress import progress

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


class VideoError(ValueError):
    """Input frames cannot be read (missing, empty, corrupt, inconsistent or too short)."""


def video_frame_name(index: int) -> str:
    """Name of original video frame `index`; matches `Tracks.names()` so names survive striding."""
    return f"frame_{index:06d}.png"


def rotate_frame(frame: np.ndarray, degrees_ccw: float) -> np.ndarray:
    """Rotate an (H, W, C) frame counter-clockwise by a multiple of 90 degrees.

    `degrees_ccw` follows FFmpeg's display matrix / PyAV's `VideoFrame.rotation`: the angle by which the
    stored picture must be turned counter-clockwise to be displayed upright. Phone portrait videos
    usually carry -90 (i.e. "rotate 90 clockwise"). Non-multiples of 90 are rounded to the nearest one.
    """
    k = int(round(float(degrees_ccw) / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(frame, k=k)) if k else frame


def grey(frame) -> np.ndarray:
    """(H, W, 3) uint8 RGB (or an already grey (H, W)) frame -> contiguous (H, W) uint8 grey: what SIFT, the
    Lucas-Kanade trackers, refinement and the sharpness score read."""
    f = np.asarray(frame)
    return np.ascontiguousarray(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) if f.ndim == 3 else f, dtype=np.uint8)


def resize_max_side(frame: np.ndarray, max_side: Optional[int]) -> np.ndarray:
    """Downscale so that max(H, W) <= max_side (area interpolation); never upscales."""
    if not max_side:
        return frame
    h, w = frame.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return frame
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def _stream_rotation(stream) -> float:
    """Fallback rotation from the legacy `rotate` tag (clockwise degrees) when frames carry none."""
    tag = (stream.metadata or {}).get("rotate")
    try:
        return -float(tag) if tag is not None else 0.0
    except ValueError:
        return 0.0


def _iter_video(path: Path) -> Iterator[tuple[int, np.ndarray]]:
    """(original index, upright RGB frame) for every decodable frame of a video file."""
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as e:
        raise VideoError(f"cannot open video {path}: {e}") from e
    with container:
        if not container.streams.video:
            raise VideoError(f"{path} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        legacy_rotation = _stream_rotation(stream)
        index = 0
        try:
            for frame in container.decode(stream):
                rotation = frame.rotation or legacy_rotation
                yield index, rotate_frame(frame.to_ndarray(format="rgb24"), rotation)
                index += 1
        except av.FFmpegError as e:
            if index == 0:
                raise VideoError(f"cannot decode video {path}: {e}") from e
            warnings.warn(f"{path}: decoding stopped after {index} frames: {e}")


def video_rate(path: str | Path) -> Optional[float]:
    """Frames per second of a video file's first video stream (average, else guessed rate); None if unknown."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return None
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            return float(rate) if rate else None
    except (av.FFmpegError, OSError):
        return None


def _read_image(path: Path) -> np.ndarray:
    data = np.fromfile(str(path), dtype=np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise VideoError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def list_images(folder: Path) -> list[Path]:
    """Image files of a folder sorted by name; other files (notes, .DS_Store) are ignored."""
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS), key=lambda p: p.name)


def _iter_images(paths: Sequence[Path]) -> Iterator[tuple[str, np.ndarray]]:
    for p in paths:
        yield p.name, _read_image(p)


def iter_frames(path: str | Path, max_frames: Optional[int] = None, stride: int = 1, max_side: Optional[int] = None) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (name, (H, W, 3) uint8 RGB) one frame at a time, so long 1080p videos never sit in memory.

    `path` is a video file or a folder of images (sorted by file name). Every `stride`-th frame is kept,
    at most `max_frames` of them, downscaled to `max_side`. Video frames are named after their original
    index (`frame_000042.png`), images keep their file names (and their own sizes: a folder may mix sizes). Path problems raise here, at the call;
    decoding problems raise while iterating.
    """
    path = Path(path)
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if not path.exists():
        raise VideoError(f"no such file or folder: {path}")
    if path.is_dir():
        images = list_images(path)
        if not images:
            raise VideoError(f"no images in folder {path}")
        source = _iter_images(images[::stride])
    elif path.suffix.lower() in IMAGE_EXTENSIONS:
        source = _iter_images([path])
    else:
        if path.stat().st_size == 0:
            raise VideoError(f"empty video file {path}")
        source = ((video_frame_name(i), f) for i, f in _iter_video(path) if i % stride == 0)
    return _limit(source, max_frames, max_side)


def _limit(source, max_frames, max_side):
    try:
        for name, frame in itertools.islice(source, max_frames):
            yield name, resize_max_side(frame, max_side)
    finally:
        source.close()  # releases the decoder now, not at garbage collection


def read_frames(path: str | Path, max_frames: Optional[int] = None, stride: int = 1, max_side: Optional[int] = None, min_frames: int = 1) -> tuple[np.ndarray, list[str]]:
    """All frames at once: ((T, H, W, 3) uint8 RGB, names). Raises VideoError when fewer than `min_frames`
    or when the images differ in size (the reconstruction pipeline puts those on a common canvas)."""
    names, frames = [], []
    for name, frame in iter_frames(path, max_frames=max_frames, stride=stride, max_side=max_side):
        if frames and frame.shape != frames[0].shape:
            raise VideoError(f"mixed image sizes: {name} is {frame.shape[1]}x{frame.shape[0]}, "
                             f"expected {frames[0].shape[1]}x{frames[0].shape[0]}")
        names.append(name)
        frames.append(frame)
    if not frames:
        raise VideoError(f"no decodable frames in {path}")
    if len(frames) < min_frames:
        raise VideoError(f"{path} gives {len(frames)} frame(s), at least {min_frames} needed")
    return np.stack(frames), names


def _pick_codec() -> str:
    for codec in ("libx264", "h264", "mpeg4"):
        if codec in av.codecs_available:
            try:
                av.codec.Codec(codec, "w")
                return codec
            except Exception:  # listed but without an encoder
                continue
    raise VideoError("no H.264 or MPEG-4 encoder available in this PyAV build")


def write_video(path: str | Path, frames: np.ndarray | Sequence[np.ndarray] | Iterator[np.ndarray], fps: float = 10.0,
                options: Optional[dict] = None) -> None:
    """Encode (T, H, W, 3) uint8 RGB frames as an .mp4 (H.264 when available, else MPEG-4 Part 2).
    options: encoder options for the stream, e.g. {"crf": "12"} for near-lossless H.264 test videos.

    `frames` may be a generator: frames are encoded as they come, so long videos never sit in memory.
    yuv420p needs even sizes, so odd frames are padded by one black row/column at the bottom/right.
    """
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError("write_video needs at least one frame")
    frames = itertools.chain([first], frames)
    h, w = np.asarray(first).shape[:2]
    eh, ew = h + h % 2, w + w % 2
    codec = _pick_codec()
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = ew, eh, "yuv420p"
        if options:
            stream.options = dict(options)
        for f in frames:
            f = np.asarray(f, dtype=np.uint8)
            if f.shape[:2] != (h, w):
                raise ValueError(f"frame size {f.shape[:2]} differs from the first frame {(h, w)}")
            if (eh, ew) != (h, w):
                f = np.pad(f, ((0, eh - h), (0, ew - w), (0, 0)))
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def track_colors(n: int) -> np.ndarray:
    """(n, 3) uint8 RGB colours spread around the hue circle, stable per track index."""
    if n == 0:  # OpenCV refuses an empty image
        return np.zeros((0, 3), np.uint8)
    hue = (np.arange(n) * 0.618033988749895 % 1.0 * 180).astype(np.uint8)
    hsv = np.stack([hue, np.full(n, 220, np.uint8), np.full(n, 255, np.uint8)], -1)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]


def pick_tracks(tracks, max_tracks: int = 200) -> np.ndarray:
    """Indices of at most `max_tracks` tracks that are visible somewhere, spread over the image.

    The image is cut into about `max_tracks` cells by each track's mean visible position; cells take
    turns giving their longest-visible remaining track, so dense corners do not crowd out the rest.
    """
    vis = tracks.visible
    length = vis.sum(0)
    seen = np.flatnonzero(length > 0)
    if len(seen) <= max_tracks:
        return seen
    H, W = tracks.image_size
    mean_xy = np.where(vis[..., None], np.nan_to_num(tracks.xy), 0).sum(0)[seen] / length[seen, None]
    k = max(1, int(np.ceil(np.sqrt(max_tracks))))
    cell = (np.clip(mean_xy[:, 1] / H * k, 0, k - 1).astype(np.int64) * k + np.clip(mean_xy[:, 0] / W * k, 0, k - 1).astype(np.int64))
    order = np.lexsort((-length[seen], cell))  # by cell, longest first within a cell
    rank = np.empty(len(seen), np.int64)
    sorted_cells = cell[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_cells)) + 1]
    rank[order] = np.arange(len(seen)) - np.repeat(starts, np.diff(np.r_[starts, len(seen)]))
    chosen = np.lexsort((-length[seen], rank))[:max_tracks]  # every cell's best, then every cell's second, ...
    return np.sort(seen[chosen])


def _upscale(frames: np.ndarray, min_long_side: int) -> tuple[np.ndarray, float]:
    """Frames enlarged so their long side is at least `min_long_side` (never shrunk) -> (frames, scale)."""
    T, H, W = frames.shape[:3]
    scale = max(1.0, min_long_side / max(H, W)) if min_long_side else 1.0
    if scale == 1.0:
        return np.array(frames, dtype=np.uint8, copy=True), 1.0
    size = (round(W * scale), round(H * scale))
    return np.stack([cv2.resize(np.asarray(f, np.uint8), size, interpolation=cv2.INTER_LINEAR) for f in frames]), size[0] / W


def draw_tracks(frames: np.ndarray, tracks, tail: int = 8, radius: int = 3, colors: Optional[np.ndarray] = None,
                min_long_side: int = 0) -> np.ndarray:
    """Copy of (T, H, W, 3) RGB frames with every track drawn as a dot plus a fading tail.

    The current position is a filled dot (dark rim) when visible, a hollow ring when the point was seen
    within the last `tail` frames but is not now (occluded or lost), and nothing otherwise. The tail joins
    consecutive visible positions of the last `tail` frames, older segments fainter. colors: (N, 3) uint8
    RGB per track (default: `track_colors`). Frames whose long side is below `min_long_side` are enlarged
    first (a 256 px video is unreadable once dots are drawn). Positions are in tracker pixels (x = 0 at
    the first pixel centre), drawn with 4-bit sub-pixel precision.
    """
    T = len(frames)
    if tracks.num_frames != T:
        raise ValueError(f"{tracks.num_frames} track frames for {T} video frames")
    out, scale = _upscale(np.asarray(frames), min_long_side)
    colors = track_colors(tracks.num_tracks) if colors is None else np.asarray(colors)
    colors = [tuple(int(c) for c in rgb) for rgb in colors]
    shift = 4
    xy = (np.nan_to_num(tracks.xy, nan=-1e4) + 0.5) * scale - 0.5
    fixed = np.round(np.clip(xy, -1e4, 1e4) * (1 << shift)).astype(np.int64)
    vis = tracks.visible
    r = max(2, round(radius * scale ** 0.5))
    for t in range(T):
        img = out[t]
        for age in range(min(tail, t), 0, -1):  # oldest first, so newer segments lie on top
            s = t - age + 1
            seg = np.flatnonzero(vis[s - 1] & vis[s])
            if not len(seg):
                continue
            layer = img.copy()
            for n in seg:
                cv2.line(layer, tuple(fixed[s - 1, n]), tuple(fixed[s, n]), colors[n], 2, cv2.LINE_AA, shift)
            alpha = 1.0 - (age - 1) / tail
            cv2.addWeighted(layer, alpha, img, 1.0 - alpha, 0.0, dst=img)
        recent = vis[max(0, t - tail):t + 1].any(0)
        for n in np.flatnonzero(recent & ~vis[t]):
            cv2.circle(img, tuple(fixed[t, n]), r << shift, colors[n], 1, cv2.LINE_AA, shift)
        for n in np.flatnonzero(vis[t]):
            cv2.circle(img, tuple(fixed[t, n]), (r + 1) << shift, (0, 0, 0), -1, cv2.LINE_AA, shift)
            cv2.circle(img, tuple(fixed[t, n]), r << shift, colors[n], -1, cv2.LINE_AA, shift)
    return out


PREVIEW_ENCODER = {"preset": "veryfast"}  # x264: tracks.mp4 (apple, 51 frames) 1.95 -> 0.92 s and 6 % smaller than "medium"


def write_tracks_video(path: Path, frames, tracks, fps: float, chunk: int = 32, tail: int = 8,
                       max_tracks: int = 150, min_long_side: int = 512) -> None:
    """tracks.mp4: a spread-out subset of at most `max_tracks` tracks, one colour each, with `tail`-frame
    fading tails, on frames enlarged to `min_long_side`; drawn and encoded a chunk at a time (bounded memory)."""
    T = len(frames)
    keep = pick_tracks(tracks, max_tracks)
    shown = tracks.select(tracks=keep)
    colors = track_colors(tracks.num_tracks)[keep]  # colour by track id: stable whatever the subset

    def drawn():
        for s in progress(range(0, T, chunk), desc="tracks.mp4", unit="chunk", leave=False):
            a, e = max(0, s - tail), min(T, s + chunk)
            sub = shown.select(frames=np.arange(a, e))
            yield from draw_tracks(np.asarray(frames[a:e]), sub, tail=tail, colors=colors, min_long_side=min_long_side)[s - a:]

    write_video(path, drawn(), fps=fps, options=PREVIEW_ENCODER)
