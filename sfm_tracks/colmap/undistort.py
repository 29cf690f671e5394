"""A pinhole copy of a model with lens distortion, in the layout Gaussian-splatting trainers read.

Why: the reference 3D Gaussian splatting loader (and the many trainers built on it) accepts only PINHOLE and
SIMPLE_PINHOLE cameras; users otherwise run COLMAP's image undistorter by hand and move `sparse/*` into
`sparse/0`, which is what 3DGS's `convert.py` does. `undistort` does the same as COLMAP's `image_undistorter`
with its default options (as convert.py runs it): the pinhole cameras come from `pycolmap.undistort_camera`,
and each output pixel samples the distorted image where pycolmap's cameras say it came from (bilinear, as
COLMAP's warp). The maps are built once per camera and applied with cv2.remap: same pixels as
`pycolmap.undistort_images` (within 1 grey level, tests/test_trainer_outputs.py) at a fraction of its time
(BENCHMARKS.md, Undistortion), which matters because the undistortion should cost at most 10 % of a run.

    DIR/images/<name>                       undistorted images, each at its new camera's size
    DIR/sparse/0/{cameras,images,points3D}.bin (+ rigs, frames)   PINHOLE cameras, same poses and 3D points
    DIR/masks/<file>                        the masks, warped with the same maps (when masks were given)
    DIR/transforms.json, DIR/points.ply     nerfstudio's pinhole view of the same

Crop and scale rule (COLMAP's `UndistortCamera`, `blank_pixels = 0`, `min_scale = 0.2`, `max_scale = 2`):
each camera becomes PINHOLE with the same focal length(s). Its image size is scaled, separately in x and y,
by the factor at which the undistorted picture just contains no blank pixel, i.e. the undistorted image
shows only what the distorted image saw and is cropped to the largest such border-aligned view, the
factor clamped to [0.2, 2]. At the same focal length, barrel distortion (k1 < 0) gives a larger picture (the
undistorted borders bow outward; their inner extent sets the size), pincushion (k1 > 0) a smaller one. The
principal point is scaled with the size (cx' = cx * W' / W). Stored observations move with the same map
(x' = pinhole(unproject_distorted(x))), so they keep their reprojection errors; in the copy, observations
more than `max_error_px` (2 px) from their point's projection are dropped (COLMAP's mapper keeps up to 4 px),
and points left with fewer than two, so a trainer initialised from points3D gets only consistent points.
OUT/sparse/0 keeps the exact mapped model; only a model that is already pinhole, where OUT itself is the
splatting folder, gets the same 2 px rule in place (`pinhole_cleanup`).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import pycolmap

from ..outputs import in_threads, write_image
from .cameras import reproject_pixels
from .export import write_model, write_ply, write_transforms
from .mapping import colmap_logging

logger = logging.getLogger(__name__)

PINHOLE_MODELS = ("SIMPLE_PINHOLE", "PINHOLE")
FOLDER = "undistorted"
MAX_ERROR_PX = 2.0  # observations a splatting folder keeps: within this distance of their point's projection


def has_distortion(rec: pycolmap.Reconstruction) -> bool:
    """True when any camera's model is not pinhole (even with zero coefficients: 3DGS reads the model name)."""
    return any(cam.model_name not in PINHOLE_MODELS for cam in rec.cameras.values())


def drop_far_observations(rec: pycolmap.Reconstruction, max_error_px: float = MAX_ERROR_PX) -> dict:
    """Delete (in place) observations more than `max_error_px` from their point's projection, and points left
    with fewer than two; poses are not touched. -> {"max_px", "dropped", "points_left"}."""
    rec.update_point_3d_errors()
    with colmap_logging(False):
        dropped = pycolmap.ObservationManager(rec).filter_points3D_with_large_reprojection_error(max_error_px, set(rec.point3D_ids()))
    rec.update_point_3d_errors()
    return {"max_px": max_error_px, "dropped": int(dropped), "points_left": rec.num_points3D()}


def pinhole_cleanup(rec: pycolmap.Reconstruction, max_error_px: float = MAX_ERROR_PX) -> Optional[dict]:
    """None when the model has distortion (`undistort` makes the splatting folder); for a pinhole model, which
    is itself the splatting folder, drop its far observations in place and return the report saying so."""
    if has_distortion(rec):
        return None
    models = ", ".join(sorted({c.model_name for c in rec.cameras.values()}))
    return {"written": False, "pinhole": True, "reason": f"the model is already pinhole ({models}): OUT is the splatting-ready folder",
            "observations_dropped_over_px": drop_far_observations(rec, max_error_px)}


