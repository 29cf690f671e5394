"""Kubric-style training samples drawn from the synthetic generator, endless and reproducible.

Sample contract (one dict per clip; T = seq_len, N = num_tracks, (H, W) = crop_size):
    video       (T, 3, H, W) float32, RGB in 0..255 (after photometric augmentation)
    trajectory  (T, N, 2) float32, (x, y) pixels, x = 0 at the centre of the first column;
                defined in every frame, also while the point is occluded or out of view
    visibility  (T, N) bool, the point is seen in that frame (not occluded / erased / cropped out)
    valid       (T, N) bool, False only for padding tracks (when a clip had < N visible points);
                use it to mask every per-track loss
    query_frame (N,) int64, a frame where the track is visible (first visible frame, or for a
                `uniform_query_prob` fraction a uniformly drawn visible frame); the query point
                is trajectory[query_frame[n], n]
    seed        int, the generator seed of the clip (for debugging)
Sample i depends only on (seed, i), whichever worker makes it.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from .synthetic import generate_clip
from .textures import load_photos


def _choose_queries(rng, vis: np.ndarray, num_tracks: int, uniform_query_prob: float):
    """Pick up to num_tracks tracks visible at least once and a visible query frame for each.

    vis (T, M) -> indices (n,), query frames (n,)."""
    seen = np.flatnonzero(vis.any(0))
    chosen = rng.permutation(seen)[:num_tracks]
    first = vis[:, chosen].argmax(0)
    uniform = rng.uniform(size=len(chosen)) < uniform_query_prob
    query = first.copy()
    for k in np.flatnonzero(uniform):
        frames = np.flatnonzero(vis[:, chosen[k]])
        query[k] = frames[rng.integers(len(frames))]
    return chosen, query


def _photometric(rng, video: torch.Tensor) -> torch.Tensor:
    """Colour jitter shared by the clip plus small per-frame flicker, and occasional blur.
    video (T, 3, H, W) in [0, 1] -> same."""
    import kornia

    T = video.shape[0]
    b = torch.tensor(rng.uniform(-0.1, 0.1) + rng.normal(0, 0.02, size=T), dtype=video.dtype)
    video = kornia.enhance.adjust_brightness(video, b)
    video = kornia.enhance.adjust_contrast(video, torch.full((T,), rng.uniform(0.7, 1.3), dtype=video.dtype))
    video = kornia.enhance.adjust_saturation(video, torch.full((T,), rng.uniform(0.6, 1.4), dtype=video.dtype))
    video = kornia.enhance.adjust_hue(video, torch.full((T,), rng.uniform(-0.08, 0.08) * 2 * math.pi, dtype=video.dtype))
    if rng.uniform() < 0.25:
        sigma = float(rng.uniform(0.3, 1.2))
        video = kornia.filters.gaussian_blur2d(video, (5, 5), (sigma, sigma))
    return video.clamp(0.0, 1.0)


def _erase(rng, video: torch.Tensor, traj: np.ndarray, vis: np.ndarray, prob: float):
    """CoTracker-style eraser: fill random boxes in random frames with a flat colour; points
    under a box become invisible there.  video (T, 3, H, W), traj (T, M, 2), vis (T, M)."""
    T, _, H, W = video.shape
    for t in range(T):
        if rng.uniform() >= prob:
            continue
        for _ in range(rng.integers(1, 3)):
            w, h = int(rng.uniform(0.1, 0.35) * W), int(rng.uniform(0.1, 0.35) * H)
            x0, y0 = int(rng.integers(0, W - w + 1)), int(rng.integers(0, H - h + 1))
            video[t, :, y0 : y0 + h, x0 : x0 + w] = torch.tensor(rng.uniform(0, 1, size=3), dtype=video.dtype)[:, None, None]
            x, y = traj[t, :, 0], traj[t, :, 1]
            covered = (x >= x0 - 0.5) & (x <= x0 + w - 0.5) & (y >= y0 - 0.5) & (y <= y0 + h - 0.5)
            vis[t] &= ~covered
    return video, vis


class SyntheticTrackingDataset(Dataset):
    """Map-style dataset: item i renders clip (seed, i) and applies Kubric-style sampling."""

    def __init__(
        self,
        num_clips: int = 100_000,
        seq_len: int = 24,
        crop_size: tuple[int, int] = (256, 256),
        render_size: Optional[tuple[int, int]] = None,
        num_tracks: int = 256,
        seed: int = 0,
        dynamic_prob: float = 0.9,
        uniform_query_prob: float = 0.3,
        frame_step_range: tuple[float, float] = (0.5, 2.0),
        extra_frames: int = 8,
        motion_blur_prob: float = 0.1,
        eraser_prob: float = 0.1,
        photometric: bool = True,
        photos: Sequence[np.ndarray] | str | None = None,
        device: str = "cpu",
    ):
        self.num_clips, self.seq_len, self.num_tracks, self.seed = num_clips, seq_len, num_tracks, seed
        self.crop_size = tuple(crop_size)
        self.render_size = tuple(render_size) if render_size else tuple(c + c // 8 for c in self.crop_size)
        assert all(r >= c for r, c in zip(self.render_size, self.crop_size)), "render_size must hold the crop"
        self.dynamic_prob, self.uniform_query_prob = dynamic_prob, uniform_query_prob
        self.frame_step_range, self.extra_frames = frame_step_range, extra_frames
        self.motion_blur_prob, self.eraser_prob, self.photometric = motion_blur_prob, eraser_prob, photometric
        self.photos = load_photos(photos) if isinstance(photos, str) else list(photos or [])
        self.device = device

    def __len__(self) -> int:
        return self.num_clips

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng([self.seed, int(i)])
        clip_seed = int(rng.integers(2**31))
        T = self.seq_len
        T_gen = T + int(rng.integers(0, self.extra_frames + 1))  # clip-length jitter
        (rh, rw), (ch, cw) = self.render_size, self.crop_size
        clip = generate_clip(
            clip_seed, num_frames=T_gen, height=rh, width=rw, num_tracks=2 * self.num_tracks,
            dynamic=bool(rng.uniform() < self.dynamic_prob), device=self.device, photos=self.photos,
            frame_step=float(rng.uniform(*self.frame_step_range)),
            motion_blur_samples=3 if rng.uniform() < self.motion_blur_prob else 0,
        )
        t0 = int(rng.integers(0, T_gen - T + 1))
        y0, x0 = int(rng.integers(0, rh - ch + 1)), int(rng.integers(0, rw - cw + 1))
        video = torch.from_numpy(clip["video"][t0 : t0 + T, y0 : y0 + ch, x0 : x0 + cw]).permute(0, 3, 1, 2).float() / 255.0
        traj = clip["tracks"][t0 : t0 + T] - np.array([x0, y0], dtype=np.float32)
        vis = clip["visibility"][t0 : t0 + T].copy()
        vis &= (traj[..., 0] >= -0.5) & (traj[..., 0] <= cw - 0.5) & (traj[..., 1] >= -0.5) & (traj[..., 1] <= ch - 0.5)
        if self.photometric:
            video = _photometric(rng, video)
        if self.eraser_prob > 0:
            video, vis = _erase(rng, video, traj, vis, self.eraser_prob)
        chosen, query = _choose_queries(rng, vis, self.num_tracks, self.uniform_query_prob)
        N, n = self.num_tracks, len(chosen)
        trajectory = np.zeros((T, N, 2), np.float32)
        visibility = np.zeros((T, N), bool)
        valid = np.zeros((T, N), bool)
        query_frame = np.zeros(N, np.int64)
        trajectory[:, :n], visibility[:, :n], valid[:, :n], query_frame[:n] = traj[:, chosen], vis[:, chosen], True, query
        return dict(
            video=video * 255.0,
            trajectory=torch.from_numpy(trajectory),
            visibility=torch.from_numpy(visibility),
            valid=torch.from_numpy(valid),
            query_frame=torch.from_numpy(query_frame),
            seed=clip_seed,
        )


class SyntheticTrackingStream(IterableDataset):
    """Endless stream over a `SyntheticTrackingDataset`: worker w of W makes items w, w+W, ...,
    so every worker renders different clips and the stream is reproducible.  A DataLoader
    takes whole batches from the workers in turn, so with W workers and batch size B, batch b
    comes from worker w = b % W and holds items start + w + W * (B * (b // W) + j), j < B."""

    def __init__(self, dataset: SyntheticTrackingDataset, start: int = 0):
        self.dataset, self.start = dataset, start

    def __iter__(self):
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        torch.set_num_threads(1) if info is not None else None  # workers parallelise across clips
        i = self.start + wid
        while True:
            yield self.dataset[i]
            i += nw


def collate_clips(samples: list[dict]) -> dict:
    """Stack samples into a batch: tensors gain a leading B axis, `seed` becomes a list."""
    out = {k: torch.stack([s[k] for s in samples]) for k in samples[0] if k != "seed"}
    out["seed"] = [s["seed"] for s in samples]
    return out
