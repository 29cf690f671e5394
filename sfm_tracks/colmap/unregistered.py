"""Why each frame the model leaves out is unregistered: one short code per frame, for report.json.

A missing frame is no error, but whoever reads the report needs to know whether its photo matched nothing,
matched only what failed verification, belongs to another group of photos, or was placed and then dropped.
The codes follow the pipeline's steps; the first step a frame falls out at names the reason.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pycolmap

from ..tracks import Tracks
from .geometric_filter import frame_images

NO_MATCHES = "no matches"  # no pair with enough shared tracks or SIFT matches was written
NO_VERIFIED = "no verified pair"  # pairs were written, none passed two-view verification
SEPARATE = "separate group"  # verified pairs link it only to frames outside the kept model's group
LEFT_OUT = "mapper left it out"  # linked to the model, yet the mapper did not register it
ABSOLUTE_POSE = "absolute pose"  # keyframe route: PnP on the keyframes' points failed for this frame
DEREGISTERED = "deregistered"  # registered, then removed: too few points support its pose
CONFLICTING = "conflicting views"  # registered, then removed: placed at other frames' viewpoints, it does not see their points
COLOCATED = "no parallax in the model"  # registered, then removed: put at the viewpoint of a frame it has parallax with
NO_POSE = "no pose given"  # known-pose route: the caller gave no pose for this frame

MAX_LISTED = 50  # the report lists at most this many frames; `count` has them all
_FAILED = ("UNDEFINED", "DEGENERATE")


@dataclass
class PairGraph:
    """What the database says about the mapped frames: written pairs and verified pairs, by frame index."""
    frames: set
    matched: dict  # frame -> frames it has a written pair with
    verified: dict  # frame -> frames it has a verified pair with (>= min_inliers inliers)

    def group(self, t: int) -> set:
        """Frames that verified pairs connect to t (t included)."""
        seen, todo = {t}, [t]
        while todo:
            for u in self.verified.get(todo.pop(), ()):
                if u not in seen:
                    seen.add(u)
                    todo.append(u)
        return seen


def pair_graph(db_path: Path, min_inliers: int) -> PairGraph:
    """Read the written and verified pairs of a mapping database (image id = frame index + 1)."""
    matched, verified = {}, {}
    with pycolmap.Database.open(str(db_path)) as db:
        frames = {im.image_id - 1 for im in db.read_all_images()}
        ids, counts = db.read_num_matches()
        for pid, n in zip(ids, counts):
            if n > 0:
                _link(matched, pid)
        ids, geoms = db.read_two_view_geometries()
        for pid, g in zip(ids, geoms):
            if pycolmap.TwoViewGeometryConfiguration(g.config).name not in _FAILED and len(g.inlier_matches) >= min_inliers:
                _link(verified, pid)
    return PairGraph(frames, matched, verified)


def _link(graph: dict, pair_id: int) -> None:
    i, j = (int(k) - 1 for k in pycolmap.pair_id_to_image_pair(pair_id))
    graph.setdefault(i, set()).add(j)
    graph.setdefault(j, set()).add(i)


def reasons(registered: np.ndarray, dropped: dict, graph: Optional[PairGraph], usable: np.ndarray, min_matches: int) -> dict:
    """{frame: code} for every frame not in `registered` ((T,) bool).

    dropped: {frame: reason code} of the frames the result check deregistered. graph: None on the known-pose route. usable: (T,) number of
    usable tracks per frame, which tells a frame PnP could not place from one with nothing to place it by.
    """
    placed = set(np.flatnonzero(registered).tolist()) | set(dropped)
    kept = set().union(*(graph.group(t) for t in placed if t in graph.frames)) if graph else set()
    out = {}
    for t in np.flatnonzero(~registered).tolist():
        if t in dropped:
            out[t] = dropped[t]
        elif graph is None:
            out[t] = NO_POSE
        elif t not in graph.frames:  # not a keyframe: only absolute pose could place it
            out[t] = ABSOLUTE_POSE if usable[t] >= min_matches else NO_MATCHES
        else:
            out[t] = _mapped_reason(t, graph, kept)
    return out


def _mapped_reason(t: int, graph: PairGraph, kept: set) -> str:
    if not graph.matched.get(t):
        return NO_MATCHES
    if not graph.verified.get(t):
        return NO_VERIFIED
    return LEFT_OUT if t in kept else SEPARATE


def explain(rec: pycolmap.Reconstruction, tracks: Tracks, ok: np.ndarray, dropped: dict, db_path: Optional[Path],
            min_matches: int) -> dict:
    """report["unregistered"] of a finished model: ok, the (T, N) usable tracks; dropped: {frame: code} of the
    frames the result check deregistered; db_path: the mapping database,
    None on the known-pose route; min_matches: the fewest inliers of a verified pair (as in verification)."""
    graph = pair_graph(db_path, min_matches) if db_path is not None else None
    registered = np.array([iid is not None for iid in frame_images(rec, tracks)])
    return summary(reasons(registered, dropped, graph, ok.sum(1), min_matches))


def summary(codes: dict) -> dict:
    """report.json's `mapping.unregistered`: how many, how many per reason, and the first frames' reasons."""
    by_reason = {}
    for code in codes.values():
        by_reason[code] = by_reason.get(code, 0) + 1
    listed = sorted(codes)[:MAX_LISTED]
    return {"count": len(codes), "by_reason": by_reason, "frames": {int(t): codes[t] for t in listed}}