def undistortion_maps(camera: pycolmap.Camera, options: pycolmap.UndistortCameraOptions) -> tuple:
    """(pinhole camera, (H', W', 2) float32 source pixel of each output pixel, for cv2.remap).

    The camera comes from pycolmap.undistort_camera (the crop and scale rule above); each output pixel centre
    is unprojected through it and projected through the distorted camera, as COLMAP's image warp does.
    """
    pinhole = pycolmap.undistort_camera(options, camera)
    W, H = pinhole.width, pinhole.height
    centres = np.stack(np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5), -1).reshape(-1, 2)  # COLMAP pixels
    src = reproject_pixels(pinhole, camera, centres)
    return pinhole, (src - 0.5).reshape(H, W, 2).astype(np.float32)  # cv2 puts pixel centres at integers


def warp(image: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """Bilinear resampling at `maps` (H', W', 2); outside the source image stays black (COLMAP's convention)."""
    return cv2.remap(image, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def undistort_mask(mask: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """(H, W) mask (nonzero = keep) -> (H', W') uint8 0/255 warped like its image and thresholded at half."""
    return np.where(warp(np.where(mask > 0, 255, 0).astype(np.uint8), maps) >= 128, 255, 0).astype(np.uint8)


def undistort(rec: pycolmap.Reconstruction, out_dir: Path, mask_files: Optional[dict] = None,
              options: Optional[pycolmap.UndistortCameraOptions] = None, max_error_px: float = MAX_ERROR_PX) -> dict:
    """Write out_dir/undistorted/ from the model `rec` (out_dir/sparse/0) and its images in out_dir/images
    -> report dict. Registered images only, as COLMAP's undistorter.

    mask_files: {image name: mask file path relative to out_dir} written beside the images (nonzero = keep).
    """
    out_dir = Path(out_dir)
    options = options or pycolmap.UndistortCameraOptions()
    dest = out_dir / FOLDER
    (dest / "images").mkdir(parents=True)
    und = pycolmap.Reconstruction(rec)
    maps = {}
    for cid, cam in rec.cameras.items():
        pinhole, maps[cid] = undistortion_maps(cam, options)
        target = und.cameras[cid]  # a reference: the copy's camera becomes the pinhole one
        target.model, target.width, target.height, target.params = pinhole.model, pinhole.width, pinhole.height, pinhole.params
    mask_paths = {} if mask_files else None
    ids = sorted(rec.reg_image_ids())

    def warp_file(job: tuple) -> None:
        name, camera_id = job
        image = cv2.imread(str(out_dir / "images" / name), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise OSError(f"cannot read {out_dir / 'images' / name}")
        write_image(dest / "images" / name, warp(image, maps[camera_id]))

    in_threads(warp_file, [(rec.images[i].name, rec.images[i].camera_id) for i in ids], "undistort")
    for iid in ids:
        im, cam, pinhole = rec.images[iid], rec.cameras[rec.images[iid].camera_id], und.cameras[rec.images[iid].camera_id]
        if len(im.points2D):  # observations move with the same map, inverted: distorted pixel -> pinhole pixel
            xy = reproject_pixels(cam, pinhole, np.array([p.xy for p in im.points2D]))
            for p, new in zip(und.images[iid].points2D, xy):
                p.xy = new
        rel = (mask_files or {}).get(im.name)
        if rel is not None:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            write_image(dest / rel, undistort_mask(cv2.imread(str(out_dir / rel), cv2.IMREAD_GRAYSCALE), maps[im.camera_id]))
            mask_paths[im.name] = rel
    far = drop_far_observations(und, max_error_px)
    write_model(und, dest / "sparse" / "0")
    write_ply(und, dest / "points.ply")
    write_transforms(und, dest / "transforms.json", ply_file="points.ply", mask_paths=mask_paths)
    first, before = und.cameras[min(und.cameras)], rec.cameras[min(rec.cameras)]
    logger.info("undistorted: %s %dx%d -> %s %dx%d", before.model_name, before.width, before.height, first.model_name, first.width, first.height)
    return {"written": True, "folder": FOLDER, "model": first.model_name, "num_cameras": len(und.cameras),
            "size_before": [int(before.width), int(before.height)], "size_after": [int(first.width), int(first.height)],
            "params": [round(float(p), 6) for p in first.params], "masks": len(mask_paths or {}),
            "observations_dropped_over_px": far}


def undistort_if_distorted(rec: pycolmap.Reconstruction, out_dir: Path, enabled: bool = True, mask_files: Optional[dict] = None) -> dict:
    """`undistort` a model with lens distortion when `enabled`; else a report saying why not."""
    if not enabled:
        return {"written": False, "pinhole": False, "reason": "--no-undistort: the model keeps its lens distortion"}
    return undistort(rec, out_dir, mask_files)
