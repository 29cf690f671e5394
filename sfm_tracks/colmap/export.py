"""Write a reconstruction for other tools: COLMAP model, coloured PLY, nerfstudio transforms.json, tracks .npz.

Every file is written to a temporary name next to its target and renamed into place, so a crash never
leaves a half-written model that a later reader would trust. Temp names are made up (pid + random), not
created with mkstemp/mkdtemp, so files and folders get the usual umask-based modes (0644/0755), not 0600.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Optional

import numpy as np
import pycolmap

from ..tracks import Tracks

# COLMAP/OpenCV camera axes (x right, y down, z forward) -> OpenGL/nerfstudio (x right, y up, z back).
OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0])


def replace_dir(tmp: Path, final: Path) -> None:
    """Swap a finished temp directory into place (an existing one is moved aside first, then removed)."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(old)
    tmp.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()


def write_model(rec: pycolmap.Reconstruction, model_dir, text: bool = False) -> Path:
    """Binary COLMAP model (cameras/images/points3D/rigs/frames .bin) in model_dir, plus .txt on request."""
    model_dir = Path(model_dir)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(model_dir)
    tmp.mkdir()
    try:
        rec.write_binary(str(tmp))
        if text:
            rec.write_text(str(tmp))
        replace_dir(tmp, model_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return model_dir


def _temp_name(path: Path) -> Path:
    """An unused hidden name beside `path` with the same suffix."""
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}-{secrets.token_hex(4)}{path.suffix}")


