"""COLMAP's incremental mapper and GLOMAP's global mapper on a verified database, and which model is kept.

The incremental mapper is the default. The global one runs on the same database when incremental mapping
registers too few frames, when the incremental model disagrees with its own verified pairs (a wrong initial pair
bent it: pair_agreement.py), and always on small photo sets, where it often registers more; the model that
registers enough and agrees better is kept. When both runs are certain, they run at once on two cores: each is
seeded and runs on its own threads, so the models are the ones a serial run gives.

After the final bundle adjustment, frames the model puts at one centre although their verified pairs need a
baseline (colocated.py) are deregistered, and the incremental mapper continues from the rest of the model to place
them again (colocated_remapped); the final bundle adjustment then runs again.
"""
from __future__ import annotations

import logging
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pycolmap

from . import colocated as coloc
from . import pair_agreement as pa
from .cameras import CameraSpec
from ..errors import ReconstructionError
from ..tracks import Tracks

if TYPE_CHECKING:
    from .mapping import MappingOptions

logger = logging.getLogger(__name__)

# Global BA after every 10 new frames instead of every 10 % growth, one refinement round, a looser
# tolerance, and redundant points left out of it (measured in benchmarks/bench_mapping_settings.py).
FAST_BA = {"ba_global_frames_ratio": 1e3, "ba_global_points_ratio": 1e3, "ba_global_frames_freq": 10,
           "ba_global_max_refinements": 1, "ba_global_function_tolerance": 1e-6,
           "mapper": {"ba_global_ignore_redundant_points3D": True}}


def mapped_model(db_path: Path, work: Path, tracks: Tracks, spec: CameraSpec, ok: np.ndarray, opts: MappingOptions, cameras: list):
    """The configured mapper's largest model; when incremental mapping registers fewer than
    `fallback_fraction` of the frames with tracks (or none), the global mapper on the same database too,
    keeping the model that registers more frames; when it registers enough, _agreeing_model checks it against the
    verified pairs. `opts.report` records what ran and what was kept."""
    report = opts.report if opts.report is not None else {}
    report.update(mapper=opts.mapper, tried=[opts.mapper])
    if opts.mapper != "incremental" or not opts.fallback_global:
        return run_mapper(opts.mapper, db_path, work, tracks, spec, opts, cameras)
    both = opts.image_set and not opts.large_photo_set(tracks.num_frames)  # the global model is wanted in any case
    with ThreadPoolExecutor(max_workers=1) as beside:
        # temple, 16 photos: both mappers 1.6-1.9 s one after the other, 1.2-1.4 s at once (the same models). The
        # global one reads its own copy of the database: two COLMAP connections never contend for one SQLite file.
        ahead = None
        if both:
            own = shutil.copyfile(db_path, db_path.with_name(db_path.stem + "_global.db"))
            ahead = beside.submit(_global_or_none, Path(own), work, tracks, spec, opts, cameras)
        global_model = ahead.result if ahead else lambda: _global_or_none(db_path, work, tracks, spec, opts, cameras)
        try:
            rec, error = run_mapper(opts.mapper, db_path, work, tracks, spec, opts, cameras), None
        except ReconstructionError as e:
            rec, error = None, e
        wanted = opts.fallback_fraction * int((ok.sum(1) > 0).sum())
        if rec is not None and rec.num_reg_images() >= wanted:
            return _agreeing_model(rec, db_path, global_model, opts, tracks.num_frames, wanted, report, always=both)
        got = rec.num_reg_images() if rec is not None else 0
        logger.warning("incremental mapping registered %d/%d frames: trying the global mapper", got, tracks.num_frames)
        report["tried"].append("global")
        alt = global_model()
    if alt is not None and alt.num_reg_images() > got:
        rec, got = alt, alt.num_reg_images()
        report["mapper"] = "global"
    if rec is None:
        raise error
    logger.info("kept the %s mapper's model (%d/%d frames registered)", report["mapper"], got, tracks.num_frames)
    return rec


