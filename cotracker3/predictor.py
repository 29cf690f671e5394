"""Predictors: the official user-facing API around the models.

They resize the video to the model resolution (384x512), build query grids, add the 6x6 support
grid, run backward tracking for queries after frame 0, overwrite each track at its query frame
with the query itself, and rescale to the input resolution, exactly as the official classes do.
Beyond the official API: `return_scores=True` also returns float visibility and confidence, and
`corr_chunk_size` / `fmaps_chunk_size` bound memory with unchanged outputs, and `mode="fast"`
trades a measured sliver of accuracy for speed (cotracker3.fast; default "exact" = official numerics).

Inputs are checked before the model sees them (`_as_inputs`): numpy arrays and lists are converted to
tensors, wrong shapes, dtypes, NaN and out-of-range values raise ValueError naming the problem. A float
video whose values all lie in [0, 1] is accepted with a UserWarning (the model expects 0..255; a legit
but nearly black 0..255 video would look the same, so it is not refused).
"""
from __future__ import annotations

import warnings
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import build_model
from .fast import check_mode


def get_points_on_a_grid(size: int, extent: Tuple[int, int], device=None) -> torch.Tensor:
    """size x size points (x, y) covering an (H, W) extent with a W/64 margin, row-major -> (1, size^2, 2)."""
    H, W = extent
    if size == 1:
        return torch.tensor([W / 2, H / 2], device=device)[None, None]
    margin = W / 64
    ys = torch.linspace(margin, H - margin, size, device=device)
    xs = torch.linspace(margin, W - margin, size, device=device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1).reshape(1, -1, 2)


def _as_tensor(x, what: str, shape: str, device=None) -> torch.Tensor:
    """A tensor from a tensor, numpy array or nested list; ValueError naming `shape` otherwise."""
    if isinstance(x, torch.Tensor):
        return x if device is None else x.to(device)
    try:
        arr = np.asarray(x)
        if arr.dtype == object:
            raise ValueError("ragged or mixed contents")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} must be a tensor or array {shape}, got {type(x).__name__} ({e})") from None
    return t if device is None else t.to(device)


def _as_inputs(video, queries=None, segm_mask=None, grid_size: int = 0, grid_query_frame: int = 0):
    """Validate and convert the public call's inputs -> (video, queries, segm_mask) tensors on video's device."""
    video = _as_tensor(video, "video", "(B, T, 3, H, W)")
    if video.dtype == torch.bool or video.is_complex():
        raise ValueError(f"video must be uint8 or float with values in 0..255, got dtype {video.dtype}")
    _check_video(video)
    if video.is_floating_point() and video.numel() and 0.0 < float(video.max()) <= 1.0 and float(video.min()) >= 0.0:
        warnings.warn("video values all lie in [0, 1], but CoTracker expects 0..255: multiply by 255 "
                      "(or ignore this for a nearly black video)", UserWarning, stacklevel=3)
    if isinstance(grid_size, bool) or not isinstance(grid_size, (int, np.integer)) or grid_size < 0:
        raise ValueError(f"grid_size must be an integer >= 0 (0: no grid), got {grid_size!r}")
    if isinstance(grid_query_frame, bool) or not isinstance(grid_query_frame, (int, np.integer)):
        raise ValueError(f"grid_query_frame must be an integer frame index, got {grid_query_frame!r}")
    if queries is not None:
        queries = _as_tensor(queries, "queries", "(B, N, 3) of (t, x, y)", video.device)
        if queries.ndim == 2 and queries.shape[-1] == 3:
            raise ValueError(f"queries must be (B, N, 3) of (t, x, y), got {tuple(queries.shape)}: add the batch dimension (queries[None])")
        if queries.dtype == torch.bool or queries.is_complex():
            raise ValueError(f"queries must be numbers (t, x, y), got dtype {queries.dtype}")
        queries = queries.float()
    if segm_mask is not None:
        segm_mask = _as_tensor(segm_mask, "segm_mask", "(1, 1, H, W)", video.device)
        if segm_mask.ndim != 4 or segm_mask.shape[:2] != (1, 1):
            raise ValueError(f"segm_mask must be (1, 1, H, W), got {tuple(segm_mask.shape)}")
    return video, queries, segm_mask


