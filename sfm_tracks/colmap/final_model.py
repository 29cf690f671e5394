"""The steps every model takes after mapping or posing, before it is returned.

Track completion triangulates tracks the mapper left without a point; the dynamic-point filter removes points
only a minority of their track supports; the final bundle adjustment runs on the cleaned model (on long videos on a
subset of its points, the rest fitted afterwards on the final cameras), and distortion terms the observations do
not measure are dropped for the pinhole camera; the result check
deregisters frames no point supports, groups of frames laid wrongly onto others (consistency.py) and frames put at
one viewpoint with a frame they have parallax with (colocated.py), and refuses degenerate models.
"""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Optional

import numpy as np
import pycolmap
from scipy.special import chdtri  # chi-square quantile; scipy.stats would add 0.8 s to every run's start

from . import colocated as coloc
from . import consistency as cons
from . import database as dbm
from . import unregistered as unreg
from ..errors import ReconstructionError
from ..selection import thinned
from ..tracks import Tracks
from .cameras import PINHOLE_OF, CameraSpec, pinhole_of, reproject_pixels
from .geometric_filter import FilterOptions, frame_images, reprojection_errors, supported_tracks, track_points
from .observations import delete_observations, observation_errors, sift_observations

if TYPE_CHECKING:
    from .mapping import MappingOptions

logger = logging.getLogger(__name__)


def complete_tracks(rec: pycolmap.Reconstruction, tracks: Tracks, ok: np.ndarray, opts: MappingOptions,
                     layout: dbm.KeypointLayout) -> int:
    """Robustly triangulate (LO-RANSAC) every track without a 3D point from its registered frames."""
    images = frame_images(rec, tracks)
    frames = np.array([iid is not None for iid in images])
    pid = track_points(rec, tracks, images, layout)
    to = pycolmap.EstimateTriangulationOptions()
    to.min_tri_angle = np.radians(opts.min_tri_angle_deg)
    to.residual_type = pycolmap.TriangulationResidualType.REPROJECTION_ERROR
    to.ransac.max_error = opts.triangulation_max_error
    to.ransac.random_seed = opts.seed
    # RANSAC's trials end at a count set by this inlier-ratio floor (default 0.02: 10000 trials on every track that
    # cannot be triangulated, e.g. too little angle); a fit under 0.5 is refused below anyway, and 0.2 still finds
    # the same points (forward:100: 574 of 2635 tracks, completion 3.7 -> 2.0 s; 0.5 found only 361).
    to.ransac.min_inlier_ratio = 0.2
    poses = {t: rec.images[iid].cam_from_world() for t, iid in enumerate(images) if iid is not None}
    cams = {t: rec.cameras[rec.images[iid].camera_id] for t, iid in enumerate(images) if iid is not None}
    fo = FilterOptions()
    found = []  # (track, xyz, inlier frames)
    for n in np.nonzero(pid < 0)[0]:
        ts = np.nonzero(ok[:, n] & frames)[0]
        if len(ts) < fo.min_inliers:
            continue
        res = pycolmap.estimate_triangulation(tracks.xy[ts, n].astype(np.float64) + dbm.COLMAP_OFFSET,
                                              [poses[t] for t in ts], [cams[t] for t in ts], to)
        if res is None:
            continue
        inl = np.asarray(res["inliers"], bool)
        if inl.sum() < max(fo.min_inliers, fo.min_inlier_fraction * len(ts)):
            continue  # a minority fit: likely a moving point, keep it out of the static model
        found.append((n, np.asarray(res["xyz"]), ts[inl]))
    # Keypoint slots looked up once per frame, not per observation (cat: 68k lookups, 0.7 s).
    t_all = np.concatenate([ts for _, _, ts in found]) if found else np.zeros(0, np.int64)
    n_all = np.concatenate([np.full(len(ts), n) for n, _, ts in found]) if found else np.zeros(0, np.int64)
    slot = np.empty(len(t_all), np.int64)
    order = np.argsort(t_all, kind="stable")
    for at in np.split(order, np.flatnonzero(np.diff(t_all[order])) + 1) if len(order) else []:
        slot[at] = layout.slots(int(t_all[at[0]]), n_all[at])
    start = 0
    for _, xyz, ts in found:
        rec.add_point3D(xyz, pycolmap.Track([pycolmap.TrackElement(images[t], int(k))
                                            for t, k in zip(ts.tolist(), slot[start:start + len(ts)].tolist())]))
        start += len(ts)
    logger.info("track completion: %d of %d tracks without a point triangulated", len(found), int((pid < 0).sum()))
    return len(found)


