"""What the images cannot tell: pure rotation (no baseline), and forward motion (no principal point).

Pure rotation (or a static camera): detect, before mapping, that no frame pair has a baseline.

A camera that only turns maps every match through the same kind of homography, K R K^-1, so one shared
focal length and a rotation per pair explain all verified matches to within the tracking noise. COLMAP's
pair configurations cannot tell this apart (with tracks every pair may come out PLANAR or CALIBRATED), and
the mapper then invents a translation. Here the rotation-only model is fitted to the verified inlier
matches of every pair (Kabsch on unit rays, a 1-D search over the focal length) and its residual is
compared with the noise level seen on consecutive frames: parallax makes long-stride residuals grow.

Forward motion: a camera moving along its viewing axis sees every point stream out of the epipole, and the
translation direction is read off as the ray through it, K^-1 e. A principal point off by d px turns every
translation by about atan(d / f), and bundle adjustment cannot tell: refining it on kitti_seq_a moved it the
wrong way (median pair error 0.94 -> 2.73 deg). `forward_motion_deg` measures how forward a path is, so the
report can say that only the real calibration (`--intrinsics`) fixes this.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pycolmap

from ..errors import ReconstructionError

logger = logging.getLogger(__name__)

UNVERIFIED = (pycolmap.TwoViewGeometryConfiguration.UNDEFINED, pycolmap.TwoViewGeometryConfiguration.DEGENERATE)


@dataclass
class RotationFit:
    focal: float  # px, the focal length that best explains all pairs as pure rotations
    residual_px: np.ndarray  # (P,) per verified pair: median transfer error of its best rotation
    stride: np.ndarray  # (P,) image_id2 - image_id1 (frame distance for videos)

    @property
    def parallax_px(self) -> float:
        """90th percentile of the pair residuals: the rotation model's misfit on the pairs with most baseline."""
        return float(np.percentile(self.residual_px, 90))

    @property
    def noise_px(self) -> float:
        """Median residual of the closest pairs (smallest stride): tracking noise plus little parallax."""
        return float(np.median(self.residual_px[self.stride == self.stride.min()]))


def verified_matches(db_path, max_matches: int = 300, seed: int = 0) -> list:
    """[(xy1 (M, 2), xy2 (M, 2), stride)] inlier matches of each verified pair (COLMAP pixels), subsampled."""
    rng = np.random.default_rng(seed)
    out, kps = [], {}
    with pycolmap.Database.open(str(db_path)) as db:
        for pid, g in zip(*db.read_two_view_geometries()):
            m = np.asarray(g.inlier_matches)
            if g.config in UNVERIFIED or len(m) < 8:
                continue
            i, j = pycolmap.pair_id_to_image_pair(pid)
            for k in (i, j):
                if k not in kps:
                    kps[k] = db.read_keypoints(k)[:, :2].astype(np.float64)
            if len(m) > max_matches:
                m = m[np.sort(rng.choice(len(m), max_matches, replace=False))]
            out.append((kps[i][m[:, 0]], kps[j][m[:, 1]], j - i))
    return out


def _rays(xy: np.ndarray, focal: float, centre: np.ndarray) -> np.ndarray:
    """(..., 2) pixels -> (..., 3) unit rays of a pinhole camera with this focal and principal point."""
    r = np.concatenate([(xy - centre) / focal, np.ones(xy.shape[:-1] + (1,))], -1)
    return r / np.linalg.norm(r, axis=-1, keepdims=True)


