"""Training samples from pseudo-label files (written by ``pipelines/relabel.py``) and their videos.

Reads only the label files and the videos (PyAV), nothing from ``sfm_tracks``: the training side
depends on the file contract, not on how labels were made. A label is used where the teacher saw
the point, the cycle check passed and the 3D check did not reject it
(``visible & cycle_ok & geo_state >= 0``; ``filters`` drops either check, for ablations); that mask is
the sample's ``visibility`` so that the visible-track loss is the only supervision (the paper's
fine-tuning trains no occluded points). A video labelled per epoch (relabel ``--epochs``) gives pass
``r`` over the videos the labels of epoch ``r mod E``: a random teacher per video and epoch.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import av
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset


FILTERS = ("cycle", "geometric")


def epoch_files(labels: str | Path) -> list[list[Path]]:
    """Per finished video of a relabel OUTDIR (sorted by its first file), the label file of each epoch.
    Without a manifest every .npz is a video of one epoch."""
    root = Path(labels)
    manifest = root / "manifest.jsonl"
    videos = {}
    if manifest.is_file():
        for line in manifest.read_text(errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn line from a killed run
            if isinstance(rec, dict) and rec.get("status") == "done":
                videos[rec.get("video", rec["labels"])] = [root / n for n in rec.get("epochs") or [rec["labels"]]]
    else:
        videos = {p.name: [p] for p in root.glob("*.npz")}
    out = sorted((files for files in videos.values() if all(f.is_file() for f in files)), key=lambda fs: fs[0])
    if not out:
        raise FileNotFoundError(f"no pseudo-label files in {root}")
    return out


def label_files(labels: str | Path) -> list[Path]:
    """The distinct .npz files of finished videos in a relabel OUTDIR (sorted)."""
    return sorted({f for files in epoch_files(labels) for f in files})


def read_frames(path: str, start: int, count: int) -> np.ndarray:
    """(count, H, W, 3) uint8 upright RGB frames [start, start + count) of a video (display rotation applied)."""
    out = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for i, frame in enumerate(container.decode(stream)):
            if i >= start + count:
                break
            if i >= start:
                img = frame.to_ndarray(format="rgb24")
                k = int(round(float(frame.rotation or 0) / 90.0)) % 4
                out.append(np.ascontiguousarray(np.rot90(img, k)) if k else img)
    if len(out) != count:
        raise ValueError(f"{path}: got {len(out)} of frames [{start}, {start + count})")
    return np.stack(out)


def label_mask(z, filters=FILTERS) -> np.ndarray:
    """(T, N) labels to train on: the teacher saw the point and each filter in ``filters`` kept it."""
    mask = z["visible"].copy()
    if "cycle" in filters:
        mask &= z["cycle_ok"]
    if "geometric" in filters:
        mask &= z["geo_state"] >= 0
    return mask


class PseudoLabelDataset(Dataset):
    """Item i: a random ``seq_len`` window of video ``i % num_videos`` (seeded by (seed, i)) resized to
    ``crop_size``, with up to ``num_tracks`` tracks that have >= 2 labelled frames in it; the labels are
    those of epoch ``(i // num_videos) % E`` of the video.

    Contract of ``cotracker3.data``: video (T,3,H,W) float 0..255, trajectory (T,N,2), visibility
    (T,N) = label mask, valid (T,N) (False on padding tracks), query_frame (N,) = first labelled frame.
    """

    def __init__(self, labels: str, seq_len: int, num_tracks: int, crop_size, seed: int = 0,
                 samples_per_video: int = 100, filters=FILTERS):
        unknown = set(filters) - set(FILTERS)
        if unknown:
            raise ValueError(f"unknown label filters {sorted(unknown)}; choose from {FILTERS}")
        self.videos = epoch_files(labels)
        self.seq_len, self.num_tracks, self.crop_size = seq_len, num_tracks, tuple(crop_size)
        self.seed, self.samples_per_video, self.filters = seed, samples_per_video, tuple(filters)

    def __len__(self) -> int:
        return len(self.videos) * self.samples_per_video

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng([self.seed, i])
        epochs = self.videos[i % len(self.videos)]
        with np.load(epochs[(i // len(self.videos)) % len(epochs)], allow_pickle=False) as z:
            mask, tracks = label_mask(z, self.filters), z["tracks"]
            video_path, size = str(z["video_path"]), tuple(int(s) for s in z["frame_size"])
        T = len(tracks)
        S = min(self.seq_len, T)
        a = int(rng.integers(0, T - S + 1))
        m = mask[a:a + S]
        cand = np.flatnonzero(m.sum(0) >= 2)
        pick = np.sort(rng.choice(cand, size=min(self.num_tracks, len(cand)), replace=False))
        N = self.num_tracks
        traj = np.zeros((S, N, 2), np.float32)
        vis = np.zeros((S, N), bool)
        valid = np.zeros((S, N), bool)
        qf = np.zeros(N, np.int64)
        k = len(pick)
        traj[:, :k] = np.nan_to_num(tracks[a:a + S, pick])
        vis[:, :k] = m[:, pick]
        valid[:, :k] = True
        qf[:k] = np.argmax(m[:, pick], 0)
        # labels are in the stored frame size; bring video and labels to crop_size (pixel-centre convention)
        frames = torch.from_numpy(read_frames(video_path, a, S)).permute(0, 3, 1, 2).float()
        h, w = self.crop_size
        video = F.interpolate(frames, (h, w), mode="bilinear", align_corners=False, antialias=True)
        scale = np.array([w / size[1], h / size[0]], np.float32)
        traj = (traj + 0.5) * scale - 0.5
        return {"video": video.clamp(0, 255), "trajectory": torch.from_numpy(traj), "visibility": torch.from_numpy(vis),
                "valid": torch.from_numpy(valid), "query_frame": torch.from_numpy(qf)}


class MixedDataset(Dataset):
    """Item i from ``extra`` with probability ``fraction`` (decided by (seed, i)), else from ``base``."""

    def __init__(self, base: Dataset, extra: Dataset, fraction: float, seed: int = 0):
        self.base, self.extra, self.fraction, self.seed = base, extra, fraction, seed

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        if np.random.default_rng([self.seed, i, 1]).uniform() < self.fraction:
            return self.extra[i % len(self.extra)]
        return self.base[i]


def pseudo_dataset(labels: str, seq_len: int, num_tracks: int, crop_size, seed: int, samples_per_video: int = 100,
                   synthetic_fraction: float = 0.0, synthetic: Optional[dict] = None, filters=FILTERS):
    """The "pseudo" training dataset, optionally mixed with synthetic clips."""
    ds = PseudoLabelDataset(labels, seq_len, num_tracks, crop_size, seed, samples_per_video, filters)
    if synthetic_fraction > 0:
        from .dataset import SyntheticTrackingDataset
        syn = SyntheticTrackingDataset(seq_len=seq_len, num_tracks=num_tracks, crop_size=tuple(crop_size), seed=seed,
                                       **(synthetic or {}))
        ds = MixedDataset(ds, syn, synthetic_fraction, seed)
    return ds