def colocated_remapped(rec: pycolmap.Reconstruction, parallax: list, db_path: Path, work: Path, tracks: Tracks,
                       spec: CameraSpec, opts: MappingOptions, cameras: list) -> pycolmap.Reconstruction:
    """The model with the frames colocated.py finds at one centre despite their parallax (parallax: the database's
    colocated.parallax_pairs) deregistered (all but the best-supported of each group), then placed again by the
    incremental mapper, on the database at db_path, continuing from the rest; the
    continued model unless it lost frames (then the result check deregisters them). opts.report["colocated_remap"]
    says what happened.

    nerf_mic: four photos 4-21 deg apart at one centre, two of them 7 and 22 deg wrong; three deregistered and
    placed again, then the final BA (mapping.reconstruct): 100/100 registered, AUC@5 0.915 -> 0.974, the largest
    rotation error 21.8 -> 1.20 deg (BENCHMARKS.md)."""
    ids, summary = coloc.colocated_images(rec, parallax, opts.verify_max_error)
    if not ids:
        return rec
    t0 = time.time()
    kept = pycolmap.Reconstruction(rec)
    for iid in ids:
        kept.deregister_frame(kept.images[iid].frame_id)
    again = _continued(kept, db_path, work, tracks, spec, opts, cameras)
    use = again is not None and again.num_reg_images() >= kept.num_reg_images()
    summary.update(registered=[rec.num_reg_images(), again.num_reg_images() if again is not None else 0], kept=use,
                   seconds=round(time.time() - t0, 3))
    if opts.report is not None:
        opts.report["colocated_remap"] = summary
    logger.warning("%d frame(s) put at the centre of a frame they have parallax with: %s", len(ids),
                   f"placed again from the rest of the model ({again.num_reg_images()}/{tracks.num_frames} frames registered)"
                   if use else "not placed again, left to the result check")
    return again if use else rec


def _continued(kept: pycolmap.Reconstruction, db_path: Path, work: Path, tracks: Tracks, spec: CameraSpec,
               opts: MappingOptions, cameras: list):
    """COLMAP's incremental mapper continued from `kept` on a copy of the database that carries kept's cameras (the
    distortion may have been dropped) -> its largest model, or None where it cannot run (keyframe route: the
    database lacks the frames placed by absolute pose) or fails."""
    with pycolmap.Database.open(str(db_path)) as db:
        listed = {im.name for im in db.read_all_images()}
    if any(im.name not in listed for im in kept.images.values()):
        logger.info("the model holds frames the mapping database lacks: the mapper cannot continue it")
        return None
    start, out = work / "models" / "colocated_start", work / "models" / "colocated"
    for d in (start, out):
        d.mkdir(parents=True, exist_ok=True)
    kept.write(str(start))
    own = Path(shutil.copyfile(db_path, work / "database_colocated.db"))
    with pycolmap.Database.open(str(own)) as db:
        for cam in kept.cameras.values():
            db.update_camera(cam)
    try:
        models = pycolmap.incremental_mapping(str(own), str(work), str(out), incremental_options(tracks, spec, opts, cameras),
                                              input_path=str(start))
    except Exception as e:  # noqa: BLE001 -- a repair that fails leaves the model to the result check
        logger.warning("continuing the mapper failed (%s)", e)
        return None
    again = max(models.values(), key=lambda m: (m.num_reg_images(), m.num_points3D()), default=None)
    return pycolmap.Reconstruction(again) if again is not None else None


