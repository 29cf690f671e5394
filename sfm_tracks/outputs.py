"""The files a run writes beside the model: images, masks, the tracks preview, and which folder each trainer takes.

Images and masks are written at the model's resolution under the image names, so `sparse/0`,
`transforms.json` (`file_path`, `mask_path`) and the 3DGS loader (`images/<basename>`) all find them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Optional

import cv2
import numpy as np

from .progress import progress
from .threads import ordered_map
from .video import IMAGE_EXTENSIONS, write_tracks_video


def write_images(folder: Path, frames, names: list, sizes=None) -> None:
    """The frames the model refers to, at the model's resolution, under their image names.

    sizes: optional (T, 2) own size of each frame on a padded canvas; images are cropped to it.
    """
    folder.mkdir(parents=True, exist_ok=True)

    def write(t: int) -> None:
        frame = np.asarray(frames[t]) if sizes is None else np.asarray(frames[t][:sizes[t][0], :sizes[t][1]])
        write_image(folder / names[t], cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))

    in_threads(write, range(len(names)), "write images")


def write_frame_outputs(folder: Path, frames, names: list, sizes, tracks, output: dict, timer: Callable) -> None:
    """OUT/images and, if output["video"], OUT/tracks.mp4: what needs only the frames and tracks, so a run can write it
    while the mapper works. timer(name): a context manager that times a stage (pipeline.Timer)."""
    with timer("images"):
        write_images(folder / "images", frames, names, sizes)
    if output["video"]:
        with timer("video"):
            write_tracks_video(folder / "tracks.mp4", frames, tracks, output["fps"])


def in_threads(fn: Callable, items: Iterable, desc: str) -> list:
    """[fn(item) for item in items] on `threads.workers()` threads, in order, with a progress bar. For image I/O:
    OpenCV's codecs and warps release the GIL, so PNG encoding runs ~2x faster on two cores."""
    items = list(items)
    return list(progress(ordered_map(fn, items), total=len(items), desc=desc, unit="img", leave=False))


def write_image(path: Path, image: np.ndarray) -> None:
    """A BGR (or grey) image encoded by its name's extension (JPEG at quality 95; PNG for a name without an
    image extension), written through numpy so any path works."""
    ext = Path(path).suffix.lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext if ext in IMAGE_EXTENSIONS else ".png", image, params)
    if not ok:
        raise OSError(f"cannot encode image {path}")
    buf.tofile(str(path))


def mask_files(names: list) -> dict:
    """{image name: `masks/<stem>.png`} (nerfstudio's naming), or COLMAP's `masks/<name>.png` if stems repeat."""
    stems = [Path(n).stem for n in names]
    if len(set(stems)) == len(stems):
        return {n: f"masks/{s}.png" for n, s in zip(names, stems)}
    return {n: f"masks/{n}.png" for n in names}


def write_masks(folder: Path, masks, names: list, sizes: np.ndarray) -> dict:
    """(T, H, W) bool masks (True = keep) as 0/255 PNGs under `folder`, each cropped to its frame's own size
    (T, 2) -> {image name: path relative to `folder`}."""
    files = mask_files(names)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    for t, name in enumerate(names):
        h, w = sizes[t]
        if not cv2.imwrite(str(folder / files[name]), np.where(np.asarray(masks[t])[:h, :w], 255, 0).astype(np.uint8)):
            raise OSError(f"cannot write mask {folder / files[name]}")
    return files


def trainer_folders(out_dir: Path, undistorted: Optional[dict]) -> dict:
    """The folder to give each trainer: 3DGS `-s`, nerfstudio `--data`, COLMAP (model + images).

    undistorted: the report of `colmap.undistort.undistort` ({"written": True, ...}), or {"written": False,
    "reason": ...} when the model is already pinhole (OUT itself is then the splatting folder) or skipped.
    """
    out_dir = Path(out_dir)
    if undistorted and undistorted.get("written"):
        splat = str(out_dir / undistorted["folder"])
    elif undistorted and undistorted.get("pinhole"):
        splat = str(out_dir)
    else:
        splat = None
    return {"3dgs": splat, "nerfstudio": str(out_dir), "colmap": str(out_dir / "sparse" / "0")}


def trainers_note(folders: dict, undistorted: Optional[dict]) -> str:
    """The summary line's part that names each trainer's folder."""
    if folders["3dgs"] is None:
        splat = f"3DGS: none ({undistorted['reason'] if undistorted else 'not written'})"
    elif undistorted and undistorted.get("pinhole"):
        splat = f"3DGS -s {folders['3dgs']} (the model is already pinhole: this folder is the splatting-ready one)"
    else:
        splat = f"3DGS -s {folders['3dgs']} (undistorted, PINHOLE)"
    return f"{splat}; nerfstudio --data {folders['nerfstudio']}; COLMAP {folders['colmap']} with {folders['nerfstudio']}/images"
