"""Pose accuracy against ground truth, gauge-free: pairwise relative rotations and translation directions.

Relative quantities need no Sim(3) alignment, which is ill-conditioned when camera centres lie on a short arc.
"""
from __future__ import annotations

import numpy as np
import pycolmap

from ..tracks import Tracks
from .geometric_filter import frame_images


def poses_by_frame(rec: pycolmap.Reconstruction, tracks: Tracks) -> np.ndarray:
    """(T, 3, 4) cam_from_world of every frame (matched by image name), NaN where not registered."""
    out = np.full((tracks.num_frames, 3, 4), np.nan)
    for t, iid in enumerate(frame_images(rec, tracks)):
        if iid is not None:
            out[t] = rec.images[iid].cam_from_world().matrix()
    return out


def rotation_angle_deg(R: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (...) their rotation angles in degrees."""
    cos = (np.trace(R, axis1=-2, axis2=-1) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def relative_pose_errors(est: np.ndarray, gt: np.ndarray) -> dict:
    """Errors over all frame pairs (i < j) registered in `est`: rotation (deg) and translation direction (deg)."""
    ok = np.isfinite(est).all((1, 2))
    idx = np.nonzero(ok)[0]
    i, j = np.triu_indices(len(idx), 1)
    i, j = idx[i], idx[j]

    def rel(P):
        R, t = P[:, :, :3], P[:, :, 3]
        Rij = R[j] @ np.transpose(R[i], (0, 2, 1))
        tij = t[j] - np.einsum("nab,nb->na", Rij, t[i])
        return Rij, tij / np.maximum(np.linalg.norm(tij, axis=1, keepdims=True), 1e-12)

    Re, te = rel(est)
    Rg, tg = rel(gt)
    rot = rotation_angle_deg(Re @ np.transpose(Rg, (0, 2, 1)))
    trans = np.degrees(np.arccos(np.clip((te * tg).sum(1), -1.0, 1.0)))
    return {"rotation_deg": rot, "translation_deg": trans, "num_registered": int(ok.sum())}


def camera_centers(cam_from_world: np.ndarray) -> np.ndarray:
    """(T, 3) camera centres -R^T t of (T, 3, 4) poses (NaN stays NaN)."""
    R, t = cam_from_world[:, :, :3], cam_from_world[:, :, 3]
    return -np.einsum("nba,nb->na", R, t)


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple:
    """Least-squares similarity dst ~ s R src + t (Umeyama 1991) of (M, 3) point sets -> (s, R, t)."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    U, S, Vt = np.linalg.svd(b.T @ a / len(src))
    D = np.eye(3)
    D[2, 2] = np.sign(np.linalg.det(U) * np.linalg.det(Vt)) or 1.0
    R = U @ D @ Vt
    var = (a ** 2).sum() / len(src)
    s = float((S * np.diag(D)).sum() / var) if var > 0 else 1.0
    return s, R, md - s * R @ ms


def aligned_pose_errors(est: np.ndarray, gt: np.ndarray) -> dict:
    """Absolute errors of (T, 3, 4) poses registered in `est` (NaN rows = not registered) after alignment.

    Rotations are aligned by the chordal mean of R_gt^T R_est (a Sim(3) fitted to centres alone is
    ill-conditioned for short, nearly straight camera paths, rotations are not); centres after the
    Umeyama Sim(3) of the centres. `center_rel` divides the centre error by the scene scale, taken as the
    RMS distance of the reference centres from their mean (the size of the camera path).
    """
    ok = np.isfinite(est).all((1, 2))
    Re, Rg = est[ok, :, :3], gt[ok, :, :3]
    M = np.einsum("nba,nbc->ac", Rg, Re)  # sum of Rg^T Re: world_gt <- world_est
    U, _, Vt = np.linalg.svd(M)
    A = U @ np.diag([1, 1, np.sign(np.linalg.det(U @ Vt))]) @ Vt
    rot = rotation_angle_deg(Re @ A.T @ np.transpose(Rg, (0, 2, 1)))
    Ce, Cg = camera_centers(est[ok]), camera_centers(gt[ok])
    if len(Ce) >= 3:
        s, R, t = umeyama(Ce, Cg)
        cerr = np.linalg.norm((s * Ce @ R.T + t) - Cg, axis=1)
    else:
        cerr = np.full(len(Ce), np.nan)
    scale = float(np.sqrt(((Cg - Cg.mean(0)) ** 2).sum(1).mean())) if len(Cg) else np.nan
    return {"rotation_deg": rot, "center": cerr, "center_rel": cerr / max(scale, 1e-12), "scene_scale": scale,
            "num_registered": int(ok.sum())}


def pair_errors(est: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(T(T-1)/2,) error of every frame pair (i < j): the larger of the relative rotation error and the
    translation-direction error, in degrees; inf where either frame is unregistered (NaN rows of `est`).

    Unregistered frames count as failures, so a model that places fewer frames cannot score better.
    """
    ok = np.isfinite(est).all((1, 2))
    T = len(est)
    out = np.full((T, T), np.inf)
    if ok.sum() >= 2:
        rel = relative_pose_errors(est, gt)
        idx = np.nonzero(ok)[0]
        i, j = np.triu_indices(len(idx), 1)
        out[idx[i], idx[j]] = np.maximum(rel["rotation_deg"], rel["translation_deg"])
    return out[np.triu_indices(T, 1)]


def pose_auc(errors: np.ndarray, threshold_deg: int = 5) -> float:
    """AUC@threshold of pair errors as VGGSfM reports it: the recall at 1, 2, ..., threshold degrees, averaged
    (a histogram with 1-degree bins, cumulated). In [0, 1]; inf errors (failed pairs) count as misses."""
    e = np.asarray(errors, np.float64)
    if not len(e):
        return float("nan")
    return float(np.mean([(e < t).mean() for t in range(1, int(threshold_deg) + 1)]))
