"""Training for a fixed wall-clock budget: size the schedule to the measured speed, then evaluate and export.

``train_for_budget`` is what ``pipelines/train.py --budget-minutes M`` runs (e.g. 9 minutes on one GPU):
the schedule needs its length up front (where its decay starts), so the run first times a few steps,
sets the length to what fits the rest of the training share of the budget, and continues the fresh
schedule of that length at its current step. Training stops at the latest when
its share is spent; evaluation on the config's synthetic set and the export of fp16 safetensors
(with the model config in their metadata, like ``cotracker3/weights``) follow, and ``metrics.json``
records what was done. On a GPU the config's ``gpu`` section applies (larger batch), and the synthetic
clips come from whichever source makes more of them per second, measured at the start: the GPU in
the training process, or the machine's other CPU cores as DataLoader workers.
"""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Optional

import torch

from ..cores import usable_cores
from .configs import merge
from .curriculum import phase_at, phases
from .data import build_dataset
from .trainer import Trainer

TRAIN_SHARE = 0.85  # of the budget; the rest is left for evaluation and export
WEIGHTS = "cotracker3_{config}_{kind}.safetensors"


class StepBudget:
    """Decides the schedule length once: after ``warmup`` steps it times steps until ``measure_s``
    seconds or ``measure_steps`` steps have passed, then fits the remaining time."""

    def __init__(self, seconds: float, warmup: int = 2, measure_steps: int = 10, measure_s: Optional[float] = None):
        self.deadline = time.perf_counter() + seconds
        self.warmup, self.measure_steps = warmup, measure_steps
        self.measure_s = measure_s if measure_s is not None else 0.05 * seconds
        self.t0 = self.step0 = None
        self.decided = False

    def total_steps(self, step: int) -> Optional[int]:
        """The schedule length to switch to after ``step`` steps, once; otherwise None."""
        if self.decided or step < self.warmup:
            return None
        now = time.perf_counter()
        if self.t0 is None:
            self.t0, self.step0 = now, step
            return None
        done = step - self.step0
        if done < self.measure_steps and now - self.t0 < self.measure_s:
            return None
        self.decided = True
        per_step = (now - self.t0) / done
        return step + max(1, int((self.deadline - now) / per_step))


def render_rate(conf: dict, device: str, clips: int = 2) -> float:
    """Synthetic clips per second of the run's first phase rendered on ``device`` by one process with one
    torch thread (after one warm-up clip: CUDA start-up, kernel compilation)."""
    phase = phase_at(phases(conf), 0)
    ds = build_dataset(dict(phase.data, device=device), phase.size, seed=987_654)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ds[0]
        t0 = time.perf_counter()
        for i in range(1, clips + 1):
            ds[i]
        return clips / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)


def cpu_workers() -> int:
    """CPU cores a budget run can give to DataLoader workers (one stays with the training process)."""
    return max(0, usable_cores() - 1)


def device_config(conf: dict, device: torch.device, renderer: Optional[dict] = None) -> dict:
    """On CUDA: the config with its ``gpu`` section merged in, and synthetic clips rendered where
    ``renderer`` says: ``{"device": "cuda:0"}`` (in the training process, no workers; the default) or
    ``{"device": "cpu", "workers": n}``. The ``gpu`` section is removed either way."""
    gpu = conf.pop("gpu", {})
    if device.type != "cuda":
        return conf
    conf = merge(conf, gpu)
    if conf["data"]["name"] == "synthetic":
        renderer = renderer or {"device": str(device)}
        conf["data"]["device"] = renderer["device"]
        conf["train"]["num_workers"] = renderer.get("workers", 0)
        conf["train"]["prefetch"] = max(conf["train"].get("prefetch", 2), 4)
    return conf


def choose_renderer(conf: dict, device: torch.device) -> dict:
    """Where a CUDA budget run renders its synthetic clips: the GPU, or CPU workers when the measured
    rates say they make more clips per second (rate per core x cores). Includes the measured rates."""
    workers = cpu_workers()
    try:
        gpu_rate, error = render_rate(conf, str(device)), None
    except Exception as e:  # a GPU that cannot render still trains: the CPU workers make the clips
        gpu_rate, error = 0.0, f"{type(e).__name__}: {e}"
    cpu_rate = render_rate(conf, "cpu") * workers if workers else 0.0
    if error and not workers:
        raise RuntimeError(f"rendering on {device} failed ({error}) and no CPU core is free for workers")
    choice = {"device": str(device)} if gpu_rate >= cpu_rate else {"device": "cpu", "workers": workers}
    return dict(choice, gpu_clips_per_s=round(gpu_rate, 2), cpu_clips_per_s=round(cpu_rate, 2),
                **({"gpu_error": error} if error else {}))


def train_for_budget(conf: dict, out_dir, minutes: float, config_name: str, kind: Optional[str] = None,
                     device: Optional[str] = None, init: Optional[str] = None) -> dict:
    """Train, evaluate and export within ``minutes``; returns what OUT/metrics.json holds."""
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    renderer = None
    if dev.type == "cuda" and conf["data"]["name"] == "synthetic":
        renderer = choose_renderer(merge(conf, conf.get("gpu", {})), dev)
        print(f"synthetic clips: GPU {renderer['gpu_clips_per_s']}/s, CPU workers {renderer['cpu_clips_per_s']}/s; "
              f"rendering on {renderer['device']}", flush=True)
    conf = device_config(conf, dev, renderer)
    conf["train"]["eval_every"] = 0  # evaluation once, at the end
    trainer = Trainer(conf, out_dir, kind=kind, init=init, device=dev)
    # the training share counts from the start: renderer timing and start-up are spent from it
    record = trainer.fit(steps=10**9, budget=StepBudget(60 * minutes * TRAIN_SHARE - (time.perf_counter() - t_start)))
    train_s = time.perf_counter() - t_start
    metrics = trainer.last_eval if trainer.last_eval is not None else trainer.evaluate()
    weights = out_dir / WEIGHTS.format(config=config_name, kind=trainer.kind)
    trainer.export(weights, half=True)
    clips = trainer.clips_done
    result = {
        "config": config_name, "kind": trainer.kind, "budget_minutes": minutes,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU {platform.machine()}, {torch.get_num_threads()} thread(s)",
        "steps": trainer.step, "schedule_steps": trainer.train_conf["steps"], "clips": round(clips),
        "train_seconds": round(train_s, 1), "total_seconds": round(time.perf_counter() - t_start, 1),
        "clips_per_s": round(clips / max(train_s, 1e-9), 3), "final_loss": record.get("loss"),
        "amp": trainer.amp,
        "batch_size": trainer.phase.batch_size, "renderer": renderer, "eval": metrics, "weights": weights.name,
    }
    tmp = out_dir / "metrics.json.tmp"
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, out_dir / "metrics.json")
    return result
