"""Analytic ray–primitive intersection in object-local coordinates.

Every primitive lives at the origin of its own frame (planes: z = 0 facing +z; boxes: half
extents `size`; spheres: radius `size[0]`; cylinders: radius `size[0]`, half height
`size[1]`, axis z).  Rays arrive already transformed to that frame, so one rigid transform
per frame moves an object and its texture together, and a surface point's local
coordinate (hence colour) never changes: the basis of exact tracks.

Kernels take origins `o` (..., 3) and directions `d` (..., 3) that broadcast against each
other and return the ray parameter `t` (...) of the first hit in front of the origin, +inf
for a miss.  Rotations keep `t` unchanged, so with z = 1 camera rays `t` is camera depth.
"""
from __future__ import annotations

import torch

PLANE, BOX, SPHERE, CYLINDER = 0, 1, 2, 3
KIND_NAMES = {PLANE: "plane", BOX: "box", SPHERE: "sphere", CYLINDER: "cylinder"}
T_MIN = 1e-3  # ignore hits this close to the origin (avoids self-hits, cameras never touch surfaces)


def _miss_to_inf(t: torch.Tensor, hit: torch.Tensor) -> torch.Tensor:
    """Misses, and hits behind or at the origin, become +inf (NaNs from 0 * inf too)."""
    return t.masked_fill_(~(hit & (t > T_MIN)), float("inf"))


def intersect_plane(o: torch.Tensor, d: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """Infinite plane z = 0 (both sides)."""
    t = -o[..., 2] / d[..., 2]
    return t.masked_fill_(~(t > T_MIN), float("inf"))


def intersect_box(o: torch.Tensor, d: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """Axis-aligned box [-size, size] seen from outside (slab test)."""
    inv = 1.0 / d  # zero components give +-inf slabs, which the min/max handle
    t1 = (-size - o) * inv
    t2 = (size - o) * inv
    t_near = torch.minimum(t1, t2).amax(-1)
    t_far = torch.maximum(t1, t2).amin(-1)
    return _miss_to_inf(t_near, t_near <= t_far)


def intersect_sphere(o: torch.Tensor, d: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """Sphere of radius size[0] seen from outside (near root of the quadratic)."""
    a = (d * d).sum(-1)
    b = (o * d).sum(-1)
    c = (o * o).sum(-1) - size[0] ** 2
    disc = b * b - a * c
    t = (-b - disc.clamp_min(0).sqrt()) / a
    return _miss_to_inf(t, disc >= 0)


def intersect_cylinder(o: torch.Tensor, d: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """Closed cylinder (radius size[0], half height size[1], axis z): side wall and two caps."""
    r, h = size[0], size[1]
    ox, oy, oz = o.unbind(-1)
    dx, dy, dz = d.unbind(-1)
    a = (dx * dx + dy * dy).clamp_min(1e-12)
    b = ox * dx + oy * dy
    c = ox * ox + oy * oy - r * r
    disc = b * b - a * c
    t_side = (-b - disc.clamp_min(0).sqrt()) / a
    t_side = _miss_to_inf(t_side, (disc >= 0) & ((oz + t_side * dz).abs() <= h))
    inv = 1.0 / dz
    t_cap = torch.minimum((h - oz) * inv, (-h - oz) * inv)  # entry cap
    cx, cy = ox + t_cap * dx, oy + t_cap * dy
    t_cap = _miss_to_inf(t_cap, cx * cx + cy * cy <= r * r)
    return torch.minimum(t_side, t_cap)


INTERSECT = {PLANE: intersect_plane, BOX: intersect_box, SPHERE: intersect_sphere, CYLINDER: intersect_cylinder}


def local_normal(kind: int, p: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """Outward unit normal (S, 3) at local surface points p (S, 3)."""
    if kind == PLANE:
        n = torch.zeros_like(p)
        n[:, 2] = 1.0
        return n
    if kind == SPHERE:
        return torch.nn.functional.normalize(p, dim=-1)
    if kind == BOX:
        rel = p.abs() / size
        axis = rel.argmax(-1, keepdim=True)
        n = torch.zeros_like(p)
        return n.scatter_(-1, axis, torch.sign(p.gather(-1, axis)))
    if kind == CYLINDER:
        rho = p[:, :2].norm(dim=-1)
        on_cap = (p[:, 2].abs() - size[1]).abs() < (rho - size[0]).abs()
        side = torch.cat([p[:, :2] / rho.clamp_min(1e-9)[:, None], torch.zeros_like(p[:, 2:])], -1)
        cap = torch.zeros_like(p)
        cap[:, 2] = torch.sign(p[:, 2])
        return torch.where(on_cap[:, None], cap, side)
    raise ValueError(f"unknown primitive kind {kind}")
