"""Tracks -> pycolmap.Reconstruction, with unknown cameras (COLMAP/GLOMAP mapping) or known poses.

Unknown poses: tracks -> database -> two-view geometries -> pure-rotation check -> incremental (default)
or global mapping (mappers.py: the global mapper also runs when incremental mapping registers too few frames,
when its model disagrees with the verified pairs' own rotations, and on small photo sets),
keep the largest model, then triangulate tracks COLMAP left without a point. Videos of >= 20 frames map
only their keyframes and register the other frames by absolute pose (keyframes.py) before that. Known poses: one
robustly triangulated point per track. Both then take final_model.py's steps (completion, filter, final BA).
"""
from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional

import numpy as np
import pycolmap

from . import colocated as coloc
from . import database as dbm
from . import feature_matches as fm
from . import final_model as fin
from . import keyframes as kfm
from . import mappers
from . import thinned_matches as thin
from . import unregistered as unreg
from ..errors import ReconstructionError
from ..selection import thinned
from ..tracks import Tracks
from .cameras import CameraSpec, camera_spec, frame_cameras
from .degeneracy import check_not_pure_rotation
from .geometric_filter import frame_images

logger = logging.getLogger(__name__)


@dataclass
class MappingOptions:
    mapper: str = "incremental"  # or "global" (GLOMAP), faster on long sequences
    neighbours: int = 3  # pair schedule: strides 1..neighbours, then 4, 8, 16, ...
    max_stride: Optional[int] = None
    long_links: Optional[int] = 4  # ... long strides s from every s // long_links-th frame only (None: every frame)
    keyframes: bool = True  # videos: map keyframes only, register the other frames by PnP (keyframes.py)
    keyframe: dict = field(default_factory=dict)  # keyframes.KeyframeOptions fields
    keyframe_tracks: int = 700  # the keyframes are mapped on an evenly spread subset of the tracks, about this many a
    # keyframe; the rest are triangulated from the final poses (apple: mapping 10.7 -> 6.5 s, same poses; at 200 a
    # keyframe cat's final BA slows: BENCHMARKS)
    min_matches: int = 15  # pairs with fewer common visible tracks are not written
    verify_max_error: float = 4.0  # px, RANSAC threshold of two-view verification
    verify_trials: tuple = (20, 10000)  # (min, max) RANSAC trials per pair and model; tracks have high inlier ratios
    photo_verify_max_trials: int = 2000  # ... at most this many on photo sets above photos_try_global, whose SIFT pairs
    # rarely stop early (photos:100:2: verification 90 -> 35 s, same poses; nerf_mic the same 56/100: BENCHMARKS)
    fast_ba: bool = True  # mappers.FAST_BA: fewer, cheaper global bundle adjustments while mapping
    init_max_forward_motion: float = 1.0  # COLMAP's 0.95 refuses every initial pair of a forward-driving video, and
    # the global-mapper fallback then costs 2x (kitti_seq_a with its calibration: same AUC@5, 158 -> 73 s)
    triangulation_max_error: float = 4.0  # px, for track completion and the known-pose route
    min_tri_angle_deg: float = 1.5
    complete_tracks: bool = True  # triangulate tracks COLMAP left without a point
    drop_dynamic_points: bool = True  # delete points that only a minority of their track supports
    fallback_global: bool = True  # incremental mapping registers too few frames: also try the global mapper
    fallback_fraction: float = 0.8  # ... "too few": under this fraction of the frames that have tracks
    max_disagreement_deg: float = 5.0  # incremental model's median rotation disagreement with its verified pairs above
    # this: also try the global mapper, keep the model that agrees better (pair_agreement.py: wrong 13.2, correct 0.1-4.0)
    photo_mapped_keypoints: int = 1000  # photo sets above photos_try_global: the mapper sees each photo's this many
    # best-connected keypoints, every other verified match is triangulated on its poses (thinned_matches.py; 0: all;
    # photos:100:2, 100 textured views: mapping 104 -> 21 + 8 s, 0.33x -> 0.24x COLMAP's time, rotation error
    # 0.0145 -> 0.013-0.016 deg; tracks are never left out: BENCHMARKS)
    photos_try_global: int = 35  # photo sets of up to this many photos: always also try the global mapper, keep the
    # model that agrees better (temple: 13/16 -> 16/16 registered, AUC@5 0.595 -> 0.898); above it the global run
    # costs more (photos:100: +20 s for the same model) and runs only past max_disagreement_deg (BENCHMARKS)
    refuse_pure_rotation: bool = True  # stop when a rotation-only model explains every verified pair
    min_points: int = 20  # fewer triangulated points after filtering means too little parallax
    min_frame_observations: int = 6  # registered frames seeing fewer points are deregistered; a tightening round
    # that would leave a frame with fewer is undone (final_model.unsupported_frames)
    check_views: bool = True  # deregister frames placed at other frames' viewpoints (consistency.py, colocated.py)
    view_check: dict = field(default_factory=dict)  # consistency.ConsistencyOptions fields
    refine_poses: bool = False  # known-pose route: refine the given poses in BA
    tighten_rounds: int = 2  # after the final BA: drop observations above tighten_factor x the median error, BA again
    tighten_factor: float = 2.5  # (final_model.tighten; synthetic forward:40 rotation error 0.040 -> 0.012 deg)
    tighten_point_factor: float = 2.0  # ... and on videos the track observations of points whose RMS error is above
    # this x the median point's (final_model.badly_fitting_points; 12 synthetic clips: geometric mean 0.83x the rotation
    # error; photo sets were mixed, temple AUC@5 0.898 -> 0.913, kitti_seq_a 0.901 -> 0.864, so not there; 0: off)
    min_distortion_px: float = 0.005  # refined distortion terms that explain less reprojection error than this (or
    # no more than they would fit of noise) are dropped for the pinhole model (final_model.drop_unmeasured_distortion;
    # undistorted synthetic clips: 0.002 px, real cameras 0.013-0.16 px; orbit:40:1 rotation error 0.025 -> 0.009
    # deg; 0: always keep them)
    distortion_test_max_shift_px: float = 3.0  # ... tested only when they move an image corner by at most this
    ba_iterations: int = 50
    ba_points: int = 2000  # final BA on an evenly spread subset of the points, about this many a frame; the rest are
    # fitted alone on the final poses (final_model.hold_out_points; a 250-frame looped clip: final BA 41 -> 20 s;
    # apple and the 40-frame clips hold out 0-6 %; at 700-1000 two of nine 40-frame clips lost accuracy: BENCHMARKS)
    ba_max_observations: int = 1_000_000  # ... and at most about this many observations in all frames together: the
    # final BA's memory stays bounded (1000 looped apple frames: peak RSS 2.31 GB, 3.02 GB in the last run without it)
    ba_function_tolerance: float = 1e-6  # final BA stops when an LM step lowers the cost by less (apple: 32 -> 5 steps, same poses)
    ba_direct_max_images: int = 51  # final BA over more frames: iterative Schur, whose steps grow with the observations
    # only (forward:100: 13.7 -> 7.1 s, mean rotation 0.179 -> 0.180 deg); COLMAP's dense solver takes <= 50, so > 50
    num_threads: int = -1  # verification and PnP of the frames between keyframes (seeded: the same result on any number)
    deterministic: bool = True  # SIFT matcher, mapper and final BA on one thread: the same input gives the same model
    seed: int = 0  # every RANSAC and sampler: verification, mapper, triangulation, track completion
    matches: str = "auto"  # SIFT matches next to the tracks: auto | off | all (see feature_matches.py; needs frames)
    features: str = "accurate"  # SIFT settings: accurate | fast | colmap | accurate-dsp (feature_matches.SIFT_MODES)
    match_options: dict = field(default_factory=dict)  # extra feature_matches.MatchOptions fields (e.g. retrieval_neighbours)
    image_set: bool = False  # the frames are photos, not a video: consecutive ones need not overlap
    pipeline: dict = field(default_factory=dict)  # extra Incremental/GlobalPipelineOptions fields
    work_dir: Optional[str] = None  # keep database.db and raw models here (default: a temp dir)
    verbose: bool = False  # let COLMAP log to stderr
    report: Optional[dict] = None  # filled with what mapping did: {"matches": ..., "mapper": kept, "tried": [...],
    # "view_check": what consistency.py measured, "unregistered": why each frame left out is missing (unregistered.py)}

    @property
    def solver_threads(self) -> int:
        """Threads of the mapper and every bundle adjustment: one when `deterministic`."""
        return 1 if self.deterministic else self.num_threads

    def large_photo_set(self, num_frames: int) -> bool:
        """A photo set above photos_try_global: thinned mapping and capped verification; below, both mappers."""
        return self.image_set and num_frames > self.photos_try_global