def _solver_options(opts: MappingOptions) -> pycolmap.BundleAdjustmentOptions:
    """The least-squares solver settings every final-model BA shares (bundle_adjust, adjust_points)."""
    ba = pycolmap.BundleAdjustmentOptions()
    ba.ceres.loss_function_type = pycolmap.LossFunctionType.TRIVIAL
    ba.ceres.solver_options.max_num_iterations = opts.ba_iterations
    ba.ceres.solver_options.function_tolerance = opts.ba_function_tolerance
    # Threads change the summation order, and over 50 LM steps that moves poses by ~1e-5 between runs.
    ba.ceres.solver_options.num_threads = opts.solver_threads
    ba.print_summary = False
    return ba


def bundle_adjust(rec: pycolmap.Reconstruction, spec: CameraSpec, opts: MappingOptions, refine_poses: bool) -> None:
    """Least-squares BA on inlier observations (a robust loss costs accuracy under 1 px Gaussian noise).

    Poses and intrinsics stay constant unless asked; two frames fix the gauge when poses move.
    """
    ba = _solver_options(opts)
    ba.refine_focal_length = spec.refine_focal_length
    ba.refine_principal_point = spec.refine_principal_point
    ba.refine_extra_params = spec.refine_extra_params
    ba.refine_rig_from_world = refine_poses
    # A direct Schur solve factors the camera system, dense in co-visible frames: a video's tracks span a hundred
    # frames, so its cost grows with frames x track length (250 looped frames: 17 s a step, 6 s iterative).
    ba.ceres.max_num_images_direct_sparse_cpu_solver = opts.ba_direct_max_images
    cfg = pycolmap.BundleAdjustmentConfig()
    reg = sorted(rec.reg_image_ids())
    for iid in reg:
        cfg.add_image(iid)
    if ba.refine_rig_from_world:
        cfg.fix_gauge(pycolmap.BundleAdjustmentGauge.TWO_CAMS_FROM_WORLD)
    if rec.num_points3D():
        pycolmap.create_default_bundle_adjuster(ba, cfg, rec).solve()
    # Drop the observations BA could not fit, as the mapper would.
    pycolmap.ObservationManager(rec).filter_all_points3D(opts.triangulation_max_error, opts.min_tri_angle_deg)


def hold_out_points(rec: pycolmap.Reconstruction, per_frame: int, max_observations: int) -> list:
    """Take points out of the model so that the median registered frame observes about `per_frame` of those left,
    and all frames together about `max_observations` at most -> [(xyz (3,), image ids (L,), keypoint indices (L,))]
    of the points taken (an evenly spread subset, by id).

    Why: the final BA's time grows faster than its observations (a 250-frame looped clip, 3400 points a frame:
    13.5 s for 1.7 M residuals, 4.6 s for 1.0 M), while a frame's pose is pinned down by far fewer points than a
    long video gives it; the total bound keeps a long video's BA in bounded memory. `restore_points` puts the
    points back on the final poses.
    """
    seen = [im.num_points3D for im in rec.images.values() if im.has_pose]
    ids = np.array(sorted(rec.point3D_ids()), np.int64)
    per_frame = min(per_frame, max_observations / max(len(seen), 1))
    kept = thinned(len(ids), float(np.median(seen)) if seen else 0.0, per_frame)
    held = []
    for pid in ids[~kept].tolist():
        p = rec.points3D[pid]
        el = p.track.elements
        held.append((np.array(p.xyz), np.array([e.image_id for e in el], np.int64), np.array([e.point2D_idx for e in el], np.int64)))
        rec.delete_point3D(pid)
    return held


def restore_points(rec: pycolmap.Reconstruction, held: list, tracks: Tracks, layout: dbm.KeypointLayout, opts: MappingOptions,
                   bounds: Optional[list]) -> None:
    """Put `hold_out_points`' points back and fit them alone on the final poses and intrinsics: triangulated on the
    poses before the final BA, they are refined, every observation above the last round's bounds (`tighten`; track
    and SIFT observations each their own) is dropped, and they are refined again."""
    if not held:
        return
    for xyz, iids, kps in held:
        rec.add_point3D(xyz, pycolmap.Track([pycolmap.TrackElement(i, k) for i, k in zip(iids.tolist(), kps.tolist())]))
    limits = [opts.triangulation_max_error if b is None else b for b in (bounds or [None, None])]
    for _ in range(2):
        adjust_points(rec, opts)
        ids, idx, err, _ = observation_errors(rec)
        sift = sift_observations(rec, tracks, layout, ids, idx)
        delete_observations(rec, ids, idx, np.where(sift, err > limits[1], err > limits[0]))
    pycolmap.ObservationManager(rec).filter_all_points3D(opts.triangulation_max_error, opts.min_tri_angle_deg)


