"""Drop-in replacement for VGGSfM's tracker (facebookresearch/vggsfm, vggsfm/models/track_predictor.py).

VGGSfM calls `TrackerPredictor.forward(images, query_points, fmaps=None, coarse_iters=6, inference=True,
fine_tracking=True)` with
    images:       (B, S, 3, H, W) float RGB in [0, 1]   (B must be 1 in VGGSfM's inference code)
    query_points: (B, N, 2) xy pixels on images[:, 0], relative to the top-left
and uses the 4-tuple (fine_pred_track (B, S, N, 2), coarse_pred_track (B, S, N, 2), pred_vis (B, S, N)
float in [0, 1], pred_score (B, S, N)). It first calls `process_images_to_fmaps(images)` and passes the
result back as `fmaps`; here that is None and ignored.

Frame order: VGGSfM's runner swaps frame 0 and the query frame before calling the tracker
(`calculate_index_mappings`: order = arange(S) with order[0] = q and order[q] = 0, applied with
`switch_tensor_order`), and swaps the outputs back with the same (self-inverse) order. Its own tracker
does not care about time order, but CoTracker-style trackers do. So the adapter undoes the swap:
images[:, order] are in time order, the queries go to frame q, the provider tracks, and the outputs
are put back into VGGSfM's swapped order with the same permutation. q comes from the
`query_frame_index` argument, the adapter's attribute of that name, or is detected by matching
images[:, 0] against `time_ordered_images`; it defaults to 0 (no swap).

Coordinates: VGGSfM's pixel coordinates put pixel centres at integers, as `Tracks` does, so no shift.
pred_vis is the provider's visibility as 0/1 floats; pred_score its confidence (1 where it has none),
0 where not visible.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from .providers import TrackProvider


def swap_order(query_index: int, num_frames: int) -> np.ndarray:
    """(S,) VGGSfM's frame permutation: frames 0 and `query_index` exchanged. It is its own inverse."""
    order = np.arange(num_frames)
    order[0], order[query_index] = query_index, 0
    return order


def detect_query_frame_index(images: torch.Tensor, time_ordered_images: torch.Tensor) -> int:
    """Index q of the time-ordered frame that VGGSfM moved to position 0.

    images: (B, S, 3, H, W) in VGGSfM's order; time_ordered_images: the same frames in time order
    (either (B, S, 3, H, W) or (S, 3, H, W)). Raises if frame 0 matches no frame or several.
    """
    ref = time_ordered_images if time_ordered_images.dim() == 4 else time_ordered_images[0]
    first = images[0, 0].to(ref.device, ref.dtype)
    hits = [i for i in range(ref.shape[0]) if torch.equal(ref[i], first)]
    if len(hits) != 1:
        raise ValueError(f"cannot tell the query frame: frame 0 matches {len(hits)} time-ordered frames")
    return hits[0]


class VGGSfMTrackerAdapter:
    """Wraps any TrackProvider behind VGGSfM's `TrackerPredictor` call signature and outputs."""

    def __init__(self, provider: TrackProvider, query_frame_index: Optional[int] = None, time_ordered_images: Optional[torch.Tensor] = None):
        self.provider = provider
        self.query_frame_index = query_frame_index
        self.time_ordered_images = time_ordered_images

    def process_images_to_fmaps(self, images: torch.Tensor) -> None:
        """VGGSfM precomputes feature maps with this; the provider works on images, so there are none."""
        return None

    def _query_index(self, images: torch.Tensor, explicit: Optional[int]) -> int:
        if explicit is not None:
            return int(explicit)
        if self.query_frame_index is not None:
            return int(self.query_frame_index)
        if self.time_ordered_images is not None:
            return detect_query_frame_index(images, self.time_ordered_images)
        return 0

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, query_points: torch.Tensor, fmaps=None, coarse_iters: int = 6, inference: bool = True, fine_tracking: bool = True, query_frame_index: Optional[int] = None, **unused):
        """(fine_pred_track, coarse_pred_track, pred_vis, pred_score) in VGGSfM's frame order; see module doc."""
        B, S = images.shape[:2]
        q = self._query_index(images, query_frame_index)
        if not 0 <= q < S:
            raise ValueError(f"query_frame_index {q} outside [0, {S - 1}]")
        order = swap_order(q, S)
        tracks_out, vis_out, score_out = [], [], []
        for b in range(B):
            video = images[b, torch.as_tensor(order, device=images.device)]  # time order
            frames = (video.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            xy = query_points[b].detach().float().cpu().numpy().reshape(-1, 2)
            queries = np.concatenate([np.full((len(xy), 1), q, np.float32), xy], 1)
            tr = self.provider(frames, queries)
            conf = np.ones(tr.visible.shape, np.float32) if tr.confidence is None else tr.confidence
            tracks_out.append(tr.xy[order])
            vis_out.append(tr.visible[order].astype(np.float32))
            score_out.append((conf * tr.visible)[order].astype(np.float32))
        dtype = query_points.dtype if query_points.is_floating_point() else torch.float32

        def to_torch(arrays):
            return torch.from_numpy(np.stack(arrays)).to(device=query_points.device, dtype=dtype)

        fine = to_torch(tracks_out)
        return fine, fine.clone(), to_torch(vis_out), to_torch(score_out)

    forward = __call__
