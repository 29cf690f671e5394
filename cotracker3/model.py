"""CoTracker3 networks (Karaev et al. 2024), offline and online, in one readable file.

Parameter names, shapes and order follow the official release so that `scaled_offline.pth` and
`scaled_online.pth` load with `strict=True` (including the official spelling
`updateformer.virual_tracks`). Both models share one refinement loop; they differ only in how
the video is cut into windows.

Conventions: video (B, T, 3, H, W) float in [0, 255]; queries (B, N, 3) as (t, x, y) pixels with
x = 0 at the centre of the first pixel column; "feature units" are pixels / stride.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .fast import Bf16, check_mode, encode_fast, flat_level, patch_correlation


# ----------------------------------------------------------------------------------------------
# Feature encoder


class ResidualBlock(nn.Module):
    """Two 3x3 convs with instance norm; a strided 1x1 conv on the skip path when downsampling."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, padding=1, stride=stride)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1)
        self.norm1 = nn.InstanceNorm2d(planes)
        self.norm2 = nn.InstanceNorm2d(planes)
        self.downsample = None
        if stride != 1:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride), nn.InstanceNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = F.relu(self.norm2(self.conv2(y)))
        if self.downsample is not None:
            x = self.downsample(x)
        return F.relu(x + y)


class BasicEncoder(nn.Module):
    """Multi-scale CNN: 4 residual stages, each resized to 1/stride and fused into `output_dim` channels."""

    def __init__(self, input_dim: int = 3, output_dim: int = 128, stride: int = 4):
        super().__init__()
        self.stride = stride
        dims = [output_dim // 2, output_dim // 4 * 3, output_dim, output_dim]  # 64, 96, 128, 128
        self.conv1 = nn.Conv2d(input_dim, dims[0], 7, stride=2, padding=3)
        self.norm1 = nn.InstanceNorm2d(dims[0])
        in_planes = dims[0]
        for i, (dim, s) in enumerate(zip(dims, [1, 2, 2, 2])):
            setattr(self, f"layer{i + 1}", nn.Sequential(ResidualBlock(in_planes, dim, s), ResidualBlock(dim, dim, 1)))
            in_planes = dim
        self.conv2 = nn.Conv2d(sum(dims), output_dim * 2, 3, padding=1)
        self.norm2 = nn.InstanceNorm2d(output_dim * 2)
        self.conv3 = nn.Conv2d(output_dim * 2, output_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(M, 3, H, W) -> (M, output_dim, H / stride, W / stride)"""
        H, W = x.shape[-2:]
        size = (H // self.stride, W // self.stride)
        x = F.relu(self.norm1(self.conv1(x)))
        scales = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            scales.append(F.interpolate(x, size, mode="bilinear", align_corners=True))
        x = F.relu(self.norm2(self.conv2(torch.cat(scales, dim=1))))
        return self.conv3(x)


# ----------------------------------------------------------------------------------------------
# Transformer


class Mlp(nn.Module):
    def __init__(self, in_features: int, hidden_features: int, out_features: Optional[int] = None, tanh_gelu: bool = True):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.fc2 = nn.Linear(hidden_features, out_features or in_features)
        self.approximate = "tanh" if tanh_gelu else "none"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate=self.approximate))


class Attention(nn.Module):
    """Multi-head attention with separate query and key/value projections (8 heads x 48)."""

    def __init__(self, dim: int, num_heads: int = 8, dim_head: int = 48):
        super().__init__()
        self.heads = num_heads
        inner = num_heads * dim_head
        self.to_q = nn.Linear(dim, inner)
        self.to_kv = nn.Linear(dim, inner * 2)
        self.to_out = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x (M, L1, C), context (M, L2, C) -> (M, L1, C)"""
        context = x if context is None else context
        M, L1, _ = x.shape
        q = self.to_q(x).unflatten(-1, (self.heads, -1)).transpose(1, 2)
        k, v = self.to_kv(context).unflatten(-1, (2, self.heads, -1)).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).reshape(M, L1, -1))


