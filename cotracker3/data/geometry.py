"""Small rigid-body and pinhole-camera helpers shared by the synthetic generator.

Conventions (used everywhere in `cotracker3.data`):
- world frame: z up, ground plane z = 0;
- camera frame: OpenCV (+x right, +y down, +z forward), `cam_from_world` = [R | t];
- pixels: tracker convention, the centre of pixel (row i, column j) is at (x, y) = (j, i).
"""
from __future__ import annotations

import torch


def axis_angle_to_matrix(rotvec: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula.  rotvec (..., 3) -> R (..., 3, 3); exact and smooth at 0 angle."""
    angle = rotvec.norm(dim=-1, keepdim=True)  # (..., 1)
    axis = rotvec / angle.clamp_min(1e-12)
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*rotvec.shape[:-1], 3, 3)
    s = torch.sin(angle)[..., None]
    c = torch.cos(angle)[..., None]
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device).expand_as(k)
    return eye + s * k + (1 - c) * (k @ k)


def look_at(eye: torch.Tensor, target: torch.Tensor, roll: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """OpenCV cam_from_world for cameras at `eye` (..., 3) looking at `target` (..., 3), world z up.

    Returns R (..., 3, 3) and t (..., 3) with x_cam = R x_world + t.  `roll` (...) rotates
    about the viewing axis (hand-held cameras are never perfectly level).
    """
    forward = torch.nn.functional.normalize(target - eye, dim=-1)
    up = torch.zeros_like(forward)
    up[..., 2] = 1.0
    right = torch.nn.functional.normalize(torch.cross(forward, up, dim=-1), dim=-1)
    down = torch.cross(forward, right, dim=-1)
    if roll is not None:
        c, s = torch.cos(roll)[..., None], torch.sin(roll)[..., None]
        right, down = c * right + s * down, -s * right + c * down
    R = torch.stack([right, down, forward], dim=-2)
    t = -(R @ eye[..., None])[..., 0]
    return R, t


def intrinsics_matrix(focal: float, height: int, width: int) -> torch.Tensor:
    """K (3, 3) with the principal point at the image centre in tracker pixel convention."""
    return torch.tensor(
        [[focal, 0.0, (width - 1) / 2.0], [0.0, focal, (height - 1) / 2.0], [0.0, 0.0, 1.0]], dtype=torch.float64
    )


def project(points_cam: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """points_cam (..., 3) -> pixels (..., 2); caller handles z <= 0."""
    z = points_cam[..., 2:3]
    uv = points_cam[..., :2] / z
    return uv * torch.stack([K[0, 0], K[1, 1]]) + torch.stack([K[0, 2], K[1, 2]])


def pixel_rays(xy: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Camera-frame ray directions with z = 1 through pixels xy (..., 2) -> (..., 3).

    With z = 1 the ray parameter of a hit equals its camera depth, so ray casting yields
    the depth map directly.
    """
    d = (xy - torch.stack([K[0, 2], K[1, 2]])) / torch.stack([K[0, 0], K[1, 1]])
    return torch.cat([d, torch.ones_like(d[..., :1])], dim=-1)
