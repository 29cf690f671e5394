"""Which decoded frames enter the model and the exports: the sharpest of each slot, near-duplicates skipped.

Why: a 30 fps video gives many near-identical views and some motion-blurred ones; the mapper and the
trainers (3DGS, NeRF) do better with fewer, sharp, spread-out views (nerfstudio #3408, gaussian-splatting
PR #348). Design: every decoded frame is scored while it is decoded (`sharpness`, one number per frame, so
nothing but the memory-mapped frames is kept). When frames are to be chosen, a cheap Lucas-Kanade pass over
all decoded frames measures the track motion for the near-duplicate test; the kept frames are then copied
to their own memmap and everything after (queries, the run's tracker, filters, mapping, exports) sees only
them. Tracking only the kept frames matters: a tracker carried through a blurred frame drifts, and that
error would stay in the sharp frames after it (measured: BENCHMARKS.md, Frame selection).
Slots are `--frames N` equal runs of the decoded frames, or `--fps F` runs of 1/F seconds of video. In each
slot the sharpest frame wins (ties: the earlier one); a winner whose median track motion since the last
kept frame is below `min_motion` x the long image side is a near-duplicate and yields to the next sharpest
frame of the slot that is not, if that one is at least half as sharp; else the slot keeps nothing. Deterministic.
"""
from __future__ import annotations

import logging
from typing import Optional

import cv2
import numpy as np

from .outdir import InputError
from .tracks import Tracks
from .video import grey as to_grey

logger = logging.getLogger(__name__)

SHARP_ENOUGH = 0.5  # a near-duplicate winner yields to the next frame of its slot scoring at least this fraction of it
SELECT_CONF = {"frames": None, "fps": None, "min_motion": 0.01, "score_side": 256}


def spread(n: int, count: int) -> np.ndarray:
    """At most `count` indices evenly spread over range(n), first and last included (sorted, unique; empty if n == 0).
    Used wherever a bounded, even sample is taken: query frames, loop-closure keyframes, pairs and matches to check."""
    if n <= 0:
        return np.zeros(0, np.int64)
    return np.unique(np.round(np.linspace(0, n - 1, max(1, min(count, n)))).astype(np.int64))


def thinned(n: int, seen: float, per_row: float) -> np.ndarray:
    """(n,) bool: every item when a typical row (a frame) sees `seen` <= per_row of them, else an evenly spread
    subset (`spread`) of which such a row sees about per_row. Sizes the tracks a keyframe mapper and the points a
    final BA work on, per frame rather than in total, so a long video keeps a short one's coverage."""
    keep = n if seen <= per_row else int(np.ceil(n * per_row / seen))
    mask = np.zeros(n, bool)
    mask[spread(n, keep)] = True
    return mask


