"""Fixed synthetic evaluation set in the TAP-Vid pickle layout.

TAP-Vid stores, per video, `points` (N, T, 2) as (x, y) normalised by the image size with
(0, 0) the top-left *corner* of the image, i.e. a pixel centre sits at (j + 0.5) / W.  Our
tracks put pixel centres at integers, so we store (x + 0.5) / W; `tapvid_points_to_pixels`
inverts it exactly.  (Note: some loaders, e.g. the official CoTracker one, rescale with
W - 1 instead; that differs by at most half a pixel.)
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from .synthetic import generate_clip


def tracks_to_tapvid(tracks: np.ndarray, visibility: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """tracks (T, N, 2) pixels, visibility (T, N) -> points (N, T, 2) in [0, 1], occluded (N, T)."""
    points = (tracks.transpose(1, 0, 2) + 0.5) / np.array([width, height], dtype=np.float32)
    return points.astype(np.float32), ~visibility.T


def tapvid_points_to_pixels(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """points (N, T, 2) TAP-Vid normalised -> (T, N, 2) pixels in tracker convention."""
    return (points * np.array([width, height], dtype=np.float32) - 0.5).transpose(1, 0, 2)


def write_tapvid_eval_set(
    path: str | Path,
    num_clips: int = 30,
    seed: int = 1_000_000,
    num_frames: int = 24,
    height: int = 256,
    width: int = 256,
    num_tracks: int = 256,
    static_every: int = 3,
    device: str = "cpu",
) -> dict:
    """Render `num_clips` clips (seeds seed, seed+1, ...; every `static_every`-th a static-scene
    clip) and store {name: {"video", "points", "occluded"}} at `path`: as .npz (no pickle, see
    cotracker3.evaluation.datasets) when `path` ends in .npz, else pickled.  Returns the dict."""
    data = {}
    for k in range(num_clips):
        dynamic = not (static_every and k % static_every == static_every - 1)
        clip = generate_clip(seed + k, num_frames, height, width, num_tracks, dynamic=dynamic, device=device)
        points, occluded = tracks_to_tapvid(clip["tracks"], clip["visibility"], height, width)
        data[f"synthetic_{k:03d}"] = {"video": clip["video"], "points": points, "occluded": occluded}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npz":
        from cotracker3.evaluation.datasets import save_tapvid_npz

        save_tapvid_npz(data, path)
        return data
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")  # atomic: readers never see half a file
    with open(tmp, "wb") as f:
        pickle.dump(data, f, protocol=4)
    tmp.replace(path)
    return data
