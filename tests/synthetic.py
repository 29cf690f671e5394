"""Synthetic translating videos and a ground-truth provider shared by the provider/filter/VGGSfM tests."""
import cv2
import numpy as np

from sfm_tracks import Tracks
from sfm_tracks.tracking.providers import TrackProvider


def translating_video(T=12, H=64, W=80, velocity=(1.5, -0.5), seed=0, stamp=False):
    """(T, H, W, 3) uint8 frames of a textured plane moving by `velocity` px/frame (scene points move +v).

    stamp=True writes the frame index into pixel (0, 0, 0), so fakes can recover global time from a window.
    """
    rng = np.random.default_rng(seed)
    pad = int(np.ceil(np.abs(velocity).max() * T)) + 8
    tex = cv2.GaussianBlur(rng.integers(0, 256, (H + 2 * pad, W + 2 * pad, 3), dtype=np.uint8), (0, 0), 2.0)
    frames = np.empty((T, H, W, 3), np.uint8)
    for t in range(T):
        # frame pixel p shows texture at p - v t + pad, so a texture point moves by +v per frame
        m = np.float32([[1, 0, pad - velocity[0] * t], [0, 1, pad - velocity[1] * t]])
        frames[t] = cv2.warpAffine(tex, m, (W, H), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        if stamp:
            frames[t, 0, 0, 0] = t
    return frames


def gt_positions(queries, T, velocity):
    """(T, N, 2) true positions of (t, x, y) queries on a translating video."""
    t = np.arange(T, dtype=np.float64)[:, None, None]
    q = np.asarray(queries, np.float64)
    return (q[None, :, 1:] + (t - q[None, :, :1]) * np.asarray(velocity)).astype(np.float32)


class TranslationProvider(TrackProvider):
    """Exact tracker for `translating_video(stamp=True)`: reads global time from the stamp, so it is
    also exact on any window of the video. Visible = inside the image."""

    name = "gt-translation"

    def __init__(self, velocity):
        self.velocity = np.asarray(velocity, np.float64)
        self.calls = []  # (num_frames, num_queries) per call

    def track(self, frames, queries):
        T, H, W = frames.shape[:3]
        self.calls.append((T, len(queries)))
        g = frames[:, 0, 0, 0].astype(np.float64)
        gq = g[queries[:, 0].astype(int)]
        xy = queries[None, :, 1:] + (g[:, None, None] - gq[None, :, None]) * self.velocity
        vis = (xy[..., 0] >= 0) & (xy[..., 1] >= 0) & (xy[..., 0] <= W - 1) & (xy[..., 1] <= H - 1)
        return Tracks(xy=xy, visible=vis, image_size=(H, W), confidence=np.ones(vis.shape, np.float32))


def textured_video(**kw):
    """translating_video(stamp=True) with its contrast stretched so SIFT finds keypoints (stamp kept)."""
    f = translating_video(stamp=True, **kw)
    g = np.clip((f.astype(np.float32) - f.mean()) * 6 + 128, 0, 255).astype(np.uint8)
    g[:, 0, 0, 0] = f[:, 0, 0, 0]
    return g


# ---------------------------------------------------------------------------------------------- textured room

def _texture(rng, size):
    """(size, size, 3) uint8 multi-scale noise: corners at every scale for SIFT and Lucas-Kanade alike."""
    acc = np.zeros((size, size, 3), np.float32)
    for sigma, weight in ((1.0, 0.5), (3.0, 1.0), (8.0, 1.5), (20.0, 2.0)):
        n = cv2.GaussianBlur(rng.normal(0, 1, (size, size, 3)).astype(np.float32), (0, 0), sigma)
        acc += weight * n / n.std()
    acc = (acc - acc.mean()) / acc.std()
    return np.clip(128 + 45 * acc, 0, 255).astype(np.uint8)


def room_planes(seed=0, half=6.0, height=4.0, box=1.0, px_per_unit=32, twin_box=False, twin_offset=1.5):
    """Textured rectangles (origin, u, v, width, height, texture) of a room with a box in its centre.

    The room is seen from inside and the box from outside, so a ray's first hit is the nearest rectangle.
    twin_box=True: instead, two boxes with the same textures at (-twin_offset, 0) and (+twin_offset, 0), the
    second the first turned 180 degrees about the room's vertical axis, so a view of one box from one side
    looks like a view of the other from the opposite side: a tempting wrong match (only the walls differ).
    """
    rng = np.random.default_rng(seed)
    rects = []

    def add(o, u, v, w, h, tex=None):
        tex = _texture(rng, int(px_per_unit * max(w, h))) if tex is None else tex
        rects.append((np.array(o, float), np.array(u, float), np.array(v, float), w, h, tex))

    L = 2 * half
    for k in range(4):  # walls, z from 0 (floor) to height
        a = np.pi / 2 * k
        c, s = np.array([np.cos(a), np.sin(a), 0.0]), np.array([-np.sin(a), np.cos(a), 0.0])
        add(half * c - half * s, s, (0, 0, 1), L, height)
    add((-half, -half, 0), (1, 0, 0), (0, 1, 0), L, L)  # floor
    add((-half, -half, height), (1, 0, 0), (0, 1, 0), L, L)  # ceiling
    first = len(rects)
    b = box / 2
    shift = np.array([-twin_offset if twin_box else 0.0, 0.0, 0.0])
    for k in range(4):  # box sides and top
        a = np.pi / 2 * k
        c, s = np.array([np.cos(a), np.sin(a), 0.0]), np.array([-np.sin(a), np.cos(a), 0.0])
        add(shift + b * c - b * s, s, (0, 0, 1), box, box)
    add(shift + (-b, -b, box), (1, 0, 0), (0, 1, 0), box, box)
    if twin_box:
        turn = np.diag([-1.0, -1.0, 1.0])  # 180 degrees about z through the room's centre
        for o, u, v, w, h, tex in rects[first:]:
            add(turn @ o, turn @ u, turn @ v, w, h, tex)
    return rects


def orbit_poses(num_frames, degrees, radius=3.5, height=1.6, target=(0.0, 0.0, 0.6), start_deg=0.0):
    """(T, 3, 4) cam_from_world of a camera circling the room's centre (z up), looking at `target`."""
    poses = []
    for t in range(num_frames):
        a = np.radians(start_deg + degrees * t / num_frames)
        eye = np.array([radius * np.cos(a), radius * np.sin(a), height])
        z = np.asarray(target) - eye
        z /= np.linalg.norm(z)
        x = np.cross(z, (0.0, 0.0, 1.0))
        x /= np.linalg.norm(x)
        R = np.stack([x, np.cross(z, x), z])
        poses.append(np.concatenate([R, -R @ eye[:, None]], 1))
    return np.stack(poses)


def render_room(rects, cam_from_world, K, H, W):
    """(T, H, W, 3) uint8 views: per pixel the nearest rectangle hit by the ray through its centre."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    rays_cam = np.stack([x, y, np.ones_like(x)], -1) @ np.linalg.inv(K).T  # (H, W, 3)
    out = np.zeros((len(cam_from_world), H, W, 3), np.uint8)
    for t, P in enumerate(cam_from_world):
        R, c = P[:, :3], -P[:, :3].T @ P[:, 3]
        d = rays_cam @ R  # world directions (rows: R^T d_cam)
        best = np.full((H, W), np.inf)
        for o, u, v, w, h, tex in rects:
            n = np.cross(u, v)
            denom = d @ n
            with np.errstate(divide="ignore", invalid="ignore"):
                s = ((o - c) @ n) / denom
            p = c + s[..., None] * d - o
            a, b = p @ u, p @ v
            hit = (s > 1e-6) & (s < best) & (a >= 0) & (a <= w) & (b >= 0) & (b <= h)
            if not hit.any():
                continue
            th, tw = tex.shape[:2]
            mx = (a / w * (tw - 1)).astype(np.float32)
            my = (b / h * (th - 1)).astype(np.float32)
            img = cv2.remap(tex, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            out[t][hit] = img[hit]
            best[hit] = s[hit]
    return out


def rotating_video(T=16, size=160, yaw_deg=10.0, pitch_deg=3.0, seed=0):
    """(T, size, size, 3) uint8 frames of a camera turning about its centre (pure rotation), and the focal (px).

    One view of a synthetic room is rendered at twice the size; each frame is the exact image of a camera
    rotated by R_t with the same centre, i.e. that render warped by the homography K R_t K_big^-1.
    """
    from scipy.spatial.transform import Rotation

    from cotracker3.data.synthetic import generate_clip

    clip = generate_clip(seed, num_frames=1, height=2 * size, width=2 * size, num_tracks=8, dynamic=False, camera_mode="orbit",
                         sensor_noise=False)
    Kb = clip["intrinsics"].astype(np.float64)
    K = Kb.copy()
    K[0, 2] = K[1, 2] = (size - 1) / 2
    frames = []
    for t in range(T):
        s = t / max(T - 1, 1) - 0.5
        R = Rotation.from_euler("yx", [yaw_deg * s, pitch_deg * np.sin(np.pi * s)], degrees=True).as_matrix()
        H = K @ R @ np.linalg.inv(Kb)  # big image pixel -> this frame's pixel
        frames.append(cv2.warpPerspective(clip["video"][0], H, (size, size), flags=cv2.INTER_LINEAR))
    return np.stack(frames), float(K[0, 0])
