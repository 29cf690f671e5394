"""`Tracks`: the one container every tracker, filter and the SfM bridge exchange.

Coordinates follow the tracker's convention: x = 0 is the centre of the first pixel column
(COLMAP puts the image corner at 0, so the bridge adds 0.5 px when writing keypoints).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np


@dataclass
class Tracks:
    xy: np.ndarray  # (T, N, 2) float32 pixels
    visible: np.ndarray  # (T, N) bool
    image_size: tuple  # (H, W)
    confidence: Optional[np.ndarray] = None  # (T, N) float32 in [0, 1]
    query_frame: Optional[np.ndarray] = None  # (N,) int
    image_names: Optional[list] = field(default=None)

    def __post_init__(self):
        self.xy = np.asarray(self.xy, dtype=np.float32)
        self.visible = np.asarray(self.visible, dtype=bool)
        if self.xy.ndim != 3 or self.xy.shape[-1] != 2:
            raise ValueError(f"Tracks.xy must be (T, N, 2), got {self.xy.shape}")
        T, N = self.xy.shape[:2]
        if self.visible.shape != (T, N):
            raise ValueError(f"Tracks.visible must be (T, N) = {(T, N)}, got {self.visible.shape}")
        if len(tuple(self.image_size)) != 2 or min(self.image_size) <= 0:
            raise ValueError(f"Tracks.image_size must be (H, W) > 0, got {self.image_size}")
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        bad = ~np.isfinite(self.xy).all(-1) & self.visible
        if bad.any():
            t, n = np.argwhere(bad)[0]
            raise ValueError(f"Tracks.xy has {int(bad.sum())} non-finite visible coordinates (first: frame {t}, track {n})")
        if self.confidence is not None:
            self.confidence = np.asarray(self.confidence, dtype=np.float32)
            if self.confidence.shape != (T, N):
                raise ValueError(f"Tracks.confidence must be (T, N) = {(T, N)}, got {self.confidence.shape}")
            if np.isnan(self.confidence).any():
                raise ValueError("Tracks.confidence contains NaN")
        if self.query_frame is not None:
            self.query_frame = np.asarray(self.query_frame, dtype=np.int64)
            if self.query_frame.shape != (N,):
                raise ValueError(f"Tracks.query_frame must be (N,) = ({N},), got {self.query_frame.shape}")
            if N and (self.query_frame.min() < 0 or self.query_frame.max() >= T):
                raise ValueError(f"Tracks.query_frame must lie in [0, {T - 1}]")
        if self.image_names is not None:
            self.image_names = [str(n) for n in self.image_names]
            if len(self.image_names) != T:
                raise ValueError(f"Tracks.image_names has {len(self.image_names)} names for {T} frames")

    @property
    def num_frames(self) -> int:
        return self.xy.shape[0]

    @property
    def num_tracks(self) -> int:
        return self.xy.shape[1]

    def names(self) -> list:
        """Image names, or `frame_000000.png` style names when none were given."""
        return self.image_names or [f"frame_{t:06d}.png" for t in range(self.num_frames)]

    def select(self, tracks: Optional[Sequence[int] | np.ndarray] = None, frames: Optional[Sequence[int] | np.ndarray] = None) -> "Tracks":
        """A subset of tracks (indices or boolean mask) and/or frames; query frames outside `frames` are dropped."""
        ti = np.arange(self.num_frames) if frames is None else np.arange(self.num_frames)[frames]
        ni = np.arange(self.num_tracks) if tracks is None else np.arange(self.num_tracks)[tracks]
        qf = None
        if self.query_frame is not None and frames is None:
            qf = self.query_frame[ni]
        rows = slice(None) if frames is None else ti[:, None]  # one gather, not a copy of all frames then of the columns
        return Tracks(
            xy=self.xy[rows, ni],
            visible=self.visible[rows, ni],
            image_size=self.image_size,
            confidence=None if self.confidence is None else self.confidence[rows, ni],
            query_frame=qf,
            image_names=None if self.image_names is None else [self.image_names[t] for t in ti],
        )

    def save(self, path: str | Path) -> None:
        """Write an `.npz` atomically (temp file + rename)."""
        path = Path(path)
        arrays = {"xy": self.xy, "visible": self.visible, "image_size": np.array(self.image_size)}
        if self.confidence is not None:
            arrays["confidence"] = self.confidence
        if self.query_frame is not None:
            arrays["query_frame"] = self.query_frame
        if self.image_names is not None:
            arrays["image_names"] = np.array(self.image_names)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> "Tracks":
        with np.load(path, allow_pickle=False) as z:
            return cls(
                xy=z["xy"],
                visible=z["visible"],
                image_size=tuple(z["image_size"].tolist()),
                confidence=z["confidence"] if "confidence" in z else None,
                query_frame=z["query_frame"] if "query_frame" in z else None,
                image_names=z["image_names"].tolist() if "image_names" in z else None,
            )
