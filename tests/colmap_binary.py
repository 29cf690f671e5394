"""A reader for COLMAP's binary model files written from the format (COLMAP's `src/colmap/scene/reconstruction_io`
layout, as 3DGS's `scene/colmap_loader.py` reads it), independent of pycolmap, so tests check what trainers read.

cameras.bin:  uint64 n; n x (uint32 camera_id, int32 model_id, uint64 width, uint64 height, double params[k(model)])
images.bin:   uint64 n; n x (uint32 image_id, double qvec[4] (w, x, y, z), double tvec[3], uint32 camera_id,
              name bytes + NUL, uint64 m, m x (double x, double y, int64 point3D_id (-1: none)))
points3D.bin: uint64 n; n x (uint64 point3D_id, double xyz[3], uint8 rgb[3], double error, uint64 l,
              l x (uint32 image_id, uint32 point2D_idx))
"""
from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

MODELS = {0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5), 4: ("OPENCV", 8),
          5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12)}


class _Reader:
    def __init__(self, path: Path):
        self.data, self.pos = Path(path).read_bytes(), 0

    def take(self, fmt: str):
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def name(self) -> str:
        end = self.data.index(b"\0", self.pos)
        text = self.data[self.pos:end].decode()
        self.pos = end + 1
        return text

    def done(self) -> bool:
        return self.pos == len(self.data)


def read_cameras(path) -> dict:
    """{camera_id: {"model", "width", "height", "params"}}."""
    r, out = _Reader(path), {}
    for _ in range(r.take("Q")[0]):
        cid, mid, w, h = r.take("IiQQ")
        model, k = MODELS[mid]
        out[cid] = {"model": model, "width": w, "height": h, "params": np.array(r.take(f"{k}d"))}
    assert r.done(), f"{path}: trailing bytes"
    return out


def read_images(path) -> dict:
    """{image_id: {"qvec", "tvec", "camera_id", "name", "xy" (M, 2), "point3D_ids" (M,)}}."""
    r, out = _Reader(path), {}
    for _ in range(r.take("Q")[0]):
        iid = r.take("I")[0]
        q, t, cid = np.array(r.take("4d")), np.array(r.take("3d")), r.take("I")[0]
        name = r.name()
        m = r.take("Q")[0]
        rows = np.array(r.take("ddq" * m), dtype=object).reshape(m, 3) if m else np.zeros((0, 3), object)
        out[iid] = {"qvec": q, "tvec": t, "camera_id": cid, "name": name, "xy": rows[:, :2].astype(np.float64),
                    "point3D_ids": rows[:, 2].astype(np.int64)}
    assert r.done(), f"{path}: trailing bytes"
    return out


def read_points3D(path) -> dict:
    """{point3D_id: {"xyz", "rgb", "error", "track" (L, 2) image_id, point2D_idx}}."""
    r, out = _Reader(path), {}
    for _ in range(r.take("Q")[0]):
        pid = r.take("Q")[0]
        xyz, rgb, err = np.array(r.take("3d")), np.array(r.take("3B")), r.take("d")[0]
        n = r.take("Q")[0]
        out[pid] = {"xyz": xyz, "rgb": rgb, "error": err, "track": np.array(r.take("II" * n), np.int64).reshape(n, 2)}
    assert r.done(), f"{path}: trailing bytes"
    return out


def qvec_to_rotmat(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def pinhole_project(camera: dict, image: dict, xyz: np.ndarray) -> np.ndarray:
    """(N, 2) COLMAP pixels of world points (N, 3) through a SIMPLE_PINHOLE / PINHOLE camera."""
    p = camera["params"]
    fx, fy, cx, cy = (p[0], p[0], p[1], p[2]) if camera["model"] == "SIMPLE_PINHOLE" else p
    xc = xyz @ qvec_to_rotmat(image["qvec"]).T + image["tvec"]
    return np.stack([fx * xc[:, 0] / xc[:, 2] + cx, fy * xc[:, 1] / xc[:, 2] + cy], -1)


def check_3dgs_loader_rules(folder: Path) -> dict:
    """The rules of 3DGS's scene/dataset_readers.py on `folder` (its `-s`), plus observations within 2 px."""
    model = folder / "sparse" / "0"
    cams = read_cameras(model / "cameras.bin")
    images = read_images(model / "images.bin")
    points = read_points3D(model / "points3D.bin")
    assert cams and images and points
    assert {c["model"] for c in cams.values()} <= {"PINHOLE", "SIMPLE_PINHOLE"}
    errors = []
    for im in images.values():
        cam = cams[im["camera_id"]]
        pixels = cv2.imread(str(folder / "images" / Path(im["name"]).name))
        assert pixels is not None, im["name"]
        assert pixels.shape[:2] == (cam["height"], cam["width"]), im["name"]
        seen = im["point3D_ids"] >= 0
        xyz = np.array([points[p]["xyz"] for p in im["point3D_ids"][seen]]).reshape(-1, 3)
        errors.append(np.linalg.norm(pinhole_project(cam, im, xyz) - im["xy"][seen], axis=-1))
    errors = np.concatenate(errors)
    assert len(errors) > 100 and errors.max() <= 2.0, errors.max()
    return {"cameras": cams, "images": images, "points": points}
