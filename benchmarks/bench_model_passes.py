"""The Python passes over a finished model that every run makes, timed in-process (best of --repeat).

Whole-run wall times on a shared 2-core VM vary by +-30 % between identical runs; these passes are timed on a
fixed model so a change to them can be judged alone. Run it once per checkout (`--root`), alternating:

    python benchmarks/bench_model_passes.py OUT [--root CHECKOUT] [--repeat 5]

OUT is a finished `reconstruct.py` output (sparse/0 and tracks.npz). Timed: the track -> 3D point vote
(`track_points`), every observation's reprojection error (`observations.observation_errors`), the rotation-only
fit of the degeneracy check on 68 frame pairs of the tracks, and the absolute pose of every registered frame from
its tracks' 3D points (keyframes.py's PnP, or pycolmap's estimate_and_refine where the checkout has no wrapper).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(min(times), 4)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(args.root.resolve()))
    import numpy as np
    import pycolmap
    from sfm_tracks import Tracks
    from sfm_tracks.colmap import degeneracy, keyframes, observations
    from sfm_tracks.colmap.database import COLMAP_OFFSET, KeypointLayout
    from sfm_tracks.colmap.geometric_filter import frame_images, track_points

    rec = pycolmap.Reconstruction(str(args.out / "sparse" / "0"))
    tracks = Tracks.load(args.out / "tracks.npz")
    layout = KeypointLayout(tracks)
    images = frame_images(rec, tracks)
    pid = track_points(rec, tracks, images, layout)
    xyz = {p: rec.points3D[int(p)].xyz for p in set(pid[pid >= 0].tolist())}
    vis = tracks.visible
    pairs = []  # (xy1, xy2, stride) as the degeneracy check gets them from verified matches
    for t in range(tracks.num_frames - 1):
        for s in (1, 3):
            if t + s < tracks.num_frames and len(pairs) < 68:
                n = np.nonzero(vis[t] & vis[t + s])[0][:300]
                if len(n) >= 8:
                    pairs.append((tracks.xy[t, n].astype(np.float64), tracks.xy[t + s, n].astype(np.float64), s))
    camera = next(iter(rec.cameras.values()))
    est = pycolmap.AbsolutePoseEstimationOptions()
    est.ransac.max_error, est.ransac.random_seed = 4.0, 0
    ref = pycolmap.AbsolutePoseRefinementOptions()
    ref.refine_focal_length = ref.refine_extra_params = False
    pose = getattr(keyframes, "absolute_pose", pycolmap.estimate_and_refine_absolute_pose)
    frames = [(tracks.xy[t, n].astype(np.float64) + COLMAP_OFFSET, np.array([xyz[int(p)] for p in pid[n]]))
              for t in range(tracks.num_frames) if images[t] is not None
              for n in [np.nonzero(vis[t] & (pid >= 0))[0]] if len(n) >= 15]

    result = {
        "root": str(args.root), "model": str(args.out), "frames_posed": len(frames),
        "observations": int(rec.compute_num_observations()),
        "track_points_s": best(lambda: track_points(rec, tracks, images, layout), args.repeat),
        "observation_errors_s": best(lambda: observations.observation_errors(rec), args.repeat),
        "fit_rotation_s": best(lambda: degeneracy.fit_rotation(pairs, tuple(tracks.image_size)), args.repeat),
        "absolute_pose_all_frames_s": best(lambda: [pose(xy, X, camera, est, ref) for xy, X in frames], args.repeat),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