def _check_video(video: torch.Tensor, min_frames: int = 1) -> None:
    if not isinstance(video, torch.Tensor) or video.ndim != 5 or video.shape[2] != 3:
        raise ValueError(f"video must be a tensor (B, T, 3, H, W), got {getattr(video, 'shape', type(video))}")
    if video.shape[1] < min_frames:
        raise ValueError(f"video must have at least {min_frames} frames, got {video.shape[1]}")
    if video.shape[3] < 2 or video.shape[4] < 2:
        raise ValueError(f"video frames must be at least 2x2 pixels, got {video.shape[3]}x{video.shape[4]}")
    if not torch.isfinite(video).all():
        raise ValueError("video contains NaN or Inf")


def _check_queries(queries: torch.Tensor, B: int, T: Optional[int], H: int, W: int) -> None:
    if queries.ndim != 3 or queries.shape[0] != B or queries.shape[2] != 3:
        raise ValueError(f"queries must be (B={B}, N, 3) as (t, x, y), got {tuple(queries.shape)}")
    if not torch.isfinite(queries).all():
        raise ValueError("queries contain NaN or Inf")
    if queries.shape[1] == 0:
        raise ValueError("queries are empty (N = 0)")
    t, x, y = queries.unbind(-1)
    if (t < 0).any() or (T is not None and (t > T - 1).any()) or (t != t.round()).any():
        raise ValueError(f"query frames must be integers in [0, {'T-1' if T is None else T - 1}]")
    if (x < -0.5).any() or (x > W - 0.5).any() or (y < -0.5).any() or (y > H - 0.5).any():
        raise ValueError(f"queries lie outside the {W}x{H} image (x in [-0.5, {W - 0.5}], y in [-0.5, {H - 0.5}] allowed)")


class _PredictorBase(torch.nn.Module):
    support_grid_size = 6

    def _setup(self, model, mode: str = "exact") -> None:
        check_mode(mode)
        self.model = model.eval()
        self.interp_shape = model.model_resolution
        self.mode = mode

    @classmethod
    def from_model(cls, model, mode: str = "exact"):
        """Wrap an existing model (e.g. one being trained) without rebuilding or reloading it."""
        predictor = cls.__new__(cls)
        torch.nn.Module.__init__(predictor)
        predictor._setup(model, mode)
        return predictor

    @property
    def checkpoint_source(self) -> str:
        return getattr(self.model, "checkpoint_source", "random initialisation (no checkpoint)")

    def _resize(self, video: torch.Tensor) -> torch.Tensor:
        B, T, C, H, W = video.shape
        out = F.interpolate(video.reshape(B * T, C, H, W).float(), tuple(self.interp_shape), mode="bilinear", align_corners=True)
        return out.reshape(B, T, C, *self.interp_shape)

    def _to_model(self, H: int, W: int, device) -> torch.Tensor:
        """Factor from input pixels to model pixels (x, y)."""
        return torch.tensor([(self.interp_shape[1] - 1) / (W - 1), (self.interp_shape[0] - 1) / (H - 1)], device=device)

    def _to_input(self, H: int, W: int, device) -> torch.Tensor:
        """Factor from model pixels back to input pixels (x, y)."""
        return torch.tensor([(W - 1) / (self.interp_shape[1] - 1), (H - 1) / (self.interp_shape[0] - 1)], device=device)

    def _support_grid(self, B: int, device) -> torch.Tensor:
        grid = get_points_on_a_grid(self.support_grid_size, self.interp_shape, device=device)
        return torch.cat([torch.zeros_like(grid[:, :, :1]), grid], dim=2).repeat(B, 1, 1)

    def _grid_queries(self, B: int, grid_size: int, query_frame: int, segm_mask, device) -> torch.Tensor:
        grid = get_points_on_a_grid(grid_size, self.interp_shape, device=device)
        if segm_mask is not None:
            mask = F.interpolate(segm_mask.float(), tuple(self.interp_shape), mode="nearest")
            keep = mask[0, 0][grid[0, :, 1].round().long(), grid[0, :, 0].round().long()].bool()
            grid = grid[:, keep]
        return torch.cat([torch.full_like(grid[:, :, :1], float(query_frame)), grid], dim=2).repeat(B, 1, 1)

    def set_chunking(self, corr_chunk_size: Optional[int] = None) -> None:
        """Process the correlation stage in chunks of this many points (memory bound, same outputs)."""
        self.model.corr_chunk_size = corr_chunk_size


