"""`generate_clip`: one synthetic video with exact ground truth (tracks, depth, cameras).

Contract (all numpy; T frames, N tracks, pixel (row i, col j) centre at (x, y) = (j, i)):
    video          (T, H, W, 3) uint8
    tracks         (T, N, 2) float32  (x, y) of each surface point, also when occluded
    visibility     (T, N) bool        in front, inside [-0.5, W-0.5] x [-0.5, H-0.5], unoccluded
    depth          (T, H, W) float32  camera-space z of the surface seen at each pixel centre
    intrinsics     (3, 3) float32     same pixel convention as tracks
    cam_from_world (T, 3, 4) float32  OpenCV [R | t] (+z forward, +y down)
    points_world   (T, N, 3) float32  3D position of each tracked point per frame
    is_static      (N,) bool; object_id (N,) int64 (0 = static environment)
    query_frame    (N,) int64         frame the point was sampled in (visible there)
Occlusion is decided by casting the exact ray through each projected point (float64), so it
is sub-pixel exact; a depth test at the rounded pixel agrees except along depth edges.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from .geometry import intrinsics_matrix, project
from .render import cast, render, scene_poses
from .scene import Scene, sample_scene
from .textures import load_photos

VIS_RTOL = 1e-4  # relative depth tolerance of the exact occlusion test


def _sample_queries(rng, prim_map: torch.Tensor, scene: Scene, num_tracks: int, object_fraction: float):
    """Query (frame, x, y) for each track: a random frame, then a random pixel, biased towards
    objects so moving points are well represented; sub-pixel jitter keeps positions continuous."""
    T, H, W = prim_map.shape
    obj_of_prim = torch.tensor([p.object_id for p in scene.primitives], device=prim_map.device)
    on_object = (obj_of_prim[prim_map] > 0).view(T, -1).cpu().numpy()
    frames = rng.integers(0, T, size=num_tracks)
    pix = rng.integers(0, H * W, size=num_tracks)
    want_object = rng.uniform(size=num_tracks) < object_fraction
    for n in np.flatnonzero(want_object):
        cand = np.flatnonzero(on_object[frames[n]])
        if len(cand):
            pix[n] = cand[rng.integers(len(cand))]
    xy = np.stack([pix % W, pix // W], -1) + rng.uniform(-0.5, 0.5, size=(num_tracks, 2))
    xy[:, 0] = xy[:, 0].clip(-0.5, W - 0.5)
    xy[:, 1] = xy[:, 1].clip(-0.5, H - 0.5)
    return frames, xy


def track_points(scene: Scene, poses64, K64: torch.Tensor, frames: np.ndarray, xy: np.ndarray, height: int, width: int):
    """Lift query pixels to surface points and follow them through every frame (float64).

    Returns dict of tensors: tracks (T, N, 2), visibility (T, N), points_world (T, N, 3),
    prim (N,) primitive index.
    """
    dev = poses64.eye.device
    frames_t = torch.as_tensor(frames, device=dev)
    t, prim, p_local = cast(scene, poses64, frames_t, torch.as_tensor(xy, dtype=torch.float64, device=dev), K64)
    assert torch.isfinite(t).all(), "query ray escaped the room"
    R, tr = poses64.prim_R[prim], poses64.prim_t[prim]  # (N, T, 3, 3), (N, T, 3)
    world = (R @ p_local[:, None, :, None])[..., 0] + tr  # (N, T, 3)
    world = world.transpose(0, 1)  # (T, N, 3)
    cam = (poses64.cam_R[:, None] @ world[..., None])[..., 0] + poses64.cam_t[:, None]
    z = cam[..., 2]
    safe = torch.where(z.abs() < 1e-6, torch.full_like(z, 1e-6), z)
    uv = project(torch.cat([cam[..., :2], safe[..., None]], -1), K64)
    nT, N = z.shape
    inside = (z > 1e-3) & (uv[..., 0] >= -0.5) & (uv[..., 0] <= width - 0.5) & (uv[..., 1] >= -0.5) & (uv[..., 1] <= height - 0.5)
    # exact occlusion test: the ray through the projected point must hit this very point first
    f_idx = torch.arange(nT, device=dev)[:, None].expand(nT, N).reshape(-1)
    uv_in = torch.where(inside[..., None], uv, torch.zeros_like(uv)).reshape(-1, 2)
    t_hit, prim_hit, _ = cast(scene, poses64, f_idx, uv_in, K64)
    unoccluded = (prim_hit.view(nT, N) == prim[None]) & ((t_hit.view(nT, N) - z).abs() <= VIS_RTOL * z.abs() + 1e-6)
    return dict(tracks=uv, visibility=inside & unoccluded, points_world=world, prim=prim)


def _motion_blur(scene, times, K, height, width, device, samples: int, exposure: float):
    """Average colour over `samples` sub-frame renders spanning `exposure` frames."""
    acc = None
    for off in torch.linspace(-0.5, 0.5, samples, dtype=torch.float64) * exposure * scene.frame_step:
        _, _, c = render(scene, scene_poses(scene, times + off, device).to(torch.float32), K, height, width)
        acc = c if acc is None else acc + c
    return acc / samples


def generate_clip(
    seed: int,
    num_frames: int = 24,
    height: int = 256,
    width: int = 256,
    num_tracks: int = 256,
    dynamic: bool = True,
    device: str | torch.device = "cpu",
    *,
    photos: Sequence[np.ndarray] | str | Path | None = None,
    frame_step: float = 1.0,
    motion_blur_samples: int = 0,
    sensor_noise: bool = True,
    object_fraction: float = 0.4,
    camera_mode: Optional[str] = None,
) -> dict:
    """Render clip `seed` and its exact ground truth (see module docstring for the contract).

    photos: folder or list of (S, S, 3) float images to texture some surfaces with.
    frame_step: scene time per frame (frame-rate jitter); motion_blur_samples > 1 averages
    that many sub-frame renders over half a frame of exposure (ground truth stays at the
    frame centre).  Same arguments -> bit-identical output on the same device.
    """
    device = torch.device(device)
    if isinstance(photos, (str, Path)):
        photos = load_photos(photos)
    scene = sample_scene(seed, height, width, dynamic, device, photos or (), frame_step, camera_mode)
    rng = np.random.default_rng([seed, 1])
    times = scene.frame_times(num_frames)
    K64 = intrinsics_matrix(scene.focal, height, width).to(device)
    poses64 = scene_poses(scene, times, device)
    with torch.no_grad():
        depth, prim_map, color = render(scene, poses64.to(torch.float32), K64, height, width)
        if motion_blur_samples > 1:
            color = _motion_blur(scene, times, K64, height, width, device, motion_blur_samples, 0.5)
        video = color * 255.0
        if sensor_noise and scene.noise_std > 0:
            gen = torch.Generator(device=device).manual_seed(int(rng.integers(2**62)))
            video = video + scene.noise_std * torch.randn(video.shape, generator=gen, device=device)
        video = video.round().clamp(0, 255).to(torch.uint8)
        frames, xy = _sample_queries(rng, prim_map, scene, num_tracks, object_fraction if dynamic else 0.3)
        tr = track_points(scene, poses64, K64, frames, xy, height, width)
    prim = tr["prim"].cpu().numpy()
    cam_from_world = torch.cat([poses64.cam_R, poses64.cam_t[..., None]], -1)
    return dict(
        video=video.cpu().numpy(),
        tracks=tr["tracks"].float().cpu().numpy(),
        visibility=tr["visibility"].cpu().numpy(),
        depth=depth.cpu().numpy().astype(np.float32),
        intrinsics=K64.float().cpu().numpy(),
        cam_from_world=cam_from_world.float().cpu().numpy(),
        points_world=tr["points_world"].float().cpu().numpy(),
        is_static=np.array([scene.primitives[i].motion.is_static for i in prim], dtype=bool),
        object_id=np.array([scene.primitives[i].object_id for i in prim], dtype=np.int64),
        query_frame=frames.astype(np.int64),
    )