def _agreeing_model(rec: pycolmap.Reconstruction, db_path: Path, global_model: Callable, opts: MappingOptions, num_frames: int,
                    wanted: float, report: dict, always: bool = False) -> pycolmap.Reconstruction:
    """The incremental model, unless it disagrees with its own verified pairs (a wrong initial pair bent it) or
    `always` (photo sets): then the global mapper's model (global_model(): the model or None) when that agrees
    better and registers >= `wanted`."""
    agree = pa.median_disagreement(rec, db_path, opts.verify_max_error, opts.seed)
    report["pair_disagreement_deg"] = {"incremental": _rounded(agree)}
    if not always and not agree > opts.max_disagreement_deg:
        return rec
    if agree > opts.max_disagreement_deg:
        logger.warning("the incremental model disagrees with its verified pairs (median %.1f deg): trying the global mapper", agree)
    report["tried"].append("global")
    alt = global_model()
    if alt is None:
        return rec
    alt_agree = pa.median_disagreement(alt, db_path, opts.verify_max_error, opts.seed)
    report["pair_disagreement_deg"]["global"] = _rounded(alt_agree)
    if alt.num_reg_images() >= wanted and alt_agree < agree:
        report["mapper"] = "global"
        logger.info("kept the global mapper's model (median disagreement %.2f deg, %d/%d frames registered)", alt_agree,
                    alt.num_reg_images(), num_frames)
        return alt
    return rec


def _rounded(deg: float):
    return round(deg, 3) if np.isfinite(deg) else None  # NaN: no verified pair with both frames registered


def _global_or_none(db_path: Path, work: Path, tracks: Tracks, spec: CameraSpec, opts: MappingOptions, cameras: list):
    try:
        return run_mapper("global", db_path, work, tracks, spec, opts, cameras)
    except ReconstructionError:
        return None


def incremental_options(tracks: Tracks, spec: CameraSpec, opts: MappingOptions, cameras: list) -> pycolmap.IncrementalPipelineOptions:
    """COLMAP's incremental mapper as configured here; also the point triangulator's options (thinned_matches)."""
    po = pycolmap.IncrementalPipelineOptions(num_threads=opts.solver_threads, random_seed=opts.seed, extract_colors=False)
    if opts.fast_ba:
        po.mergedict(FAST_BA)
    po.min_model_size = min(3, tracks.num_frames)
    po.mapper.init_max_forward_motion = opts.init_max_forward_motion
    po.ba_refine_focal_length = spec.refine_focal_length
    po.ba_refine_principal_point = spec.refine_principal_point
    po.ba_refine_extra_params = spec.refine_extra_params
    po.constant_cameras = {c.camera_id for c in cameras} if spec.fixed else set()
    po.mergedict(opts.pipeline)
    return po


def run_mapper(mapper: str, db_path: Path, work: Path, tracks: Tracks, spec: CameraSpec, opts: MappingOptions, cameras: list):
    """COLMAP's incremental or GLOMAP's global mapping of the verified database -> its largest model."""
    out = work / "models" / mapper
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if mapper == "incremental":
        models = pycolmap.incremental_mapping(str(db_path), str(work), str(out), incremental_options(tracks, spec, opts, cameras))
    elif mapper == "global":
        po = pycolmap.GlobalPipelineOptions(num_threads=opts.solver_threads, random_seed=opts.seed)
        po.min_model_size = min(3, tracks.num_frames)
        ba = po.mapper.bundle_adjustment
        ba.refine_focal_length = spec.refine_focal_length
        ba.refine_principal_point = spec.refine_principal_point
        ba.refine_extra_params = spec.refine_extra_params
        if opts.mapper == "global":  # the pipeline dict is meant for the mapper asked for
            po.mergedict(opts.pipeline)
        models = pycolmap.global_mapping(str(db_path), str(work), str(out), po)
    else:
        raise ValueError(f"mapper must be 'incremental' or 'global', got {mapper!r}")
    models = [m for m in models.values() if m.num_reg_images() >= 2]
    if not models:
        raise ReconstructionError(
            f"{mapper} mapping registered no model: too little parallax (no initial pair with a large enough "
            "triangulation angle) or too few consistent tracks")
    rec = max(models, key=lambda m: (m.num_reg_images(), m.num_points3D()))
    logger.info("%s mapping: %d model(s), largest registers %d/%d frames (%.1fs)", mapper, len(models),
                rec.num_reg_images(), tracks.num_frames, time.time() - t0)
    return pycolmap.Reconstruction(rec)
