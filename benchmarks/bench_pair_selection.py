"""Where exhaustive matching of a photo set stops being faster than retrieval (MatchOptions.max_exhaustive_images).

On the first T photos of a set, for each T: SIFT extraction once (both ways need every photo's features),
then the SIFT stage's matching of every pair against retrieval (vocabulary, tf-idf, top-k) plus matching of
the retrieved pairs, one after the other in one process. Prints seconds and pair counts per T.

    python benchmarks/bench_pair_selection.py IMAGE_DIR [--sizes 20,30,40,60] [--max-side 1024] [--features accurate]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pycolmap

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from sfm_tracks.colmap import feature_matches as fm  # noqa: E402
from sfm_tracks.colmap import retrieval  # noqa: E402
from sfm_tracks.inputs import load_frames  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", type=Path)
    ap.add_argument("--sizes", default="20,30,40,60")
    ap.add_argument("--max-side", type=int, default=1024)
    ap.add_argument("--features", default="accurate", choices=fm.FEATURE_MODES)
    ap.add_argument("--neighbours", type=int, default=fm.MatchOptions.retrieval_neighbours)
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    pycolmap.logging.minloglevel = 2
    with tempfile.TemporaryDirectory() as work:
        frames = load_frames(args.images, Path(work), max_frames=max(sizes), max_side=args.max_side)[0]
        o = fm.MatchOptions(features=args.features, retrieval_neighbours=args.neighbours)
        print("T | extract s | exhaustive pairs | exhaustive match s | retrieval s | retrieved pairs | retrieved match s")
        for T in sizes:
            db_path = Path(work) / "f.db"
            db_path.unlink(missing_ok=True)
            t0 = time.time()
            with pycolmap.Database.open(str(db_path)) as db:
                _, kept, _ = fm.extract(frames[:T], np.arange(T), db, Path(work), o)
            t_ext = time.time() - t0
            every = [(i, j) for i in range(T) for j in range(i + 1, T)]
            t0 = time.time()
            fm.match(db_path, every, Path(work), o)
            t_all = time.time() - t0
            t0 = time.time()
            pairs, _, _ = retrieval.retrieval_pairs(kept, o.retrieval_neighbours, o.retrieval_words)
            t_ret = time.time() - t0
            with pycolmap.Database.open(str(db_path)) as db:
                db.clear_matches()
            t0 = time.time()
            fm.match(db_path, sorted(pairs), Path(work), o)
            t_sel = time.time() - t0
            print(f"{T} | {t_ext:.1f} | {len(every)} | {t_all:.1f} | {t_ret:.1f} | {len(pairs)} | {t_sel:.1f}", flush=True)
    print(f"machine: {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}; features {args.features}, "
          f"{args.neighbours} neighbours; {args.images}")


if __name__ == "__main__":
    main()