class CoTrackerPredictor(_PredictorBase):
    """Offline CoTracker3 on whole videos.

    checkpoint: None (random weights, as the official class), "default" (official weights from the
    torch hub cache or a download, else the small weights shipped here), or a path. window_len: None
    keeps the checkpoint's own (60 for the official offline model); a value overrides it.
    mode: "exact" (official numerics) or "fast" (channels-last encoder, bf16 correlation, see cotracker3.fast).
    """

    def __init__(self, checkpoint: Optional[str] = None, window_len: Optional[int] = None, mode: str = "exact", **model_config):
        super().__init__()
        check_mode(mode)
        self._setup(build_model("offline", checkpoint, window_len=window_len, **model_config), mode)

    @torch.no_grad()
    def forward(self, video: torch.Tensor, queries: Optional[torch.Tensor] = None, segm_mask: Optional[torch.Tensor] = None,
                grid_size: int = 0, grid_query_frame: int = 0, backward_tracking: bool = False,
                return_scores: bool = False, iters: int = 6, fmaps_chunk_size: int = 200):
        """video (B, T, 3, H, W) in [0, 255]; queries (B, N, 3) (t, x, y) input pixels, or a grid / dense grid.

        Returns tracks (B, T, N, 2) input pixels and visibility (B, T, N) bool (vis > 0.9); with
        `return_scores`, also visibility and confidence probabilities (B, T, N). grid_size 0 without queries
        tracks a dense grid (the official API); a negative grid_size is an error.
        """
        video, queries, segm_mask = _as_inputs(video, queries, segm_mask, grid_size, grid_query_frame)
        B, T, _, H, W = video.shape
        if not 0 <= grid_query_frame < T:
            raise ValueError(f"grid_query_frame must lie in [0, {T - 1}], got {grid_query_frame}")
        if queries is None and grid_size == 0:
            return self._dense(video, grid_query_frame, backward_tracking, return_scores, iters, fmaps_chunk_size)
        return self._sparse(video, queries, segm_mask, grid_size, grid_size == 0 or segm_mask is not None,
                            grid_query_frame, backward_tracking, return_scores, iters, fmaps_chunk_size)

    def _dense(self, video, grid_query_frame, backward_tracking, return_scores, iters, fmaps_chunk_size, grid_size=80):
        """All pixels on a W/80 lattice, in grid_step^2 passes (as the official predictor); the video is
        resized and encoded once for all passes."""
        B, T, _, H, W = video.shape
        step = max(W // grid_size, 1)
        gw, gh = W // step, H // step
        resized = self._resize(video)
        fmaps = self.model.features(resized, fmaps_chunk_size, self.mode) if hasattr(self.model, "features") else None
        outs = []
        for offset in range(step * step):
            ox, oy = offset % step, offset // step
            xs = torch.arange(gw, device=video.device).repeat(gh) * step + ox
            ys = torch.arange(gh, device=video.device).repeat_interleave(gw) * step + oy
            q = torch.stack([torch.full_like(xs, grid_query_frame), xs, ys], dim=-1).float()[None].repeat(B, 1, 1)
            outs.append(self._sparse(video, q, None, 0, False, grid_query_frame, backward_tracking, return_scores, iters,
                                     fmaps_chunk_size, encoded=(resized, fmaps)))
        return tuple(torch.cat(parts, dim=2) for parts in zip(*outs))

    def _sparse(self, video, queries, segm_mask, grid_size, add_support_grid, grid_query_frame, backward_tracking,
                return_scores, iters, fmaps_chunk_size, encoded=None):
        """``encoded``: (resized video, its features or None) made once by the caller for several calls."""
        B, T, _, H, W = video.shape
        device = video.device
        resized, fmaps = encoded if encoded is not None else (self._resize(video), None)
        if queries is not None:
            _check_queries(queries, B, T, H, W)
            queries = queries.clone().float()
            queries[:, :, 1:] *= self._to_model(H, W, device)
        else:
            queries = self._grid_queries(B, grid_size, grid_query_frame, segm_mask, device)
        N = queries.shape[1]
        if add_support_grid:
            queries = torch.cat([queries, self._support_grid(B, device)], dim=1)
        # Both time directions see the same frames: encode them once (an offline model's `features`).
        if fmaps is None and backward_tracking and hasattr(self.model, "features"):
            fmaps = self.model.features(resized, fmaps_chunk_size, self.mode)
        extra = {} if fmaps is None else {"fmaps": fmaps}
        tracks, vis, conf, _ = self.model(resized, queries, iters=iters, fmaps_chunk_size=fmaps_chunk_size, mode=self.mode, **extra)
        if backward_tracking:
            extra = {} if fmaps is None else {"fmaps": fmaps.flip(1)}
            tracks, vis, conf = self._backward(resized, queries, tracks, vis, conf, iters, fmaps_chunk_size, extra)
        tracks, vis, conf, queries = tracks[:, :, :N], vis[:, :, :N], conf[:, :, :N], queries[:, :N]
        visible = vis > 0.9
        # Each track passes exactly through its query point, visible there.
        qt = queries[..., 0].long()
        b = torch.arange(B, device=device)[:, None]
        n = torch.arange(N, device=device)[None]
        tracks[b, qt, n] = queries[..., 1:]
        visible[b, qt, n] = True
        tracks = tracks * self._to_input(H, W, device)
        if return_scores:
            return tracks, visible, vis, conf
        return tracks, visible

    def _backward(self, video, queries, tracks, vis, conf, iters, fmaps_chunk_size, extra=None):
        """Track the time-reversed video and use it for the frames before each query (`extra`: its features)."""
        T = video.shape[1]
        inv_queries = queries.clone()
        inv_queries[:, :, 0] = T - 1 - inv_queries[:, :, 0]
        inv = self.model(video.flip(1), inv_queries, iters=iters, fmaps_chunk_size=fmaps_chunk_size, mode=self.mode, **(extra or {}))
        before = torch.arange(T, device=video.device)[None, :, None] < queries[:, None, :, 0]  # (B, T, N)
        tracks = torch.where(before[..., None], inv[0].flip(1), tracks)
        vis = torch.where(before, inv[1].flip(1), vis)
        conf = torch.where(before, inv[2].flip(1), conf)
        return tracks, vis, conf


class CoTrackerOnlinePredictor(_PredictorBase):
    """Online CoTracker3: feed chunks of `2 * step` frames every `step` frames.

    window_len: None keeps the checkpoint's own (16 for the official online model); mode as the offline predictor.
    """

    def __init__(self, checkpoint: Optional[str] = None, window_len: Optional[int] = None, mode: str = "exact", **model_config):
        super().__init__()
        check_mode(mode)
        self._setup(build_model("online", checkpoint, window_len=window_len, **model_config), mode)

    def _setup(self, model, mode: str = "exact") -> None:
        super()._setup(model, mode)
        self.step = model.window_len // 2
        self.queries = None

    @torch.no_grad()
    def forward(self, video_chunk: torch.Tensor, is_first_step: bool = False, queries: Optional[torch.Tensor] = None,
                grid_size: int = 5, grid_query_frame: int = 0, add_support_grid: bool = False,
                segm_mask: Optional[torch.Tensor] = None, return_scores: bool = False, iters: int = 6):
        """First call (`is_first_step=True`): set the queries (input pixels) or a grid; returns (None, None).

        Later calls: `video_chunk` (B, <=2*step, 3, H, W) = frames [k*step, k*step + 2*step); returns tracks
        (B, frames so far, N, 2) and visibility (vis * conf > 0.6), plus probabilities with `return_scores`.
        """
        video_chunk, queries, segm_mask = _as_inputs(video_chunk, queries, segm_mask, grid_size, grid_query_frame)
        B, T, _, H, W = video_chunk.shape
        device = video_chunk.device
        if is_first_step:
            self.model.init_video_online_processing()
            if queries is not None:
                _check_queries(queries, B, None, H, W)
                q = queries.clone().float()
                q[:, :, 1:] *= self._to_model(H, W, device)
            elif grid_size > 0:
                q = self._grid_queries(B, grid_size, grid_query_frame, segm_mask, device)
            else:
                raise ValueError("give queries or grid_size > 0 on the first step")
            self.N = q.shape[1]
            if add_support_grid:
                q = torch.cat([q, self._support_grid(B, device)], dim=1)
            self.queries = q
            return (None, None)
        if self.queries is None or self.model.online_ind is None:
            raise RuntimeError("call the predictor with is_first_step=True (and the queries) first")
        if T > 2 * self.step:
            raise ValueError(f"chunks must have at most {2 * self.step} frames, got {T}")
        tracks, vis, conf, _ = self.model(self._resize(video_chunk), self.queries, iters=iters, is_online=True, mode=self.mode)
        tracks, vis, conf = tracks[:, :, :self.N], vis[:, :, :self.N], conf[:, :, :self.N]
        tracks = tracks * self._to_input(H, W, device)
        visible = vis * conf > 0.6
        if return_scores:
            return tracks, visible, vis, conf
        return tracks, visible