@contextlib.contextmanager
def colmap_logging(verbose: bool):
    """Silence COLMAP's glog INFO output unless asked for (some calls reset minloglevel)."""
    old = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 0 if verbose else 2
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = old


def _options(options: dict) -> MappingOptions:
    known = {f.name for f in fields(MappingOptions)}
    unknown = set(options) - known
    if unknown:
        raise TypeError(f"unknown reconstruct() options {sorted(unknown)}; valid: {sorted(known)}")
    return MappingOptions(**options)


def reconstruct(tracks: Tracks, camera=None, cam_from_world=None, frames=None, image_sizes=None, **options) -> pycolmap.Reconstruction:
    """Turn point tracks into a COLMAP reconstruction; image i is frame i, keypoint n is track n.

    camera: None (shared SIMPLE_RADIAL, focal prior 1.2 max(H, W)), a model name, a dict of
    CameraSpec fields, a CameraSpec or a pycolmap.Camera (intrinsics in COLMAP's convention).
    cam_from_world: optional known poses ((T, 3, 4)/(T, 4, 4) arrays or pycolmap.Rigid3d, None
    for unknown frames); then points are triangulated and bundle-adjusted instead of mapped.
    frames: optional (T, H, W, 3) uint8 images at the tracks' resolution; with them SIFT matches join
    the tracks where these do not connect the frames (options matches / image_set).
    image_sizes: optional (T, 2) own size (H_t, W_t) of each frame when frames of different sizes sit at the
    top-left of one (H, W) canvas; differing sizes get one camera per image (cameras.frame_cameras).
    options: MappingOptions fields. Raises ReconstructionError for degenerate input.
    """
    opts = _options(options)
    spec = camera_spec(camera)
    ok = dbm.check_tracks(tracks, features=frames is not None and opts.matches != "off" and cam_from_world is None,
                          image_sizes=image_sizes)
    cameras = frame_cameras(spec, tracks.image_size, tracks.num_frames, image_sizes)
    layout = dbm.KeypointLayout(tracks)
    with colmap_logging(opts.verbose), contextlib.ExitStack() as stack:
        work = Path(opts.work_dir) if opts.work_dir else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sfm_tracks_")))
        work.mkdir(parents=True, exist_ok=True)
        if cam_from_world is not None:
            rec = _posed_reconstruction(tracks, cameras, cam_from_world, layout)
            fin.complete_tracks(rec, tracks, ok, opts, layout)
        else:
            rec, completed = _map(tracks, spec, ok, work, opts, frames, cameras, layout)
            if opts.complete_tracks and not completed:
                fin.complete_tracks(rec, tracks, ok, opts, layout)
        fin.drop_dynamic_points(rec, tracks, opts, layout)
        # Final BA on the cleaned model: outliers and moving points no longer pull on the poses.
        t0 = time.time()
        refine_poses = cam_from_world is None or opts.refine_poses
        held = fin.hold_out_points(rec, opts.ba_points, opts.ba_max_observations)
        fin.bundle_adjust(rec, spec, opts, refine_poses)
        rec, bounds, undone = fin.tighten(rec, tracks, layout, spec, opts, refine_poses)
        rec, distortion = fin.drop_unmeasured_distortion(rec, spec, opts, refine_poses)
        fin.restore_points(rec, held, tracks, layout, opts, bounds[-1] if bounds else None)
        logger.info("final bundle adjustment, then %d round(s) with error bounds (tracks, SIFT) %s px (%.1fs)",
                    len(bounds), bounds, time.time() - t0)
        if opts.report is not None:
            opts.report["final_error_bounds_px"] = bounds
            opts.report["final_tightening_undone"] = undone
            opts.report["final_ba_points_held_out"] = len(held)
            opts.report["distortion"] = distortion
        db = None if cam_from_world is not None else work / "database.db"
        parallax = coloc.parallax_pairs(db, opts.min_matches) if db is not None and opts.check_views else None
        if parallax is not None:
            again = mappers.colocated_remapped(rec, parallax, db, work, tracks, spec, opts, cameras)
            if again is not rec:  # frames placed again: the final BA and its tightening, as for every model
                fin.bundle_adjust(again, spec, opts, refine_poses)
                again, _, undone = fin.tighten(again, tracks, layout, spec, opts, refine_poses)
                if opts.report is not None:
                    opts.report["final_tightening_undone"] = undone
            rec = again
        dropped = fin.check_result(rec, tracks, opts, parallax)  # given poses stay
        if opts.report is not None:
            opts.report["unregistered"] = unreg.explain(rec, tracks, ok, dropped, db, opts.min_matches)
    rec.update_point_3d_errors()
    logger.info("reconstruction: %d/%d frames registered, %d points, mean reprojection error %.2f px",
                rec.num_reg_images(), tracks.num_frames, rec.num_points3D(), rec.compute_mean_reprojection_error())
    return rec