def adjust_points(rec: pycolmap.Reconstruction, opts: MappingOptions) -> None:
    """Least-squares refinement of every 3D point alone, poses and intrinsics constant, in chunks of about
    `ba_max_observations` observations: each point's fit is separate, so chunks give the same points as one solve,
    and memory stays bounded however long the video."""
    ba = _solver_options(opts)
    ids = np.array(sorted(rec.point3D_ids()), np.int64)
    lengths = np.array([rec.points3D[p].track.length() for p in ids.tolist()], np.int64)
    chunk = np.cumsum(lengths) // max(opts.ba_max_observations, 1)
    for c in np.unique(chunk):
        cfg = pycolmap.BundleAdjustmentConfig()  # no images: each observing frame's pose and camera stay constant
        for pid in ids[chunk == c].tolist():
            cfg.add_variable_point(pid)
        pycolmap.create_default_bundle_adjuster(ba, cfg, rec).solve()


def corner_shift_px(cam: pycolmap.Camera) -> float:
    """How far the distortion terms move the image corner that moves most, px."""
    corners = np.array([[0, 0], [cam.width, 0], [0, cam.height], [cam.width, cam.height]], np.float64)
    moved = reproject_pixels(pinhole_of(cam), cam, corners)
    return float(np.linalg.norm(moved - corners, axis=1).max())


def drop_unmeasured_distortion(rec: pycolmap.Reconstruction, spec: CameraSpec, opts: MappingOptions,
                               refine_poses: bool) -> tuple:
    """Replace every camera by its pinhole model when its distortion terms are not measured: after a BA without
    them, the root-mean-square error they explain (sqrt of the drop in mean squared reprojection error they buy)
    is under `opts.min_distortion_px`, or within what that many free terms fit of white noise (chi-square, 99.7 %).

    Why: on undistorted footage the refined radial term absorbs the tracks' small systematic errors, and the
    rotations pay for it (synthetic orbit:40:1: k1 explains 0.002 px yet triples the rotation error); on the real
    cameras measured it explains 0.013-0.16 px. A pinhole model also needs no undistorted copy for trainers.
    Terms that move a corner by more than `opts.distortion_test_max_shift_px` are kept untested (the BA costs up to
    5 s; on undistorted generator footage they moved it 0.002-1.9 px, on real cameras 1.2-8.7 px).
    Returns (the model kept, {"corner_shift_px", "dropped", and when tested "explained_px", "bound_px"}); the
    report is None when the distortion is fixed or the model has none.
    """
    if not (spec.refine_extra_params and refine_poses and opts.min_distortion_px > 0):
        return rec, None
    if any(cam.model_name not in PINHOLE_OF for cam in rec.cameras.values()) or not rec.num_points3D():
        return rec, None
    shift = max(corner_shift_px(cam) for cam in rec.cameras.values())
    if shift > opts.distortion_test_max_shift_px:
        return rec, {"corner_shift_px": round(shift, 3), "dropped": False}
    trial = pycolmap.Reconstruction(rec)
    terms = 0
    for cid, cam in rec.cameras.items():
        terms += len(cam.params) - PINHOLE_OF[cam.model_name][1]
        trial.cameras[cid] = pinhole_of(cam)
    t0 = time.time()
    bundle_adjust(trial, replace(spec, refine_extra_params=False), opts, refine_poses)
    took = time.time() - t0
    errors = [e[np.isfinite(e)] for e in (observation_errors(r)[2] for r in (rec, trial))]
    mse = [float(np.mean(np.square(e))) for e in errors]
    explained = float(np.sqrt(max(0.0, mse[1] - mse[0])))
    noise = float(np.sqrt(mse[0] * chdtri(terms, 0.003) / len(errors[0])))  # chi-square, 99.7 %
    bound = max(opts.min_distortion_px, noise)
    dropped = explained < bound
    logger.info("distortion terms (corner shift %.2f px) explain %.4f px of the reprojection error (bound %.4f px): %s "
                "(%.1fs)", shift, explained, bound, "dropped" if dropped else "kept", took)
    return (trial if dropped else rec), {"corner_shift_px": round(shift, 3), "explained_px": round(explained, 4),
                                         "bound_px": round(bound, 4), "dropped": dropped}