class AttnBlock(nn.Module):
    """Pre-norm self-attention + MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class CrossAttnBlock(nn.Module):
    """Pre-norm cross-attention (context has its own affine LayerNorm) + MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.norm_context = nn.LayerNorm(dim)  # eps 1e-5, affine, as the official model
        self.cross_attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.cross_attn(self.norm1(x), self.norm_context(context))
        return x + self.mlp(self.norm2(x))


class EfficientUpdateFormer(nn.Module):
    """Alternates attention over time (per track) and over space through a few virtual tracks.

    Point tokens never attend to each other directly: 64 learned virtual tracks read from all
    points, attend among themselves, and points read back from them (linear in N).
    """

    def __init__(self, depth: int = 3, input_dim: int = 1110, hidden_size: int = 384, num_heads: int = 8,
                 mlp_ratio: float = 4.0, num_virtual_tracks: int = 64):
        super().__init__()
        self.num_virtual_tracks = num_virtual_tracks
        self.input_transform = nn.Linear(input_dim, hidden_size)
        self.flow_head = nn.Linear(hidden_size, 2)
        self.vis_conf_head = nn.Linear(hidden_size, 2)
        self.virual_tracks = nn.Parameter(torch.randn(1, num_virtual_tracks, 1, hidden_size))  # sic, official name
        self.time_blocks = nn.ModuleList([AttnBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)])
        self.space_virtual_blocks = nn.ModuleList([AttnBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)])
        self.space_point2virtual_blocks = nn.ModuleList([CrossAttnBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)])
        self.space_virtual2point_blocks = nn.ModuleList([CrossAttnBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)])

    def forward(self, x: torch.Tensor, add_space_attn: bool = True) -> torch.Tensor:
        """x (B, N, T, input_dim) -> (B, N, T, 4) as [dx, dy, dvis, dconf]"""
        tokens = self.input_transform(x)
        B, N, T, C = tokens.shape
        V = self.num_virtual_tracks
        tokens = torch.cat([tokens, self.virual_tracks.expand(B, V, T, C)], dim=1)
        for i, time_block in enumerate(self.time_blocks):
            tokens = time_block(tokens.reshape(B * (N + V), T, C)).view(B, N + V, T, C)
            if add_space_attn:
                space = tokens.permute(0, 2, 1, 3).reshape(B * T, N + V, C)
                points, virtual = space[:, :N], space[:, N:]
                virtual = self.space_virtual2point_blocks[i](virtual, points)
                virtual = self.space_virtual_blocks[i](virtual)
                points = self.space_point2virtual_blocks[i](points, virtual)
                tokens = torch.cat([points, virtual], dim=1).view(B, T, N + V, C).permute(0, 2, 1, 3)
        tokens = tokens[:, :N]
        return torch.cat([self.flow_head(tokens), self.vis_conf_head(tokens)], dim=-1)


# ----------------------------------------------------------------------------------------------
# Sampling and embeddings