def _map(tracks: Tracks, spec: CameraSpec, ok: np.ndarray, work: Path, opts: MappingOptions, frames, cameras: list,
         layout: dbm.KeypointLayout) -> tuple:
    """Database (tracks, SIFT matches), verification, pure-rotation check, mapping; cameras[t]: frame t's camera.
    A photo set whose model leaves photos out (or that builds none) is matched with more of each photo's retrieved
    neighbours and mapped again; the model that registers more is kept (`report.json` -> `mapping.retrieval_more`).

    -> (model, whether its tracks were already completed on its final set of frames: the keyframe route's)."""
    db_path = work / "database.db"
    keys = _keyframes(tracks, ok, opts, cameras)
    pairs = [(int(keys[i]), int(keys[j])) for i, j in _schedule(len(keys), opts)]
    sift = _feature_matches(frames, ok, keys, work, opts, tracks, cameras)
    mapped = _mapped_tracks(ok[keys], opts.keyframe_tracks) if len(keys) < tracks.num_frames else None
    written = ok if mapped is None else ok & mapped  # the observations the database holds
    more = sift.more if sift is not None else None
    try:
        rec, failed = _verified_model(db_path, pairs, sift, tracks, spec, ok, written, keys, work, opts, cameras, layout), None
    except ReconstructionError as e:
        if more is None:
            raise
        rec, failed = None, e
    if more is not None and (rec is None or rec.num_reg_images() < len(keys)):
        rec = _mapped_with_more_pairs(rec, failed, more, db_path, len(keys), opts.report,
                                      lambda path: _verified_model(path, pairs, sift, tracks, spec, ok, written, keys, work, opts, cameras,
                                                                   layout, start_from=db_path))
    if len(keys) == tracks.num_frames:
        return rec, False
    return rec, _register_rest(rec, tracks, ok, keys, opts, layout, int(mapped.sum()))


