"""CoTracker3 supervised training losses (Kubric-style ground truth).

Reproduces how the official ``train_on_kubric.forward_batch`` combines the model's per-window,
per-iteration predictions with ground truth, so that numbers are comparable with the paper's
training runs.

The ``train_data`` contract
---------------------------
In training mode (``is_train=True``) both CoTracker3 models return, as their 4th output,
``train_data = (coord_preds, vis_preds, conf_preds, valid_mask)`` with

- ``coord_preds[w][i]``: (B, S_w, N, 2) float, pixel (x, y) after iteration ``i`` of window ``w``;
- ``vis_preds[w][i]``:   (B, S_w, N) float, visibility **probabilities** (sigmoid already applied);
- ``conf_preds[w][i]``:  (B, S_w, N) float, confidence probabilities (sigmoid applied);
- ``valid_mask``:        (B, T, N) bool/float, 1 where frame t >= the point's query frame
  (online model); all ones for the offline model.

Window ``w`` covers video frames ``[w * step, w * step + S_w)`` with ``step = window_len // 2``
(online model: ``window_len`` = 16, so step 8; the last window is trimmed to the video end).
The offline model processes the whole clip as one window (``S_0 = T``), so ``step`` is unused.
Coordinates are in the pixel frame of the video given to the model, like the ground truth.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

EPS = 1e-6  # denominator guard of the official masked mean

LOSS_WEIGHTS = {"track_visible": 0.05, "track_occluded": 0.01, "visibility": 1.0, "confidence": 1.0}


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Scalar sum(x*mask) / (EPS + sum(mask)); EPS keeps an all-masked window at exactly 0."""
    if x.shape != mask.shape:
        raise ValueError(f"shape mismatch {tuple(x.shape)} vs {tuple(mask.shape)}")
    return (x * mask).sum() / (EPS + mask.sum())


def huber(diff: torch.Tensor, delta: float) -> torch.Tensor:
    """Element-wise Huber: quadratic within ``delta`` pixels, linear (slope delta) outside."""
    a = diff.abs()
    return torch.where(a <= delta, 0.5 * diff**2, delta * (a - 0.5 * delta))


def window_bounds(window_lengths: Sequence[int], num_frames: int, step: int | None) -> list[tuple[int, int]]:
    """Frame range [start, end) of each window: window w starts at w*step.

    Matches the model's sliding windows (and forward_batch's GT slices ``[ind, ind + S)``).
    """
    if len(window_lengths) > 1 and not step:
        raise ValueError("several windows need step = window_len // 2")
    bounds = []
    for w, s_w in enumerate(window_lengths):
        start = w * step if w else 0
        if start + s_w > num_frames:
            raise ValueError(f"window {w} [{start}, {start + s_w}) exceeds T={num_frames}")
        bounds.append((start, start + s_w))
    if bounds[-1][1] != num_frames:
        raise ValueError(f"windows end at frame {bounds[-1][1]}, video has T={num_frames}")
    return bounds


def _track_loss(preds, gt, mask, gamma: float, delta: float | None) -> torch.Tensor:
    """gamma-weighted (latest iteration weight 1) mean over iterations of the masked coord error."""
    n = len(preds)
    total = 0.0
    for i, p in enumerate(preds):
        err = huber(p - gt, delta) if delta is not None else (p - gt).abs()  # (B,S,N,2)
        total = total + gamma ** (n - i - 1) * masked_mean(err.mean(dim=-1), mask)
    return total / n


def _visibility_loss(preds, vis_gt) -> torch.Tensor:
    """Plain BCE on probabilities, over all frames/points (no valid mask, as in the official)."""
    return sum(F.binary_cross_entropy(p, vis_gt) for p in preds) / len(preds)


