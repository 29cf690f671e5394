"""Procedural surface textures: colour is a pure function of a surface point's local (u, v).

A point therefore keeps its albedo for the whole clip (exact tracks).  The patterns come
from a small bank of periodic fractal-noise images baked once per process (cheap 2D lookups
per pixel); each material picks a bank image and gives it its own rotation, scale, offset,
contrast and palette, optionally adds stripes / checkers, or tiles a user photo.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from .primitives import BOX, CYLINDER, PLANE, SPHERE

BANK_SIZE = 4  # noise images in the bank
BANK_RES = 512  # texels per texture period
_BANK_SEED = 20241125


def _periodic_octave(gen: torch.Generator, cells: int, res: int, channels: int) -> torch.Tensor:
    """Bicubic value noise (channels, res, res) with `cells` lattice cells per period, tileable."""
    g = torch.rand(1, channels, cells, cells, generator=gen)
    s = res // cells
    g = F.pad(g, (2, 2, 2, 2), mode="circular")
    up = F.interpolate(g, scale_factor=s, mode="bicubic", align_corners=False)
    return up[0, :, 2 * s : 2 * s + res, 2 * s : 2 * s + res]


@lru_cache(maxsize=4)
def noise_bank(device: str) -> torch.Tensor:
    """(BANK_SIZE, 3, R+1, R+1) periodic fractal noise in [0, 1]; the extra row/column repeats
    the first so wrapped bilinear lookups are seamless.  Fixed seed: identical in every process."""
    gen = torch.Generator().manual_seed(_BANK_SEED)
    bank = []
    for _ in range(BANK_SIZE):
        total, norm = torch.zeros(3, BANK_RES, BANK_RES), 0.0
        for k, cells in enumerate((4, 8, 16, 32, 64, 128)):
            amp = 0.75**k  # flatter than pink noise: plenty of fine detail to track
            total += amp * _periodic_octave(gen, cells, BANK_RES, 3)
            norm += amp
        total /= norm
        lo = total.flatten(1).quantile(0.01, dim=1)[:, None, None]
        hi = total.flatten(1).quantile(0.99, dim=1)[:, None, None]
        bank.append(((total - lo) / (hi - lo)).clamp(0, 1))
    bank = F.pad(torch.stack(bank), (0, 1, 0, 1), mode="circular")
    return bank.to(device)


@dataclass
class Material:
    """Texture parameters of one surface (tensors on the render device, float32)."""

    bank_index: int
    uv_transform: torch.Tensor  # (2, 2) rotation * frequency (texture periods per world unit)
    offset: torch.Tensor  # (2,)
    colors: torch.Tensor  # (3, 3) palette: two base colours and an accent
    sharpness: float  # > 0: contrast of the noise field (high = crisp blotches with corners)
    stripe_weight: float
    stripe_frequency: float  # stripes per texture period
    checker_weight: float
    checker_frequency: float  # checks per texture period
    photo: Optional[torch.Tensor] = None  # (3, S+1, S+1) float 0..1 periodic photo tile


_BOX_UV_AXES = torch.tensor([[1, 2], [0, 2], [0, 1]])


def box_face_axis(p: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """Axis (S,) of the box face each local surface point p (S, 3) lies on."""
    return (p.abs() / size).argmax(-1)


def surface_uv(kind: int, p: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """Local points p (S, 3) on a primitive -> 2D surface coordinates (S, 2) in world units.

    Roughly isometric charts (plane: xy; box: the face's two axes; sphere and cylinder:
    arc length around z and height), different faces shifted apart so they differ.
    """
    if kind == PLANE:
        return p[:, :2]
    if kind == BOX:
        axis = box_face_axis(p, size)
        uv = p.gather(1, _BOX_UV_AXES.to(p.device)[axis])  # the face's two in-plane axes
        face = axis * 2 + (p.gather(1, axis[:, None])[:, 0] > 0)
        return uv + 7.3 * face[:, None]
    if kind == SPHERE:
        r = size[0]
        return torch.stack([torch.atan2(p[:, 1], p[:, 0]) * r, torch.asin((p[:, 2] / r).clamp(-1, 1)) * r], -1)
    if kind == CYLINDER:
        side = torch.stack([torch.atan2(p[:, 1], p[:, 0]) * size[0], p[:, 2]], -1)
        on_cap = (p[:, 2].abs() - size[1]).abs() < (p[:, :2].norm(dim=-1) - size[0]).abs()
        cap = p[:, :2] + 11.7 * torch.sign(p[:, 2:3])
        return torch.where(on_cap[:, None], cap, side)
    raise ValueError(kind)


def _wrapped_lookup(image: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear lookup of a periodic image (C, R+1, R+1) at uv (S, 2) in periods -> (S, C)."""
    grid = torch.remainder(uv, 1.0) * 2.0 - 1.0
    out = F.grid_sample(image[None], grid.view(1, 1, -1, 2), mode="bilinear", align_corners=True)
    return out.view(image.shape[0], -1).t()