def rotation_residuals(xy1: np.ndarray, xy2: np.ndarray, valid: np.ndarray, focal: float, centre: np.ndarray) -> np.ndarray:
    """(P,) median transfer error (px) of each pair's least-squares rotation (Kabsch) taking rays 1 onto rays 2.

    xy1, xy2: (P, M, 2) matches of P pairs, padded to M; valid: (P, M) bool, False on padding.
    """
    a, b = _rays(xy1, focal, centre), _rays(xy2, focal, centre)
    U, _, Vt = np.linalg.svd(np.einsum("pmi,pmj->pij", b * valid[..., None], a))
    d = np.sign(np.linalg.det(U @ Vt))
    R = U @ (np.stack([np.ones_like(d), np.ones_like(d), d], -1)[..., None] * Vt)
    cos = (np.matmul(a, np.swapaxes(R, 1, 2)) * b).sum(-1)
    angle = np.sort(np.where(valid, np.arccos(np.clip(cos, -1.0, 1.0)), np.inf), axis=1)  # padding sorts last
    n, rows = valid.sum(1), np.arange(len(valid))
    return (angle[rows, (n - 1) // 2] + angle[rows, n // 2]) / 2 * focal


def fit_rotation(pairs: list, image_size: tuple, max_pairs: int = 120, seed: int = 0) -> RotationFit:
    """Best shared focal (coarse-to-fine over 0.3..4 x the long side) for the rotation-only model of all pairs."""
    H, W = image_size
    centre = np.array([W / 2, H / 2])
    if len(pairs) > max_pairs:
        pairs = [pairs[k] for k in np.sort(np.random.default_rng(seed).choice(len(pairs), max_pairs, replace=False))]
    stride = np.array([s for _, _, s in pairs])
    M = max(len(a) for a, _, _ in pairs)
    xy1, xy2, valid = np.zeros((len(pairs), M, 2)), np.zeros((len(pairs), M, 2)), np.zeros((len(pairs), M), bool)
    for k, (a, b, _) in enumerate(pairs):
        xy1[k, :len(a)], xy2[k, :len(b)], valid[k, :len(a)] = a, b, True

    def misfit(f):
        r = rotation_residuals(xy1, xy2, valid, f, centre)
        return np.percentile(r, 90), r

    grid = np.geomspace(0.3, 4.0, 20) * max(H, W)
    k = int(np.argmin([misfit(f)[0] for f in grid]))
    fine = np.geomspace(grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)], 9)
    f = min(fine, key=lambda f: misfit(f)[0])
    return RotationFit(float(f), misfit(f)[1], stride)


def check_not_pure_rotation(db_path, image_size: tuple, noise_floor_px: float = 0.75, noise_ratio: float = 2.5,
                            max_residual_px: float = 4.0) -> RotationFit:
    """Raise ReconstructionError when one rotation per pair explains every verified pair within the noise.

    Pure rotation: the 90th-percentile residual stays below max(noise_floor_px, noise_ratio x the
    residual of the closest pairs), i.e. longer baselines add no misfit. Synthetic checks (LK tracks):
    pure rotation 0.08 px at ratio 2.4, 1 px noise 1.75 px at 1.1; forward, pan, sideways and orbit
    clips 1.2-17 px at ratios 3.0-7.7. A misfit above `max_residual_px` (the verification threshold) is
    parallax whatever the ratio: a photo set with only wide baselines (kitchen, 360 degrees around an
    object) has large residuals on its closest pairs too (39 px there, 68 px at the 90th percentile).
    """
    pairs = verified_matches(db_path)
    if not pairs:
        return None
    fit = fit_rotation(pairs, image_size)
    logger.info("rotation-only model: focal %.0f px, pair residual p90 %.2f px vs %.2f px on the closest pairs (%d pairs)",
                fit.focal, fit.parallax_px, fit.noise_px, len(pairs))
    if fit.parallax_px <= min(max_residual_px, max(noise_floor_px, noise_ratio * fit.noise_px)):
        raise ReconstructionError(
            f"pure rotation (or a static camera): one rotation per frame pair and a focal length of {fit.focal:.0f} px explain "
            f"all {len(pairs)} verified pairs to {fit.parallax_px:.2f} px (90th percentile; {fit.noise_px:.2f} px on neighbouring "
            "frames), so there is no baseline and too little parallax; cannot reconstruct 3D (move the camera sideways, not only turn it)")
    return fit


FORWARD_MAX_DEG = 30.0  # median angle between a step of the path and the viewing axis below which motion is forward


def forward_motion_deg(rec: pycolmap.Reconstruction) -> float:
    """Median angle (deg, 0..90) between each step of the camera path (registered frames in name order, i.e. video
    order) and the viewing axis at its start; NaN with fewer than 3 registered frames or no movement."""
    ims = sorted((im for im in rec.images.values() if im.has_pose), key=lambda im: im.name)
    if len(ims) < 3:
        return float("nan")
    centres = np.array([im.projection_center() for im in ims])
    axes = np.array([im.viewing_direction() for im in ims[:-1]])
    steps = np.diff(centres, axis=0)
    length = np.linalg.norm(steps, axis=1)
    moving = length > 1e-3 * max(float(np.median(length)), 1e-12)
    if not moving.any():
        return float("nan")
    cos = np.abs((steps[moving] * axes[moving]).sum(1)) / length[moving]
    return float(np.degrees(np.arccos(np.clip(np.median(cos), 0.0, 1.0))))
