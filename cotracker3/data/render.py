"""Batched analytic ray casting of a `Scene`: depth, primitive id and shaded colour per pixel.

Pixels are grouped into 16x16 tiles.  Room planes are intersected with every ray; each other
primitive only with the (frame, tile) pairs its projected bounding sphere touches, moved
into its local frame with one batched matmul and intersected in closed form.  A running
minimum keeps the nearest hit and its local point; each pixel's winning surface is then
textured and shaded once, so cost is ~one texture lookup per pixel whatever the scene.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .geometry import pixel_rays
from .primitives import BOX, CYLINDER, INTERSECT, PLANE, SPHERE, T_MIN, local_normal
from .scene import Scene
from .textures import albedo, surface_uv

TILE = 16


@dataclass
class Poses:
    """Everything that moves, sampled at K scene times (on the render device)."""

    cam_R: torch.Tensor  # (K, 3, 3) cam_from_world rotation
    cam_t: torch.Tensor  # (K, 3)
    eye: torch.Tensor  # (K, 3) camera centre in world
    prim_R: torch.Tensor  # (M, K, 3, 3) world_from_local rotation of each primitive
    prim_t: torch.Tensor  # (M, K, 3)

    def to(self, dtype: torch.dtype) -> "Poses":
        return Poses(*(getattr(self, f).to(dtype) for f in ("cam_R", "cam_t", "eye", "prim_R", "prim_t")))


def scene_poses(scene: Scene, times: torch.Tensor, device: torch.device | str = "cpu") -> Poses:
    """times (K,) float64 scene times -> float64 Poses."""
    cam_R, cam_t = scene.camera.at(times)
    eye = -(cam_R.transpose(-1, -2) @ cam_t[..., None])[..., 0]
    Rs, ts = zip(*(p.motion.at(times) for p in scene.primitives))
    dev = torch.device(device)
    return Poses(cam_R.to(dev), cam_t.to(dev), eye.to(dev), torch.stack(Rs).to(dev), torch.stack(ts).to(dev))


def _to_local(poses: Poses, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """M (K, 3, 3) with row-vector d_cam @ M = R_i^T R_cw^T d_cam, and ray origins o (K, 3)."""
    M = poses.cam_R @ poses.prim_R[i]
    o = ((poses.eye - poses.prim_t[i])[:, None, :] @ poses.prim_R[i])[:, 0]
    return M, o


def cast(scene: Scene, poses: Poses, frame: torch.Tensor, xy: torch.Tensor, K: torch.Tensor):
    """Exact nearest hits of individual rays (track queries and occlusion tests).

    frame (R,) long, xy (R, 2) pixels, K (3, 3); all in poses' dtype/device.
    Returns t (R,) camera depth (inf: none), prim (R,) long (-1: none), p_local (R, 3).
    """
    d_cam = pixel_rays(xy, K)
    best = torch.full(frame.shape, float("inf"), dtype=xy.dtype, device=xy.device)
    prim = torch.full(frame.shape, -1, dtype=torch.long, device=xy.device)
    p_local = torch.zeros_like(d_cam)
    for i, p in enumerate(scene.primitives):
        M, o = _to_local(poses, i)
        o, d = o[frame], (d_cam[:, None, :] @ M[frame])[:, 0]
        t = INTERSECT[p.kind](o, d, torch.as_tensor(p.size, dtype=xy.dtype, device=xy.device))
        closer = t < best
        best = torch.where(closer, t, best)
        prim = torch.where(closer, torch.full_like(prim, i), prim)
        p_local = torch.where(closer[:, None], o + t[:, None].clamp_max(1e30) * d, p_local)
    return best, prim, p_local


def _tiled_pixels(height: int, width: int, device) -> torch.Tensor:
    """Pixel centres (NT, TILE*TILE, 2) of the image padded to whole tiles, tile-major."""
    ty, tx = -(-height // TILE), -(-width // TILE)
    y, x = torch.meshgrid(torch.arange(ty * TILE, device=device, dtype=torch.float32),
                          torch.arange(tx * TILE, device=device, dtype=torch.float32), indexing="ij")
    xy = torch.stack([x, y], -1).view(ty, TILE, tx, TILE, 2).permute(0, 2, 1, 3, 4)
    return xy.reshape(ty * tx, TILE * TILE, 2)


def _untile(a: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(K, NT, TILE*TILE, ...) -> (K, H, W, ...)."""
    ty, tx = -(-height // TILE), -(-width // TILE)
    rest = a.shape[3:]
    a = a.view(a.shape[0], ty, tx, TILE, TILE, *rest).transpose(2, 3)
    return a.reshape(a.shape[0], ty * TILE, tx * TILE, *rest)[:, :height, :width].contiguous()


def bounding_radius(kind: int, size) -> float:
    if kind == BOX:
        return float((size**2).sum() ** 0.5)
    if kind == SPHERE:
        return float(size[0])
    if kind == CYLINDER:
        return float((size[0] ** 2 + size[1] ** 2) ** 0.5)
    return float("inf")


def _covered_tiles(poses: Poses, i: int, radius: float, K: torch.Tensor, height: int, width: int):
    """(frame, tile) index pairs whose pixels may see primitive i: conservative screen box of
    its bounding sphere per frame (whole frame when the camera is inside the sphere)."""
    ty, tx = -(-height // TILE), -(-width // TILE)
    c = (poses.cam_R @ poses.prim_t[i][..., None])[..., 0] + poses.cam_t  # (K, 3) centre in camera
    r = radius * 1.01 + 1e-3
    z_near, z_far = c[:, 2] - r, c[:, 2] + r
    lo_x = torch.minimum((c[:, 0] - r) / z_near, (c[:, 0] - r) / z_far)
    hi_x = torch.maximum((c[:, 0] + r) / z_near, (c[:, 0] + r) / z_far)
    lo_y = torch.minimum((c[:, 1] - r) / z_near, (c[:, 1] - r) / z_far)
    hi_y = torch.maximum((c[:, 1] + r) / z_near, (c[:, 1] + r) / z_far)
    px0, px1 = K[0, 0] * lo_x + K[0, 2], K[0, 0] * hi_x + K[0, 2]
    py0, py1 = K[1, 1] * lo_y + K[1, 2], K[1, 1] * hi_y + K[1, 2]
    tiles_x = torch.arange(tx, device=c.device, dtype=c.dtype) * TILE  # tile spans [x0 - .5, x0 + TILE - .5]
    tiles_y = torch.arange(ty, device=c.device, dtype=c.dtype) * TILE
    hit_x = (tiles_x[None] + TILE - 0.5 >= px0[:, None]) & (tiles_x[None] - 0.5 <= px1[:, None])  # (K, tx)
    hit_y = (tiles_y[None] + TILE - 0.5 >= py0[:, None]) & (tiles_y[None] - 0.5 <= py1[:, None])  # (K, ty)
    mask = hit_y[:, :, None] & hit_x[:, None, :]  # (K, ty, tx)
    mask &= (z_far > 0)[:, None, None]  # wholly behind the camera: nothing to see
    mask |= (z_near <= 1e-6)[:, None, None]  # camera within the sphere: keep all tiles
    frame, tile_y, tile_x = mask.nonzero(as_tuple=True)
    return frame, tile_y * tx + tile_x


def render(scene: Scene, poses: Poses, K: torch.Tensor, height: int, width: int, shade: bool = True):
    """Render K frames with float32 poses on the render device.

    Returns depth (K, H, W) camera z, prim (K, H, W) long primitive index,
    color (K, H, W, 3) float in [0, 1] (None if shade=False).
    """
    device = poses.eye.device
    Kf = K.to(device=device, dtype=torch.float32)
    d_cam = pixel_rays(_tiled_pixels(height, width, device), Kf)  # (NT, TT, 3)
    NT, TT = d_cam.shape[:2]
    nf = poses.eye.shape[0]
    best = torch.full((nf, NT, TT), float("inf"), device=device)
    prim = torch.full((nf, NT, TT), -1, dtype=torch.long, device=device)
    for i, p in enumerate(scene.primitives):
        size = torch.as_tensor(p.size, dtype=torch.float32, device=device)
        M, o = _to_local(poses, i)
        if p.kind == PLANE:  # full frames; only the local z component decides the hit
            dz = (M[:, :, 2] @ d_cam.view(-1, 3).t()).view(nf, NT, TT)
            t = (-o[:, 2, None, None]) / dz
            t = torch.where(t > T_MIN, t, float("inf"))
            prim.masked_fill_(t < best, i)
            best = torch.minimum(best, t)
            continue
        frame, tile = _covered_tiles(poses, i, bounding_radius(p.kind, p.size), Kf, height, width)
        if frame.numel() == 0:
            continue
        d = torch.bmm(d_cam[tile], M[frame])  # (S, TT, 3)
        t = INTERSECT[p.kind](o[frame][:, None, :], d, size)  # (S, TT)
        cur, cur_prim = best[frame, tile], prim[frame, tile]
        closer = t < cur
        best[frame, tile] = torch.where(closer, t, cur)
        prim[frame, tile] = cur_prim.masked_fill_(closer, i)
    depth = _untile(best, height, width)
    prim_map = _untile(prim, height, width)
    if not shade:
        return depth, prim_map, None
    return depth, prim_map, _shade(scene, poses, Kf, depth, prim_map)


def _rotate_rows(v: torch.Tensor, R: torch.Tensor, frame: torch.Tensor, static: bool) -> torch.Tensor:
    """Row vectors v (S, 3) -> R^T v with R (K, 3, 3) taken at each row's frame; static
    primitives share one rotation, which turns the per-row product into one matmul."""
    if static:
        return v @ R[0]
    return (v[:, :, None] * R[frame]).sum(1)


def _shade(scene: Scene, poses: Poses, K: torch.Tensor, depth: torch.Tensor, prim_map: torch.Tensor) -> torch.Tensor:
    """Texture and light every pixel's winning surface, one primitive group at a time.

    depth, prim_map (K, H, W) -> colour (K, H, W, 3) in [0, 1].
    """
    nf, height, width = depth.shape
    device = depth.device
    d_pix = pixel_rays(_pixel_grid(height, width, device), K)  # (H*W, 3)
    d_world = (d_pix[None] @ poses.cam_R).view(-1, 3)  # (K*H*W, 3) = R_cw^T d per frame
    x_world = (poses.eye[:, None, :] + depth.view(nf, -1, 1) * d_world.view(nf, -1, 3)).view(-1, 3)
    flat = prim_map.reshape(-1)
    color = torch.empty(flat.shape[0], 3, device=device)
    # uint8 keys sort ~3x faster than int64; a scene has far fewer than 255 primitives
    order = torch.argsort(flat.to(torch.uint8) if len(scene.primitives) < 255 else flat, stable=True)
    counts = torch.bincount(flat, minlength=len(scene.primitives)).tolist()
    light = torch.as_tensor(scene.light_dir, dtype=torch.float32, device=device)
    start = 0
    for i, (p, n_i) in enumerate(zip(scene.primitives, counts)):
        if n_i == 0:
            continue
        idx = order[start : start + n_i]
        start += n_i
        frame = idx // (height * width)
        static = p.motion.is_static
        R, t = poses.prim_R[i], poses.prim_t[i]
        pts = _rotate_rows(x_world[idx] - (t[:1] if static else t[frame]), R, frame, static)  # local hits
        size = torch.as_tensor(p.size, dtype=torch.float32, device=device)
        light_local = light @ R[0] if static else (light @ R)[frame]
        amb = scene.ambient
        if p.kind == PLANE and static:  # two-sided plane: normal +-z, whichever faces the camera
            dz = d_world[idx] @ R[0, :, 2]
            lit = amb + (1.0 - amb) * light_local[2].abs()
            shading = torch.where((dz < 0) == (light_local[2] > 0), lit, amb)
        else:
            n = local_normal(p.kind, pts, size)
            facing = (n * _rotate_rows(d_world[idx], R, frame, static)).sum(-1) > 0
            n = torch.where(facing[:, None], -n, n)
            shading = amb + (1.0 - amb) * (n * light_local).sum(-1).clamp_min(0.0)
        color[idx] = albedo(scene.materials[p.material], surface_uv(p.kind, pts, size)) * shading[..., None]
    return color.view(nf, height, width, 3)


def _pixel_grid(height: int, width: int, device) -> torch.Tensor:
    """Pixel centres (H*W, 2) as (x, y), row-major."""
    y, x = torch.meshgrid(torch.arange(height, device=device, dtype=torch.float32),
                          torch.arange(width, device=device, dtype=torch.float32), indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], -1)
