"""A pinhole copy of a model with lens distortion, in the layout Gaussian-splatting trainers read.

Why: the reference 3D Gaussian splatting loader (and the many trainers built on it) accepts only PINHOLE and
SIMPLE_PINHOLE cameras; users otherwise run COLMAP's image undistorter by hand and move `sparse/*` into
`sparse/0`, which is what 3DGS's `convert.py` does. `undistort` does the same with pycolmap's undistorter
(`pycolmap.undistort_images`, COLMAP's `image_undistorter` with its default options, as convert.py runs it):

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


def undistort_mask(mask: np.ndarray, camera: pycolmap.Camera, options: pycolmap.UndistortCameraOptions) -> np.ndarray:
    """(H, W) uint8 mask (nonzero = keep) -> (H', W') uint8 0/255 on the undistorted camera of `camera`.

    The same pycolmap warp as the images (bilinear), thresholded at half: a pixel is kept when it lies
    mostly on kept pixels.
    """
    out, _ = pycolmap.undistort_image(options, pycolmap.Bitmap.from_array(np.where(mask > 0, 255, 0).astype(np.uint8)), camera)
    arr = np.asarray(out.to_array())
    arr = arr[..., 0] if arr.ndim == 3 else arr
    return np.where(arr >= 128, 255, 0).astype(np.uint8)


def undistort(rec: pycolmap.Reconstruction, out_dir: Path, work: Path, mask_files: Optional[dict] = None,
              options: Optional[pycolmap.UndistortCameraOptions] = None, max_error_px: float = MAX_ERROR_PX) -> dict:
    """Write out_dir/undistorted/ from out_dir/sparse/0 (the model `rec`) and out_dir/images -> report dict.

    mask_files: {image name: mask file path relative to out_dir} written beside the images (nonzero = keep).
    work: an empty scratch folder of ours; COLMAP's extra outputs (stereo/, scripts) stay there.
    """
    out_dir, work = Path(out_dir), Path(work)
    options = options or pycolmap.UndistortCameraOptions()
    with colmap_logging(False):
        pycolmap.undistort_images(str(work), str(out_dir / "sparse" / "0"), str(out_dir / "images"), undistort_options=options)
    dest = out_dir / FOLDER
    (dest / "sparse").mkdir(parents=True)
    (work / "images").rename(dest / "images")
    (work / "sparse").rename(dest / "sparse" / "0")
    und = pycolmap.Reconstruction(str(dest / "sparse" / "0"))
    far = drop_far_observations(und, max_error_px)
    if far["dropped"]:
        write_model(und, dest / "sparse" / "0")
    mask_paths = None
    if mask_files:
        mask_paths = {}
        for im in rec.images.values():
            rel = mask_files.get(im.name)
            if rel is None or not im.has_pose:
                continue
            mask = cv2.imread(str(out_dir / rel), cv2.IMREAD_GRAYSCALE)
            warped = undistort_mask(mask, rec.cameras[im.camera_id], options)
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(dest / rel), warped):
                raise OSError(f"cannot write mask {dest / rel}")
            mask_paths[im.name] = rel
    write_ply(und, dest / "points.ply")
    write_transforms(und, dest / "transforms.json", ply_file="points.ply", mask_paths=mask_paths)
    cams = {c: und.cameras[c] for c in sorted(und.cameras)}
    first = next(iter(cams.values()))
    before = rec.cameras[min(rec.cameras)]
    logger.info("undistorted: %s %dx%d -> %s %dx%d", before.model_name, before.width, before.height, first.model_name, first.width, first.height)
    return {"written": True, "folder": FOLDER, "model": first.model_name, "num_cameras": len(cams),
            "size_before": [int(before.width), int(before.height)], "size_after": [int(first.width), int(first.height)],
            "params": [round(float(p), 6) for p in first.params], "masks": len(mask_paths or {}),
            "observations_dropped_over_px": far}


def undistort_if_distorted(rec: pycolmap.Reconstruction, out_dir: Path, work: Path, enabled: bool = True,
                           mask_files: Optional[dict] = None) -> dict:
    """`undistort` a model with lens distortion when `enabled`; else a report saying why not."""
    if not enabled:
        return {"written": False, "pinhole": False, "reason": "--no-undistort: the model keeps its lens distortion"}
    return undistort(rec, out_dir, work, mask_files)
