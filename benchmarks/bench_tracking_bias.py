"""Systematic error of the pipeline's tracks (Lucas-Kanade, then refine_tracks) on the generator's exact ground truth.

    PYTHONPATH=. python benchmarks/bench_tracking_bias.py [--seeds 1] [--modes zoom,rotation,orbit,sideways,forward]
        [--frames 40] [--supersample 1] [--refine '{"win": 9}'] 2>/dev/null

Why: pose error that no mapper setting moves points at a bias in the observations, not at their noise.
For each clip the pipeline's own queries (`pipeline.query_points`, default settings) are tracked and refined at
640x360, then scored against exact tracks of the same pixels. Per row: mean pixel error and the along-motion scale
error eps = sum(d . m) / sum(m . m) over observations at least 3 px from their query position and less than 3 px
from the truth (d: error, m: true motion since the query frame; eps > 0: the tracks overshoot the motion). Rows
split the tracks by the depth ratio (max / min) inside a 17 px window around the query: 1-1.02 (one surface, nearly
fronto-parallel), 1.02-1.1 (one surface, slanted), above 1.1 (mostly windows that straddle a depth edge).

Modes: `zoom` is one rendered frame scaled about a point by 1 % a frame (an exact image-plane motion, no 3D;
depth classes do not apply); `rotation` is a static scene seen by a camera that only turns (the image motion is a
homography: tests that the renderer and the ground truth agree); orbit / sideways / forward are the benchmark clips.
"""
from __future__ import annotations

import argparse
import dataclasses
import json

import cv2
import numpy as np
import torch

from cotracker3.data.geometry import intrinsics_matrix
from cotracker3.data.render import render, scene_poses
from cotracker3.data.scene import sample_scene
from cotracker3.data.synthetic import track_points
from sfm_tracks import pipeline
from sfm_tracks.tracking.providers import LucasKanadeProvider
from sfm_tracks.tracking.refine import REFINED, refine_tracks

H, W = 360, 640
CLASSES = ((1.0, 1.02), (1.02, 1.1), (1.1, np.inf))