def _mapped_with_more_pairs(rec, failed, more, db_path: Path, num_photos: int, report: Optional[dict], model_at) -> pycolmap.Reconstruction:
    """A photo set's first model `rec` left photos out (or none was built: `failed`): match the retrieval pairs held
    back (more()), build and map the database again (model_at(path)) and keep the model that registers more.
    report["retrieval_more"] says what happened; the rest of the report describes the kept model."""
    report = report if report is not None else {}
    got, first = (rec.num_reg_images() if rec is not None else 0), dict(report)
    logger.info("%d/%d photos registered%s: matching each with more of its most similar photos, mapping again", got, num_photos,
                f" ({failed})" if rec is None else "")
    added = more()
    retry_db = db_path.with_name("database_more.db")
    try:
        again, second = model_at(retry_db), None
    except ReconstructionError as e:
        if rec is None:
            raise
        again, second = None, e
    tried = {"pairs_added": added, "registered": [got, again.num_reg_images() if again is not None else 0],
             **({"first_error": str(failed)} if failed else {}), **({"second_error": str(second)} if second else {})}
    if again is not None and again.num_reg_images() > got:
        rec = again
        retry_db.replace(db_path)  # later steps read the kept model's database
        if "matches" in report:
            report["matches"]["sift_pairs"] += added
    else:
        report.clear()
        report.update(first)
    report["retrieval_more"] = {**tried, "kept": rec is again}
    return rec


