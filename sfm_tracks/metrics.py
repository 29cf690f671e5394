"""Pose accuracy against ground truth, gauge-free: pairwise relative rotations and translation directions.

Relative quantities need no Sim(3) alignment, which is ill-conditioned when camera centres lie on a short arc.
"""
from __future__ import annotations

import numpy as np
import pycolmap

from .geometric_filter import frame_images
from .tracks import Tracks


def poses_by_frame(rec: pycolmap.Reconstruction, tracks: Tracks) -> np.ndarray:
    """(T, 3, 4) cam_from_world of every frame (matched by image name), NaN where not registered."""
    out = np.full((tracks.num_frames, 3, 4), np.nan)
    for t, iid in enumerate(frame_images(rec, tracks)):
        if iid is not None:
            out[t] = rec.images[iid].cam_from_world().matrix()
    return out


def _angle_deg(R: np.ndarray) -> np.ndarray:
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
    rot = _angle_deg(Re @ np.transpose(Rg, (0, 2, 1)))
    trans = np.degrees(np.arccos(np.clip((te * tg).sum(1), -1.0, 1.0)))
    return {"rotation_deg": rot, "translation_deg": trans, "num_registered": int(ok.sum())}