def albedo(material: Material, uv: torch.Tensor) -> torch.Tensor:
    """Surface colour in [0, 1] at surface coordinates uv (S, 2) -> (S, 3).

    Written as few whole-tensor ops as possible (fused multiply-adds, lerp): on CPU this
    runs over every pixel of every frame and is memory bound.
    """
    q = torch.addmm(material.offset, uv, material.uv_transform.t())
    noise = _wrapped_lookup(noise_bank(str(uv.device))[material.bank_index], q)  # (S, 3)
    k = material.sharpness
    # contrast curve 0.5 + 0.5 tanh(k (2 n - 1)) / tanh(k), keeps [0, 1] -> [0, 1]
    f = torch.tanh(noise[:, 0] * (2 * k) - k).mul_(0.5 / math.tanh(k)).add_(0.5)
    if material.stripe_weight > 0:
        phase = q[:, 0] * (2 * math.pi * material.stripe_frequency) + 4.0 * noise[:, 1]
        stripes = torch.tanh(4.0 * torch.sin(phase)).mul_(0.5).add_(0.5)
        f = torch.lerp(f, stripes, material.stripe_weight)
    if material.checker_weight > 0:
        w = material.checker_frequency * 2 * math.pi
        checks = torch.tanh(8.0 * torch.sin(w * q[:, 0]) * torch.sin(w * q[:, 1])).mul_(0.5).add_(0.5)
        f = torch.lerp(f, checks, material.checker_weight)
    c0, c1, c2 = material.colors
    color = torch.addmm(c0, f[:, None], (c1 - c0)[None])  # c0 + f (c1 - c0): a convex mix, stays in [0, 1]
    accent = noise[:, 2:3].sub(0.62).mul_(6.0).clamp_(0.0, 1.0)  # sparse blobs of the accent colour
    color = torch.lerp(color, c2.expand_as(color), accent)
    if material.photo is not None:
        color = torch.lerp(color, _wrapped_lookup(material.photo, q * 0.5), 0.8)
    return color


def periodic_photo(photo: np.ndarray, device) -> torch.Tensor:
    """(S, S, 3) float image -> (3, S+1, S+1) tensor, mirrored into a seamless tile."""
    t = torch.as_tensor(photo, dtype=torch.float32).permute(2, 0, 1)
    t = torch.cat([t, t.flip(-1)], -1)
    t = torch.cat([t, t.flip(-2)], -2)
    return F.pad(t[None], (0, 1, 0, 1), mode="circular")[0].to(device)


def load_photos(folder: str | Path, size: int = 256, limit: int = 64) -> list[np.ndarray]:
    """Centre-cropped, resized RGB float32 photos (S, S, 3) in [0, 1] from a user folder."""
    import cv2

    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".bmp"})
    photos = []
    for path in paths[:limit]:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            continue
        h, w = img.shape[:2]
        s = min(h, w)
        img = img[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        photos.append(img[:, :, ::-1].astype(np.float32) / 255.0)
    return photos