def _verified_model(db_path: Path, pairs: list, sift, tracks: Tracks, spec: CameraSpec, ok: np.ndarray, written: np.ndarray, keys: np.ndarray,
                    work: Path, opts: MappingOptions, cameras: list, layout: dbm.KeypointLayout,
                    start_from: Optional[Path] = None) -> pycolmap.Reconstruction:
    """Write the database at db_path (track pairs with `written` observations, SIFT matches), verify it, refuse pure
    rotation, map the frames `keys` (ok: the usable observations, which say how many frames the model should hold).

    start_from: an earlier round's database of the same tracks: copied, and only the pairs whose matches changed since
    are written and verified (nerf_mic's second round: verification 5.1 -> 3.6 s, the same model)."""
    t0 = time.time()
    if db_path.exists():
        db_path.unlink()
    if start_from is not None and start_from.exists():
        shutil.copyfile(start_from, db_path)
        dbm.update_matches(db_path, written, layout, sift, opts.min_matches)
        with pycolmap.Database.open(str(db_path)) as db:
            n = db.num_matched_image_pairs()
    else:
        n = dbm.write_database(db_path, tracks, cameras, pairs, written, opts.min_matches, extra=sift, frames=keys, layout=layout)
    if n == 0:
        raise ReconstructionError(f"no frame pair shares >= {opts.min_matches} visible tracks" + (" or SIFT matches" if sift else ""))
    logger.info("database: %d frames, %d tracks, %d matched pairs (%.1fs)", len(keys), tracks.num_tracks, n, time.time() - t0)
    t0 = time.time()
    large_photo_set = opts.large_photo_set(tracks.num_frames)
    trials = (opts.verify_trials[0], min(opts.verify_trials[1], opts.photo_verify_max_trials)) if large_photo_set else opts.verify_trials
    dbm.verify(db_path, opts.verify_max_error, opts.min_matches, opts.num_threads, opts.seed, trials)
    if opts.report is not None:
        opts.report["verify_trials"] = list(trials)
    stats = dbm.two_view_stats(db_path)
    logger.info("two-view geometries: %s (%.1fs)", stats["configs"], time.time() - t0)
    if stats["num_verified"] == 0:
        raise ReconstructionError("no frame pair passed geometric verification: tracks are inconsistent or too few")
    if opts.refuse_pure_rotation and len({c.camera_id for c in cameras}) > 1:
        logger.info("pure-rotation check skipped: one camera per image (the rotation-only fit assumes one focal length)")
    elif opts.refuse_pure_rotation:
        fit = check_not_pure_rotation(db_path, tracks.image_size, max_residual_px=opts.verify_max_error)  # raises: no baseline, the mapper would invent one
        if fit is not None and opts.report is not None:
            opts.report["rotation_only_fit"] = {"focal_px": round(fit.focal, 1), "residual_p90_px": round(fit.parallax_px, 3),
                                                "residual_closest_pairs_px": round(fit.noise_px, 3)}
    thinned_db = None
    if large_photo_set and opts.photo_mapped_keypoints:
        thinned_db, stats = thin.thin_database(db_path, work / "database_mapped.db", opts.photo_mapped_keypoints,
                                                 {int(t) + 1: layout.count(int(t)) for t in keys})
        if opts.report is not None:
            opts.report["mapped_inliers"] = {"per_photo": opts.photo_mapped_keypoints, **stats}
    rec = mappers.mapped_model(thinned_db or db_path, work, tracks, spec, ok[keys], opts, cameras)
    if thinned_db is not None:
        points_mapped = rec.num_points3D()
        rec = thin.triangulate_rest(rec, db_path, work, mappers.incremental_options(tracks, spec, opts, cameras))
        if opts.report is not None:
            opts.report["mapped_inliers"].update(points_mapped=points_mapped, points_triangulated=rec.num_points3D())
    return rec


