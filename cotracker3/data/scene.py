"""Random scene description: a textured room with background geometry, rigid objects on
smooth trajectories, a moving pinhole camera and a directional light.

Everything is a smooth function of continuous scene time `s` (frame k is at s = k * frame_step),
so frame-rate jitter and motion blur (extra sub-frame samples) come for free and stay exact.
All random choices come from one `numpy.random.Generator`, so a seed fixes the scene.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch

from .geometry import axis_angle_to_matrix, look_at
from .primitives import BOX, CYLINDER, PLANE, SPHERE
from .textures import BANK_SIZE, Material, periodic_photo

NOMINAL_FRAMES = 24  # motion magnitudes are drawn per 24 frames of scene time
CAMERA_MODES = ("orbit", "sideways", "forward", "pan")
MIN_RADIUS = 4.5  # closest the camera gets to the stage centre


@dataclass
class RigidMotion:
    """world_from_local pose R(s) = exp([w] s) R0, t(s) = p0 + v s + a s^2 / 2."""

    rotation0: np.ndarray  # (3, 3)
    position0: np.ndarray  # (3,)
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(3))
    acceleration: np.ndarray = field(default_factory=lambda: np.zeros(3))
    angular_velocity: np.ndarray = field(default_factory=lambda: np.zeros(3))

    @property
    def is_static(self) -> bool:
        return not (np.any(self.velocity) or np.any(self.acceleration) or np.any(self.angular_velocity))

    def at(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """s (K,) float64 -> R (K, 3, 3), t (K, 3), float64."""
        f = lambda a: torch.as_tensor(a, dtype=torch.float64)
        R = axis_angle_to_matrix(s[:, None] * f(self.angular_velocity)) @ f(self.rotation0)
        t = f(self.position0) + s[:, None] * f(self.velocity) + 0.5 * s[:, None] ** 2 * f(self.acceleration)
        return R, t


@dataclass
class Primitive:
    kind: int  # PLANE / BOX / SPHERE / CYLINDER
    size: np.ndarray  # (3,) see primitives.py
    material: int
    object_id: int  # 0 = static environment
    motion: RigidMotion


@dataclass
class Shake:
    """Smooth hand-held jitter: a few random sinusoids per component."""

    amplitude: np.ndarray  # (k, D)
    frequency: np.ndarray  # (k, D) radians per unit time
    phase: np.ndarray  # (k, D)

    def at(self, s: torch.Tensor) -> torch.Tensor:
        f = lambda a: torch.as_tensor(a, dtype=torch.float64)
        return (f(self.amplitude) * torch.sin(s[:, None, None] * f(self.frequency) + f(self.phase))).sum(1)


@dataclass
class CameraPath:
    """Eye on a (possibly shrinking) orbit plus linear drift and shake, looking at a moving target."""

    center: np.ndarray
    radius0: float
    radius_rate: float  # exponential approach rate towards MIN_RADIUS (forward motion)
    angle0: float
    angle_rate: float
    height0: float
    height_rate: float
    drift: np.ndarray  # (3,) eye velocity
    target0: np.ndarray
    target_rate: np.ndarray
    eye_shake: Shake
    target_shake: Shake
    roll_shake: Shake

    def eye_target_roll(self, s: torch.Tensor):
        f = lambda a: torch.as_tensor(a, dtype=torch.float64)
        # radius decays towards MIN_RADIUS, so forward motion never reaches the stage, however long the clip
        r = MIN_RADIUS + (self.radius0 - MIN_RADIUS) * torch.exp(-self.radius_rate * s)
        a = self.angle0 + self.angle_rate * s
        eye = torch.stack([r * torch.cos(a), r * torch.sin(a), self.height0 + self.height_rate * s], -1)
        eye = eye + f(self.center) + s[:, None] * f(self.drift) + self.eye_shake.at(s)
        target = f(self.target0) + s[:, None] * f(self.target_rate) + self.target_shake.at(s)
        return eye, target, self.roll_shake.at(s)[:, 0]

    def at(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cam_from_world R (K, 3, 3), t (K, 3), float64."""
        eye, target, roll = self.eye_target_roll(s)
        return look_at(eye, target, roll)


