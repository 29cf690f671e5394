"""Camera construction: model choice, focal prior, user intrinsics and what bundle adjustment may refine.

Intrinsics given by the user are in COLMAP's convention (as in cameras.txt: principal point measured
from the image corner). A video has one camera, so a single shared camera is the default; images of
different sizes get one camera each (`frame_cameras`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence

import numpy as np
import pycolmap

MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")


@dataclass
class CameraSpec:
    model: str = "SIMPLE_RADIAL"
    params: Optional[Sequence[float]] = None  # COLMAP order for `model`; None = focal prior + image centre
    refine_focal_length: Optional[bool] = None  # default: refine unless params were given
    refine_principal_point: bool = False  # poorly constrained on short clips; opt in
    refine_extra_params: Optional[bool] = None  # distortion; default as refine_focal_length
    focal_factor: float = 1.2  # focal prior = focal_factor * max(H, W), a typical phone/video FOV

    @property
    def fixed(self) -> bool:
        return self.params is not None and not self.refine_focal_length and not self.refine_principal_point \
            and not self.refine_extra_params

    def resolved(self) -> "CameraSpec":
        """Fill the refine_* defaults: known intrinsics stay fixed, guessed ones are refined."""
        rf = self.params is None if self.refine_focal_length is None else self.refine_focal_length
        re = rf if self.refine_extra_params is None else self.refine_extra_params
        return replace(self, refine_focal_length=rf, refine_extra_params=re)


def focal_prior(image_size, factor: float = 1.2) -> float:
    """A focal length guess in px from the image size (H, W); about 45 degrees across the long side."""
    return factor * max(image_size)


def camera_spec(camera=None) -> CameraSpec:
    """Accept None, a model name, a dict of CameraSpec fields, a CameraSpec or a pycolmap.Camera."""
    if camera is None:
        spec = CameraSpec()
    elif isinstance(camera, CameraSpec):
        spec = camera
    elif isinstance(camera, str):
        spec = CameraSpec(model=camera)
    elif isinstance(camera, dict):
        spec = CameraSpec(**camera)
    elif isinstance(camera, pycolmap.Camera):
        spec = CameraSpec(model=camera.model_name, params=list(camera.params))
    else:
        raise TypeError(f"camera must be None, a model name, dict, CameraSpec or pycolmap.Camera, got {type(camera)}")
    if spec.model not in MODELS:
        raise ValueError(f"camera model {spec.model!r} not supported; use one of {MODELS}")
    return spec.resolved()


def make_camera(spec: CameraSpec, image_size, camera_id: int = 1) -> pycolmap.Camera:
    """A pycolmap camera for images of size (H, W), with a focal prior COLMAP will trust."""
    H, W = image_size
    if spec.params is None:
        cam = pycolmap.Camera.create_from_model_name(camera_id, spec.model, focal_prior(image_size, spec.focal_factor), W, H)
    else:
        cam = pycolmap.Camera(model=spec.model, width=W, height=H, params=list(spec.params), camera_id=camera_id)
        n = len(pycolmap.Camera.create_from_model_name(1, spec.model, 1.0, W, H).params)
        if len(spec.params) != n:
            raise ValueError(f"{spec.model} takes {n} parameters, got {len(spec.params)}")
    # Without this flag two-view verification only fits F/H and the mapper ignores the focal guess.
    cam.has_prior_focal_length = True
    return cam


def frame_cameras(spec: CameraSpec, image_size, num_frames: int, image_sizes=None) -> list:
    """The camera of each of `num_frames` frames: one shared camera (id 1) of size (H, W) = image_size, or,
    when image_sizes (T, 2) differ, camera t + 1 of size image_sizes[t] for frame t. That is COLMAP's
    per-image camera mode: photos of different sizes come from different cameras or zoom settings."""
    if image_sizes is None:
        return [make_camera(spec, image_size)] * num_frames
    sizes = np.asarray(image_sizes, np.int64).reshape(-1, 2)
    if len(sizes) != num_frames:
        raise ValueError(f"image_sizes has {len(sizes)} rows for {num_frames} frames")
    if (sizes < 1).any() or (sizes > np.asarray(image_size)).any():
        raise ValueError(f"image_sizes must lie within the tracks' image size {tuple(image_size)}")
    if (sizes == sizes[0]).all():
        return [make_camera(spec, (int(sizes[0, 0]), int(sizes[0, 1])))] * num_frames
    if spec.params is not None:
        raise ValueError(f"camera parameters describe one camera, but the frames come in {len(np.unique(sizes, axis=0))} sizes")
    return [make_camera(spec, (int(s[0]), int(s[1])), camera_id=t + 1) for t, s in enumerate(sizes)]


# Distorted model -> the pinhole model with its other parameters: (name, number of leading parameters kept).
PINHOLE_OF = {"SIMPLE_RADIAL": ("SIMPLE_PINHOLE", 3), "RADIAL": ("SIMPLE_PINHOLE", 3), "OPENCV": ("PINHOLE", 4)}


def pinhole_of(cam: pycolmap.Camera) -> pycolmap.Camera:
    """The camera without its distortion terms (same id, size, focal length and principal point)."""
    model, kept = PINHOLE_OF[cam.model_name]
    return pycolmap.Camera(camera_id=cam.camera_id, model=model, width=cam.width, height=cam.height,
                           params=np.array(cam.params[:kept]))


def reproject_pixels(src: pycolmap.Camera, dst: pycolmap.Camera, xy: np.ndarray) -> np.ndarray:
    """(N, 2) pixels of camera `src` -> (N, 2) pixels where camera `dst` sees the same rays (COLMAP's pixel
    convention; e.g. a pinhole camera and its distorted original: undistortion maps, observations, corner shifts)."""
    rays = src.cam_from_img(np.asarray(xy, np.float64))
    return dst.img_from_cam(np.concatenate([rays, np.ones((len(rays), 1))], 1), check_cheirality=False)