def _mapped_tracks(ok: np.ndarray, per_frame: int) -> np.ndarray:
    """(N,) bool: the tracks the keyframe mapper sees, given the keyframes' usable tracks ok (K, N): an evenly spread
    subset (track ids run by query frame, so every part of the video keeps its share) of which the median keyframe
    sees about `per_frame`. The mapper's cost grows with its observations, while a keyframe's pose is pinned down
    by far fewer points than the thousands a video gives it; complete_tracks adds the others afterwards."""
    return thinned(ok.shape[1], float(np.median(ok.sum(1))), per_frame)


def _keyframes(tracks: Tracks, ok: np.ndarray, opts: MappingOptions, cameras: list) -> np.ndarray:
    """Frame indices to map: keyframes of a video with one camera and enough frames, else every frame."""
    ko = kfm.KeyframeOptions(**opts.keyframe)
    every = np.arange(tracks.num_frames)
    if not opts.keyframes or opts.image_set or tracks.num_frames < ko.min_frames or len({c.camera_id for c in cameras}) > 1:
        return every
    if fm.weak_links(ok, fm.MatchOptions()):
        # cuts or gaps the tracks do not bridge: measured 16 deg off with keyframes on a 24-frame video with a cut
        # (the keyframes' SIFT bridge pairs span more frames), 1.4 deg mapping every frame (tests/test_keyframes.py)
        logger.info("keyframes off: consecutive frames the tracks barely connect, every frame is mapped")
        return every
    keys = kfm.select_keyframes(tracks.xy, ok, tracks.image_size, ko)
    return keys if len(keys) >= 3 else every


def _schedule(num_frames: int, opts: MappingOptions) -> list:
    """Pairs (i, j) of the mapped frames to match; photo sets keep every long stride from every image."""
    return dbm.pair_schedule(num_frames, opts.neighbours, opts.max_stride, None if opts.image_set else opts.long_links)


