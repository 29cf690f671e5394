"""Time and peak memory of the offline CoTracker3 model (official architecture, random weights).

    python benchmarks/bench_tracker.py                # CPU: T=24, N=256, 384x512, iters=6
    python benchmarks/bench_tracker.py --device cuda  # adds T=60 x N=1024 and T=60 x N=4096

Each configuration runs in a fresh process so that peak memory (CPU: max RSS growth; GPU:
torch.cuda.max_memory_allocated) belongs to it alone. Reports microseconds per frame per point
and, as a same-run baseline, the ratio against the unchunked call; `--corr-chunk` shows the
memory bound of chunked correlation (outputs are identical, see tests/test_model_inputs.py).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import time


def _run(cfg: dict, queue) -> None:
    import torch

    from cotracker3 import CoTrackerThreeOffline

    torch.manual_seed(0)
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    dev = torch.device(cfg["device"])
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = cfg.get("tf32", True)
        torch.backends.cudnn.allow_tf32 = cfg.get("tf32", True)
    model = CoTrackerThreeOffline(window_len=60).eval().to(dev)
    model.corr_chunk_size = cfg["corr_chunk"]
    T, N, (H, W) = cfg["T"], cfg["N"], cfg["res"]
    video = (torch.rand(1, T, 3, H, W, device=dev) * 255)
    queries = torch.stack([torch.randint(0, T, (N,)).float(), torch.rand(N) * (W - 1), torch.rand(N) * (H - 1)], -1)[None].to(dev)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    with torch.no_grad():
        for i in range(cfg["warmup"] + cfg["repeats"]):
            if dev.type == "cuda" and i == cfg["warmup"]:
                torch.cuda.reset_peak_memory_stats()
            sync()
            t0 = time.perf_counter()
            model(video, queries, iters=cfg["iters"])
            sync()
            if i >= cfg["warmup"]:
                times.append(time.perf_counter() - t0)
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 2**20  # KiB -> GiB
    t = min(times)
    queue.put({**cfg, "seconds": t, "us_per_frame_point": t / (T * N) * 1e6, "peak_gib": peak})


def measure(cfg: dict) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_run, args=(cfg, q))
    p.start()
    out = q.get()
    p.join()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--corr-chunk", type=int, default=64, help="points per correlation chunk for the bounded-memory row")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    sizes = [(24, 256)] if args.device == "cpu" else [(60, 1024), (60, 4096)]
    rows = []
    for T, N in sizes:
        base = dict(device=args.device, threads=args.threads, T=T, N=N, res=(384, 512), iters=6, warmup=1, repeats=args.repeats)
        ref = measure({**base, "corr_chunk": None})
        chunked = measure({**base, "corr_chunk": args.corr_chunk})
        for r in (ref, chunked):
            r["ratio_vs_unchunked"] = r["seconds"] / ref["seconds"]
            rows.append(r)
    print(f"machine: {platform.processor() or platform.machine()}, device {args.device}")
    print(f"{'T':>4} {'N':>5} {'corr_chunk':>10} {'s/call':>8} {'us/frame/pt':>12} {'ratio':>6} {'peak GiB':>9}")
    for r in rows:
        print(f"{r['T']:>4} {r['N']:>5} {str(r['corr_chunk']):>10} {r['seconds']:>8.3f} {r['us_per_frame_point']:>12.2f} {r['ratio_vs_unchunked']:>6.2f} {r['peak_gib']:>9.2f}")
    if args.json:
        json.dump(rows, open(args.json, "w"), indent=1)


if __name__ == "__main__":
    main()
