"""Throughput and peak memory of one training step (forward, losses, backward, AdamW step).

    python benchmarks/bench_train.py --config tiny small --threads 1
    python benchmarks/bench_train.py --config full          # on a GPU: B=1, T=60, N=512, 384x512, bf16

Inputs are random (a texture translating at 1 px/frame), so the number is the model's cost
alone, without data generation. Peak memory: CUDA max allocated on a GPU; on a CPU the process's
peak resident set size (includes Python/torch, ~0.3-0.5 GB).
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import time

import torch

from cotracker3.training import Trainer, get_config

# config -> (frames, tracks, (H, W)); full is the official training setting
SHAPES = {"tiny": (8, 16, (32, 32)), "small": (8, 48, (128, 128)), "full": (60, 512, (384, 512))}


class RandomClips(torch.utils.data.Dataset):
    def __init__(self, T, N, hw):
        self.T, self.N, self.hw = T, N, hw

    def __len__(self):
        return 1

    def __getitem__(self, i):
        T, N, (H, W) = self.T, self.N, self.hw
        g = torch.Generator().manual_seed(i)
        xy = torch.rand(N, 2, generator=g) * torch.tensor([W - 1.0, H - 1.0])
        traj = xy[None] + torch.arange(T)[:, None, None] * torch.tensor([1.0, 0.5])
        return {"video": torch.rand(T, 3, H, W, generator=g) * 255, "trajectory": traj,
                "visibility": torch.ones(T, N, dtype=torch.bool), "valid": torch.ones(T, N, dtype=torch.bool),
                "query_frame": torch.zeros(N, dtype=torch.long)}


def bench(name: str, kind: str, repeats: int, run_dir: str) -> dict:
    T, N, hw = SHAPES[name]
    conf = get_config(name, model={"args": {"model_resolution": hw}}, eval={"num_clips": 0})
    trainer = Trainer(conf, run_dir, kind=kind, dataset=RandomClips(T, N, hw))
    from cotracker3.training.trainer import build_optimizer

    trainer.optimizer, trainer.scheduler = build_optimizer(trainer.model, conf["train"], repeats + 2)
    batch = {k: v[None] for k, v in trainer.dataset[0].items()}
    cuda = trainer.device.type == "cuda"

    def step():
        out = trainer.loss(batch)
        trainer.optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), 1.0)
        trainer.optimizer.step()
        if cuda:
            torch.cuda.synchronize()

    step()  # warm-up
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    best = min(times)
    return {"config": name, "model": kind, "frames": T, "tracks": N, "size": list(hw),
            "params_M": round(sum(p.numel() for p in trainer.model.parameters()) / 1e6, 2),
            "device": torch.cuda.get_device_name() if cuda else f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s)",
            "amp": "bf16" if cuda else "fp32", "step_s_best": round(best, 3),
            "step_s_median": round(sorted(times)[len(times) // 2], 3), "clips_per_s": round(1 / best, 3),
            "peak_mem_MB": round(peak / 2**20)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", nargs="+", default=["tiny", "small"], choices=sorted(SHAPES))
    p.add_argument("--model", default="offline", choices=["offline", "online"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int)
    p.add_argument("--run-dir", default="/tmp/bench_train")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in args.config:
        print(json.dumps(bench(name, args.model, args.repeats, args.run_dir)), flush=True)


if __name__ == "__main__":
    main()