def bilinear_sample(fmap: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """Sample (M, C, H, W) at pixel-centre coordinates xy (M, ..., 2) with border padding -> (M, ..., C)."""
    H, W = fmap.shape[-2:]
    shape = xy.shape
    scale = xy.new_tensor([2 / max(W - 1, 1), 2 / max(H - 1, 1)])
    grid = (xy * scale - 1).reshape(shape[0], 1, -1, 2)
    out = F.grid_sample(fmap, grid, align_corners=True, padding_mode="border")  # (M, C, 1, L)
    return out[:, :, 0].transpose(1, 2).reshape(*shape[:-1], fmap.shape[1])


def neighbourhood(radius: int, device=None, dtype=None) -> torch.Tensor:
    """(2r+1)^2 offsets (dx, dy), x-major: index a*(2r+1)+b has dx = a - r, dy = b - r (official layout)."""
    d = torch.linspace(-radius, radius, 2 * radius + 1, device=device, dtype=dtype)
    dx, dy = torch.meshgrid(d, d, indexing="ij")
    return torch.stack([dx, dy], dim=-1).reshape(-1, 2)


def posenc(x: torch.Tensor, min_deg: int = 0, max_deg: int = 10) -> torch.Tensor:
    """[x, sin(2^k x), cos(2^k x)] for k in [min_deg, max_deg), scale-major ordering."""
    scales = 2.0 ** torch.arange(min_deg, max_deg, device=x.device, dtype=x.dtype)
    xb = (x[..., None, :] * scales[:, None]).flatten(-2)
    return torch.cat([x, torch.sin(torch.cat([xb, xb + 0.5 * math.pi], dim=-1))], dim=-1)


def sincos_time_embedding(length: int, dim: int) -> torch.Tensor:
    """(1, length, dim) table [sin(p w_k), cos(p w_k)], w_k = 10000^(-k/(dim/2)); float64 then float32."""
    half = dim // 2
    omega = 1.0 / 10000 ** (torch.arange(half, dtype=torch.float64) / half)
    angle = torch.arange(length, dtype=torch.float64)[:, None] * omega[None]
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=1)[None].float()


# ----------------------------------------------------------------------------------------------
# The tracker

FAST_CORR_CHUNK = 256  # points per correlation chunk in fast mode when none is set (bounds memory)
FAST_ENCODER_CHUNK = 8  # frames per encoder call in fast mode (T=60 at once peaked at 4.4 GiB)


