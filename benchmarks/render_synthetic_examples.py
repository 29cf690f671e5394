"""Save a few synthetic frames with their ground-truth tracks drawn, for docs/images.

    PYTHONPATH=. python benchmarks/render_synthetic_examples.py
Filled dots: visible points; small rings: occluded points (still tracked exactly).
"""
from pathlib import Path

import cv2
import numpy as np

from cotracker3.data.synthetic import generate_clip


def draw(frame: np.ndarray, xy: np.ndarray, vis: np.ndarray, colors: np.ndarray) -> np.ndarray:
    img = np.ascontiguousarray(frame[:, :, ::-1] & 0xF8)  # RGB -> BGR for cv2; 5 bits keep the PNG small
    for (x, y), v, c in zip(xy, vis, colors):
        if not (-0.5 <= x <= img.shape[1] - 0.5 and -0.5 <= y <= img.shape[0] - 0.5):
            continue
        centre = (int(round(x)), int(round(y)))
        cv2.circle(img, centre, 2 if v else 3, tuple(int(a) for a in c), -1 if v else 1, lineType=cv2.LINE_AA)
    return img


def main(out_dir="docs/images"):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    colors = np.random.default_rng(0).integers(40, 256, size=(64, 3))
    for name, seed, dynamic in [("dynamic_a", 1, True), ("dynamic_b", 4, True), ("static", 11, False)]:
        c = generate_clip(seed, num_frames=24, dynamic=dynamic, num_tracks=256, sensor_noise=False)
        keep = np.random.default_rng(seed).choice(256, 64, replace=False)
        panels = [draw(c["video"][t], c["tracks"][t, keep], c["visibility"][t, keep], colors) for t in (0, 23)]
        cv2.imwrite(str(out / f"synthetic_{name}.png"), np.concatenate(panels, 1), [cv2.IMWRITE_PNG_COMPRESSION, 9])


if __name__ == "__main__":
    main()