def badly_fitting_points(points: np.ndarray, err: np.ndarray, factor: float) -> np.ndarray:
    """(M,) bool: observations (point3D ids and errors (M,) from `observation_errors`) of points whose RMS error over
    their observations is above `factor` x the median point's.

    Why: a track whose every observation is a little off stays under the per-observation bound, and its point pulls
    on the poses with all of them. Tracks whose patch straddles a depth edge are such tracks: 2-3x the pixel error of
    single-surface ones, and on forward motion most of the along-motion bias (benchmarks/bench_tracking_bias.py)."""
    _, inv = np.unique(points, return_inverse=True)
    sq = np.square(np.where(np.isfinite(err), err, 1e6))
    rms = np.sqrt(np.bincount(inv, sq) / np.bincount(inv))
    return (rms > factor * np.median(rms))[inv]


def tighten(rec: pycolmap.Reconstruction, tracks: Tracks, layout: dbm.KeypointLayout, spec: CameraSpec,
            opts: MappingOptions, refine_poses: bool) -> tuple:
    """Drop observations above `tighten_factor` x the median reprojection error, and on videos the track observations
    of points that fit badly as a whole (`badly_fitting_points`), bundle-adjust again; repeat.

    Why: tracker observations have a heavy tail (Lucas-Kanade drifts along a track: on a synthetic clip 16+ frames
    from the query the median error is 0.44 px, the mean 1.82 px), and the mapper's 4 px outlier bound keeps it.
    The least-squares BA lets that tail pull on the poses; a bound relative to the model's own median error
    (scale-free, so it fits real and synthetic video alike) removes it. Track and SIFT observations get a median each: SIFT ones
    are noisier, and a bound set by the tracks would cut the SIFT bridges that join frames no track joins.
    A round that leaves a frame with fewer than `min_frame_observations` points (`unsupported_frames`) is undone and
    ends the tightening: on distant scenery the ends of tracks fit worst and carry the parallax.
    Returns (the model kept, the bounds of each round kept [track px, SIFT px or None], why a round was undone or None).
    """
    rounds = []
    for _ in range(opts.tighten_rounds):
        ids, idx, err, points = observation_errors(rec)
        if not len(err):
            break
        sift = sift_observations(rec, tracks, layout, ids, idx)
        bounds, drop = [], np.zeros(len(err), bool)
        for part in (~sift, sift):
            bound = opts.tighten_factor * float(np.median(err[part])) if part.any() else None
            bounds.append(None if bound is None else round(bound, 3))
            if bound is not None:
                drop |= part & (err > bound)
        if opts.tighten_point_factor > 0 and not opts.image_set:
            whole = ~sift & badly_fitting_points(points, err, opts.tighten_point_factor)
            logger.info("tightening: %d observations above the bounds, %d more of points that fit badly as a whole",
                        int(drop.sum()), int((whole & ~drop).sum()))
            drop |= whole
        if not drop.any():
            break
        before = pycolmap.Reconstruction(rec)
        delete_observations(rec, ids, idx, drop)
        bundle_adjust(rec, spec, opts, refine_poses)
        weak = unsupported_frames(before, rec, opts.min_frame_observations)
        if weak:
            undone = f"{len(weak)} frame(s) would see fewer than {opts.min_frame_observations} points"
            logger.info("tightening round with bounds %s undone: %s", bounds, undone)
            return before, rounds, undone
        rounds.append(bounds)
    return rec, rounds, None


def unsupported_frames(before: pycolmap.Reconstruction, after: pycolmap.Reconstruction, need: int) -> list:
    """Registered frames that saw at least `need` points in `before` and see fewer in `after` (image ids).

    Why: tightening is meant to drop bad observations, not frames. On a car circling a roundabout (davis
    car-roundabout) the first round dropped a track's outer fifth of frames twice as often as its inner three fifths
    (19 % against 10 %): on distant scenery those carry the parallax, so the BA's angle filter then removed 574 of 679
    points and 8 of 75 frames fell below support. On the synthetic clips and on a video whose rounds remove moving
    content (davis soapbox: 31 % of the points) no frame does."""
    return [iid for iid, im in after.images.items()
            if im.has_pose and im.num_points3D < need <= before.images[iid].num_points3D]


