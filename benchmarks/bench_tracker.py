"""Speed, peak memory and accuracy of CoTracker3's exact and fast modes (official architecture).

    python benchmarks/bench_tracker.py --threads 2                 # CPU: T=24 x N=256 and T=60 x N=1024, 384x512
    python benchmarks/bench_tracker.py --threads 2 --sizes 8x64 --iters 2    # quick loop while developing
    SFM_TRACKS_NO_DOWNLOAD=1 python benchmarks/bench_tracker.py --threads 2 --sizes none \\
        --real-videos ../shared/data/cotracker_videos          # accuracy on real video, shipped weights
    python benchmarks/bench_tracker.py --device cuda --sizes 60x1024,60x4096

Weights: the deterministic official-architecture weights of tests/fixtures/make_weights.py (seed
1000). The official implementation runs too when its code (`cotracker`) is importable; otherwise
the exact mode stands in for it: tests/test_parity.py holds it to the official outputs within
2e-4 px. Each call runs in a fresh process so that its peak memory (CPU: max RSS growth; GPU:
torch.cuda.max_memory_allocated) is its own; times are the minimum over `--repeats` calls and
ratios are against exact mode in the same run. Accuracy: fast vs exact tracks (px at 384x512)
and visibility decisions (vis > 0.9).
"""
from __future__ import annotations

import argparse
import datetime
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


def _official_model():
    """The official CoTracker3 offline class, or None when its code is not installed."""
    try:
        from cotracker.models.core.cotracker.cotracker3_offline import CoTrackerThreeOffline
    except ImportError:
        return None
    return CoTrackerThreeOffline(stride=4, corr_radius=3, window_len=60)


def _inputs(T: int, N: int, H: int, W: int, video_path, device):
    """(1, T, 3, H, W) video in [0, 255] (a real clip resized, or seeded noise) and (1, N, 3) seeded queries."""
    import torch
    g = torch.Generator().manual_seed(0)
    if video_path:
        import cv2

        from sfm_tracks.video import read_frames
        frames, _ = read_frames(video_path, max_frames=T)
        frames = np.stack([cv2.resize(f, (W, H), interpolation=cv2.INTER_AREA) for f in frames])
        video = torch.from_numpy(frames).permute(0, 3, 1, 2)[None].float()
        if video.shape[1] < T:
            raise SystemExit(f"error: {video_path} has only {video.shape[1]} frames, {T} needed")
    else:
        video = torch.rand(1, T, 3, H, W, generator=g) * 255
    queries = torch.stack([torch.randint(0, T, (N,), generator=g).float(), torch.rand(N, generator=g) * (W - 1),
                           torch.rand(N, generator=g) * (H - 1)], -1)[None]
    return video.to(device), queries.to(device)


STAGES = {"encoder": ("", "encode"), "support features": ("", "support_features"),
          "correlation (incl. MLP)": ("", "correlation_embedding"), "correlation MLP": ("corr_mlp", "forward"),
          "transformer": ("updateformer", "forward")}


def _time_stages(model, totals: dict) -> None:
    """Wrap the model's stage methods so that each call adds its wall time to totals[stage]."""
    for stage, (child, name) in STAGES.items():
        obj = model.get_submodule(child) if child else model
        inner = getattr(obj, name)

        def timed(*a, _inner=inner, _stage=stage, **k):
            t0 = time.perf_counter()
            out = _inner(*a, **k)
            totals[_stage] = totals.get(_stage, 0.0) + time.perf_counter() - t0
            return out
        setattr(obj, name, timed)


def _run(cfg: dict, queue) -> None:
    import torch

    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(FIXTURES))
    from make_weights import make_state_dict

    from cotracker3 import CoTrackerThreeOffline

    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    dev = torch.device(cfg["device"])
    official = cfg["impl"] == "official"
    model = _official_model() if official else CoTrackerThreeOffline(window_len=60)
    model.load_state_dict(make_state_dict(str(FIXTURES / "cotracker3_offline_state_dict.json"), 1000))
    model = model.eval().to(dev)
    kwargs = {} if official else {"mode": cfg["impl"]}
    video, queries = _inputs(cfg["T"], cfg["N"], 384, 512, cfg["video"], dev)
    stages = {}
    if cfg["profile"] and not official:
        _time_stages(model, stages)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    with torch.no_grad():
        for _ in range(cfg["repeats"]):
            sync()
            t0 = time.perf_counter()
            out = model(video, queries, iters=cfg["iters"], **kwargs)
            sync()
            times.append(time.perf_counter() - t0)
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 2**20  # KiB -> GiB
    stages = {k: v / len(times) for k, v in stages.items()}
    queue.put({**cfg, "seconds": min(times), "peak_gib": peak, "stages": stages, "xy": out[0].cpu().numpy(), "vis": out[1].cpu().numpy()})


def measure(cfg: dict) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_run, args=(cfg, q))
    p.start()
    out = q.get()
    p.join()
    return out


def deltas(xy, vis, ref_xy, ref_vis) -> dict:
    """Track differences (px) and visibility agreement of one run against a reference run."""
    d = np.linalg.norm(np.asarray(xy, np.float64) - ref_xy, axis=-1).ravel()
    return {"mean_px": d.mean(), "p99_px": np.quantile(d, 0.99), "max_px": d.max(), "vis_agree": ((vis > 0.9) == (ref_vis > 0.9)).mean()}


