"""Co-visibility consistency: frames the model puts at nearly the same viewpoint must see each other's points.

A scene with repeated parts (two identical boxes, a symmetric facade) can make two-view verification accept photos
from opposite sides as views of the same place, and the mapper then lays one group of photos onto the other:
every pose fits its own points and the reprojection errors stay small, yet two frames at the same place, looking
the same way, observe (nearly) disjoint sets of points. In a correct model a frame observes most of the points of
a neighbour that project into its image. This check finds pairs that do not, after the final bundle adjustment,
and deregisters the smaller of the groups they join, so that no frame keeps a confidently wrong pose.

Groups are frames linked by shared points (link_share of the smaller frame's); a conflict removes the groups
that conflict with the largest one, never part of a group. A video that comes back to its start with new tracks
has close pairs that share nothing too, but every frame shares most of its points with the next, so no group can
be cut off and nothing is removed.

Measured (scores: the better direction of a close pair; weakest link: the largest link_share that keeps a model in
one group): 8 + 8 photos from two opposite 90-degree arcs around two identical boxes, merged 180 deg wrong:
cross-arc pairs at the same viewpoint 0.02-0.10, weakest link 0.10 (across the arcs); correct models: no close
pair under 0.48 and weakest links 0.53-0.98 (twin-box full turn, temple ring, KITTI, a 250-frame video); a correct
72-frame full-turn video: 9 close pairs at 0.0 across its unclosed loop, weakest link 0.86, nothing removed.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pycolmap
from scipy.sparse import coo_matrix, csc_matrix
from scipy.sparse.csgraph import connected_components

logger = logging.getLogger(__name__)


@dataclass
class ConsistencyOptions:
    max_angle_deg: float = 25.0  # viewing directions closer than this ...
    max_distance: float = 0.5  # ... and centres closer than this times the nearer frame's median point depth
    min_points: int = 20  # a frame is judged against another when this many of its points project into it
    max_score: float = 0.3  # a close pair conflicts when, each way it is judged, a frame sees under this share (less
    # as the views lie further apart, see conflicts) of the other's points that project into it
    link_share: float = 0.2  # frames sharing this share of the smaller one's points belong together (unless they conflict)
    max_observations: int = 200_000  # observations of the sampled points, which bounds the cost on long videos
    seed: int = 0


@dataclass
class Views:
    """Registered images of a model, in image-id order: image_ids (I,), R (I, 3, 3) and t (I, 3) cam_from_world,
    centres (I, 3), directions (I, 3) unit optical axes in world coordinates, cameras (I,) pycolmap.Camera."""
    image_ids: np.ndarray
    R: np.ndarray
    t: np.ndarray
    centres: np.ndarray
    directions: np.ndarray
    cameras: list


@dataclass
class Sample:
    """Sampled 3D points: xyz (P, 3), seen (P, I) sparse 0/1 (which registered image observes each point) and
    shared (I, I) the number of sampled points each pair of images observes (its diagonal: each image's count)."""
    xyz: np.ndarray
    seen: csc_matrix
    shared: np.ndarray


def views(rec: pycolmap.Reconstruction) -> Views:
    """Poses of the registered images."""
    ids = np.array(sorted(rec.reg_image_ids()), np.int64)
    poses = np.array([rec.images[int(i)].cam_from_world().matrix() for i in ids]).reshape(-1, 3, 4)
    R, t = poses[:, :, :3], poses[:, :, 3]
    centres = -np.einsum("nba,nb->na", R, t)
    return Views(ids, R, t, centres, R[:, 2, :], [rec.cameras[rec.images[int(i)].camera_id] for i in ids])


def sample_points(rec: pycolmap.Reconstruction, v: Views, opts: ConsistencyOptions) -> Sample:
    """Points drawn at random until their tracks hold about `max_observations` observations (every point of a
    small model): reading the tracks costs ~0.35 s per million observations, the rest of the check far less."""
    ids = np.array(sorted(rec.point3D_ids()), np.int64)
    mean_track = rec.compute_mean_track_length() if len(ids) else 1.0
    keep = int(min(len(ids), max(1, opts.max_observations / max(mean_track, 1.0))))
    if keep < len(ids):
        ids = np.sort(np.random.default_rng(opts.seed).choice(ids, keep, replace=False))
    xyz = np.empty((len(ids), 3))
    images, lengths = [], np.zeros(len(ids), np.int64)
    for k, pid in enumerate(ids):
        p = rec.point3D(int(pid))
        xyz[k] = p.xyz
        obs = [e.image_id for e in p.track.elements]
        images += obs
        lengths[k] = len(obs)
    column = np.full(max(int(v.image_ids.max()), max(images, default=0)) + 1, -1)
    column[v.image_ids] = np.arange(len(v.image_ids))
    cols = column[np.asarray(images, np.int64)]
    rows = np.repeat(np.arange(len(ids)), lengths)
    reg = cols >= 0
    seen = csc_matrix((np.ones(int(reg.sum()), np.float32), (rows[reg], cols[reg])), shape=(len(ids), len(v.image_ids)))
    seen.data[:] = 1.0  # a point observed twice in one image (merged tracks) counts once
    dense = seen.shape[0] * seen.shape[1] <= 20_000_000  # long tracks: a dense product is ~10x faster
    return Sample(xyz, seen, seen.T @ seen.toarray() if dense else (seen.T @ seen).toarray())


def median_depths(v: Views, s: Sample) -> np.ndarray:
    """(I,) median depth of each image's sampled points (NaN without any): its scale of the scene."""
    out = np.full(len(v.image_ids), np.nan)
    for i in range(len(out)):
        rows = s.seen.indices[s.seen.indptr[i]:s.seen.indptr[i + 1]]
        if len(rows):
            out[i] = np.median(s.xyz[rows] @ v.R[i, 2] + v.t[i, 2])
    return out


def close_pairs(v: Views, s: Sample, opts: ConsistencyOptions) -> tuple:
    """((K, 2) image pairs (i < j), (K,) closeness in [0, 1)) of the pairs at nearly the same viewpoint, both with
    min_points, that share too few points to vouch for each other. Closeness: the larger of angle / max_angle_deg and
    distance / (max_distance x the nearer median depth); 0 is the same viewpoint. A pair's share of shared points
    bounds its score from below, so pairs sharing max_score need no projection."""
    depth = median_depths(v, s)
    n = np.diag(s.shared)
    angle = np.degrees(np.arccos(np.clip(v.directions @ v.directions.T, -1.0, 1.0)))
    dist = np.linalg.norm(v.centres[:, None] - v.centres[None], axis=-1) / np.fmin(depth[:, None], depth[None])
    closeness = np.maximum(angle / opts.max_angle_deg, dist / opts.max_distance)  # NaN without depth: never close
    close = (closeness < 1) & (n[:, None] >= opts.min_points) & (n[None] >= opts.min_points)
    close &= s.shared < opts.max_score * np.minimum(n[:, None], n[None])
    i, j = np.nonzero(np.triu(close, 1))
    return np.stack([i, j], 1), closeness[i, j]


def inside(v: Views, b: int, xyz: np.ndarray) -> np.ndarray:
    """(M,) bool: points (M, 3) in front of image b and inside it."""
    X = xyz @ v.R[b].T + v.t[b]
    cam = v.cameras[b]
    uv = np.full((len(X), 2), np.nan)
    front = X[:, 2] > 0
    if front.any():
        uv[front] = cam.img_from_cam(X[front])
    with np.errstate(invalid="ignore"):
        return (uv[:, 0] >= 0) & (uv[:, 1] >= 0) & (uv[:, 0] <= cam.width) & (uv[:, 1] <= cam.height)


def scores(v: Views, s: Sample, pairs: np.ndarray, block: int = 64) -> tuple:
    """((K, 2) scores, (K, 2) counts) of pairs (a, b): column 0 for a's sampled points in b's image, how many
    there are and the share of them b observes; column 1 the same for b's in a's. Every sampled point is projected
    once into each image some pair needs, `block` images at a time (memory: P x block floats)."""
    src = np.concatenate([pairs[:, 0], pairs[:, 1]])
    dst = np.concatenate([pairs[:, 1], pairs[:, 0]])
    num, den = np.zeros(len(src)), np.zeros(len(src))
    by_image = s.seen.T.tocsr()  # (I, P)
    targets = np.unique(dst)
    for chunk in np.array_split(targets, -(-len(targets) // block)) if len(targets) else []:
        hit = np.stack([inside(v, b, s.xyz) for b in chunk], 1).astype(np.float32)  # (P, U)
        k = np.flatnonzero(np.isin(dst, chunk))
        col = np.searchsorted(chunk, dst[k])
        den[k] = (by_image @ hit)[src[k], col]
        num[k] = (by_image @ (hit * s.seen[:, chunk].toarray()))[src[k], col]
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = num / den
    K = len(pairs)
    return np.stack([ratio[:K], ratio[K:]], 1), np.stack([den[:K], den[K:]], 1).astype(np.int64)


def conflicts(pairs: np.ndarray, closeness: np.ndarray, score: np.ndarray, count: np.ndarray,
              opts: ConsistencyOptions) -> np.ndarray:
    """(C, 2) conflicting pairs: some direction has min_points projecting, and each such direction scores under
    max_score x (1 - closeness). The limit falls with the distance between the views because what one photo sees of
    another's points falls with it (nerf_mic, 100 photos, correct: >= 0.72 within 5 deg, >= 0.26 at 10-15 deg,
    >= 0.12 at 20-25 deg)."""
    judged = count >= opts.min_points
    low = np.where(judged, score < (opts.max_score * (1 - closeness))[:, None], True)
    return pairs[judged.any(1) & low.all(1)]


def groups(s: Sample, bad: np.ndarray, opts: ConsistencyOptions) -> np.ndarray:
    """(I,) group label per image: images that share link_share of their points, conflicting pairs cut."""
    n = np.diag(s.shared)
    linked = (s.shared >= opts.link_share * np.minimum(n[:, None], n[None])) & (s.shared > 0)
    linked[bad[:, 0], bad[:, 1]] = linked[bad[:, 1], bad[:, 0]] = False
    return connected_components(coo_matrix(linked), directed=False)[1]


def losing_groups(labels: np.ndarray, bad: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Images (indices) of the groups in conflict with the group kept: the one with most images, then most
    observations of sampled points (points: (I,) per image). Conflicts inside one group, which no cut separates,
    remove nothing."""
    size = np.bincount(labels)
    obs = np.bincount(labels, weights=points)
    keep = max(range(len(size)), key=lambda g: (size[g], obs[g]))
    ga, gb = labels[bad[:, 0]], labels[bad[:, 1]]
    losers = (set(gb[ga == keep].tolist()) | set(ga[gb == keep].tolist())) - {keep}
    if size[keep] < 2:
        return np.zeros(0, np.int64)  # no group is large enough to trust over the others
    return np.flatnonzero(np.isin(labels, list(losers)))


def conflicting_images(rec: pycolmap.Reconstruction, opts: ConsistencyOptions) -> tuple:
    """(image ids to deregister, summary for the report) of a registered model; the model is not changed.

    summary["lowest_score"]: the checked pairs' lowest score / (1 - closeness), the better direction of each; pairs
    under max_score conflict (None: no pair was checked)."""
    v = views(rec)
    if len(v.image_ids) < 3:
        return [], {"points_sampled": 0, "pairs_checked": 0, "conflicting_pairs": 0, "lowest_score": None}
    s = sample_points(rec, v, opts)
    pairs, closeness = close_pairs(v, s, opts)
    score, count = scores(v, s, pairs)
    bad = conflicts(pairs, closeness, score, count, opts)
    drop = losing_groups(groups(s, bad, opts), bad, np.diag(s.shared)) if len(bad) else np.zeros(0, np.int64)
    judged = np.where(count >= opts.min_points, score, -np.inf).max(1) / (1 - closeness)
    judged = judged[judged >= 0]
    summary = {"points_sampled": len(s.xyz), "pairs_checked": len(pairs), "conflicting_pairs": len(bad),
               "lowest_score": round(float(judged.min()), 3) if len(judged) else None}
    if len(bad) and not len(drop):
        # a revisit with new tracks (a loop the matches did not close) looks like this, and its poses are right
        logger.info("%d close frame pairs do not see each other's points, but no group of frames can be cut off", len(bad))
    return [int(i) for i in v.image_ids[drop]], summary
