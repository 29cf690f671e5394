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
    size = None
    for p in paths:
        img = _read_image(p)
        if size is None:
            size = img.shape[:2]
        elif img.shape[:2] != size:
            raise VideoError(f"mixed image sizes: {p.name} is {img.shape[1]}x{img.shape[0]}, expected {size[1]}x{size[0]}")
        yield p.name, img


def iter_frames(path: str | Path, max_frames: Optional[int] = None, stride: int = 1, max_side: Optional[int] = None) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (name, (H, W, 3) uint8 RGB) one frame at a time, so long 1080p videos never sit in memory.

    `path` is a video file or a folder of images (sorted by file name). Every `stride`-th frame is kept,
    at most `max_frames` of them, downscaled to `max_side`. Video frames are named after their original
    index (`frame_000042.png`), images keep their file names. Path problems raise here, at the call;
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
    """All frames at once: ((T, H, W, 3) uint8 RGB, names). Raises VideoError when fewer than `min_frames`."""
    names, frames = [], []
    for name, frame in iter_frames(path, max_frames=max_frames, stride=stride, max_side=max_side):
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


def write_video(path: str | Path, frames: np.ndarray | Sequence[np.ndarray] | Iterator[np.ndarray], fps: float = 10.0) -> None:
    """Encode (T, H, W, 3) uint8 RGB frames as an .mp4 (H.264 when available, else MPEG-4 Part 2).

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
    hue = (np.arange(n) * 0.618033988749895 % 1.0 * 180).astype(np.uint8)
    hsv = np.stack([hue, np.full(n, 220, np.uint8), np.full(n, 255, np.uint8)], -1)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]


def draw_tracks(frames: np.ndarray, tracks, tail: int = 8, radius: int = 2) -> np.ndarray:
    """Copy of (T, H, W, 3) RGB frames with each visible track point drawn as a dot plus a short tail.

    Tails connect consecutive visible positions of the last `tail` frames; positions are in tracker
    pixels (x = 0 at the first pixel centre), which is also cv2's drawing convention. Drawing uses
    4-bit sub-pixel shifts so points are not snapped to whole pixels.
    """
    frames = np.array(frames, dtype=np.uint8, copy=True)
    T = frames.shape[0]
    if tracks.num_frames != T:
        raise ValueError(f"{tracks.num_frames} track frames for {T} video frames")
    colors = [tuple(int(c) for c in rgb) for rgb in track_colors(tracks.num_tracks)]
    shift = 4
    fixed = np.round(tracks.xy * (1 << shift)).astype(np.int64)
    vis = tracks.visible
    for t in range(T):
        img = frames[t]
        for s in range(max(1, t - tail + 1), t + 1):
            seg = np.flatnonzero(vis[s - 1] & vis[s])
            for n in seg:
                cv2.line(img, tuple(fixed[s - 1, n]), tuple(fixed[s, n]), colors[n], 1, cv2.LINE_AA, shift)
        for n in np.flatnonzero(vis[t]):
            cv2.circle(img, tuple(fixed[t, n]), radius << shift, colors[n], -1, cv2.LINE_AA, shift)
    return frames
