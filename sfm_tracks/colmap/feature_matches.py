"""SIFT features and matches (pycolmap) next to the tracks, where tracks alone do not connect the frames.

Tracks chain frames only as far as the tracker follows them: wide-baseline photos, gaps and cuts break
the chain, and a camera that comes back to where it started is never linked to its start. `plan_matches`
reads the tracks' connectivity and decides which frame pairs also get SIFT matches: small photo sets every
pair, larger ones the pairs that image retrieval (`retrieval.py`) finds, videos the pairs across weak links
plus loop-closure candidates. `sift_matches` runs pycolmap's SIFT extractor (settings by `SIFT_MODES`,
COLMAP's defaults unless `features="fast"`) and matcher on those frames (CPU) and returns keypoints and raw
matches, which `database.write_database` appends after the track keypoints (keypoint index >= N tracks).
COLMAP's verification and mapper then treat both kinds of correspondences alike.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np
import pycolmap

from . import retrieval
from ..selection import spread
from ..video import grey

logger = logging.getLogger(__name__)

MATCH_MODES = ("auto", "off", "all")
FEATURE_MODES = ("accurate", "fast", "colmap", "accurate-dsp")

# SIFT extraction per --features mode (pycolmap SiftExtractionOptions fields). accurate: the upsampled first
# octave (-1) on every frame and 8192 features, as COLMAP, with our lower peak threshold 0.003 (COLMAP's
# 0.02 / 3 registered 19 instead of 25 kitchen photos at 640 px and doubled the pose error of the synthetic
# room tests: BENCHMARKS.md). colmap: COLMAP's defaults exactly. fast is what ran before: no upsampling on
# frames with a long side of 800 px or more (3-4x faster extraction, fewer small features) and 4096 features.
# accurate-dsp adds domain-size pooling (DSP-SIFT: descriptors pooled over 10 scales).
SIFT_MODES = {
    "accurate": {"max_num_features": 8192, "first_octave": -1, "peak_threshold": 0.003, "edge_threshold": 10.0,
                 "domain_size_pooling": False},
    "fast": {"max_num_features": 4096, "first_octave": -1, "peak_threshold": 0.003, "edge_threshold": 10.0,
             "domain_size_pooling": False, "upsample_below": 800},
    "colmap": {"max_num_features": 8192, "first_octave": -1, "peak_threshold": 0.02 / 3, "edge_threshold": 10.0,
               "domain_size_pooling": False},
    "accurate-dsp": {"max_num_features": 8192, "first_octave": -1, "peak_threshold": 0.003, "edge_threshold": 10.0,
                     "domain_size_pooling": True},
}


def sift_settings(features: str, image_size: tuple) -> dict:
    """The SiftExtractionOptions fields of mode `features` for (H, W) frames (upsample_below resolved)."""
    if features not in SIFT_MODES:
        raise ValueError(f"features must be one of {FEATURE_MODES}, got {features!r}")
    s = dict(SIFT_MODES[features])
    below = s.pop("upsample_below", None)
    if below is not None and max(image_size) >= below:
        s["first_octave"] = 0
    return s


@dataclass
class MatchOptions:
    min_shared: int = 50  # consecutive frames sharing fewer tracks are a weak link ...
    min_shared_fraction: float = 0.3  # ... as are those sharing less than this fraction of the median
    bridge: int = 3  # a weak link t|t+1 gets SIFT pairs (a, b), a <= t < b, b - a <= bridge
    max_keyframes: int = 16  # loop closure: at most this many keyframes, spread over the sequence
    loop_min_gap: int = 4  # keyframe pairs closer than this (in frames) are left to the tracks
    features: str = "accurate"  # SIFT_MODES key
    max_exhaustive_images: int = 35  # image sets up to this size match every pair; larger ones use retrieval
    retrieval: bool = True  # False: larger image sets match the track schedule's pairs instead (the old rule)
    retrieval_neighbours: int = 15  # retrieval: each image is matched with its k most similar images
    retrieval_more: int = 25  # ... and, when the mapper leaves photos out, with its this many most similar (SiftMatches.more;
    # nerf_mic: 56/100 -> 100/100 registered, AUC@5 0.26 -> 0.98; 25 from the start costs kitti_seq_a as photos
    # AUC@5 0.925 -> 0.869 and 23 % more time: BENCHMARKS)
    retrieval_words: int = 1024  # at most this many visual words
    retrieval_descriptors: int = 1000  # descriptors per image that enter retrieval (a seeded random subset)
    retrieval_sequential: int = 3  # retrieval also matches photos up to this far apart in order when their
    # tracks connect them (min_shared): frame sequences stored as photos keep their neighbours; 0: off
    num_threads: int = -1  # SIFT extraction (the same features on any number of threads)
    match_threads: int = 1  # COLMAP's CPU matcher: on more threads the same features can give other matches, then
    # another model (test_feature_matches' 10 wide-baseline photos: 9 of 255 runs on 2 threads, 0 of 75 on one;
    # colmap/colmap#727); mapping.py sets it from MappingOptions.deterministic; -1: all cores
    seed: int = 0


@dataclass
class MatchPlan:
    """Which frame pairs get SIFT matches, and why; `summary()` goes into the report.

    selection: how pairs were chosen: off | exhaustive | retrieval | schedule | weak links.
    """
    mode: str
    reason: str
    pairs: list = field(default_factory=list)  # (i, j), i < j, frame indices
    weak_links: list = field(default_factory=list)  # t: frames t and t+1 share too few tracks
    num_loop_pairs: int = 0
    selection: str = "off"
    retrieval: Optional[dict] = None  # retrieval.retrieval_pairs' info
    sift: Optional[dict] = None  # the SiftExtractionOptions fields in use

    @property
    def frames(self) -> np.ndarray:
        return np.unique(np.array(self.pairs, dtype=np.int64).reshape(-1))

    def summary(self) -> dict:
        return {"mode": self.mode, "enabled": bool(self.pairs), "reason": self.reason, "pair_selection": self.selection,
                "retrieval": self.retrieval, "sift": self.sift, "sift_frames": int(len(self.frames)),
                "sift_pairs": len(self.pairs), "loop_pairs": self.num_loop_pairs, "weak_links": self.weak_links[:50]}


def shared_tracks(ok: np.ndarray, i: int, j: int) -> int:
    return int((ok[i] & ok[j]).sum())


def weak_links(ok: np.ndarray, options: MatchOptions) -> list:
    """Frames t whose next frame shares fewer than min_shared (or min_shared_fraction x median) tracks."""
    shared = (ok[:-1] & ok[1:]).sum(1)
    if not len(shared):
        return []
    limit = max(options.min_shared, options.min_shared_fraction * float(np.median(shared)))
    return [int(t) for t in np.nonzero(shared < limit)[0]]


def bridge_pairs(links: list, num_frames: int, span: int) -> set:
    """Pairs (a, b) across each weak link t|t+1 with a <= t < b and b - a <= span."""
    out = set()
    for t in links:
        for a in range(max(0, t + 1 - span), t + 1):
            for b in range(t + 1, min(num_frames, a + span + 1)):
                out.add((a, b))
    return out


def loop_pairs(ok: np.ndarray, options: MatchOptions, min_matches: int) -> set:
    """Keyframe pairs far apart in time that the tracks do not connect: candidates for loop closure."""
    T = len(ok)
    keys = spread(T, options.max_keyframes)
    out = set()
    for k, i in enumerate(keys):
        for j in keys[k + 1:]:
            if j - i >= options.loop_min_gap and shared_tracks(ok, i, j) < min_matches:
                out.add((int(i), int(j)))
    return out


def plan_matches(ok: np.ndarray, schedule: list, mode: str = "auto", image_set: bool = False,
                 min_matches: int = 15, options: Optional[MatchOptions] = None) -> MatchPlan:
    """Decide the SIFT pairs from the (T, N) usable-observation mask and the track pair schedule.

    Image sets (photos need not overlap in order), auto and all: up to max_exhaustive_images photos every
    pair, as COLMAP would; larger sets select pairs by retrieval (`selection == "retrieval"`: the caller adds
    the retrieved pairs once the descriptors exist; all keeps the scheduled and loop pairs too).
    Videos: all: every schedule pair plus loop pairs; auto: pairs bridging weak links plus loop pairs.
    off: none.
    """
    if mode not in MATCH_MODES:
        raise ValueError(f"matches must be one of {MATCH_MODES}, got {mode!r}")
    o = options or MatchOptions()
    if mode == "off":
        return MatchPlan(mode, "off: tracks only")
    links = weak_links(ok, o)
    loops = loop_pairs(ok, o, min_matches)
    T = len(ok)
    loop_note = f"; {len(loops)} loop-closure pair(s) between keyframes the tracks do not connect"
    if image_set and T <= o.max_exhaustive_images:
        pairs, selection = {(i, j) for i in range(T) for j in range(i + 1, T)}, "exhaustive"
        why = f"{mode}: the input is an image set of {T} photos (<= {o.max_exhaustive_images}), every pair"
        loops = set()
    elif image_set and o.retrieval:
        selection = "retrieval"
        pairs = set(map(tuple, schedule)) | loops if mode == "all" else set()
        near = {(i, j) for i, j in map(tuple, schedule) if j - i <= o.retrieval_sequential and shared_tracks(ok, i, j) >= o.min_shared}
        pairs |= near
        why = (f"{mode}: the input is an image set of {T} photos (> {o.max_exhaustive_images}), each matched with its "
               f"{o.retrieval_neighbours} most similar photos by retrieval" + (", plus every scheduled pair" + loop_note if mode == "all" else "")
               + f"; {len(near)} pair(s) of photos up to {o.retrieval_sequential} apart in order that tracks connect")
        loops = loops if mode == "all" else set()
    elif mode == "all" or image_set:
        why = ("all: every scheduled pair" if mode == "all" else "auto: the input is an image set, every scheduled pair") + loop_note
        pairs, selection = set(map(tuple, schedule)) | loops, "schedule"
    else:
        pairs, selection = bridge_pairs(links, len(ok), o.bridge) | loops, "weak links"
        why = (f"auto: {len(links)} weak link(s) between consecutive frames (< {o.min_shared} shared tracks or "
               f"< {o.min_shared_fraction:.0%} of the median)" if links else "auto: consecutive frames are well connected by tracks") + loop_note
    plan = MatchPlan(mode, why, sorted(pairs), links, len(loops), selection)
    logger.info("feature matches: %s -> %d SIFT pairs on %d frames", why, len(plan.pairs), len(plan.frames))
    return plan


@dataclass
class SiftMatches:
    """keypoints[t]: (K_t, 2) float32 in COLMAP's pixel convention (frames without SIFT: (0, 2));
    matches[(i, j)]: (M, 2) uint32 indices into keypoints[i], keypoints[j] (raw, not yet verified).
    more: None, or a call that matches the pairs retrieval held back (MatchOptions.retrieval_more), adds them to
    `matches` and returns how many pairs it matched; the features wait in the work folder until then."""
    keypoints: list
    matches: dict
    more: Optional[Callable[[], int]] = None


def colmap_sift(frames, need, settings: dict, work: Path, num_threads: int = -1, image_sizes=None, chunk: int = 64):
    """Yield (t, keypoints (K, 2) float32 in COLMAP pixels, pycolmap descriptors) for each frame t of `need`.

    COLMAP's own extractor runs one SIFT per core; pycolmap's single-image call holds the GIL and one core
    (temple, 16 photos on 2 cores: 5.0 -> 2.2 s). It reads files, so each chunk of frames is written to
    `work` as lossless grey PNGs (the same pixels SIFT saw before: identical keypoints and descriptors)
    and removed after. image_sizes: (T, 2) own size of each frame on a padded canvas; only that part is read.
    """
    eo = pycolmap.FeatureExtractionOptions()
    eo.num_threads = num_threads
    for k, v in settings.items():
        setattr(eo.sift, k, v)
    folder, db_path = Path(work) / "sift_frames", Path(work) / "sift_extract.db"
    folder.mkdir(parents=True, exist_ok=True)
    for c in range(0, len(need), chunk):
        part = [int(t) for t in need[c:c + chunk]]
        names = [f"{t}.png" for t in part]
        for t, name in zip(part, names):
            frame = frames[t] if image_sizes is None else frames[t][:image_sizes[t][0], :image_sizes[t][1]]
            cv2.imwrite(str(folder / name), grey(frame))
        db_path.unlink(missing_ok=True)
        pycolmap.extract_features(db_path, folder, image_names=names, camera_mode=pycolmap.CameraMode.PER_IMAGE,
                                  extraction_options=eo, device=pycolmap.Device.cpu)
        with pycolmap.Database.open(str(db_path)) as db:
            ids = {im.name: im.image_id for im in db.read_all_images()}
            for t, name in zip(part, names):
                if name not in ids:
                    raise RuntimeError(f"COLMAP's SIFT extractor skipped frame {t} ({folder / name})")
                yield t, db.read_keypoints(ids[name])[:, :2].astype(np.float32), db.read_descriptors(ids[name])
        for name in names:
            (folder / name).unlink()
    db_path.unlink(missing_ok=True)
    folder.rmdir()


def extract(frames, need, db, work: Path, options: MatchOptions, image_sizes=None) -> tuple:
    """SIFT (settings of options.features) on frames `need`, written to the open pycolmap database `db`
    as image t + 1 -> (keypoints: T arrays (K_t, 2), retrieval descriptors: T arrays (<= R, 128) uint8, settings).

    frames: (T, H, W, 3) uint8 (a memmap is fine). image_sizes: optional (T, 2) own size of each frame on a
    padded canvas; SIFT sees only that part, so neither the padding nor its edge gives keypoints. Only a
    seeded subset of options.retrieval_descriptors descriptors per frame stays in memory.
    """
    T = len(frames)
    H, W = np.asarray(frames[0]).shape[:2]
    settings = sift_settings(options.features, (H, W))
    keypoints = [np.zeros((0, 2), np.float32) for _ in range(T)]
    kept = [np.zeros((0, 128), np.uint8) for _ in range(T)]
    rng = np.random.default_rng(options.seed)
    cam = pycolmap.Camera.create_from_model_name(1, "SIMPLE_RADIAL", 1.2 * max(H, W), W, H)
    db.write_camera(cam, use_camera_id=True)
    for t, xy, desc in colmap_sift(frames, need, settings, work, options.num_threads, image_sizes):
        keypoints[t] = xy
        d = np.asarray(desc.data)
        kept[t] = d[np.sort(rng.choice(len(d), options.retrieval_descriptors, replace=False))] if len(d) > options.retrieval_descriptors else d
        db.write_image(pycolmap.Image(name=f"{t}", camera_id=1, image_id=int(t) + 1), use_image_id=True)
        db.write_keypoints(int(t) + 1, xy)
        db.write_descriptors(int(t) + 1, desc)
    return keypoints, kept, settings


def match(db_path: Path, pairs: list, work: Path, options: MatchOptions) -> dict:
    """pycolmap's matcher (ratio test, cross check, COLMAP's defaults) on `pairs` of the features in db_path
    -> {(i, j): (M, 2) uint32 raw matches}; verification comes later, with the tracks."""
    pair_file = Path(work) / "sift_pairs.txt"
    pair_file.write_text("".join(f"{i} {j}\n" for i, j in pairs))
    mo = pycolmap.FeatureMatchingOptions()
    mo.num_threads = options.match_threads
    mo.skip_geometric_verification = True  # verified together with the tracks in the track database
    po = pycolmap.ImportedPairingOptions()
    po.match_list_path = pair_file
    pycolmap.match_image_pairs(str(db_path), matching_options=mo, pairing_options=po, device=pycolmap.Device.cpu)
    matches = {}
    with pycolmap.Database.open(str(db_path)) as db:
        for i, j in pairs:
            if db.exists_matches(i + 1, j + 1):
                m = np.asarray(db.read_matches(i + 1, j + 1), dtype=np.uint32).reshape(-1, 2)
                if len(m):
                    matches[(i, j)] = m
    pair_file.unlink(missing_ok=True)
    return matches


def sift_matches(frames, plan: MatchPlan, work: Path, options: Optional[MatchOptions] = None, image_sizes=None) -> SiftMatches:
    """SIFT on the frames of `plan` (every frame for retrieval, whose pairs are added to the plan here) and
    pycolmap's matcher on its pairs. Descriptors go into a scratch pycolmap database in `work` and the
    matcher reads them from there, so memory stays bounded however many frames. With retrieval pairs held back
    (MatchOptions.retrieval_more) the database stays there for SiftMatches.more.
    """
    o = options or MatchOptions()
    T = len(frames)
    need = np.arange(T) if plan.selection == "retrieval" else plan.frames
    db_path = Path(work) / "sift_features.db"
    db_path.unlink(missing_ok=True)
    t0 = time.time()
    with pycolmap.Database.open(str(db_path)) as db:
        keypoints, kept, plan.sift = extract(frames, need, db, work, o, image_sizes)
    t_extract = time.time() - t0
    held = set()
    if plan.selection == "retrieval":
        found, plan.retrieval, held = retrieval.retrieval_pairs(kept, o.retrieval_neighbours, o.retrieval_words, seed=o.seed,
                                                                more=o.retrieval_more)
        plan.pairs = sorted(set(plan.pairs) | found)
        held -= set(plan.pairs)
    del kept
    t0 = time.time()
    matches = match(db_path, plan.pairs, work, o)
    logger.info("SIFT: %d frames (%.1fs), %d pairs matched, median %d matches (%.1fs)", len(need), t_extract, len(matches),
                int(np.median([len(m) for m in matches.values()])) if matches else 0, time.time() - t0)
    if not held:
        db_path.unlink(missing_ok=True)
        return SiftMatches(keypoints, matches)
    sift = SiftMatches(keypoints, matches)

    def more() -> int:
        t0 = time.time()
        extra = match(db_path, sorted(held), work, o)
        db_path.unlink(missing_ok=True)
        sift.matches.update(extra)
        plan.pairs = sorted(set(plan.pairs) | held)
        plan.retrieval["more"] = {"neighbours": o.retrieval_more, "pairs": len(held), "seconds": round(time.time() - t0, 2)}
        logger.info("SIFT: %d more retrieval pairs matched (%d neighbours per image, %.1fs)", len(held), o.retrieval_more, time.time() - t0)
        sift.more = None
        return len(held)
    sift.more = more
    return sift


def feature_matches(frames, ok: np.ndarray, schedule: list, work: Path, mode: str = "auto", image_set: bool = False,
                    min_matches: int = 15, image_size: Optional[tuple] = None, options: Optional[MatchOptions] = None,
                    image_sizes=None) -> tuple:
    """(SiftMatches or None, MatchPlan) for the track database; frames None means tracks only.

    frames: (T, H, W, 3) uint8 at the tracks' resolution `image_size` (H, W); ok: (T, N) usable observations;
    image_sizes: optional (T, 2) own size of each frame when frames of different sizes share a padded canvas.
    """
    if mode not in MATCH_MODES:
        raise ValueError(f"matches must be one of {MATCH_MODES}, got {mode!r}")
    if frames is None:
        if mode == "all":
            raise ValueError("matches='all' needs the frames: pass frames= to reconstruct()")
        return None, MatchPlan(mode, f"{mode}: no frames given, tracks only")
    if len(frames) != len(ok):
        raise ValueError(f"got {len(frames)} frames for {len(ok)} frames of tracks")
    if image_size is not None and tuple(np.shape(frames[0])[:2]) != tuple(image_size):
        raise ValueError(f"frames are {np.shape(frames[0])[:2]}, the tracks' images {tuple(image_size)}: pass frames at the tracking resolution")
    plan = plan_matches(ok, schedule, mode, image_set, min_matches, options)
    if not plan.pairs and plan.selection != "retrieval":
        return None, plan
    return sift_matches(frames, plan, work, options, image_sizes), plan