def _atomic_path(path: Path) -> Path:
    """A temp file path in the target's folder, not created yet (the writer creates it with umask modes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return _temp_name(path)


def colorize(rec: pycolmap.Reconstruction, image_dir=None) -> pycolmap.Reconstruction:
    """A copy whose points carry COLMAP's colour: the mean over their observations in the images of
    `image_dir` (bilinear, read from disk in C++: 2 s for 250 frames and 1.9M observations, where a Python
    loop over the observations took 30 s). Points no image there shows, and every point without a folder, are grey.
    """
    rec = pycolmap.Reconstruction(rec)
    for p in rec.point3D_ids():
        rec.points3D[p].color = np.full(3, 128, np.uint8)
    if image_dir is not None:
        rec.extract_colors_for_all_images(str(image_dir))
    return rec


def write_ply(rec: pycolmap.Reconstruction, path) -> Path:
    """The points with their colours as a binary PLY (x, y, z float; red, green, blue uchar), written by COLMAP's
    exporter; see colorize(). (open3d wrote the same in 1.5 s more: its import.)"""
    path = Path(path)
    tmp = _atomic_path(path)
    try:
        rec.export_PLY(str(tmp))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def nerfstudio_intrinsics(camera: pycolmap.Camera) -> dict:
    """nerfstudio's shared-camera keys; distorted COLMAP models map onto its OPENCV model, pinhole ones
    onto PINHOLE (distortion keys 0, as nerfstudio defaults them)."""
    p = list(map(float, camera.params))
    model = camera.model_name
    if model == "SIMPLE_PINHOLE":
        f, cx, cy = p
        d = dict(fl_x=f, fl_y=f, cx=cx, cy=cy)
    elif model == "PINHOLE":
        d = dict(fl_x=p[0], fl_y=p[1], cx=p[2], cy=p[3])
    elif model == "SIMPLE_RADIAL":
        d = dict(fl_x=p[0], fl_y=p[0], cx=p[1], cy=p[2], k1=p[3])
    elif model == "RADIAL":
        d = dict(fl_x=p[0], fl_y=p[0], cx=p[1], cy=p[2], k1=p[3], k2=p[4])
    elif model == "OPENCV":
        d = dict(fl_x=p[0], fl_y=p[1], cx=p[2], cy=p[3], k1=p[4], k2=p[5], p1=p[6], p2=p[7])
    else:
        raise ValueError(f"no nerfstudio mapping for camera model {model}")
    base = dict(k1=0.0, k2=0.0, p1=0.0, p2=0.0)
    base.update(d)
    kind = "PINHOLE" if model in ("SIMPLE_PINHOLE", "PINHOLE") else "OPENCV"
    return dict(w=int(camera.width), h=int(camera.height), camera_model=kind, **base)


def write_transforms(rec: pycolmap.Reconstruction, path, image_dir: str = "images", ply_file: Optional[str] = None,
                     mask_paths: Optional[dict] = None) -> Path:
    """nerfstudio transforms.json: camera-to-world in OpenGL camera axes, world frame left as COLMAP's.

    One shared camera: its intrinsics at the top level. Several cameras (images of different sizes): each
    frame carries its own fl_x, fl_y, cx, cy, w, h and distortion, as nerfstudio reads per-frame intrinsics.
    mask_paths: {image name: mask path relative to the file's folder}, written as each frame's `mask_path`
    (nerfstudio's convention: zero pixels are ignored in training).
    """
    path = Path(path)
    cams = {im.camera_id for im in rec.images.values() if im.has_pose}
    if not cams:
        raise ValueError("transforms.json export needs at least one registered image")
    shared = len(cams) == 1
    out = nerfstudio_intrinsics(rec.cameras[min(cams)]) if shared else \
        {"camera_model": nerfstudio_intrinsics(rec.cameras[min(cams)])["camera_model"]}
    frames = []
    for iid in sorted(rec.reg_image_ids()):
        im = rec.images[iid]
        w2c = np.eye(4)
        w2c[:3] = im.cam_from_world().matrix()
        c2w = np.linalg.inv(w2c)
        c2w[:3, :3] = c2w[:3, :3] @ OPENCV_TO_OPENGL
        frame = {"file_path": f"{image_dir}/{im.name}" if image_dir else im.name,
                 "transform_matrix": c2w.tolist(), "colmap_im_id": int(iid)}
        if not shared:
            frame.update({k: v for k, v in nerfstudio_intrinsics(rec.cameras[im.camera_id]).items() if k != "camera_model"})
        if mask_paths and im.name in mask_paths:
            frame["mask_path"] = mask_paths[im.name]
        frames.append(frame)
    out["frames"] = frames
    out["applied_transform"] = np.eye(4)[:3].tolist()  # no world re-orientation was applied
    if ply_file:
        out["ply_file_path"] = ply_file
    tmp = _atomic_path(path)
    try:
        tmp.write_text(json.dumps(out, indent=2))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_transforms(path) -> tuple:
    """(intrinsics dict, {file_path: (3, 4) cam_from_world in OpenCV axes}) from a transforms.json."""
    d = json.loads(Path(path).read_text())
    poses = {}
    for f in d["frames"]:
        c2w = np.array(f["transform_matrix"], dtype=np.float64)
        c2w[:3, :3] = c2w[:3, :3] @ OPENCV_TO_OPENGL
        poses[f["file_path"]] = np.linalg.inv(c2w)[:3]
    return {k: v for k, v in d.items() if k != "frames"}, poses


def export(rec: pycolmap.Reconstruction, out_dir, tracks: Optional[Tracks] = None, image_dir=None, text: bool = False,
           mask_paths: Optional[dict] = None) -> dict:
    """Write everything: sparse/0 model, points.ply, transforms.json and tracks.npz; return the paths.

    image_dir (optional): the model's images under their image names (e.g. OUT/images), to colour the points.
    mask_paths (optional): {image name: mask file relative to out_dir} for transforms.json's `mask_path`.
    """
    out_dir = Path(out_dir)
    rec = colorize(rec, image_dir)
    paths = {"model": write_model(rec, out_dir / "sparse" / "0", text=text), "ply": write_ply(rec, out_dir / "points.ply")}
    paths["transforms"] = write_transforms(rec, out_dir / "transforms.json", ply_file="points.ply", mask_paths=mask_paths)
    if tracks is not None:
        tracks.save(out_dir / "tracks.npz")
        paths["tracks"] = out_dir / "tracks.npz"
    return paths
