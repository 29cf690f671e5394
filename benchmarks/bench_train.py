"""Training throughput: before/after in one run (``fit``), or one step's cost on random inputs (``step``).

    python benchmarks/bench_train.py --threads 2                 # small config: before vs after, ~3 min
    python benchmarks/bench_train.py --mode step --config full   # on a GPU: B=1, T=60, N=512, 384x512, bf16
    python benchmarks/bench_train.py --mode curve --variants before --steps 120 --threads 1   # loss curve
    python benchmarks/bench_train.py --mode phases --steps 2 --threads 1    # curriculum cost per phase

``fit`` trains the ``small`` config on its real synthetic clips with ``Trainer.fit`` for a few steps
per variant, variants interleaved over ``--rounds`` so that a busy machine's load hits each alike:
``before`` (fp32, clips made in the training process, batch 1: the settings before the speed-up),
``after`` (the shipped config: bf16 autocast with the math attention kernel, one DataLoader
worker making clips while the model trains) and ``after_b4`` (the same, 4 clips per step). It
reports wall clips/s and seconds per step, the training process's CPU seconds per clip (data making
moved to a worker no longer counts there) and the share of wall time the model waited for data;
clips/s and CPU per clip also as ratios to ``before`` from the same run. On a machine shared with
other jobs, wall time measures the load as much as the code: CPU seconds per clip is the steadier number.
The first ``--warmup`` steps of each variant (worker start, allocator warm-up) are not counted.

``step``: inputs are random (a texture translating at 1 px/frame), so the number is the model's
cost alone. Peak memory: CUDA max allocated on a GPU; on a CPU the process's peak RSS.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cotracker3.training import Trainer, get_config  # noqa: E402
from cotracker3.training.curriculum import phases  # noqa: E402
from cotracker3.training.trainer import build_optimizer  # noqa: E402

# config -> (frames, tracks, (H, W)); full is the official training setting
SHAPES = {"tiny": (8, 16, (32, 32)), "small": (8, 48, (128, 128)), "full": (60, 512, (384, 512))}
BEFORE = {"cpu_amp": "fp32", "num_workers": 0, "batch_size": 1}
VARIANTS = {"before": BEFORE, "after": {}, "after_b4": {"batch_size": 4}}


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


def fit_variant(config: str, train: dict, steps: int, warmup: int, curriculum=None) -> dict:
    """Train ``steps`` steps with the config's train section overridden by ``train``; per-step records."""
    run = Path(tempfile.mkdtemp(prefix="bench_train_"))
    try:
        conf = get_config(config, train=dict(train, steps=steps, log_every=1, checkpoint_every=10**9, eval_every=0),
                          eval={"num_clips": 0})
        if curriculum:
            conf["curriculum"] = curriculum
        Trainer(conf, run).fit()
        recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()][warmup:]
    finally:
        shutil.rmtree(run)
    bs = train.get("batch_size", conf["train"]["batch_size"])
    wall, cpu = sum(r["step_s"] for r in recs), sum(r["cpu_step_s"] for r in recs)
    wait = sum(r["data_wait_s"] for r in recs)
    return {"steps": len(recs), "batch": bs, "wall_s": wall, "cpu_s": cpu, "wait_s": wait, "clips": bs * len(recs)}


def loss_curve(args) -> dict:
    """Per-step losses of each variant from the same seed (same clips in the same order at batch 1)."""
    out = {}
    for name in args.variants:
        run = Path(tempfile.mkdtemp(prefix="bench_curve_"))
        try:
            conf = get_config(args.config[0], train=dict(VARIANTS[name], steps=args.steps, log_every=1,
                                                         checkpoint_every=10**9, eval_every=0), eval={"num_clips": 0})
            Trainer(conf, run).fit()
            out[name] = [round(json.loads(x)["loss"], 5) for x in (run / "metrics.jsonl").read_text().splitlines()]
        finally:
            shutil.rmtree(run)
    return out


