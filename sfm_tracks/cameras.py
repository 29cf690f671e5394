"""Camera construction: model choice, focal prior, user intrinsics and what bundle adjustment may refine.

Intrinsics given by the user are in COLMAP's convention (as in cameras.txt: principal point measured
from the image corner). A video has one camera, so a single shared camera is the default.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence

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