@dataclass
class Scene:
    primitives: list[Primitive]
    materials: list[Material]
    camera: CameraPath
    camera_mode: str
    focal: float
    light_dir: np.ndarray  # (3,) unit, from surface towards the light
    ambient: float
    noise_std: float  # sensor noise, in 0..255 units
    frame_step: float

    def frame_times(self, num_frames: int) -> torch.Tensor:
        return torch.arange(num_frames, dtype=torch.float64) * self.frame_step

    @property
    def num_objects(self) -> int:
        return max(p.object_id for p in self.primitives)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _yaw(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _random_color(rng: np.random.Generator) -> np.ndarray:
    """Random saturated-or-grey colour, biased away from black so shading stays visible."""
    base = rng.uniform(0.05, 1.0, size=3)
    grey = rng.uniform(0.1, 0.95)
    mix = rng.uniform(0.0, 1.0)
    return (mix * base + (1 - mix) * grey).clip(0.02, 1.0)


def _random_material(rng, frequency_range, device, photos: Sequence[np.ndarray]) -> Material:
    f32 = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32, device=device)
    colors = np.stack([_random_color(rng) for _ in range(3)])
    if rng.uniform() < 0.5:  # strong contrast between the two base colours
        colors[1] = 1.0 - colors[0] * rng.uniform(0.3, 1.0)
    photo = None
    if len(photos) and rng.uniform() < 0.5:
        photo = periodic_photo(photos[rng.integers(len(photos))], device)
    angle = rng.uniform(0, 2 * math.pi)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return Material(
        bank_index=int(rng.integers(BANK_SIZE)),
        uv_transform=f32(rot * rng.uniform(*frequency_range)),
        offset=f32(rng.uniform(0, 1, size=2)),
        colors=f32(colors),
        sharpness=float(rng.choice([0.7, 1.2, 2.0, 4.0])),
        stripe_weight=float(rng.uniform(0.4, 0.9)) if rng.uniform() < 0.3 else 0.0,
        stripe_frequency=float(rng.integers(4, 16)),
        checker_weight=float(rng.uniform(0.5, 0.9)) if rng.uniform() < 0.25 else 0.0,
        checker_frequency=float(rng.integers(2, 8)),
        photo=photo,
    )


def _shake(rng, dims: int, amplitude: float) -> Shake:
    k = 3
    return Shake(
        amplitude=rng.uniform(0, amplitude, size=(k, dims)) / k,
        frequency=rng.uniform(0.2, 1.2, size=(k, dims)),
        phase=rng.uniform(0, 2 * math.pi, size=(k, dims)),
    )


def _sample_camera(rng, mode: str, handheld: float) -> CameraPath:
    per_frame = 1.0 / NOMINAL_FRAMES
    radius = rng.uniform(5.5, 8.0)
    angle0 = rng.uniform(0, 2 * math.pi)
    height = rng.uniform(1.2, 4.0)
    target = np.array([*rng.normal(0, 0.6, size=2), rng.uniform(0.2, 1.0)])
    view = np.array([-math.cos(angle0), -math.sin(angle0), 0.0])  # horizontal viewing direction
    side = np.array([-view[1], view[0], 0.0])
    cam = dict(
        center=np.zeros(3), radius0=radius, radius_rate=0.0, angle0=angle0, angle_rate=0.0,
        height0=height, height_rate=rng.normal(0, 0.5) * per_frame, drift=np.zeros(3),
        target0=target, target_rate=np.zeros(3),
    )
    if mode == "orbit":
        cam["angle_rate"] = rng.choice([-1, 1]) * math.radians(rng.uniform(15, 60)) * per_frame
    elif mode == "sideways":
        cam["drift"] = side * rng.choice([-1, 1]) * rng.uniform(1.5, 3.5) * per_frame
        cam["target_rate"] = cam["drift"] * rng.uniform(0.0, 0.8)
    elif mode == "forward":
        cam["radius_rate"] = rng.uniform(0.4, 0.8) * per_frame
        cam["target_rate"] = side * rng.normal(0, 0.5) * per_frame
    elif mode == "pan":
        cam["target_rate"] = side * rng.choice([-1, 1]) * rng.uniform(2.0, 5.0) * per_frame
        cam["drift"] = side * rng.normal(0, 0.3) * per_frame
    else:
        raise ValueError(mode)
    return CameraPath(
        **cam,
        eye_shake=_shake(rng, 3, 0.15 * handheld),
        target_shake=_shake(rng, 3, 0.2 * handheld),
        roll_shake=_shake(rng, 1, math.radians(3) * handheld),
    )


def _static(R: np.ndarray, p) -> RigidMotion:
    return RigidMotion(rotation0=R, position0=np.asarray(p, dtype=np.float64))


def _room(rng, materials, device, photos) -> list[Primitive]:
    """Six inward-facing planes: floor, ceiling and four walls, each with its own texture."""
    hx, hy, hz = rng.uniform(12, 16), rng.uniform(12, 16), rng.uniform(6, 10)
    ry90 = np.array([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]])  # local z -> world x
    rx90 = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])  # local z -> world -y
    placements = [(np.eye(3), (0, 0, 0)), (np.eye(3), (0, 0, hz)), (ry90, (hx, 0, 0)), (ry90, (-hx, 0, 0)),
                  (rx90, (0, hy, 0)), (rx90, (0, -hy, 0))]
    prims = []
    for R, p in placements:
        materials.append(_random_material(rng, (0.15, 0.4), device, photos))
        prims.append(Primitive(PLANE, np.zeros(3), len(materials) - 1, 0, _static(R, p)))
    return prims


