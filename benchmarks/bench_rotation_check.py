"""The pure-rotation check on turning, noisy-rotation and parallax clips: rotation-only residuals and verdicts.

    python benchmarks/bench_rotation_check.py [--tracks OUT/tracks.npz ...]

Per case: LK tracks (or synthetic tracks) -> database -> COLMAP verification -> sfm_tracks.colmap.degeneracy's fit:
the focal found, the 90th-percentile pair residual, the residual of the closest pairs, their ratio, and
whether reconstruct() would refuse the input as a pure rotation.
"""
import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's packages, not an installed copy

import pycolmap  # noqa: E402

from cotracker3.data.synthetic import generate_clip  # noqa: E402
from sfm_tracks import Tracks  # noqa: E402
from sfm_tracks.colmap import database as dbm  # noqa: E402
from sfm_tracks.colmap.cameras import camera_spec, make_camera  # noqa: E402
from sfm_tracks.colmap.degeneracy import fit_rotation, verified_matches  # noqa: E402
from sfm_tracks.errors import ReconstructionError  # noqa: E402
from sfm_tracks.pipeline import DEFAULT_CONF, query_points  # noqa: E402
from sfm_tracks.tracking.providers import LucasKanadeProvider  # noqa: E402
from sfm_tracks.testing import synthetic_scene  # noqa: E402
from tests.synthetic import rotating_video  # noqa: E402


def lk(frames) -> Tracks:
    return LucasKanadeProvider()(frames, query_points(frames, DEFAULT_CONF["queries"]))


def cases(extra):
    frames, focal = rotating_video()
    yield "turning camera (rotating_video, LK)", lk(frames), focal
    yield "synthetic_scene rotation, 1 px noise", synthetic_scene(16, 300, outlier_fraction=0.1, motion="rotation").tracks, 600.0
    yield "synthetic_scene orbit, 1 px noise", synthetic_scene(16, 300, outlier_fraction=0.1, motion="orbit").tracks, 600.0
    for seed in (0, 1):
        for mode in ("forward", "pan", "sideways", "orbit"):
            c = generate_clip(seed, num_frames=16, height=192, width=192, num_tracks=8, dynamic=False, camera_mode=mode)
            yield f"generate_clip {seed} {mode} (LK)", lk(c["video"]), float(c["intrinsics"][0, 0])
    for path in extra:
        yield path, Tracks.load(path), None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tracks", nargs="*", default=[])
    args = ap.parse_args()
    pycolmap.logging.minloglevel = 2
    from sfm_tracks.colmap.degeneracy import check_not_pure_rotation
    for name, tracks, focal in cases(args.tracks):
        db = Path(tempfile.mkdtemp()) / "database.db"
        dbm.write_database(db, tracks, make_camera(camera_spec(None), tracks.image_size), dbm.pair_schedule(tracks.num_frames), dbm.usable(tracks))
        dbm.verify(db, trials=(20, 10000))
        fit = fit_rotation(verified_matches(db), tracks.image_size)
        try:
            check_not_pure_rotation(db, tracks.image_size)
            verdict = "accepted"
        except ReconstructionError:
            verdict = "REFUSED (pure rotation)"
        print(f"{name:40s} focal {fit.focal:6.0f} px (true {focal or float('nan'):.0f}) | residual p90 {fit.parallax_px:6.2f} px, "
              f"closest pairs {fit.noise_px:5.2f} px, ratio {fit.parallax_px / max(fit.noise_px, 1e-9):5.1f} | {verdict}", flush=True)


if __name__ == "__main__":
    main()
