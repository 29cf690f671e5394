"""The fast inference path of CoTracker3 (`mode="fast"`): same network, cheaper arithmetic.

Three changes against the exact path, each measured in BENCHMARKS.md ("Tracker speed on CPU"):
- channels-last memory format in the fp32 feature encoder (oneDNN's fast convolution layout).
  A bf16 encoder is ~2x faster but moved real-video tracks of the shipped weights by 0.08-0.12 px
  mean (bound: 0.05), also with a fp32 stem or a fp32 fusion head.
- the correlation MLP runs in bf16 on a bf16 copy of its weights (made per call, so a model
  being trained is never stale). The transformer stays fp32: every bf16 variant of it measured
  (pure, autocast, bf16 attention or MLP only) broke the 0.05 px mean bound.
- a correlation that gathers one (2r+2)^2 integer patch per point and level and interpolates
  the correlation once: the (2r+1)^2 samples around a point share their fractional weights, so
  this equals bilinear sampling of every neighbour (border padding reproduced by clamping).
"""
from __future__ import annotations

import torch
from torch.func import functional_call

MODES = ("exact", "fast")


def check_mode(mode: str) -> bool:
    """True for the fast path; one clear error for anything but 'exact' / 'fast'."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return mode == "fast"


class Bf16:
    """Calls a module in bf16 on a bf16 copy of its weights, taken when this object is made."""

    def __init__(self, module: torch.nn.Module):
        self.module = module
        state = dict(module.named_parameters())
        state.update(module.named_buffers())
        self.state = {k: v.detach().to(torch.bfloat16) for k, v in state.items()}

    def __call__(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        """x float (any shape the module takes) -> the module's output in fp32."""
        return functional_call(self.module, self.state, (x.to(torch.bfloat16),), kwargs).float()


def encode_fast(fnet: torch.nn.Module, frames: torch.Tensor) -> torch.Tensor:
    """frames (M, 3, H, W) -> fp32 features (M, C, H/stride, W/stride) through channels-last convolutions."""
    return fnet(frames.contiguous(memory_format=torch.channels_last)).contiguous()


def flat_level(level: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """level (B, S, C, h, w) -> rows (B * S * h * w, C) in `dtype`, one row per feature pixel."""
    return level.permute(0, 1, 3, 4, 2).reshape(-1, level.shape[2]).to(dtype)


def patch_correlation(rows: torch.Tensor, shape, xy: torch.Tensor, support: torch.Tensor, radius: int) -> torch.Tensor:
    """Correlation of each point's support features with the bilinear (2r+1)^2 neighbourhood around it.

    rows: flat_level of a (B, S, C, h, w) level, shape = (B, S, h, w); xy (B, S, n, 2) level units;
    support (B, n, (2r+1)^2, C). Returns (B, n, S, (2r+1)^4) in rows' dtype -- point-major, so that
    one matmul per point covers all S frames -- in the official layout (neighbour-major, neighbours
    x-major: index a*(2r+1)+b is dx = a - r, dy = b - r).
    """
    B, S, h, w = shape
    n = xy.shape[2]
    k = 2 * radius + 2
    xy = xy.transpose(1, 2)  # (B, n, S, 2)
    base = xy.floor()
    frac = (xy - base).to(rows.dtype)
    start = base.long() - radius
    steps = torch.arange(k, device=xy.device)
    cols = (start[..., 0, None] + steps).clamp_(0, w - 1)  # (B, n, S, k)
    rws = (start[..., 1, None] + steps).clamp_(0, h - 1)
    frame = (torch.arange(B, device=xy.device).view(B, 1, 1) * S + torch.arange(S, device=xy.device)) * (h * w)  # (B, 1, S)
    index = frame[..., None, None] + cols[..., :, None] + rws[..., None, :] * w  # (B, n, S, k x, k y)
    patch = rows.index_select(0, index.reshape(-1)).view(B * n, S * k * k, -1)  # (B n, S k k, C)
    corr = torch.bmm(patch, support.reshape(B * n, -1, support.shape[-1]).to(rows.dtype).transpose(1, 2))
    corr = corr.view(B, n, S, k, k, -1)  # (B, n, S, k x, k y, 49)
    corr = torch.lerp(corr[:, :, :, :-1], corr[:, :, :, 1:], frac[..., 0, None, None, None])  # along x
    corr = torch.lerp(corr[:, :, :, :, :-1], corr[:, :, :, :, 1:], frac[..., 1, None, None, None])  # along y
    return corr.flatten(3)