def drop_dynamic_points(rec: pycolmap.Reconstruction, tracks: Tracks, opts: MappingOptions, layout: dbm.KeypointLayout) -> None:
    """Delete points that only a minority of their track agrees with: dynamic content, not structure."""
    if not opts.drop_dynamic_points or not rec.num_points3D():
        return
    errors = reprojection_errors(rec, tracks, layout=layout)
    keep = supported_tracks(errors)
    pid = track_points(rec, tracks, layout=layout)
    drop = set(int(p) for p in pid[(pid >= 0) & ~keep])
    for p in drop:
        rec.delete_point3D(p)
    # Points of split tracks that lost the vote are duplicates of the track's main point.
    main = set(int(p) for p in pid[pid >= 0]) - drop
    frame_of = {iid: t for t, iid in enumerate(frame_images(rec, tracks)) if iid is not None}
    # points seen only by SIFT keypoints (after an image's track keypoints) belong to no track: keep them
    extra = [p for p in rec.point3D_ids() if p not in main and any(
        el.image_id in frame_of and el.point2D_idx < layout.count(frame_of[el.image_id]) for el in rec.points3D[p].track.elements)]
    for p in extra:
        rec.delete_point3D(p)
    logger.info("removed %d points unsupported by their track and %d duplicate split-track points", len(drop), len(extra))


def check_result(rec: pycolmap.Reconstruction, tracks: Tracks, opts: MappingOptions, parallax=None) -> dict:
    """Deregister frames whose pose no point supports, then (parallax, the mapping database's
    colocated.parallax_pairs, given and opts.check_views) the groups of frames that conflict with the model's main
    group (consistency.py) and the frames put at one viewpoint with a frame their verified pair says has parallax
    (colocated.py); fail loudly when the model is degenerate.

    Returns {frame index: reason code (unregistered.py)} of the frames it deregistered, so the report can say why.
    """
    frame_of = {name: t for t, name in enumerate(tracks.names())}
    weak = {im.frame_id: frame_of.get(im.name) for im in rec.images.values()
            if im.has_pose and im.num_points3D < opts.min_frame_observations}
    for fid in weak:
        rec.deregister_frame(fid)
    if weak:
        logger.warning("deregistered %d frame(s) with < %d observations", len(weak), opts.min_frame_observations)
    dropped = {t: unreg.DEREGISTERED for t in weak.values() if t is not None}
    if parallax is not None and opts.check_views:
        dropped.update({t: unreg.CONFLICTING for t in drop_conflicting_views(rec, frame_of, opts)})
        dropped.update({t: unreg.COLOCATED for t in drop_colocated(rec, frame_of, parallax, opts)})
    if rec.num_reg_images() < 2 or rec.num_points3D() < opts.min_points:
        raise ReconstructionError(
            f"too little parallax (pure rotation or a static camera?) or too few consistent tracks: only "
            f"{rec.num_points3D()} points with a triangulation angle >= {opts.min_tri_angle_deg} deg and "
            f"{rec.num_reg_images()} registered frames survive (need {opts.min_points} points, 2 frames)")
    return dropped


def drop_conflicting_views(rec: pycolmap.Reconstruction, frame_of: dict, opts: MappingOptions) -> list:
    """Deregister the frames consistency.py finds laid onto another group's viewpoints; their frame indices
    (frame_of: image name -> frame index). opts.report["view_check"] gets the check's numbers."""
    t0 = time.time()
    ids, summary = cons.conflicting_images(rec, cons.ConsistencyOptions(**opts.view_check))
    return _deregistered(rec, ids, frame_of, summary, t0, opts.report, "view_check",
                         "placed at other frames' viewpoints without seeing their points (a repeated or symmetric scene "
                         "merged wrongly?)")


def drop_colocated(rec: pycolmap.Reconstruction, frame_of: dict, parallax: list, opts: MappingOptions) -> list:
    """Deregister all but one frame of each group colocated.py finds at one viewpoint despite their parallax
    (parallax: the verified pairs that need a baseline); their frame indices. opts.report["colocated_check"] gets the
    check's numbers."""
    t0 = time.time()
    ids, summary = coloc.colocated_images(rec, parallax, opts.verify_max_error)
    return _deregistered(rec, ids, frame_of, summary, t0, opts.report, "colocated_check",
                         "put at the viewpoint of a frame their verified matches show parallax with (an orbit taken for "
                         "a turn on the spot?)")


def _deregistered(rec: pycolmap.Reconstruction, ids: list, frame_of: dict, summary: dict, t0: float, report, key: str,
                  why: str) -> list:
    """Deregister images `ids` that a check found -> their frame indices; report[key] gets the check's summary."""
    frames = [frame_of.get(rec.images[iid].name) for iid in ids]
    for iid in ids:
        rec.deregister_frame(rec.images[iid].frame_id)
    if ids:
        logger.warning("deregistered %d frame(s) %s", len(ids), why)
    summary.update(deregistered=len(ids), seconds=round(time.time() - t0, 3))
    if report is not None:
        report[key] = summary
    return [t for t in frames if t is not None]