def speed_table(args) -> None:
    impls = [i for i in args.impls.split(",") if i != "official" or _official_model() is not None]
    print(f"# {datetime.date.today()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, device {args.device}, "
          f"threads {args.threads or 'default'}, iters {args.iters}, 384x512, video {args.video or 'seeded noise'}")
    if "official" not in impls:
        print("# official CoTracker3 code not importable: exact mode stands in (it matches the official outputs to 2e-4 px, tests/test_parity.py)")
    print(f"{'T':>4} {'N':>5} {'impl':>8} {'s/call':>8} {'vs exact':>8} {'peak GiB':>9} {'mean px':>8} {'p99 px':>7} {'max px':>7} {'vis agree':>9}")
    for size in args.sizes.split(","):
        T, N = (int(v) for v in size.split("x"))
        rows = {}
        for impl in impls:
            rows[impl] = r = measure(dict(device=args.device, threads=args.threads, T=T, N=N, iters=args.iters, impl=impl,
                                          repeats=args.repeats, video=args.video, profile=args.profile))
            line = f"{T:>4} {N:>5} {impl:>8} {r['seconds']:>8.2f}"
            if "exact" in rows:  # same-run ratio and accuracy against exact mode
                ex = rows["exact"]
                acc = deltas(r["xy"], r["vis"], ex["xy"], ex["vis"])
                line += (f" {ex['seconds'] / r['seconds']:>7.2f}x {r['peak_gib']:>9.2f} {acc['mean_px']:>8.4f} {acc['p99_px']:>7.4f} "
                         f"{acc['max_px']:>7.4f} {acc['vis_agree'] * 100:>8.2f}%")
            else:
                line += f" {'-':>8} {r['peak_gib']:>9.2f}"
            print(line, flush=True)
        if args.profile:
            print(f"# stages (s/call, share of the call) at T={T}, N={N}:")
            for stage in STAGES:
                print(f"#   {stage:>24} " + "  ".join(f"{i} {rows[i]['stages'].get(stage, 0):7.2f} s {rows[i]['stages'].get(stage, 0) / rows[i]['seconds'] * 100:4.1f}%"
                                                      for i in rows if rows[i]["stages"]))


def real_video_accuracy(args) -> None:
    """Fast vs exact CoTrackerProvider (checkpoint "default", as the pipelines use it) on each real video."""
    import torch

    sys.path.insert(0, str(ROOT))
    from sfm_tracks.tracking.cotracker import CoTrackerProvider
    from sfm_tracks.video import read_frames

    if args.threads:
        torch.set_num_threads(args.threads)
    providers = {mode: CoTrackerProvider(checkpoint="default", mode=mode) for mode in ("exact", "fast")}
    print(f"# real video, {providers['exact'].checkpoint_source}; {args.real_frames} frames at max side 512, "
          f"{args.real_points} random queries at random frames, backward tracking, iters 6")
    print(f"{'video':>20} {'exact s':>8} {'fast s':>7} {'mean px':>8} {'p99 px':>7} {'max px':>7} {'vis agree':>9}")
    all_d, all_agree = [], []
    for path in sorted(Path(args.real_videos).glob("*.mp4")):
        frames, _ = read_frames(path, max_frames=args.real_frames, max_side=512)
        T, H, W = frames.shape[:3]
        rng = np.random.default_rng(0)
        queries = np.stack([rng.integers(0, T, args.real_points), rng.uniform(0, W - 1, args.real_points),
                            rng.uniform(0, H - 1, args.real_points)], 1).astype(np.float32)
        out, secs = {}, {}
        for mode, provider in providers.items():
            t0 = time.perf_counter()
            out[mode] = provider.track(frames, queries)
            secs[mode] = time.perf_counter() - t0
        d = np.linalg.norm(out["fast"].xy.astype(np.float64) - out["exact"].xy, axis=-1).ravel()
        agree = (out["fast"].visible == out["exact"].visible).ravel()
        all_d.append(d)
        all_agree.append(agree)
        print(f"{path.stem:>20} {secs['exact']:>8.2f} {secs['fast']:>7.2f} {d.mean():>8.4f} {np.quantile(d, 0.99):>7.4f} "
              f"{d.max():>7.4f} {agree.mean() * 100:>8.2f}%", flush=True)
    d, agree = np.concatenate(all_d), np.concatenate(all_agree)
    print(f"{'all':>20} {'':>8} {'':>7} {d.mean():>8.4f} {np.quantile(d, 0.99):>7.4f} {d.max():>7.4f} {agree.mean() * 100:>8.2f}%")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    ap.add_argument("--sizes", default="24x256,60x1024", help="TxN list, or 'none'")
    ap.add_argument("--impls", default="exact,fast,official", help="exact first: ratios and accuracy are against it")
    ap.add_argument("--iters", type=int, default=4)
    ap.add_argument("--profile", action="store_true", help="also time the model's stages (encoder, correlation, transformer)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--video", help="a real video for the speed table (first T frames at 384x512); default seeded noise")
    ap.add_argument("--real-videos", help="folder of .mp4 files: fast vs exact accuracy with the default weights")
    ap.add_argument("--real-frames", type=int, default=24)
    ap.add_argument("--real-points", type=int, default=256)
    args = ap.parse_args()
    if args.sizes != "none":
        speed_table(args)
    if args.real_videos:
        real_video_accuracy(args)


if __name__ == "__main__":
    main()