def _confidence_loss(coord_preds, conf_preds, gt, vis_gt, thresh: float) -> torch.Tensor:
    """BCE of confidence against "prediction within ``thresh`` px of GT", on visible points.

    Returns (B,): mean over (S, N) of the visibility-masked BCE, averaged over iterations.
    The target uses detached coordinates so this loss only trains the confidence head.
    """
    total = 0.0
    for p, c in zip(coord_preds, conf_preds):
        target = (((p.detach() - gt) ** 2).sum(dim=-1) <= thresh**2).to(c.dtype)  # (B,S,N)
        bce = F.binary_cross_entropy(c, target, reduction="none") * vis_gt
        total = total + bce.mean(dim=(1, 2))
    return total / len(coord_preds)


def sequence_losses(
    train_data,
    gt_tracks: torch.Tensor,
    gt_visibility: torch.Tensor,
    valids: torch.Tensor | None = None,
    *,
    window_len: int | None = None,
    gamma: float = 0.8,
    huber_delta: float | None = 6.0,
    conf_thresh: float = 12.0,
    train_occluded: bool = True,
    weights: dict | None = None,
) -> dict[str, torch.Tensor]:
    """Official CoTracker3 training losses for one batch.

    Args:
        train_data: ``(coord_preds, vis_preds, conf_preds, valid_mask)`` as documented in the
            module docstring (the model's 4th output with ``is_train=True``).
        gt_tracks: (B, T, N, 2) GT pixel (x, y).
        gt_visibility: (B, T, N) float 0/1 GT visibility.
        valids: (B, T, N) dataset validity of each GT entry (``batch.valid``); ones if None.
        window_len: the model's sliding-window length S (online: 16); windows step by S // 2.
            Needed only when there is more than one window.
        gamma: per-iteration decay; iteration i of n has weight gamma**(n-1-i).
        huber_delta: Huber delta (px) for visible points; None -> L1 (``add_huber_loss=False``).
        conf_thresh: a prediction within this many px of GT is the confidence target 1.
        train_occluded: also supervise occluded points' coordinates with L1 (official default).
        weights: overrides for ``LOSS_WEIGHTS``.

    Returns:
        dict of scalar tensors, each already multiplied by its weight:
        ``track_visible`` (Huber x0.05), ``track_occluded`` (L1 x0.01, if train_occluded),
        ``visibility`` (BCE), ``confidence`` (BCE) and their sum ``total``.
        Each term is averaged over windows.
    """
    coord_preds, vis_preds, conf_preds, valid_mask = train_data
    w = dict(LOSS_WEIGHTS, **(weights or {}))
    B, T, N, _ = gt_tracks.shape
    gt_visibility = gt_visibility.to(gt_tracks.dtype)
    valids = torch.ones_like(gt_visibility) if valids is None else valids.to(gt_tracks.dtype)
    # The model's mask removes frames before each query frame (online); ones for offline.
    valids = valids * valid_mask.to(gt_tracks.dtype)

    step = window_len // 2 if window_len else None
    bounds = window_bounds([c[0].shape[1] for c in coord_preds], T, step)

    terms = {k: 0.0 for k in ("track_visible", "track_occluded", "visibility", "confidence")}
    for (a, b), coords, vis, conf in zip(bounds, coord_preds, vis_preds, conf_preds):
        gt, vis_gt, val = gt_tracks[:, a:b], gt_visibility[:, a:b], valids[:, a:b]
        terms["track_visible"] += _track_loss(coords, gt, val * vis_gt, gamma, huber_delta)
        if train_occluded:
            terms["track_occluded"] += _track_loss(coords, gt, val * (1 - vis_gt), gamma, None)
        terms["visibility"] += _visibility_loss(vis, vis_gt)
        terms["confidence"] += _confidence_loss(coords, conf, gt, vis_gt, conf_thresh)

    n_win = len(bounds)
    out = {}
    for k, v in terms.items():
        if k == "track_occluded" and not train_occluded:
            continue
        out[k] = (v / n_win).mean() * w[k]  # .mean(): confidence is per batch element
    out["total"] = sum(out.values())
    return out
