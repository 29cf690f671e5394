"""Sub-pixel refinement of any provider's tracks against each track's reference appearance.

Why: trackers drift along a track (Lucas-Kanade chains frame-to-frame steps) or are coarse by construction
(CoTracker3 predicts at its model resolution), while SfM wants every observation of one 3D point to show
the same surface point. So every visible observation is re-aligned, at the resolution of the frames given,
to the track's reference appearance.

Reference (the template update problem, Matthews, Ishikawa & Baker 2004): a template kept from the query
frame stops matching once the view changes; one replaced every frame drifts. Each track starts with the
patch around its query (exact by definition) and, walking outward from the query frame in each time
direction, moves its template to a refined observation only every `update_every` frames and only after that
observation was aligned to the current template and passed every guard. With `query_check` (their drift
correction) the new template's position is also aligned to the query template, started at the chained affine
warp, and taken where that passes: each template then carries one alignment's error, not the sum of all before.

Method: per frame, vectorised over all its observations: pyramidal Lucas-Kanade (OpenCV) from each
template to the frame, started at the tracker's position, then an inverse-compositional affine alignment
(`affine.py`, the affine part damped towards the identity) from there (lk_start "retry": from the tracker's
position first). An observation is refined only when every guard passes; otherwise it keeps the tracker's
position, becomes invisible (except for low texture), and its reason is counted (never silently moved):

- `low_texture`: the query patch's structure tensor has a small eigenvalue (flat, or a straight edge),
  so no alignment can check or fix a position: the whole track is left unrefined and flagged, and stays
  visible unless `hide_low_texture` hides it too. Reconstruction hides them ("auto"): a tracker slides along an
  edge or over a flat patch, and on the generator's plainer scenes those tracks are half of all observations
  and cost SfM most of its accuracy (forward:100: 0.073 -> 0.018 deg once hidden; BENCHMARKS).
- `no_convergence`: the alignment did not settle, failed or left the image.
- `drift`: the refined position lies more than `max_shift_px` from the tracker's.
- `warp`: the affine part's scale or rotation left its range (the patch changed too much for the template).
- `appearance`: normalized cross-correlation between the template and the aligned patch is below
  `min_ncc` (occlusion, lighting, a different surface).

Every provider's tracks go through `refine_tracks`, called by the pipeline (`pipeline.run`) and by
pseudo-labelling (`pseudo_labels.label_with_teacher`) on whatever the provider returned.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from ..threads import ordered_map, workers
from ..tracks import Tracks
from ..video import grey
from .affine import affine_align, patch_grid, prepare, sample

DEFAULT_CONF = {
    "enabled": True,
    "win": 15,  # px, side of the aligned patch
    "levels": 2,  # pyramid levels above full resolution for the translation search
    "iterations": 30,
    # "always": start alignment where pyramidal LK lands; "retry": at the tracker's position, LK only for a second
    # try; "auto": retry for Lucas-Kanade tracks (already within a pixel or so: same precision, LK pyramids built
    # only for the retries), always otherwise
    "lk_start": "auto",
    "update_every": 8,  # frames between template updates along a track (each one checked by every guard)
    "max_shift_px": 4.0,  # guard: farther from the tracker's position is a different point
    "min_eig": 4.0,  # guard: smallest structure-tensor eigenvalue of the reference, (grey levels / px)^2 per pixel
    "hide_low_texture": False,  # low-texture tracks: flagged and left as the tracker gave them (True: hidden too;
    # "auto": hidden when the textured tracks alone leave the median frame at least min_textured observations)
    "min_textured": 200,
    "min_ncc": 0.85,  # guard: normalized cross-correlation after alignment
    "affine": True,  # estimate the patch's affine change (scale / rotation / shear guards, affine-aware position)
    "affine_iterations": 10,
    "query_check": True,  # a template moves only to a position aligned once more to the query template (started
    # at the chained affine warp; taken where it passes the guards within query_check_max_px): updates keep tracks
    # long without adding up their alignment errors (forward:100 rotation error 0.018 -> 0.010 deg; BENCHMARKS)
    "query_check_max_px": 1.0,
    "affine_prior": 0.1,  # pull of the affine part towards the identity, relative to the patch's own texture
    "max_log_scale": 0.25,  # guard: |log| of each singular value of the affine part (about +-28 %)
    "max_rotation_deg": 20.0,  # guard
}

# per-observation status codes
HIDDEN, REFERENCE, REFINED, LOW_TEXTURE, NO_CONVERGENCE, DRIFT, WARP, APPEARANCE = -1, 0, 1, 2, 3, 4, 5, 6
REASONS = {LOW_TEXTURE: "low_texture", NO_CONVERGENCE: "no_convergence", DRIFT: "drift", WARP: "warp", APPEARANCE: "appearance"}


@dataclass
class Refinement:
    """Refined tracks plus what happened to each observation."""

    tracks: Tracks  # refined positions; visible where the observation is the query, passed every guard, or is
    # low-texture and not hidden
    status: np.ndarray  # (T, N) int8: HIDDEN (was not visible), REFERENCE (query), REFINED, or a REASONS code
    shift: np.ndarray  # (T, N) float32 px the refinement moved the observation (0 where not refined)
    low_texture_hidden: bool = False

    def stats(self) -> dict:
        """Counts for report.json: refined, unreliable per reason, median / p90 shift of refined observations."""
        moved = self.shift[self.status == REFINED]
        out = {"refined": int((self.status == REFINED).sum()), "reference": int((self.status == REFERENCE).sum())}
        out["unreliable"] = {name: int((self.status == code).sum()) for code, name in REASONS.items()}
        out["shift_px_median"] = round(float(np.median(moved)), 4) if len(moved) else 0.0
        out["shift_px_p90"] = round(float(np.percentile(moved, 90)), 4) if len(moved) else 0.0
        out["low_texture_hidden"] = self.low_texture_hidden
        return out


def min_eigenvalue(patches: np.ndarray) -> np.ndarray:
    """(M, P, P) float patches -> (M,) smallest eigenvalue of the mean structure tensor (central differences)."""
    gx = (patches[:, 1:-1, 2:] - patches[:, 1:-1, :-2]) / 2
    gy = (patches[:, 2:, 1:-1] - patches[:, :-2, 1:-1]) / 2
    a, b, c = (gx * gx).mean((1, 2)), (gx * gy).mean((1, 2)), (gy * gy).mean((1, 2))
    return (a + c) / 2 - np.sqrt(((a - c) / 2) ** 2 + b * b)


def ncc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(M, ...) x (M, ...) -> (M,) normalized cross-correlation (0 where either patch is flat)."""
    a = a.reshape(len(a), -1) - a.reshape(len(a), -1).mean(1, keepdims=True)
    b = b.reshape(len(b), -1) - b.reshape(len(b), -1).mean(1, keepdims=True)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    return np.where(den > 1e-6, (a * b).sum(1) / np.maximum(den, 1e-6), 0.0)