def _feature_matches(frames, ok: np.ndarray, keys: np.ndarray, work: Path, opts: MappingOptions, tracks: Tracks, cameras: list):
    """SIFT matches among the mapped frames (feature_matches.py), keyed by frame index."""
    view = frames if frames is None or len(keys) == len(ok) else kfm.FrameSubset(frames, keys)
    schedule = _schedule(len(keys), opts)
    sift, plan = fm.feature_matches(view, ok[keys], schedule, work, opts.matches, opts.image_set, opts.min_matches, tracks.image_size,
                                    fm.MatchOptions(**{"features": opts.features, "num_threads": opts.num_threads, "seed": opts.seed,
                                                       "match_threads": opts.solver_threads,
                                                       **opts.match_options}),
                                    [(cameras[t].height, cameras[t].width) for t in keys])
    if view is not frames:  # the plan counted in mapped-frame positions: report frame indices
        plan.weak_links = [int(keys[t]) for t in plan.weak_links]
    if opts.report is not None:
        opts.report["matches"] = plan.summary()
    if sift is None or view is frames:
        return sift
    keypoints = [np.zeros((0, 2), np.float32) for _ in range(tracks.num_frames)]
    for k, t in enumerate(keys):
        keypoints[t] = sift.keypoints[k]
    return fm.SiftMatches(keypoints, {(int(keys[i]), int(keys[j])): m for (i, j), m in sift.matches.items()})


def _register_rest(rec: pycolmap.Reconstruction, tracks: Tracks, ok: np.ndarray, keys: np.ndarray, opts: MappingOptions,
                   layout: dbm.KeypointLayout, mapped_tracks: int) -> bool:
    """Frames outside the mapped keyframes (and keyframes the mapper left out) by PnP; a second round after
    the tracks without a point are triangulated from the frames registered so far. -> True when that second
    round placed no frame, so the completion already ran on the final frames (forward:100: a repeat took 3.5 s
    to triangulate none of 2061 tracks)."""
    t0 = time.time()
    every = np.arange(tracks.num_frames)
    added = kfm.register_frames(rec, tracks, ok, every, opts.verify_max_error, opts.min_matches, opts.seed, layout, opts.num_threads)
    fin.complete_tracks(rec, tracks, ok, opts, layout)
    again = kfm.register_frames(rec, tracks, ok, every, opts.verify_max_error, opts.min_matches, opts.seed, layout, opts.num_threads)
    added += again
    logger.info("keyframe mapping: %d keyframes, %d frames added by absolute pose, %d/%d registered (%.1fs)", len(keys), len(added),
                rec.num_reg_images(), tracks.num_frames, time.time() - t0)
    if opts.report is not None:
        missing = [t for t, iid in enumerate(frame_images(rec, tracks)) if iid is None]
        opts.report["keyframes"] = {"keyframes": len(keys), "frames": tracks.num_frames, "tracks_mapped": mapped_tracks,
                                    "registered_by_pose": len(added), "unregistered": missing[:50]}
    return not again


def _as_rigid(pose) -> Optional[pycolmap.Rigid3d]:
    if pose is None or isinstance(pose, pycolmap.Rigid3d):
        return pose
    m = np.asarray(pose, dtype=np.float64)
    if not np.isfinite(m).all():
        return None
    return pycolmap.Rigid3d(m[:3, :4])


def _posed_reconstruction(tracks: Tracks, cameras: list, cam_from_world, layout: dbm.KeypointLayout) -> pycolmap.Reconstruction:
    """Images with the given poses and their tracks as keypoints (layout), no points yet; cameras[t]: frame t's."""
    if len(cam_from_world) != tracks.num_frames:
        raise ReconstructionError(f"got {len(cam_from_world)} poses for {tracks.num_frames} frames")
    poses = [_as_rigid(p) for p in cam_from_world]
    if sum(p is not None for p in poses) < 2:
        raise ReconstructionError("need known poses for at least 2 frames")
    rec = pycolmap.Reconstruction()
    for camera in {c.camera_id: c for c in cameras}.values():
        rec.add_camera_with_trivial_rig(camera)
    for t, name in enumerate(tracks.names()):
        im = pycolmap.Image(name=name, keypoints=layout.keypoints(t), camera_id=cameras[t].camera_id, image_id=t + 1)
        if poses[t] is None:
            rec.add_image_with_trivial_frame(im)
        else:
            rec.add_image_with_trivial_frame(im, poses[t])
    return rec
