"""Inverse-compositional affine Lucas-Kanade (Baker & Matthews 2004) on many small patches at once.

Why inverse-compositional: the reference patch's gradients and the 6x6 Hessian are computed once per
track, so each iteration costs one bilinear warp of the target patch, a (P*P, 6) product and a 6x6 solve,
vectorised over all M observations. Brightness and contrast are normalised per patch (gain and bias of
the target are matched to the reference) so lighting changes do not pull the position.
Warp: x_target = c + A @ x_ref, with x_ref the pixel offset from the patch centre.
"""
from __future__ import annotations

import cv2
import numpy as np

MAX_REMAP_ROWS = 30000  # cv2.remap maps are limited to short-int sizes


def patch_grid(half: int) -> np.ndarray:
    """(P, P, 2) float32 (x, y) offsets of a (2 half + 1)^2 patch around its centre."""
    r = np.arange(-half, half + 1, dtype=np.float32)
    gx, gy = np.meshgrid(r, r)
    return np.stack([gx, gy], -1)


def sample(image: np.ndarray, centers: np.ndarray, grid: np.ndarray, A: np.ndarray | None = None) -> np.ndarray:
    """Bilinear samples of a (H, W) float32 image on `grid` (P, P, 2) around (M, 2) centres, optionally
    warped by (M, 2, 2) affine parts -> (M, P, P) float32 (border pixels replicated)."""
    M, P = len(centers), grid.shape[0]
    offsets = grid.reshape(-1, 2).T  # (2, P*P)
    if A is not None:
        offsets = np.matmul(A.astype(np.float32), offsets)  # (M, 2, P*P)
    xy = centers.astype(np.float32)[:, :, None] + offsets
    mx, my = xy[:, 0], xy[:, 1]
    out = np.empty((M, P * P), np.float32)
    for s in range(0, M, MAX_REMAP_ROWS):
        out[s:s + MAX_REMAP_ROWS] = cv2.remap(image, mx[s:s + MAX_REMAP_ROWS], my[s:s + MAX_REMAP_ROWS], cv2.INTER_LINEAR,
                                              borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(M, P, P)


def _normalise(p: np.ndarray) -> np.ndarray:
    """(M, P, P) -> zero mean, unit standard deviation per patch."""
    p = p - p.mean((1, 2), keepdims=True)
    std = np.sqrt(np.einsum("mij,mij->m", p, p) / (p.shape[1] * p.shape[2]))  # the mean is 0 now: one pass, no copy
    return p / np.maximum(std, 1e-3)[:, None, None]


def prepare(ref: np.ndarray, prior: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(M, P, P) reference patches -> what alignment needs of them, computed once per track:
    (normalised patches (M, P*P), G (M, 6, P*P) = K J^T, K[:, :, :4] * lambda (M, 6, 4)) with
    K = (H + lambda I_lin)^-1. `prior` > 0 pulls the affine part towards the identity with lambda = prior
    times the mean diagonal of H's affine block: small weakly textured patches determine translation well
    but scale, rotation and shear poorly, and undamped they wander."""
    M, P = ref.shape[:2]
    grid = patch_grid(P // 2)
    x, y = grid[..., 0].reshape(-1), grid[..., 1].reshape(-1)
    T = _normalise(ref.astype(np.float32))
    gy, gx = np.gradient(T, axis=(1, 2))
    gx, gy = gx.reshape(M, -1), gy.reshape(M, -1)
    sd = np.stack([gx * x, gx * y, gy * x, gy * y, gx, gy], -1)  # (M, P*P, 6) steepest descent images
    Hs = np.matmul(sd.transpose(0, 2, 1), sd) + 1e-6 * np.eye(6, dtype=np.float32)
    lam = prior * np.trace(Hs[:, :4, :4], axis1=1, axis2=2) / 4  # (M,)
    Hs[:, np.arange(4), np.arange(4)] += lam[:, None]
    K = np.linalg.inv(Hs.astype(np.float64)).astype(np.float32)
    return T.reshape(M, -1), np.matmul(K, sd.transpose(0, 2, 1)), K[:, :, :4] * lam[:, None, None]


def affine_align(prepared: tuple, image: np.ndarray, init: np.ndarray, iterations: int = 10,
                 tol: float = 0.02, A0: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Align M prepared reference patches (`prepare`) to a (H, W) float32 image, started at (M, 2) centres
    with the affine parts A0 (M, 2, 2; default the identity; the prior still pulls towards the identity).

    Returns (A (M, 2, 2), centres (M, 2), converged (M,) bool: finite, and the last update moved the patch
    corners by less than 10 * tol px). A patch whose update gets smaller than `tol` px stops early.
    """
    Tf, G, KL = prepared
    M, P = len(Tf), int(round(np.sqrt(Tf.shape[1])))
    half = P // 2
    grid = patch_grid(half)
    A = np.broadcast_to(np.eye(2, dtype=np.float32), (M, 2, 2)).copy() if A0 is None else A0.astype(np.float32).copy()
    c = init.astype(np.float32).copy()
    step = np.zeros(M, np.float32)
    eye = np.eye(2, dtype=np.float32)
    work = np.arange(M)  # the patches still moving; their rows of the reference arrays are gathered only when it
    G_w, T_w, KL_w = G, Tf, KL  # shrinks by a quarter (G alone is M x 6 x P*P: gathering it every step costs)
    for it in range(iterations):
        moving = step[work] >= tol if it else np.ones(len(work), bool)
        if not moving.any():
            break
        if moving.sum() < 0.75 * len(work):
            work, G_w, T_w, KL_w = work[moving], G_w[moving], T_w[moving], KL_w[moving]
            moving = moving[moving]
        A_w = A[work]
        warped = _normalise(sample(image, c[work], grid, A_w)).reshape(len(work), -1)
        dp = np.einsum("mkp,mp->mk", G_w, warped - T_w)
        dp += np.matmul(KL_w, (A_w - eye).reshape(-1, 4, 1))[..., 0]  # prior: A -> I
        # compose with the inverse of the increment: W <- W o dW^-1, dW = [[1+p0, p1, p4], [p2, 1+p3, p5]]
        a, b, cc, d = 1 + dp[:, 0], dp[:, 1], dp[:, 2], 1 + dp[:, 3]
        dAinv = np.stack([d, -b, -cc, a], -1).reshape(-1, 2, 2) / (a * d - b * cc)[:, None, None]  # closed-form 2x2 inverse
        dc = -np.matmul(dAinv, dp[:, 4:, None])
        # patches that had stopped keep their values: only the moving rows take the step
        upd = work[moving]
        c[upd] = c[upd] + np.matmul(A_w[moving], dc[moving])[..., 0]
        A[upd] = A_w[moving] @ dAinv[moving]
        # how far the patch corners moved in this step
        step[upd] = (np.abs(dp[:, 4:]).max(1) + half * np.abs(dp[:, :4]).max(1))[moving]
    converged = np.isfinite(c).all(1) & np.isfinite(A).all((1, 2)) & (step < 10 * tol)
    return A, c, converged