def zoom_clip(seed: int, frames: int, rate: float = 0.01) -> tuple:
    """One frame rendered at 2x, resampled (bicubic) at scale (1 + rate)^(k - mid) about an off-centre point
    -> (video (T, H, W, 3) uint8, truth(frame (N,), xy (N, 2)) -> (T, N, 2), None)."""
    scene = sample_scene(seed, 2 * H, 2 * W, False, torch.device("cpu"), [], 1.0, "orbit")
    with torch.no_grad():
        _, _, color = render(scene, scene_poses(scene, scene.frame_times(1), "cpu").to(torch.float32),
                             intrinsics_matrix(scene.focal, 2 * H, 2 * W), 2 * H, 2 * W)
    big = (color[0] * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    c, scale = np.array([W / 2 + 13.3, H / 2 - 7.1]), (1 + rate) ** (np.arange(frames) - frames // 2)
    video = []
    for s in scale:  # frame pixel x = c + s (x0 - c), x0 in half-resolution pixels of the big frame: u = 2 x0 + 0.5
        to_big = np.array([[2 / s, 0, 2 * (c[0] - c[0] / s) + 0.5], [0, 2 / s, 2 * (c[1] - c[1] / s) + 0.5]])
        video.append(cv2.warpAffine(big, to_big, (W, H), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT))

    def truth(qf, xy):
        x0 = c + (xy - c) / scale[qf, None]
        return c + scale[:, None, None] * (x0 - c)[None], np.ones((frames, len(qf)), bool)
    return np.stack(video), truth, None


def rendered_clip(seed: int, frames: int, mode: str, supersample: int = 1) -> tuple:
    """A static generator scene (mode `rotation`: the pan camera with its translation and eye shake removed),
    rendered at `supersample` x the size and area-averaged down (an anti-aliased camera)
    -> (video, truth(frame, xy) -> ((T, N, 2), (T, N) visible), depth (T, H, W))."""
    scene = sample_scene(seed, H, W, False, torch.device("cpu"), [], 1.0, "pan" if mode == "rotation" else mode)
    if mode == "rotation":
        cam = scene.camera
        still = dataclasses.replace(cam.eye_shake, amplitude=np.zeros_like(cam.eye_shake.amplitude))
        scene.camera = dataclasses.replace(cam, drift=np.zeros(3), height_rate=0.0, radius_rate=0.0, angle_rate=0.0, eye_shake=still)
    K, poses = intrinsics_matrix(scene.focal, H, W), scene_poses(scene, scene.frame_times(frames), "cpu")
    with torch.no_grad():
        depth, _, color = render(scene, poses.to(torch.float32), K, H, W)
        if supersample > 1:
            Ks = intrinsics_matrix(scene.focal * supersample, H * supersample, W * supersample)
            color = render(scene, poses.to(torch.float32), Ks, H * supersample, W * supersample)[2]
    video = (color * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    if supersample > 1:
        video = np.stack([cv2.resize(f, (W, H), interpolation=cv2.INTER_AREA) for f in video])

    def truth(qf, xy):
        with torch.no_grad():
            g = track_points(scene, poses, K, qf, xy.astype(np.float64), H, W)
        return g["tracks"].numpy(), g["visibility"].numpy()
    return video, truth, depth.numpy()


def depth_ratio(depth: np.ndarray, qf: np.ndarray, xy: np.ndarray, half: int = 8) -> np.ndarray:
    """(N,) max / min depth in the (2 half + 1)^2 window around each query."""
    out = np.empty(len(qf))
    for i, (f, (x, y)) in enumerate(zip(qf, np.round(xy).astype(int))):
        win = depth[f, max(0, y - half):y + half + 1, max(0, x - half):x + half + 1]
        out[i] = win.max() / max(win.min(), 1e-6)
    return out


def score(xy, visible, gt, gvis, qf, tracks: np.ndarray) -> tuple:
    """(observations, mean px error, along-motion eps) over tracks `tracks` (N,) bool."""
    N = len(qf)
    motion, err = gt - gt[qf, np.arange(N)][None], xy - gt
    e = np.linalg.norm(err, axis=-1)
    k = visible & gvis & tracks[None] & (np.linalg.norm(motion, axis=-1) > 3) & (e < 3)
    if not k.any():
        return 0, np.nan, np.nan
    return int(k.sum()), float(e[k].mean()), float((err * motion).sum(-1)[k].sum() / (motion[k] ** 2).sum())


def run_case(seed: int, frames: int, mode: str, supersample: int = 1, refine: dict | None = None) -> list:
    video, truth, depth = zoom_clip(seed, frames) if mode == "zoom" else rendered_clip(seed, frames, mode, supersample)
    conf = pipeline.merge_conf(pipeline.DEFAULT_CONF, None)
    tracks = pipeline.track(LucasKanadeProvider(), video, pipeline.query_points(video, conf["queries"]), conf["tracker"])
    ref = refine_tracks(video, tracks, dict(conf["refine"], **(refine or {})), "lk")
    qf = tracks.query_frame
    xq = tracks.xy[qf, np.arange(len(qf))]
    gt, gvis = truth(qf, xq)
    groups = [("all", np.ones(len(qf), bool))]
    if depth is not None:
        ratio = depth_ratio(depth, qf, xq)
        groups += [(f"depth ratio {lo}-{hi}", (ratio >= lo) & (ratio < hi)) for lo, hi in CLASSES]
    rows = []
    for name, sel in groups:
        raw = score(tracks.xy, tracks.visible, gt, gvis, qf, sel)
        fine = score(ref.tracks.xy, ref.tracks.visible & (ref.status == REFINED), gt, gvis, qf, sel)
        rows.append((f"{mode}:{frames}:{seed}" + (f" x{supersample}" if supersample > 1 else ""), name, int(sel.sum()), *raw, *fine))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--modes", default="zoom,rotation,orbit,sideways,forward")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--refine", type=json.loads, default={}, help='refine_tracks settings over the defaults, JSON: \'{"win": 9}\'')
    ap.add_argument("--supersample", type=int, default=1, help="render at this multiple of 640x360 and area-average down")
    args = ap.parse_args()
    print("| clip | tracks | n | LK: obs | mean px | eps | refined: obs | mean px | eps |\n|---|---|---|---|---|---|---|---|---|")
    for seed in args.seeds:
        for mode in args.modes.split(","):
            for clip, name, n, o1, e1, s1, o2, e2, s2 in run_case(seed, args.frames, mode, args.supersample, args.refine):
                print(f"| {clip} | {name} | {n} | {o1} | {e1:.3f} | {s1:+.5f} | {o2} | {e2:.3f} | {s2:+.5f} |", flush=True)


if __name__ == "__main__":
    main()