class CoTrackerThreeBase(nn.Module):
    """Shared parts: features, 4-level correlation, iterative transformer refinement."""

    def __init__(self, window_len: int = 8, stride: int = 4, corr_radius: int = 3, corr_levels: int = 4,
                 num_virtual_tracks: int = 64, model_resolution: Tuple[int, int] = (384, 512),
                 add_space_attn: bool = True, linear_layer_for_vis_conf: bool = True,
                 latent_dim: int = 128, hidden_size: int = 384, space_depth: int = 3, corr_hidden: int = 384):
        super().__init__()
        if not linear_layer_for_vis_conf:
            raise ValueError("only the CoTracker3 head layout (linear_layer_for_vis_conf=True) is supported")
        self.window_len = window_len
        self.stride = stride
        self.corr_radius = corr_radius
        self.corr_levels = corr_levels
        self.latent_dim = latent_dim
        self.num_virtual_tracks = num_virtual_tracks
        self.model_resolution = tuple(model_resolution)
        self.add_space_attn = add_space_attn
        r = 2 * corr_radius + 1
        corr_dim = 256
        self.input_dim = 2 + corr_levels * corr_dim + 84  # vis, conf, correlation embeddings, posenc of motion
        self.fnet = BasicEncoder(3, latent_dim, stride)
        self.updateformer = EfficientUpdateFormer(space_depth, self.input_dim, hidden_size, 8, 4.0, num_virtual_tracks)
        self.corr_mlp = Mlp(r ** 4, corr_hidden, corr_dim, tanh_gelu=False)
        self.register_buffer("time_emb", sincos_time_embedding(window_len, self.input_dim))
        # Points per chunk in the correlation stage (None = all): bounds memory, outputs unchanged.
        self.corr_chunk_size: Optional[int] = None

    # -- features ------------------------------------------------------------------------------

    def encode(self, video: torch.Tensor, chunk: int = 200, fast: bool = False) -> torch.Tensor:
        """video (B, T, 3, H, W) in [-1, 1] -> L2-normalised features (B, T, C, H/stride, W/stride)."""
        B, T = video.shape[:2]
        fnet = (lambda x: encode_fast(self.fnet, x)) if fast else self.fnet
        chunk = min(chunk, FAST_ENCODER_CHUNK) if fast else chunk
        fmaps = torch.cat([fnet(c.flatten(0, 1)).unflatten(0, (B, -1)) for c in video.split(chunk, dim=1)], dim=1)
        norm = torch.sqrt(torch.clamp(fmaps.square().sum(dim=2, keepdim=True), min=1e-12))
        return (fmaps / norm).to(video.dtype)

    def pyramid(self, fmaps: torch.Tensor) -> List[torch.Tensor]:
        levels = [fmaps]
        for _ in range(self.corr_levels - 1):
            levels.append(F.avg_pool2d(levels[-1].flatten(0, 1), 2, stride=2).unflatten(0, fmaps.shape[:2]))
        return levels

    def support_features(self, pyramid: List[torch.Tensor], frames: torch.Tensor, xy: torch.Tensor) -> List[torch.Tensor]:
        """Features of the (2r+1)^2 neighbourhood of each query at its frame, per level.

        pyramid: levels (B, T, C, h, w); frames (B, N) long (clamped to the clip); xy (B, N, 2) feature units.
        Returns per level (B, N, (2r+1)^2, C).
        """
        B, N = frames.shape
        offsets = neighbourhood(self.corr_radius, xy.device, xy.dtype)
        frames = frames.clamp(0, pyramid[0].shape[1] - 1)
        out = [xy.new_zeros(B, N, offsets.shape[0], level.shape[2]) for level in pyramid]
        # One sampling call per distinct (clip, frame): never copies a feature map per query.
        for b, t in torch.unique(torch.stack([torch.arange(B, device=frames.device)[:, None].expand(B, N), frames], -1).view(-1, 2), dim=0).tolist():
            sel = frames[b] == t
            for i, level in enumerate(pyramid):
                pts = (xy[b, sel] / 2 ** i)[:, None] + offsets  # (n, 49, 2)
                out[i][b, sel] = bilinear_sample(level[b, t][None], pts[None])[0]
        return out

    def correlation_embedding(self, pyramid: List[torch.Tensor], coords: torch.Tensor, support: List[torch.Tensor],
                              fast_rows: Optional[List[torch.Tensor]] = None, corr_mlp=None) -> torch.Tensor:
        """4-level local correlation of each track's support features with the frame around its estimate.

        pyramid: levels (B, S, C, h, w); coords (B, S, N, 2) feature units; support: (B, N, 49, C) per level.
        fast_rows: None (exact path), or the levels as `fast.flat_level` rows (fast path, with corr_mlp its Bf16 MLP).
        Returns (B, S, N, levels * 256).
        """
        B, S, N, _ = coords.shape
        offsets = neighbourhood(self.corr_radius, coords.device, coords.dtype)
        chunk = self.corr_chunk_size or (FAST_CORR_CHUNK if fast_rows is not None else N)
        embs = []
        for n0 in range(0, N, chunk):
            c = coords[:, :, n0:n0 + chunk]
            level_embs = []
            for i, level in enumerate(pyramid):
                if fast_rows is not None:
                    corr = patch_correlation(fast_rows[i], (B, S) + level.shape[-2:], c / 2 ** i,
                                             support[i][:, n0:n0 + chunk], self.corr_radius)  # (B, n, S, 2401)
                    level_embs.append(corr_mlp(corr).transpose(1, 2))
                    continue
                pts = (c / 2 ** i)[..., None, :] + offsets  # (B, S, n, 49, 2)
                local = bilinear_sample(level.flatten(0, 1), pts.flatten(0, 1))  # (B*S, n, 49, C)
                local = local.view(B, S, c.shape[2], -1, level.shape[2])
                corr = local @ support[i][:, None, n0:n0 + chunk].transpose(-1, -2)  # (B, S, n, 49, 49)
                level_embs.append(self.corr_mlp(corr.flatten(-2)))
            embs.append(torch.cat(level_embs, dim=-1))
        return torch.cat(embs, dim=2)

    def time_embedding(self, length: int, dtype: torch.dtype) -> torch.Tensor:
        """The sin/cos table, linearly resampled (align_corners=False) when the window length differs."""
        if length == self.time_emb.shape[1]:
            return self.time_emb.to(dtype)
        emb = F.interpolate(self.time_emb.float().permute(0, 2, 1), size=length, mode="linear")
        return emb.permute(0, 2, 1).to(dtype)

    # -- refinement ----------------------------------------------------------------------------

    def refine(self, pyramid, coords, support, vis, conf, iters: int, add_space_attn: bool = True, fast: bool = False):
        """Iteratively update tracks in one window (`fast`: bf16 correlation of cotracker3.fast).

        pyramid: levels (B, S, C, h, w); coords (B, S, N, 2) feature units; support per level (B, N, 49, C);
        vis, conf (B, S, N) logits. Returns per-iteration lists of coords (B, S, N, 2) in pixels and
        vis / conf logits (B, S, N).
        """
        B, S, N, _ = coords.shape
        motion_scale = coords.new_tensor([self.model_resolution[1], self.model_resolution[0]]) / self.stride
        time_emb = self.time_embedding(S, coords.dtype)
        coord_preds, vis_preds, conf_preds = [], [], []
        fast_rows = [flat_level(level, torch.bfloat16) for level in pyramid] if fast else None
        corr_mlp = Bf16(self.corr_mlp) if fast else None
        for _ in range(iters):
            coords = coords.detach()
            corr = self.correlation_embedding(pyramid, coords, support, fast_rows, corr_mlp)
            forward = F.pad(coords[:, :-1] - coords[:, 1:], (0, 0, 0, 0, 0, 1))
            backward = F.pad(coords[:, 1:] - coords[:, :-1], (0, 0, 0, 0, 1, 0))
            motion = posenc(torch.cat([forward / motion_scale, backward / motion_scale], dim=-1))
            x = torch.cat([vis[..., None], conf[..., None], corr, motion], dim=-1)  # (B, S, N, D)
            x = x.permute(0, 2, 1, 3) + time_emb[:, None]  # (B, N, S, D)
            delta = self.updateformer(x, add_space_attn=add_space_attn).permute(0, 2, 1, 3)  # (B, S, N, 4)
            coords = coords + delta[..., :2]
            vis = vis + delta[..., 2]
            conf = conf + delta[..., 3]
            coord_preds.append(coords * float(self.stride))
            vis_preds.append(vis)
            conf_preds.append(conf)
        return coord_preds, vis_preds, conf_preds

    # -- input checks --------------------------------------------------------------------------

    def _check_inputs(self, video: torch.Tensor, queries: torch.Tensor, check_frames: bool = True) -> None:
        if video.ndim != 5 or video.shape[2] != 3:
            raise ValueError(f"video must be (B, T, 3, H, W), got {tuple(video.shape)}")
        B, T, _, H, W = video.shape
        if H % self.stride or W % self.stride:
            raise ValueError(f"video height and width must be multiples of {self.stride}, got {H}x{W}")
        if queries.ndim != 3 or queries.shape[0] != B or queries.shape[2] != 3:
            raise ValueError(f"queries must be (B={B}, N, 3) as (t, x, y), got {tuple(queries.shape)}")
        if not torch.isfinite(queries).all():
            raise ValueError("queries contain NaN or Inf")
        if check_frames and queries.shape[1] and (queries[..., 0].min() < 0 or queries[..., 0].max() > T - 1):
            raise ValueError(f"query frames must lie in [0, {T - 1}], got [{queries[..., 0].min():g}, {queries[..., 0].max():g}]")