def phase_costs(args) -> dict:
    """Seconds per step of each curriculum phase with the shipped settings (a per-1000-steps estimate)."""
    out = {}
    for name in args.config:
        conf = get_config(name)
        for ph in phases(conf):
            single = [dict(conf["curriculum"][ph.index], until=None)] if conf.get("curriculum") else None
            r = fit_variant(name, {}, args.steps + args.warmup, args.warmup, curriculum=single)
            out[f"{name}/phase{ph.index}"] = {
                "size": list(ph.size), "frames": ph.data["seq_len"], "tracks": ph.data["num_tracks"],
                "step_s": round(r["wall_s"] / r["steps"], 2), "cpu_step_s": round(r["cpu_s"] / r["steps"], 2),
                "cpu_minutes_per_1000_steps": round(r["cpu_s"] / r["steps"] * 1000 / 60, 1)}
    return out


def bench_fit(args) -> dict:
    totals = {name: {"wall_s": 0.0, "cpu_s": 0.0, "wait_s": 0.0, "clips": 0, "steps": 0} for name in args.variants}
    for _ in range(args.rounds):
        for name in args.variants:
            r = fit_variant(args.config[0], VARIANTS[name], args.steps + args.warmup, args.warmup)
            for k in ("wall_s", "cpu_s", "wait_s", "clips", "steps"):
                totals[name][k] += r[k]
            totals[name]["batch"] = r["batch"]
    out = {"config": args.config[0], "threads": torch.get_num_threads(), "rounds": args.rounds,
           "steps_per_variant": args.steps, "variants": {}}
    base = totals[args.variants[0]]
    for name, t in totals.items():
        out["variants"][name] = {
            "settings": {k: {**get_config(args.config[0])["train"], **VARIANTS[name]}[k]
                         for k in ("cpu_amp", "num_workers", "batch_size")},
            "clips_per_s": round(t["clips"] / t["wall_s"], 3), "step_s": round(t["wall_s"] / t["steps"], 3),
            "cpu_s_per_clip": round(t["cpu_s"] / t["clips"], 3),
            "data_wait_share": round(t["wait_s"] / t["wall_s"], 3),
            "clips_per_s_ratio": round((t["clips"] / t["wall_s"]) / (base["clips"] / base["wall_s"]), 2),
            "cpu_per_clip_ratio": round((base["cpu_s"] / base["clips"]) / (t["cpu_s"] / t["clips"]), 2)}
    return out


def bench_step(name: str, kind: str, repeats: int, run_dir: str) -> dict:
    T, N, hw = SHAPES[name]
    conf = get_config(name, model={"args": {"model_resolution": hw}}, eval={"num_clips": 0})
    trainer = Trainer(conf, run_dir, kind=kind, dataset=RandomClips(T, N, hw))
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
    amp = conf["train"]["amp"] if cuda else conf["train"]["cpu_amp"]
    return {"config": name, "model": kind, "frames": T, "tracks": N, "size": list(hw),
            "params_M": round(sum(p.numel() for p in trainer.model.parameters()) / 1e6, 2),
            "device": torch.cuda.get_device_name() if cuda else f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s)",
            "amp": amp, "step_s_best": round(best, 3),
            "step_s_median": round(sorted(times)[len(times) // 2], 3), "clips_per_s": round(1 / best, 3),
            "peak_mem_MB": round(peak / 2**20)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["fit", "step", "curve", "phases"], default="fit",
                   help="curve: per-step losses of --variants over --steps steps (loss-curve check); "
                        "phases: cost per step of each curriculum phase (default configs small_curriculum small_online)")
    p.add_argument("--config", nargs="+", default=None, help="fit, curve: small; step: tiny small (SHAPES)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=sorted(VARIANTS))
    p.add_argument("--steps", type=int, default=6, help="fit: counted steps per variant and round")
    p.add_argument("--warmup", type=int, default=2, help="fit: uncounted first steps per variant and round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--model", default="offline", choices=["offline", "online"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int)
    p.add_argument("--run-dir", default="/tmp/bench_train")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.mode in ("fit", "curve", "phases"):
        args.config = args.config or (["small_curriculum", "small_online"] if args.mode == "phases" else ["small"])
        run = {"fit": bench_fit, "curve": loss_curve, "phases": phase_costs}[args.mode]
        print(json.dumps(run(args), indent=1), flush=True)
        return
    for name in args.config or ["tiny", "small"]:
        print(json.dumps(bench_step(name, args.model, args.repeats, args.run_dir)), flush=True)


if __name__ == "__main__":
    main()
