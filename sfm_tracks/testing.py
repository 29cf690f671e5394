"""Synthetic point-level scenes with known geometry, for tests and benchmarks.

A static point cloud seen by a camera that moves along an arc while turning towards the scene,
plus optional outlier tracks (drift, jumps) and a rigidly moving object. Tracks use the tracker's
pixel convention (x = 0 at the centre of the first pixel column).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from .tracks import Tracks

GOOD, DRIFT, JUMP, MOVING = 0, 1, 2, 3


@dataclass
class SyntheticScene:
    tracks: Tracks
    K: np.ndarray  # (3, 3) pinhole intrinsics, tracker convention
    cam_from_world: np.ndarray  # (T, 3, 4)
    points: np.ndarray  # (N, 3) world points (first frame position for moving ones)
    kind: np.ndarray  # (N,) GOOD / DRIFT / JUMP / MOVING
    offset: np.ndarray  # (T, N) injected error in px (0 for good observations)

    @property
    def colmap_params(self) -> list:
        """PINHOLE parameters in COLMAP's convention (pixel corner at 0)."""
        K = self.K
        return [K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5]


def _look_at(center, target, up=(0.0, -1.0, 0.0)):
    """World->camera rotation for an OpenCV camera at `center` looking at `target`."""
    z = target - center
    z = z / np.linalg.norm(z)
    x = np.cross(up, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return np.stack([x, y, z])


def camera_path(num_frames, arc_deg=40.0, radius=6.0, motion="orbit", rng=None):
    """(T, 3, 4) cam_from_world poses. motion: 'orbit' (parallax), 'rotation' (pure turn), 'static',
    'forward' (driving towards the scene, swaying a little)."""
    rng = rng or np.random.default_rng(0)
    poses = []
    for t in range(num_frames):
        s = t / max(num_frames - 1, 1)
        if motion == "static":
            s = 0.0
        a = np.radians(arc_deg) * (s - 0.5)
        if motion == "forward":
            center = np.array([0.3 * np.sin(a), 0.1 * np.sin(3 * a), -radius + 3.0 * s])
            target = center + np.array([0.05 * np.sin(a), 0.0, 1.0])
        elif motion == "rotation":
            center = np.array([0.0, 0.0, -radius])
            target = center + np.array([np.sin(a), 0.1 * np.sin(2 * a), np.cos(a)])
        else:
            center = np.array([radius * np.sin(a), 0.3 * np.sin(3 * a), -radius * np.cos(a)])
            target = np.array([0.2 * np.sin(2 * a), 0.2 * np.cos(a), 0.0])
        R = _look_at(center, target)
        roll = Rotation.from_euler("z", 5.0 * np.sin(2 * np.pi * s)).as_matrix()  # a little roll
        R = roll @ R
        poses.append(np.concatenate([R, -R @ center[:, None]], 1))
    return np.stack(poses)


def project(K, cam_from_world, X):
    """(T, N, 2) pixels and (T, N) depths of world points X (N, 3) or per-frame points (T, N, 3)."""
    X = np.broadcast_to(X, (len(cam_from_world),) + X.shape[-2:])
    Xc = np.einsum("tij,tnj->tni", cam_from_world[:, :, :3], X) + cam_from_world[:, None, :, 3]
    uv = np.einsum("ij,tnj->tni", K, Xc)
    return uv[..., :2] / uv[..., 2:], Xc[..., 2]


def synthetic_scene(num_frames=30, num_tracks=500, noise_px=1.0, outlier_fraction=0.1, moving_fraction=0.0,
                    motion="orbit", image_size=(480, 640), focal=600.0, seed=0) -> SyntheticScene:
    """Tracks of a static scene (+ outliers, + a moving object) with their ground truth."""
    rng = np.random.default_rng(seed)
    H, W = image_size
    K = np.array([[focal, 0, (W - 1) / 2], [0, focal, (H - 1) / 2], [0, 0, 1]])
    T, N = num_frames, num_tracks
    poses = camera_path(T, motion=motion, rng=rng)
    kind = np.full(N, GOOD)
    n_moving = int(round(moving_fraction * N))
    n_out = int(round(outlier_fraction * N))
    kind[:n_moving] = MOVING
    kind[n_moving:n_moving + n_out // 2] = DRIFT
    kind[n_moving + n_out // 2:n_moving + n_out] = JUMP
    kind = kind[rng.permutation(N)]

    # Static points: a box around the origin; keep those visible in the middle frame.
    X = np.empty((N, 3))
    filled = 0
    while filled < N:
        cand = rng.uniform([-2.5, -1.8, -1.5], [2.5, 1.8, 2.0], (4 * N, 3))
        xy, z = project(K, poses[T // 2:T // 2 + 1], cand)
        ok = (z[0] > 0.5) & (xy[0] > 20).all(-1) & (xy[0, :, 0] < W - 20) & (xy[0, :, 1] < H - 20)
        take = cand[ok][: N - filled]
        X[filled:filled + len(take)] = take
        filled += len(take)

    # Moving object: a small cluster with its own rotation + translation over time.
    Xt = np.broadcast_to(X, (T, N, 3)).copy()
    mov = kind == MOVING
    if mov.any():
        c = np.array([0.5, 0.3, -0.5])
        local = rng.normal(0, 0.35, (mov.sum(), 3))
        X[mov] = c + local
        for t in range(T):
            s = t / max(T - 1, 1)
            R = Rotation.from_euler("y", 60.0 * s, degrees=True).as_matrix()
            Xt[t, mov] = c + np.array([1.2 * s, -0.6 * s, 0.8 * s]) + local @ R.T

    xy, depth = project(K, poses, Xt)
    visible = (depth > 0.1) & (xy > 0).all(-1) & (xy[..., 0] < W - 1) & (xy[..., 1] < H - 1)
    # Some occlusion gaps so that tracks do not all span the whole clip.
    for n in rng.choice(N, N // 5, replace=False):
        a = rng.integers(0, T)
        visible[a:a + rng.integers(1, max(T // 3, 2)), n] = False
    xy = xy + rng.normal(0, noise_px, xy.shape)

    offset = np.zeros((T, N))
    for n in np.nonzero((kind == DRIFT) | (kind == JUMP))[0]:
        t0 = rng.integers(T // 4, T // 2 + 1)
        d = rng.normal(size=2)
        d /= np.linalg.norm(d)
        steps = np.arange(T) - t0
        if kind[n] == DRIFT:  # slowly sliding off the surface, 1.5..4 px per frame
            mag = np.where(steps >= 0, (steps + 1) * rng.uniform(1.5, 4.0), 0.0)
        else:  # jumps to another surface point and stays there
            mag = np.where(steps >= 0, rng.uniform(15.0, 60.0), 0.0)
        xy[:, n] += mag[:, None] * d
        offset[:, n] = mag
    inside = (xy > 0).all(-1) & (xy[..., 0] < W - 1) & (xy[..., 1] < H - 1)
    visible &= inside
    xy = np.where(visible[..., None], xy, np.nan)  # the tracker may leave invisible points undefined
    tracks = Tracks(xy=xy, visible=visible, image_size=(H, W))
    return SyntheticScene(tracks, K, poses, X, kind, offset * visible)


def distort_frames(frames: np.ndarray, focal: float, k1: float) -> np.ndarray:
    """(T, H, W, 3) pinhole renders as seen through a SIMPLE_RADIAL lens (x_d = x (1 + k1 r^2), r in focal units,
    principal point at the image centre); k1 < 0 is barrel distortion. For undistortion tests."""
    import cv2

    T, H, W = frames.shape[:3]
    K = np.array([[focal, 0, W / 2], [0, focal, H / 2], [0, 0, 1]])
    grid = np.stack(np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5), -1).reshape(-1, 1, 2)  # COLMAP pixel centres
    src = cv2.undistortPoints(grid, K, np.array([k1, 0, 0, 0]), P=K).reshape(H, W, 2) - 0.5
    maps = src[..., 0].astype(np.float32), src[..., 1].astype(np.float32)
    return np.stack([cv2.remap(np.asarray(f), *maps, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT) for f in frames])


def blur_every(frames: np.ndarray, every: int = 5, phase: int = 2, sigma: float = 2.5) -> tuple:
    """Copy of (T, H, W, 3) frames with frames t % every == phase Gaussian-blurred -> (frames, (T,) blurred flags).
    A stand-in for the motion-blurred frames of a hand-held video, for frame-selection tests."""
    import cv2

    out = np.array(frames, copy=True)
    blurred = np.arange(len(out)) % every == phase
    for t in np.flatnonzero(blurred):
        out[t] = cv2.GaussianBlur(out[t], (0, 0), sigma)
    return out, blurred