class CoTrackerThreeOffline(CoTrackerThreeBase):
    """Sees the whole clip at once: one window of T frames, time embedding resampled to T."""

    def __init__(self, **kwargs):
        kwargs.setdefault("window_len", 60)
        super().__init__(**kwargs)

    def features(self, video: torch.Tensor, fmaps_chunk_size: int = 200, mode: str = "exact") -> torch.Tensor:
        """video (B, T, 3, H, W) in [0, 255] -> the encoder's (B, T, C, H/stride, W/stride) features, computed once
        so that a second pass over the same frames (the predictor's time-reversed one) can reuse them."""
        return self.encode(2 * (video / 255.0) - 1.0, fmaps_chunk_size, check_mode(mode))

    def forward(self, video: torch.Tensor, queries: torch.Tensor, iters: int = 4, is_train: bool = False,
                add_space_attn: bool = True, fmaps_chunk_size: int = 200, mode: str = "exact",
                fmaps: Optional[torch.Tensor] = None):
        """video (B, T, 3, H, W) in [0, 255]; queries (B, N, 3) (t, x, y) px; mode "exact" or "fast" (cotracker3.fast, inference);
        fmaps: this video's `features(video, fmaps_chunk_size, mode)` (frames encode independently, so the
        time-reversed video's are these flipped), else computed here.

        Returns coords (B, T, N, 2) px, vis (B, T, N), conf (B, T, N) probabilities, and train_data:
        None, or ([per-iteration coords]], [[per-iteration vis]], [[per-iteration conf]], ones mask (B, T, N)).
        """
        fast = check_mode(mode)
        self._check_inputs(video, queries)
        B, T = video.shape[:2]
        N = queries.shape[1]
        if fmaps is None:
            fmaps = self.encode(2 * (video / 255.0) - 1.0, fmaps_chunk_size, fast)
        pyramid = self.pyramid(fmaps)
        frames = queries[..., 0].long()
        xy = queries[..., 1:] / self.stride
        support = self.support_features(pyramid, frames, xy)
        coords = xy[:, None].expand(B, T, N, 2).float()
        zeros = torch.zeros(B, T, N, device=video.device, dtype=coords.dtype)
        coord_preds, vis_logits, conf_logits = self.refine(pyramid, coords, support, zeros, zeros, iters, add_space_attn, fast)
        vis_preds = [torch.sigmoid(v) for v in vis_logits]
        conf_preds = [torch.sigmoid(c) for c in conf_logits]
        train_data = None
        if is_train:
            train_data = ([coord_preds], [vis_preds], [conf_preds], torch.ones_like(vis_preds[-1]))
        return coord_preds[-1], vis_preds[-1], conf_preds[-1], train_data


