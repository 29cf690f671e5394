"""The frames and masks of a run: decoded one at a time into memory-mapped arrays at tracking resolution.

A folder of photos may mix sizes and orientations: each image is scaled to fit `max_side` and placed at the
top-left of a common canvas (black padding beyond), and `sizes` (T, 2) keeps each frame's own part. The
padding is not the scene: `exclude_padding` keeps queries and observations out of it and off its edge.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from .outdir import InputError, anonymous_memmap
from .progress import progress
from .selection import sharpness
from .video import VideoError, iter_frames, list_images, resize_max_side

logger = logging.getLogger(__name__)

PADDING_MARGIN_PX = 10  # about half a Lucas-Kanade window: closer to the padding, the black edge drives the tracker


def load_frames(source, work: Path, max_frames=None, stride: int = 1, max_side=None, min_frames: int = 2, why: str = "",
                score_side: int = 256):
    """Decode frames one at a time into a uint8 memmap
    -> (frames (T, H, W, 3), names, input sizes (T, 2), sizes (T, 2), sharpness (T,)).

    The memmap's file is an unlinked temp file in `work`: nothing is left on disk however the run ends.
    Images of different sizes (a photo collection) are each scaled to fit `max_side` and placed top-left on
    a common canvas (the largest scaled height x width), the rest black: sizes[t] = (H_t, W_t) is frame t's
    own part at tracking resolution, input sizes its decoded size. Same-size frames fill the whole array.

    source: a video file / image folder path, or (frames array, names) already in memory (demo).
    sharpness: `selection.sharpness` of each frame at tracking resolution (grey, downscaled to `score_side`),
    computed as it is decoded, for frame selection.
    """
    if isinstance(source, tuple):
        arr, names = source
        items = ((n, f) for n, f in zip(names[::stride][:max_frames], arr[::stride][:max_frames]))
        desc = "frames"
    else:
        items = iter_frames(source, max_frames=max_frames, stride=stride)
        desc = f"read {Path(source).name}"
    names, shapes, in_sizes, scores = [], [], [], []
    with tempfile.TemporaryFile(dir=work) as f:  # the memmap keeps its own descriptor
        for name, frame in progress(items, desc=desc, unit="frame", leave=False):
            small = np.ascontiguousarray(resize_max_side(frame, max_side), dtype=np.uint8)
            f.write(small.tobytes())
            scores.append(sharpness(small, score_side))
            names.append(name)
            shapes.append(small.shape)
            in_sizes.append(frame.shape[:2])
        if len(names) < min_frames:
            what = "no decodable frames" if not names else f"only {len(names)} frame(s)"
            raise VideoError(f"{source if not isinstance(source, tuple) else 'input'} gives {what}, at least {min_frames} needed{why}")
        f.flush()
        sizes = np.array([s[:2] for s in shapes], np.int64)
        if len(set(shapes)) == 1:
            frames = np.memmap(f, dtype=np.uint8, mode="r", shape=(len(names),) + shapes[0])
        else:
            frames = _on_canvas(f, shapes, work)
            logger.info("%d frames of %d different sizes on a %dx%d canvas", len(names), len(set(shapes)),
                        frames.shape[2], frames.shape[1])
        return frames, names, np.array(in_sizes, np.int64), sizes, np.array(scores, np.float64)


def take_frames(arr, indices, work: Path) -> np.memmap:
    """Rows `indices` of a (T, ...) array or memmap copied one at a time into a new anonymous memmap in `work`
    (the frames that frame selection kept; never the whole set in RAM)."""
    out = anonymous_memmap(work, arr.dtype, (len(indices),) + tuple(arr.shape[1:]))
    for i, t in enumerate(indices):
        out[i] = arr[t]
    out.flush()
    return out


def _on_canvas(f, shapes: list, work: Path) -> np.memmap:
    """(T, H, W, 3) memmap with frame t (stored back to back in file `f`, shapes[t]) at its top-left corner."""
    H, W = max(s[0] for s in shapes), max(s[1] for s in shapes)
    canvas = anonymous_memmap(work, np.uint8, (len(shapes), H, W, 3))
    offset = 0
    for t, s in enumerate(shapes):
        canvas[t, :s[0], :s[1]] = np.memmap(f, dtype=np.uint8, mode="r", offset=offset, shape=s)
        offset += int(np.prod(s))
    canvas.flush()
    return canvas


def mixed_sizes(sizes: np.ndarray) -> bool:
    return bool((sizes != sizes[0]).any())


def exclude_padding(masks, sizes: np.ndarray, canvas: tuple, work: Path, margin: int = PADDING_MARGIN_PX) -> np.ndarray:
    """(T, H, W) bool masks (None: all True) with each frame's padding and `margin` px next to it set False."""
    if masks is None:
        masks = anonymous_memmap(work, bool, (len(sizes),) + tuple(canvas))
        for t, (h, w) in enumerate(sizes):
            masks[t, :h, :w] = True
    for t, (h, w) in enumerate(sizes):
        masks[t, max(0, h - margin):] = False
        masks[t, :, max(0, w - margin):] = False
    masks.flush()
    return masks


def _find_mask(mask_dir: Path, name: str, by_stem: dict) -> Optional[Path]:
    """COLMAP's `<image name>.png`, else any image file with the same stem."""
    colmap_style = mask_dir / f"{name}.png"
    return colmap_style if colmap_style.is_file() else by_stem.get(Path(name).stem)


def load_masks(mask_dir, names: list, in_sizes: np.ndarray, sizes: np.ndarray, canvas: tuple, work: Path) -> np.ndarray:
    """(T, H, W) bool memmap on the frames' canvas, True = pixel may be tracked (nonzero mask pixels are kept,
    COLMAP's rule); in_sizes / sizes: (T, 2) each frame's input and tracking-resolution size.

    Every frame needs a mask of its input image size; anything else is an error, not a silent skip.
    """
    mask_dir = Path(mask_dir)
    if not mask_dir.is_dir():
        raise InputError(f"mask folder not found: {mask_dir}")
    by_stem = {p.stem: p for p in list_images(mask_dir)}
    missing = [n for n in names if _find_mask(mask_dir, n, by_stem) is None]
    if missing:
        raise InputError(f"mask folder {mask_dir} has no mask for {len(missing)} of {len(names)} frames (first: {missing[0]})")
    masks = anonymous_memmap(work, bool, (len(names),) + tuple(canvas))
    for t, n in enumerate(progress(names, desc="masks", unit="frame", leave=False)):
        p = _find_mask(mask_dir, n, by_stem)
        m = cv2.imdecode(np.fromfile(str(p), np.uint8), cv2.IMREAD_GRAYSCALE) if p.stat().st_size else None
        if m is None:
            raise InputError(f"cannot read mask {p}")
        (ih, iw), (H, W) = in_sizes[t], sizes[t]
        if m.shape != (ih, iw):
            raise InputError(f"mask {p.name} is {m.shape[1]}x{m.shape[0]}, its frame {iw}x{ih}")
        masks[t, :H, :W] = cv2.resize(m, (int(W), int(H)), interpolation=cv2.INTER_NEAREST) > 0 if (H, W) != (ih, iw) else m > 0
    masks.flush()
    return masks
