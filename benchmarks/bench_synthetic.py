"""Synthetic generator throughput and track statistics.

    PYTHONPATH=. python benchmarks/bench_synthetic.py [--clips 8] [--device cpu|cuda|all]

Clips per second at 24 frames x 256x256 with 256 tracks (goal: >= 1/s on a 2-core CPU,
>= 20/s on a GPU), plus how much of each track is visible.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from cotracker3.data.synthetic import generate_clip


def bench(device: str, clips: int, frames: int, size: int, tracks: int, dynamic: bool) -> dict:
    generate_clip(10_000, num_frames=2, height=size, width=size, num_tracks=8, device=device)  # warm-up, bank
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    vis_q, vis_all, vis_half = [], [], []
    sync()
    wall, cpu = time.perf_counter(), time.process_time()
    for s in range(clips):
        c = generate_clip(s, num_frames=frames, height=size, width=size, num_tracks=tracks, dynamic=dynamic, device=device)
        v = c["visibility"]
        vis_q.append(v[c["query_frame"], np.arange(v.shape[1])].mean())
        vis_all.append(v.mean())
        vis_half.append((v.mean(0) >= 0.5).mean())
    sync()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return dict(device=device, dynamic=dynamic, clips_per_s=clips / wall, s_per_clip=wall / clips,
                cpu_s_per_clip=cpu / clips, vis_at_query=float(np.mean(vis_q)), vis_overall=float(np.mean(vis_all)),
                vis_half_clip=float(np.mean(vis_half)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--tracks", type=int, default=256)
    ap.add_argument("--device", default="all", help="cpu, cuda or all (cuda only if available)")
    args = ap.parse_args()
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    print("| device | scene | clips/s | s/clip | CPU s/clip | visible at query | visible overall | tracks visible >= half the clip |")
    print("|---|---|---|---|---|---|---|---|")
    for device in devices:
        for dynamic in (True, False):
            r = bench(device, args.clips, args.frames, args.size, args.tracks, dynamic)
            print(f"| {device} | {'dynamic' if dynamic else 'static'} | {r['clips_per_s']:.2f} | {r['s_per_clip']:.2f} | "
                  f"{r['cpu_s_per_clip']:.2f} | {r['vis_at_query']:.3f} | {r['vis_overall']:.3f} | {r['vis_half_clip']:.3f} |")


if __name__ == "__main__":
    main()