class CoTrackerThreeOnline(CoTrackerThreeBase):
    """Sliding windows of `window_len` frames moving by half a window; streams chunk by chunk."""

    def __init__(self, **kwargs):
        kwargs.setdefault("window_len", 16)
        super().__init__(**kwargs)
        self.online_ind: Optional[int] = None

    def init_video_online_processing(self) -> None:
        """Reset the streaming state; call before the first chunk of each new video."""
        self.online_ind = 0
        self.online_track_support: List[Optional[torch.Tensor]] = [None] * self.corr_levels
        self.online_coords_predicted = None
        self.online_vis_predicted = None
        self.online_conf_predicted = None

    def forward(self, video: torch.Tensor, queries: torch.Tensor, iters: int = 4, is_train: bool = False,
                add_space_attn: bool = True, fmaps_chunk_size: int = 200, is_online: bool = False, mode: str = "exact"):
        """Full clip (`is_online=False`, windows with overlap) or one streamed chunk (`is_online=True`).

        In online mode `video` is the chunk starting at frame `self.online_ind` (at most window_len
        frames) and the returned arrays cover every frame seen so far. Outputs as the offline model;
        train_data holds one list per window.
        """
        fast = check_mode(mode)
        S = self.window_len
        step = S // 2
        self._check_inputs(video, queries, check_frames=not is_online)
        B, T, C, H, W = video.shape
        N = queries.shape[1]
        if is_online:
            if self.online_ind is None:
                raise RuntimeError("call model.init_video_online_processing() before streaming chunks")
            if T > S:
                raise ValueError(f"online chunks must have at most window_len={S} frames, got {T}")
            if is_train:
                raise ValueError("training is not supported in online mode; use is_online=False")
            if queries.shape[1] and queries[..., 0].min() < 0:
                raise ValueError("query frames must be >= 0")
        device = video.device
        video = 2 * (video / 255.0) - 1.0
        pad = S - T if is_online else (S - T % S) % S
        if pad:
            video = torch.cat([video, video[:, -1:].expand(B, pad, C, H, W)], dim=1)
        pyramid = self.pyramid(self.encode(video, fmaps_chunk_size if not is_train else video.shape[1], fast))
        frames = queries[..., 0].long()
        xy = queries[..., 1:] / self.stride

        if is_online:
            ind0 = self.online_ind
            support_now = self.support_features(pyramid, frames - ind0, xy)
            left = 0 if ind0 == 0 else ind0 + step
            in_chunk = ((frames >= left) & (frames < ind0 + S))[:, :, None, None].to(xy.dtype)
            for i, s in enumerate(support_now):
                prev = self.online_track_support[i]
                self.online_track_support[i] = (torch.zeros_like(s) if prev is None else prev) + s * in_chunk
            support = self.online_track_support
            coords_pred = torch.zeros(B, T, N, 2, device=device)
            vis_pred = torch.zeros(B, T, N, device=device)
            conf_pred = torch.zeros(B, T, N, device=device)
            if self.online_coords_predicted is not None:
                grow = min(step, T - step)
                coords_pred = F.pad(self.online_coords_predicted, (0, 0, 0, 0, 0, grow))
                vis_pred = F.pad(self.online_vis_predicted, (0, 0, 0, grow))
                conf_pred = F.pad(self.online_conf_predicted, (0, 0, 0, grow))
            starts = [ind0]
        else:
            support = self.support_features(pyramid, frames, xy)
            coords_pred = torch.zeros(B, T, N, 2, device=device)
            vis_pred = torch.zeros(B, T, N, device=device)
            conf_pred = torch.zeros(B, T, N, device=device)
            num_windows = (T - S + step - 1) // step + 1
            starts = range(0, step * num_windows, step)

        all_coords, all_vis, all_conf = [], [], []
        for ind in starts:
            coords = xy[:, None].expand(B, S, N, 2).float()
            vis = torch.zeros(B, S, N, device=device)
            conf = torch.zeros(B, S, N, device=device)
            if ind > 0:  # continue tracks already queried from the previous window's estimates
                overlap = S - step
                carried = (frames < ind + overlap)[:, None, :]  # (B, 1, N)

                def extend(x):  # previous estimates on the overlap, last one repeated to S frames
                    x = x[:, ind:ind + overlap]
                    return torch.cat([x, x[:, -1:].expand(-1, step, *x.shape[2:])], dim=1)

                coords = torch.where(carried[..., None], extend(coords_pred) / self.stride, coords)
                vis = torch.where(carried, extend(vis_pred), vis)
                conf = torch.where(carried, extend(conf_pred), conf)
            active = (frames < ind + S)[:, :, None, None].to(xy.dtype)  # tracks queried by the window's end
            window = pyramid if is_online else [level[:, ind:ind + S] for level in pyramid]
            c_it, v_it, k_it = self.refine(window, coords, [s * active for s in support], vis, conf, iters, add_space_attn, fast)
            keep = T if is_online else min(T - ind, S)
            coords_pred[:, ind:ind + S] = c_it[-1][:, :keep]
            vis_pred[:, ind:ind + S] = v_it[-1][:, :keep]
            conf_pred[:, ind:ind + S] = k_it[-1][:, :keep]
            if is_train:
                all_coords.append([c[:, :keep] for c in c_it])
                all_vis.append([torch.sigmoid(v[:, :keep]) for v in v_it])
                all_conf.append([torch.sigmoid(k[:, :keep]) for k in k_it])

        if is_online:
            self.online_ind += step
            self.online_coords_predicted = coords_pred
            self.online_vis_predicted = vis_pred
            self.online_conf_predicted = conf_pred
        train_data = None
        if is_train:
            valid = frames[:, None] <= torch.arange(T, device=device)[None, :, None]
            train_data = (all_coords, all_vis, all_conf, valid)
        return coords_pred, torch.sigmoid(vis_pred), torch.sigmoid(conf_pred), train_data