def _random_shape(rng, scale_range) -> tuple[int, np.ndarray, float]:
    """(kind, size, half height above its centre)."""
    kind = int(rng.choice([BOX, SPHERE, CYLINDER], p=[0.45, 0.3, 0.25]))
    s = rng.uniform(*scale_range)
    if kind == BOX:
        size = s * rng.uniform(0.5, 1.5, size=3)
        return kind, size, size[2]
    if kind == SPHERE:
        return kind, np.array([s, 0.0, 0.0]), s
    size = np.array([s * rng.uniform(0.5, 1.0), s * rng.uniform(0.6, 1.8), 0.0])
    return kind, size, size[1]


def _background(rng, materials, device, photos) -> list[Primitive]:
    """Static pillars and crates around the stage: depth variation and occluders for SfM."""
    prims = []
    for _ in range(rng.integers(4, 9)):
        kind, size, half = _random_shape(rng, (0.6, 2.0))
        a, r = rng.uniform(0, 2 * math.pi), rng.uniform(9.5, 11.0)
        materials.append(_random_material(rng, (0.25, 0.6), device, photos))
        pos = (r * math.cos(a), r * math.sin(a), half)
        prims.append(Primitive(kind, size, len(materials) - 1, 0, _static(_yaw(rng.uniform(0, 6.3)), pos)))
    return prims


def _objects(rng, materials, device, photos, dynamic: bool) -> list[Primitive]:
    """Rigid objects near the stage centre; dynamic ones slide and spin or tumble in the air."""
    per_frame = 1.0 / NOMINAL_FRAMES
    prims = []
    for obj in range(1, rng.integers(3, 9) + 1):
        kind, size, half = _random_shape(rng, (0.3, 0.9))
        a, r = rng.uniform(0, 2 * math.pi), rng.uniform(0.0, 2.5)
        pos = np.array([r * math.cos(a), r * math.sin(a), half])
        motion = _static(_yaw(rng.uniform(0, 6.3)), pos)
        if dynamic and rng.uniform() < 0.75:
            heading = rng.uniform(0, 2 * math.pi)
            speed = rng.uniform(0.3, 1.2) * per_frame
            motion.velocity = np.array([math.cos(heading), math.sin(heading), 0.0]) * speed
            if rng.uniform() < 0.4:  # tumbling through the air: random 3D spin, ballistic arc
                motion.rotation0 = _random_rotation(rng)
                motion.position0[2] = half + rng.uniform(0.8, 2.0)
                motion.velocity[2] = rng.uniform(0.0, 1.0) * per_frame
                motion.acceleration = np.array([0.0, 0.0, -rng.uniform(0.0, 0.8)]) * per_frame**2
                motion.angular_velocity = rng.normal(0, 1.0, size=3) * 2.0 * per_frame
            else:  # sliding on the floor while spinning about the vertical
                motion.angular_velocity = np.array([0.0, 0.0, rng.normal(0, 1.5)]) * per_frame
        materials.append(_random_material(rng, (0.35, 0.9), device, photos))
        prims.append(Primitive(kind, size, len(materials) - 1, obj, motion))
    return prims


def sample_scene(
    seed: int,
    height: int,
    width: int,
    dynamic: bool = True,
    device: str | torch.device = "cpu",
    photos: Sequence[np.ndarray] = (),
    frame_step: float = 1.0,
    camera_mode: Optional[str] = None,
) -> Scene:
    """Draw a scene from `seed`.  `dynamic=False`: every object static and the camera always
    translates (orbit / sideways / forward), so the clip is a valid SfM scene with parallax."""
    rng = np.random.default_rng(seed)
    device = torch.device(device)
    materials: list[Material] = []
    prims = _room(rng, materials, device, photos) + _background(rng, materials, device, photos)
    prims += _objects(rng, materials, device, photos, dynamic)
    modes = CAMERA_MODES if dynamic else CAMERA_MODES[:3]
    mode = camera_mode or str(rng.choice(modes, p=[0.4, 0.25, 0.2, 0.15] if dynamic else [0.5, 0.3, 0.2]))
    camera = _sample_camera(rng, mode, handheld=rng.uniform(0.0, 1.0))
    elevation, azimuth = rng.uniform(math.radians(30), math.radians(80)), rng.uniform(0, 2 * math.pi)
    light = np.array([math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth), math.sin(elevation)])
    return Scene(
        primitives=prims,
        materials=materials,
        camera=camera,
        camera_mode=mode,
        focal=float(min(height, width) * rng.uniform(0.6, 1.5)),
        light_dir=light,
        ambient=float(rng.uniform(0.4, 0.65)),
        noise_std=float(rng.uniform(0.0, 3.0)),
        frame_step=frame_step,
    )
