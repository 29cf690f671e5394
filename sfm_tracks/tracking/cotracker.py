"""CoTracker3 as a `TrackProvider`: offline (whole clip) and online (streamed chunks).

Both return positions in both time directions: the offline one through the predictor's backward
pass, the online one by streaming the time-reversed video for the frames before each query.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from cotracker3 import CoTrackerOnlinePredictor, CoTrackerPredictor

from ..tracks import Tracks
from .providers import TrackProvider


def _inside(xy: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """(..., 2) positions within the image: a point the model places outside the frame is not visible."""
    return (xy[..., 0] >= -0.5) & (xy[..., 0] <= W - 0.5) & (xy[..., 1] >= -0.5) & (xy[..., 1] <= H - 0.5)


def _device(device) -> torch.device:
    """torch.device, refusing one this machine does not have (torch would fail later, less clearly)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be like 'cpu' or 'cuda', got {device!r}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: no CUDA device available to torch")
    return dev


def _to_video(frames: np.ndarray, device) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (1, T, 3, H, W) float32 in [0, 255]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2)[None].float()


class CoTrackerProvider(TrackProvider):
    """Offline CoTracker3. `checkpoint`: "default" (best weights found, see cotracker3.checkpoint), a path, or None.

    visible = vis > `vis_threshold` (0.9, the official predictor's) and inside the image; confidence = the
    model's confidence that the point lies within 12 px of the truth. mode: "exact" or "fast" (see cotracker3.fast).
    """

    name = "cotracker3"

    def __init__(self, checkpoint: Optional[str] = "default", device: str = "cpu", iters: int = 6,
                 vis_threshold: float = 0.9, corr_chunk_size: Optional[int] = 256, mode: str = "exact", **model_config):
        self.device = _device(device)
        self.predictor = CoTrackerPredictor(checkpoint=checkpoint, mode=mode, **model_config).to(self.device)
        self.predictor.set_chunking(corr_chunk_size)
        self.iters = iters
        self.vis_threshold = vis_threshold

    @property
    def checkpoint_source(self) -> str:
        return self.predictor.checkpoint_source

    def track(self, frames: np.ndarray, queries: np.ndarray) -> Tracks:
        T, H, W = frames.shape[:3]
        q = torch.from_numpy(queries).to(self.device)[None]
        xy, _, vis, conf = self.predictor(_to_video(frames, self.device), queries=q, backward_tracking=True,
                                          return_scores=True, iters=self.iters)
        visible = (vis[0] > self.vis_threshold) & _inside(xy[0], H, W)
        n = np.arange(len(queries))
        visible[queries[:, 0].astype(np.int64), n] = True  # the query itself is seen
        return Tracks(xy=xy[0].cpu().numpy(), visible=visible.cpu().numpy(), image_size=(H, W), confidence=conf[0].cpu().numpy())


class CoTrackerOnlineProvider(TrackProvider):
    """Online CoTracker3 streamed over the clip; visible = vis * conf > 0.6 (the official online rule)."""

    name = "cotracker3-online"

    def __init__(self, checkpoint: Optional[str] = "default", device: str = "cpu", iters: int = 6, vis_threshold: float = 0.6,
                 mode: str = "exact", **model_config):
        self.device = _device(device)
        self.predictor = CoTrackerOnlinePredictor(checkpoint=checkpoint, mode=mode, **model_config).to(self.device)
        self.iters = iters
        self.vis_threshold = vis_threshold

    @property
    def checkpoint_source(self) -> str:
        return self.predictor.checkpoint_source

    def _stream(self, video: torch.Tensor, queries: torch.Tensor):
        """Feed chunks [k*step, k*step + 2*step) until the clip ends -> (xy, vis, conf) for all T frames."""
        T = video.shape[1]
        step = self.predictor.step
        self.predictor(video[:, :1], is_first_step=True, queries=queries)
        out = None
        for ind in range(0, max(T - step, 1), step):
            out = self.predictor(video[:, ind:ind + 2 * step], return_scores=True, iters=self.iters)
        return out[0][0], out[2][0], out[3][0]

    def track(self, frames: np.ndarray, queries: np.ndarray) -> Tracks:
        T, H, W = frames.shape[:3]
        video = _to_video(frames, self.device)
        q = torch.from_numpy(queries).to(self.device)[None]
        xy, vis, conf = self._stream(video, q)
        late = queries[:, 0] > 0
        if late.any():  # frames before the query: stream the reversed clip from the query frame on
            rq = q[:, late].clone()
            rq[..., 0] = T - 1 - rq[..., 0]
            rxy, rvis, rconf = (x.flip(0) for x in self._stream(video.flip(1), rq))
            before = (torch.arange(T, device=self.device)[:, None] < q[0, late, 0][None])
            idx = torch.from_numpy(np.flatnonzero(late)).to(self.device)
            xy[:, idx] = torch.where(before[..., None], rxy, xy[:, idx])
            vis[:, idx] = torch.where(before, rvis, vis[:, idx])
            conf[:, idx] = torch.where(before, rconf, conf[:, idx])
        n = np.arange(len(queries))
        qt = queries[:, 0].astype(np.int64)
        xy[qt, n] = q[0, :, 1:]
        visible = (vis * conf > self.vis_threshold) & _inside(xy, H, W)
        visible[qt, n] = True
        return Tracks(xy=xy.cpu().numpy(), visible=visible.cpu().numpy(), image_size=(H, W), confidence=conf.cpu().numpy())