def sharpness(frame: np.ndarray, max_side: int = 256) -> float:
    """Variance of the Laplacian of the grey frame (H, W, 3) uint8, downscaled to `max_side` (INTER_AREA).

    Blur removes the high frequencies the Laplacian responds to, so a blurred frame scores lower than a
    sharp frame of the same scene; scores are compared only within a slot (nearby frames, similar content).
    """
    grey = to_grey(frame)
    scale = max_side / max(grey.shape)
    if scale < 1:
        grey = cv2.resize(grey, (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def slot_ids(num_frames: int, frames: Optional[int] = None, fps: Optional[float] = None, rate: Optional[float] = None,
             stride: int = 1) -> np.ndarray:
    """(T,) slot index of each decoded frame: `frames` equal runs, or runs of 1/fps seconds of a video whose
    decoded frames (every `stride`-th) come at `rate` / stride per second."""
    t = np.arange(num_frames)
    if frames is not None:
        return np.minimum(t * frames // num_frames, frames - 1)
    return np.floor(t * stride * fps / rate + 1e-9).astype(np.int64)


def median_motion(tracks: Tracks, a: int, b: int) -> Optional[float]:
    """Median displacement (px) of the tracks visible in frames a and b; None when they share none."""
    both = tracks.visible[a] & tracks.visible[b]
    if not both.any():
        return None
    return float(np.median(np.linalg.norm(tracks.xy[b, both] - tracks.xy[a, both], axis=-1)))


def select_frames(scores: np.ndarray, slots: np.ndarray, tracks: Tracks, min_motion: float) -> tuple:
    """(kept frame indices (K,), {frame index: why dropped}) from (T,) sharpness scores, slot ids and tracks
    over all T frames (with image_names).

    min_motion: near-duplicate threshold as a fraction of the long image side.
    """
    names = tracks.names()
    limit = min_motion * max(tracks.image_size)
    kept, dropped = [], {}
    for s in np.unique(slots):
        members = np.flatnonzero(slots == s)
        order = members[np.argsort(-scores[members], kind="stable")]  # sharpest first; ties: the earlier frame
        best = int(order[0])
        pick = None
        for t in order[scores[order] >= SHARP_ENOUGH * scores[best]]:  # a near-duplicate yields to a sharp-enough frame
            motion = median_motion(tracks, kept[-1], int(t)) if kept else None
            if motion is not None and motion < limit:
                dropped[int(t)] = f"near-duplicate of {names[kept[-1]]} (median track motion {motion:.1f} px < {limit:.1f} px)"
                continue
            pick = int(t)
            break
        for t in members:
            if t != pick and int(t) not in dropped:
                dropped[int(t)] = f"less sharp than {names[pick if pick is not None else best]} in its slot ({scores[t]:.1f} vs " \
                                  f"{scores[pick if pick is not None else best]:.1f})"
        if pick is not None:
            kept.append(pick)
    return np.array(kept, np.int64), dropped


def plan(num_frames: int, conf: dict, rate: Optional[float], stride: int) -> tuple:
    """(slot ids or None for every frame, note): what --frames / --fps ask of `num_frames` decoded frames."""
    n, fps = conf["frames"], conf["fps"]
    if n is None and fps is None:
        return None, "every frame (no --frames / --fps)"
    if n is not None and n >= num_frames:
        return None, f"--frames {n} >= the {num_frames} decoded frames: every frame is used"
    if fps is not None and fps >= rate / stride:
        return None, f"--fps {fps:g} is at or above the video's {rate / stride:.3g} frames per second (after --stride): every frame is used"
    slots = slot_ids(num_frames, frames=n, fps=fps, rate=rate, stride=stride)
    what = f"--frames {n}" if n is not None else f"--fps {fps:g} of a {rate / stride:.3g} fps video"
    return slots, f"{what}: the sharpest frame of each of {len(np.unique(slots))} slots, near-duplicates skipped"


def selection_report(names: list, kept: np.ndarray, dropped: dict, scores: np.ndarray, note: str) -> dict:
    """report.json's `frame_selection`: the kept frames, and why each other frame was dropped."""
    return {"rule": note, "kept": [names[t] for t in kept], "num_kept": int(len(kept)), "num_decoded": len(names),
            "dropped": {names[t]: why for t, why in sorted(dropped.items())},
            "sharpness": {n: round(float(s), 2) for n, s in zip(names, scores)}}


def choose_frames(names: list, scores: np.ndarray, conf: dict, stride: int, rate: Optional[float], min_frames: int,
                  motion_tracks) -> tuple:
    """(indices of the frames that enter tracking, the model and the exports, report.json's `frame_selection`).

    conf: SELECT_CONF keys; rate: the video's frames per second (needed only for conf['fps']);
    motion_tracks(): Tracks over all decoded frames, called only when frames are to be chosen.
    """
    slots, note = plan(len(names), conf, rate, stride)
    if slots is None:
        kept, dropped = np.arange(len(names)), {}
    else:
        kept, dropped = select_frames(scores, slots, motion_tracks(), conf["min_motion"])
    if conf["frames"] is not None or conf["fps"] is not None:
        logger.info("frame selection: %s -> %d of %d frames", note, len(kept), len(names))
    if len(kept) < min_frames:
        raise InputError(f"frame selection kept {len(kept)} frame(s) ({note}), at least {min_frames} needed; ask for more frames")
    return kept, selection_report(names, kept, dropped, scores, note)