def warp_ok(A: np.ndarray, max_log_scale: float, max_rotation_deg: float) -> np.ndarray:
    """(M, 2, 2) affine parts -> (M,) bool: singular values within exp(+-max_log_scale), rotation within range."""
    s = np.linalg.svd(A, compute_uv=False)
    rot = np.degrees(np.arctan2(A[:, 1, 0] - A[:, 0, 1], A[:, 0, 0] + A[:, 1, 1]))
    det = np.linalg.det(A)
    return (np.abs(np.log(np.maximum(s, 1e-9))) <= max_log_scale).all(1) & (np.abs(rot) <= max_rotation_deg) & (det > 0)


class _GreyFrames:
    """Grey frames by index, the most recently used `size` kept decoded (references lie close to each frame)."""

    def __init__(self, frames, size: int = 32):
        self.frames, self.size, self.cache = frames, size, {}

    def get(self, t: int) -> np.ndarray:
        g = self.cache.pop(t, None)
        if g is None:
            g = grey(self.frames[t])
        self.cache[t] = g
        if len(self.cache) > self.size:
            del self.cache[next(iter(self.cache))]
        return g


class _References:
    """Each track's current template (frame, position, patch, alignment data), starting at the query and
    moved by `update` (see the module docstring). The query templates are shared; each walk (one time
    direction, one group of tracks) gets its own `fresh` copy of its tracks' templates."""

    def __init__(self, frames: _GreyFrames, tracks: Tracks, conf: dict):
        self.conf, self.half = conf, conf["win"] // 2
        qf = tracks.query_frame
        N = len(qf)
        self.frame0, self.xy0 = qf.copy(), tracks.xy[qf, np.arange(N)].astype(np.float32)
        self.patch0 = np.zeros((N, conf["win"], conf["win"]), np.float32)
        self.textured = np.zeros(N, bool)
        for q in np.unique(qf):
            sel = np.flatnonzero(qf == q)
            self.patch0[sel], self.textured[sel] = self._patches(frames.get(int(q)), self.xy0[sel])
        self.prep0 = prepare(self.patch0, conf["affine_prior"])

    def _patches(self, grey: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        big = sample(grey.astype(np.float32), xy, patch_grid(self.half + 1))
        return big[:, 1:-1, 1:-1], min_eigenvalue(big) >= self.conf["min_eig"]

    def fresh(self, ids: np.ndarray) -> "_References":
        """The current templates of tracks `ids` (K,), set to their query templates and indexed 0..K-1 (the
        query templates and `textured` stay shared and are only read)."""
        own = copy.copy(self)
        own.frame, own.xy, own.patch = self.frame0[ids], self.xy0[ids], self.patch0[ids]
        own.prep = tuple(x[ids] for x in self.prep0)
        own.ids = ids  # rows of the shared query templates
        own.chain = np.broadcast_to(np.eye(2, dtype=np.float32), (len(ids), 2, 2)).copy()  # query -> current template
        return own

    def due(self, n: np.ndarray, t: int) -> np.ndarray:
        """(M,) bool: tracks n whose template is `update_every` frames or more from frame t."""
        return np.abs(t - self.frame[n]) >= self.conf["update_every"]

    def update(self, n: np.ndarray, t: int, grey: np.ndarray, xy: np.ndarray, A: np.ndarray) -> None:
        """Tracks n (M,), `due` at frame t, whose observation there was refined to xy (M, 2) with the affine part
        A (M, 2, 2) from the current template: move the template there where the new patch is textured."""
        if not len(n):
            return
        patch, textured = self._patches(grey, xy)
        n, xy, patch, A = n[textured], xy[textured], patch[textured], A[textured]
        if not len(n):
            return
        self.frame[n], self.xy[n], self.patch[n] = t, xy, patch
        self.chain[n] = A @ self.chain[n]
        for dst, src in zip(self.prep, prepare(patch, self.conf["affine_prior"])):
            dst[n] = src


def _translate(grey: _GreyFrames, refs: _References, g_t: np.ndarray, xy_t, cols, conf) -> tuple:
    """Pyramidal LK from each track's template frame to frame t for observations `cols` (M,), started at the
    tracker's positions -> ((M, 2) positions, (M,) ok)."""
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, conf["iterations"], 0.01)
    p, ok = xy_t[cols].astype(np.float32), np.zeros(len(cols), bool)
    for f in np.unique(refs.frame[cols]):
        k = np.flatnonzero(refs.frame[cols] == f)
        n = cols[k]
        out, st, _ = cv2.calcOpticalFlowPyrLK(grey.get(int(f)), g_t, refs.xy[n].reshape(-1, 1, 2), p[k].reshape(-1, 1, 2).copy(),
                                              winSize=(conf["win"], conf["win"]), maxLevel=conf["levels"], criteria=criteria,
                                              flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
        out = out.reshape(-1, 2)
        good = st.reshape(-1).astype(bool) & np.isfinite(out).all(1)
        p[k[good]], ok[k] = out[good], good
    return p, ok


def _align(ref_patch, prepared, image, p, ok, init, image_size, conf, A0=None, check_warp=True) -> tuple:
    """Affine alignment (started at the affine parts A0) and the guards for M observations of one frame
    -> (codes (M,), positions (M, 2), shift (M,), affine parts (M, 2, 2))."""
    half = conf["win"] // 2
    grid = patch_grid(half)
    code = np.full(len(p), REFINED, np.int8)
    if conf["affine"]:
        A, p, conv = affine_align(prepared, image, p, conf["affine_iterations"], A0=A0)
        ok = ok & conv
        if check_warp:
            code[~warp_ok(A, conf["max_log_scale"], conf["max_rotation_deg"])] = WARP
        aligned = sample(image, p, grid, A)
    else:
        A = np.broadcast_to(np.eye(2, dtype=np.float32), (len(p), 2, 2)).copy()
        aligned = sample(image, p, grid)
    H, W = image_size
    ok &= (p[:, 0] >= -0.5) & (p[:, 1] >= -0.5) & (p[:, 0] <= W - 0.5) & (p[:, 1] <= H - 0.5)
    d = np.linalg.norm(p - init, axis=1)
    code[(code == REFINED) & (ncc(ref_patch, aligned) < conf["min_ncc"])] = APPEARANCE
    code[d > conf["max_shift_px"]] = DRIFT
    code[~ok] = NO_CONVERGENCE
    return code, p, d, A


def _refine_frame(grey: _GreyFrames, refs: _References, g_t: np.ndarray, image: np.ndarray, xy_t: np.ndarray,
                  cols: np.ndarray, image_size, conf: dict) -> tuple:
    """Observations `cols` of one frame -> (codes, positions, shifts, affine parts from the current templates).
    Alignment starts where pyramidal LK from the template lands (a wide basin, for coarse trackers; it rebuilds
    image pyramids per template frame), or with lk_start="retry" at the tracker's position, LK only for the
    observations the first try rejects (faster where the tracker is already within a pixel or so).
    g_t: the frame's grey levels (uint8, for pyramidal LK); image: the same as float32 (for the alignment)."""
    init = xy_t[cols]

    def align(k, start, ok):
        prep = tuple(x[cols[k]] for x in refs.prep) if conf["affine"] else None
        return _align(refs.patch[cols[k]], prep, image, start, ok, init[k], image_size, conf)

    everything = np.arange(len(cols))
    if conf["lk_start"] == "always":
        start, ok = _translate(grey, refs, g_t, xy_t, cols, conf)
        code, p, d, A = align(everything, start, ok)
    else:
        code, p, d, A = align(everything, init, np.ones(len(cols), bool))
        retry = np.flatnonzero(code != REFINED)
        if len(retry):
            start, ok = _translate(grey, refs, g_t, xy_t, cols[retry], conf)
            code[retry], p[retry], d[retry], A[retry] = align(retry, start, ok)
    return code, p, d, A


def _query_check(refs: _References, image: np.ndarray, xy_t: np.ndarray, cols: np.ndarray, check: np.ndarray, p, d, A,
                 image_size, conf) -> tuple:
    """Observations cols[check], refined against a moved template and about to become templates themselves: align
    the query template too, started at the position found and at the chained warp (query -> current template ->
    frame), and take its position where it passes the guards (the warp range aside: it is measured from the
    query) within query_check_max_px -> (positions, shifts).
    Why: each template update would otherwise pass its alignment error on to every later one; checked against
    the query, a template's error is one alignment's (forward:40:1, refined observations 8+ frames from the query:
    mean error 0.295 -> 0.283 px; BENCHMARKS)."""
    k = np.flatnonzero(check & (refs.frame[cols] != refs.frame0[refs.ids[cols]]))
    if not len(k):
        return p, d
    init = xy_t[cols]
    q = refs.ids[cols[k]]
    prep = tuple(x[q] for x in refs.prep0)
    c2, p2, d2, _ = _align(refs.patch0[q], prep, image, p[k], np.ones(len(k), bool), init[k], image_size, conf,
                           A0=A[k] @ refs.chain[cols[k]], check_warp=False)
    take = (c2 == REFINED) & (np.linalg.norm(p2 - p[k], axis=1) <= conf["query_check_max_px"])
    p[k[take]], d[k[take]] = p2[take], d2[take]
    return p, d


def _walks(todo: np.ndarray, qf: np.ndarray, parts: int) -> list:
    """(forward, track ids) walks of about equal work, largest first, about `parts` in all.

    Why: the two time directions rarely carry the same work (on a 250-frame loop of apple.mp4, 82 % of the
    observations lie after their query frame: 39 s forward, 7 s backward on one thread); split by observation
    counts, the walks keep every core busy to the end."""
    after = np.zeros(todo.shape[1], np.int64)  # per track: observations to refine after / before its query frame
    for t, row in enumerate(todo):
        after += row & (qf < t)
    out = []
    for forward, work in ((True, after), (False, todo.sum(0) - after)):  # todo is False at the query frame
        ids = np.flatnonzero(work)
        if not len(ids):
            continue
        k = max(1, int(round(parts * work.sum() / todo.sum())))
        cum = np.cumsum(work[ids])
        group = (cum - 1) * k // cum[-1]  # k contiguous groups of about cum[-1] / k observations each
        for members in np.split(ids, np.flatnonzero(np.diff(group)) + 1):
            out.append((forward, members, int(work[members].sum())))
    return [(f, ids) for f, ids, _ in sorted(out, key=lambda w: -w[2])]


def refine_tracks(frames, tracks: Tracks, conf: Optional[dict] = None, tracker: Optional[str] = None) -> Refinement:
    """Refine every visible, non-query observation of `tracks` on `frames` (T, H, W, 3) uint8 (any array
    that indexes by frame, e.g. a memmap) against its track's template; see the module docstring.

    tracks.query_frame is required (every provider stamps it). Invisible observations are left untouched.
    tracker: the provider's CLI name ("lk", "cotracker3", ...), used only by lk_start="auto".
    """
    conf = {**DEFAULT_CONF, **(conf or {})}
    if conf["lk_start"] == "auto":
        conf["lk_start"] = "retry" if tracker == "lk" else "always"
    if conf["lk_start"] not in ("always", "retry"):
        raise ValueError(f"refine lk_start must be auto, always or retry, got {conf['lk_start']!r}")
    if conf["hide_low_texture"] not in (True, False, "auto"):
        raise ValueError(f"refine hide_low_texture must be true, false or auto, got {conf['hide_low_texture']!r}")
    T, N = tracks.visible.shape
    if tracks.query_frame is None:
        raise ValueError("refine_tracks needs tracks.query_frame (the reference frame of each track)")
    if len(frames) != T or tuple(frames.shape[1:3]) != tuple(tracks.image_size):
        raise ValueError(f"frames {tuple(frames.shape[:3])} do not match tracks ({T} frames of {tracks.image_size})")
    qf, n_idx = tracks.query_frame, np.arange(N)
    xy, visible = tracks.xy.copy(), tracks.visible.copy()
    status = np.where(visible, REFINED, HIDDEN).astype(np.int8)
    status[qf, n_idx] = np.where(visible[qf, n_idx], REFERENCE, HIDDEN)
    shift = np.zeros((T, N), np.float32)
    if N == 0:
        return Refinement(tracks, status, shift)
    win = conf["win"]
    if win < 5 or win % 2 == 0:
        raise ValueError(f"refine win must be an odd number of pixels >= 5, got {win}")
    refs = _References(_GreyFrames(frames), tracks, conf)
    todo = status == REFINED
    status[todo & ~refs.textured] = LOW_TEXTURE
    todo &= refs.textured

    def walk(task: tuple) -> None:
        """Outward from the query frame in one time direction, for one group of tracks `ids`. Walks touch disjoint
        observations (the directions split each track at its query frame, the groups split the tracks) and each
        has its own templates and frame cache, so they run side by side (numpy's and OpenCV's kernels release
        the GIL) and give the same result as one after the other."""
        forward, ids = task
        grey, own = _GreyFrames(frames), refs.fresh(ids)
        todo_g, qf_g = todo[:, ids], qf[ids]
        for t in (range(T) if forward else range(T - 1, -1, -1)):
            loc = np.flatnonzero(todo_g[t] & ((qf_g < t) if forward else (qf_g > t)))
            if not len(loc):
                continue
            g_t = grey.get(t)
            image = g_t.astype(np.float32)
            code, p, d, A = _refine_frame(grey, own, g_t, image, xy[t, ids], loc, tracks.image_size, conf)
            good, n = code == REFINED, ids[loc]
            due = good & own.due(loc, t)  # these become templates
            if conf["query_check"] and conf["affine"]:
                p, d = _query_check(own, image, xy[t, ids], loc, due, p, d, A, tracks.image_size, conf)
            xy[t, n[good]] = p[good]
            shift[t, n[good]] = d[good]
            status[t, n] = code
            own.update(loc[due], t, g_t, p[due], A[due])

    count = workers()
    list(ordered_map(walk, _walks(todo, qf, count), count))  # list(): an exception in any walk is raised here
    kept = (status == REFINED) | (status == REFERENCE)
    hide = conf["hide_low_texture"]
    if hide == "auto":  # only where enough textured observations remain to pose every frame
        hide = bool(np.median((visible & kept).sum(1)) >= conf["min_textured"])
    visible &= kept | ((status == LOW_TEXTURE) & (not hide))
    out = Tracks(xy, visible, tracks.image_size, tracks.confidence, tracks.query_frame, tracks.image_names)
    return Refinement(out, status, shift, hide)
