"""Supervised CoTracker3 training: one process on a CPU, or many GPUs/nodes under ``torchrun``.

Layout of a run directory::

    RUN_DIR/config.json     the resolved config
    RUN_DIR/checkpoint.pt   latest state (model, optimizer, scheduler, step, RNG and data states)
    RUN_DIR/metrics.jsonl   one JSON object per logged step: step, loss, loss terms, lr, clips/s, wall and
                            CPU (this process) seconds per step, seconds per step spent waiting for data
    RUN_DIR/eval.jsonl      one JSON object per evaluation: step and TAP-Vid metrics
    RUN_DIR/eval_set.pkl    the synthetic TAP-Vid-layout evaluation clips

Resuming restores everything a step depends on, so N steps in one go and N/2 + N/2 with a
resume in between give identical weights. Data order is a pure function of (seed, rank, phase,
position), which is what makes this hold with DataLoader workers, curriculum phases
(curriculum.py) and several processes. The checkpoint holds only tensors and plain containers and
is read with ``weights_only=True`` (state.py).

Speed on a CPU (benchmarks/bench_train.py): clips are made by DataLoader worker processes while
the model trains, and ``cpu_amp: bf16`` runs the step under bf16 autocast (with the math attention
kernel), which pays on CPUs with bf16 matmuls (AVX512-BF16 / AMX).
"""
from __future__ import annotations

import json
import logging
import os
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm import tqdm

from cotracker3.checkpoint import CheckpointError, build_model, load_weights, read_state_dict, save_weights
from cotracker3.losses import sequence_losses

from .configs import model_config
from .curriculum import Phase, phase_at, phases
from .data import ResumableSampler, build_dataset, collate, make_queries, resize_batch
from .evaluation import evaluate_model, synthetic_eval_set
from .schedule import build_schedule, resume_schedule
from .state import (CHECKPOINT, RunError, append_jsonl, atomic_save, load_training_checkpoint, rng_state,
                    seed_everything, set_rng_state, truncate_jsonl)

log = logging.getLogger(__name__)


# -- distributed -------------------------------------------------------------------------------

def setup_distributed(device: Optional[torch.device] = None) -> tuple[int, int, torch.device]:
    """(rank, world_size, device) from torchrun's environment; a plain process is rank 0 of 1.
    ``device``: force "cpu" (default: this rank's GPU when there is one)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device is not None and torch.device(device).type == "cpu":
        device = torch.device("cpu")
    elif torch.cuda.is_available():
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


# -- model pieces ------------------------------------------------------------------------------

def is_frozen(name: str, freeze) -> bool:
    """A parameter is frozen if a freeze entry is one of its name's components or a prefix."""
    parts = name.split(".")
    return any(f in parts or name.startswith(f + ".") for f in freeze)


def build_optimizer(model: torch.nn.Module, train: dict, total_steps: int):
    """AdamW and the configured learning-rate schedule (schedule.py: the official one-cycle, or WSD)."""
    params = [p for n, p in model.named_parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=train["lr"], weight_decay=train["weight_decay"], eps=train["eps"])
    return opt, build_schedule(opt, train, total_steps)


def _single_threaded_worker(worker_id: int) -> None:
    """Data workers make whole clips in parallel; intra-op threads there would fight the model's."""
    torch.set_num_threads(1)


class Trainer:
    """Holds model, data and optimiser for one run; ``fit`` trains, checkpoints, logs, evaluates.

    ``dataset`` overrides the configured one (tests, custom data); ``kind`` overrides
    ``conf["model"]["kind"]`` ("offline" or "online").
    """

    def __init__(self, conf: dict, run_dir, kind: Optional[str] = None, dataset=None, init: Optional[str] = None,
                 eval_pickle: Optional[str] = None, device: Optional[torch.device] = None):
        self.conf = conf
        self.kind = kind or conf["model"]["kind"]
        self.conf["model"]["kind"] = self.kind
        self.train_conf = conf["train"]
        self.run_dir = Path(run_dir)
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise RunError(f"output {self.run_dir} exists and is not a folder")
        self.rank, self.world, self.device = setup_distributed(device)
        self.main = self.rank == 0
        self.model_args = model_config(conf, self.kind)
        seed_everything(self.train_conf["seed"])
        model = build_model(self.kind, None, **self.model_args)
        if init:
            state, _ = read_state_dict(init)
            load_weights(model, state)
        for name, p in model.named_parameters():
            p.requires_grad_(not is_frozen(name, self.train_conf["freeze"]))
        self.model = model.to(self.device)
        self.ddp = None
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.resolution = tuple(self.model_args["model_resolution"])
        self.phases = phases(conf)
        self.dataset_override = dataset
        self.step = 0
        self.phase = None
        self.dataset = None
        self.enter_phase(phase_at(self.phases, 0))
        self.eval_pickle = eval_pickle
        self.last_eval: Optional[dict] = None
        self.clips_done = 0  # clips trained on by this object (all ranks)

    def enter_phase(self, phase: Phase) -> None:
        """Build the phase's dataset (clips rendered at its size) unless one was given."""
        self.phase = phase
        self.dataset = self.dataset_override if self.dataset_override is not None else build_dataset(
            phase.data, phase.size, seed=self.train_conf["seed"] + 7919 * phase.index)

    # -- state -----------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "config": self.conf,
            "model_config": self.model_args,
            "kind": self.kind,
            "rng": rng_state(),
            "data": {"phase": self.phase.index, "position": self.phase.position(self.step)},
        }

    def save_checkpoint(self) -> None:
        if self.main:
            atomic_save(self.state_dict(), self.run_dir / CHECKPOINT)

    def load_checkpoint(self) -> None:
        """Restore everything a step depends on from RUN_DIR/checkpoint.pt (weights_only load).

        The optimizer must already be built. A checkpoint written for another ``--steps`` keeps its
        schedule up to its step, then decays from the current rate over the new length (schedule.extend):
        no warm restart."""
        path = self.run_dir / CHECKPOINT
        ckpt = load_training_checkpoint(path)
        same = json.dumps(ckpt["model_config"], sort_keys=True) == json.dumps(self.model_args, sort_keys=True)
        if ckpt["kind"] != self.kind or not same:
            raise CheckpointError(f"{path} was written for another model ({ckpt['kind']} {ckpt['model_config']}), "
                                  f"not this run's {self.kind} {self.model_args}")
        phases_now, phases_then = (json.dumps(c.get("curriculum"), sort_keys=True) for c in (self.conf, ckpt["config"]))
        if phases_now != phases_then:
            raise RunError(f"{path} was trained with other curriculum phases ({phases_then}), not this run's "
                           f"({phases_now}); resume with the same config and --skip-phases")
        if ckpt["step"] > self.train_conf["steps"]:
            raise RunError(f"{path} is at step {ckpt['step']}, past --steps {self.train_conf['steps']}")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler = resume_schedule(self.optimizer, self.train_conf, ckpt["scheduler"], ckpt["step"],
                                         self.train_conf["steps"])
        self.step = ckpt["step"]
        set_rng_state(ckpt["rng"])
        if self.main:
            for name in ("metrics.jsonl", "eval.jsonl"):
                truncate_jsonl(self.run_dir / name, self.step)

    # -- one step --------------------------------------------------------------------------

    def loss(self, batch: dict) -> dict:
        """Forward in train mode and the configured loss terms (their sum is ``loss``)."""
        batch = resize_batch(batch, self.phase.size)
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        queries = make_queries(batch)
        model = self.ddp or self.model
        with self.autocast():
            *_, train_data = model(batch["video"], queries, iters=self.train_conf["iters"], is_train=True)
        coords, vis, conf, valid = train_data  # losses in float32 (BCE is unsafe under autocast)
        train_data = tuple([[x.float() for x in w] for w in part] for part in (coords, vis, conf)) + (valid,)
        lc = self.train_conf["loss"]
        terms = sequence_losses(
            train_data, batch["trajectory"].float(), batch["visibility"].float(), batch["valid"].float(),
            window_len=self.model_args["window_len"] if self.kind == "online" else None,
            gamma=lc["gamma"], huber_delta=lc["huber_delta"], conf_thresh=lc["conf_thresh"],
            train_occluded="track_occluded" in lc["terms"])
        out = {k: terms[k] for k in lc["terms"]}
        out["loss"] = sum(out.values())
        return out

    @property
    def amp(self) -> str:
        """The autocast dtype configured for this device: ``amp`` on CUDA, ``cpu_amp`` on a CPU."""
        return self.train_conf["amp"] if self.device.type == "cuda" else self.train_conf.get("cpu_amp", "fp32")

    def autocast(self) -> ExitStack:
        """bf16 autocast when configured for this device (``amp``). On a CPU attention then uses the math
        kernel: the flash kernel's bf16 backward is ~10x slower there."""
        stack = ExitStack()
        if self.amp == "bf16":
            stack.enter_context(torch.autocast(self.device.type, dtype=torch.bfloat16))
            if self.device.type == "cpu":
                stack.enter_context(sdpa_kernel([SDPBackend.MATH]))
        return stack

    # -- loop ------------------------------------------------------------------------------

    def fit(self, steps: Optional[int] = None, resume: bool = False, stop_at: Optional[int] = None,
            max_minutes: Optional[float] = None, budget=None) -> dict:
        """Train to ``steps`` (the schedule length); ``stop_at`` / ``max_minutes`` end this call
        early (as if interrupted; a checkpoint is written). ``budget`` (a budget.StepBudget) sets the
        schedule length from the measured speed and stops at its deadline. Returns the last logged record."""
        tc = self.train_conf
        total = steps or tc["steps"]
        tc["steps"] = total
        if total < 1:
            raise RunError(f"the number of steps must be positive, got {total}")
        self.optimizer, self.scheduler = build_optimizer(self.model, tc, total)
        if resume:
            self.load_checkpoint()
            log.info("resumed from step %d", self.step)
        elif (self.run_dir / CHECKPOINT).is_file():
            raise RunError(f"{self.run_dir} already holds a training run ({CHECKPOINT}); "
                           "resume it (--resume) or choose another output folder")
        if self.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if not resume:
                for name in ("metrics.jsonl", "eval.jsonl"):
                    (self.run_dir / name).unlink(missing_ok=True)
        if self.main:
            (self.run_dir / "config.json").write_text(json.dumps(self.conf, indent=1, default=list))
        end = min(total, stop_at or total)

        batches = None
        self.model.train()
        bar = tqdm(total=end, initial=self.step, disable=not self.main, desc="train", dynamic_ncols=True)
        record, t_last, cpu_last, clips_since, steps_since = {}, time.perf_counter(), time.process_time(), 0, 0
        wait_since = 0.0  # seconds the model waited for data
        deadline = time.perf_counter() + 60 * max_minutes if max_minutes else None
        if budget is not None:
            deadline = budget.deadline if deadline is None else min(deadline, budget.deadline)
        while self.step < end:
            phase = phase_at(self.phases, self.step)
            if batches is None or phase != self.phase:
                if phase != self.phase:
                    self.enter_phase(phase)
                batches = iter(self.loader(start=phase.position(self.step)))
            t_data = time.perf_counter()
            batch = next(batches)
            wait_since += time.perf_counter() - t_data
            out = self.loss(batch)
            self.optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(
                [p for p in self.model.parameters() if p.requires_grad], tc["clip_grad_norm"])
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
            clips_since += len(batch["video"])
            steps_since += 1
            self.clips_done += len(batch["video"]) * self.world
            fitted = self._from_rank0(budget.total_steps(self.step) or 0) if budget and not budget.decided else 0
            if budget is not None:  # rank 0 decides for every rank (another rank's own timing must not end its broadcasts)
                budget.decided = fitted > 0
            if fitted:  # the schedule that fits the budget, from here on
                total = end = tc["steps"] = fitted
                self.scheduler = build_schedule(self.optimizer, tc, total, step=self.step)
                bar.total = end
            if self.step % tc["log_every"] == 0 or self.step == end:
                now = time.perf_counter()
                record = {"step": self.step, **{k: float(v.detach()) for k, v in out.items()},
                          "grad_norm": float(grad_norm), "lr": self.scheduler.get_last_lr()[0],
                          "clips_per_s": clips_since * self.world / (now - t_last),
                          "step_s": (now - t_last) / steps_since, "cpu_step_s": (time.process_time() - cpu_last) / steps_since,
                          "data_wait_s": wait_since / steps_since}
                t_last, cpu_last, clips_since, steps_since, wait_since = now, time.process_time(), 0, 0, 0.0
                if self.main:
                    append_jsonl(self.run_dir / "metrics.jsonl", record)
                    bar.set_postfix(loss=f"{record['loss']:.3f}", clips_s=f"{record['clips_per_s']:.2f}")
            bar.update(1)
            out_of_time = deadline is not None and self._agree(time.perf_counter() > deadline)
            if self.step % tc["checkpoint_every"] == 0 or self.step == end or out_of_time:
                self.save_checkpoint()
            if (tc["eval_every"] and self.step % tc["eval_every"] == 0) or self.step == total or out_of_time:
                self.evaluate()
                t_last, cpu_last, clips_since, steps_since, wait_since = time.perf_counter(), time.process_time(), 0, 0, 0.0
            if out_of_time:
                tqdm.write(f"time limit reached at step {self.step} of {total}")
                break
        bar.close()
        if self.world > 1:
            dist.barrier()
        return record

    def loader(self, start: int) -> torch.utils.data.DataLoader:
        """Batches of the current phase from its sampler position ``start`` on. With ``num_workers`` > 0
        clips are made in worker processes (one torch thread each) while the model trains, ``prefetch``
        batches ahead per worker, so the model does not wait for data."""
        tc = self.train_conf
        sampler = ResumableSampler(len(self.dataset), tc["seed"], self.rank, self.world, start=start)
        workers = tc["num_workers"]
        extra = {"prefetch_factor": tc.get("prefetch", 2), "worker_init_fn": _single_threaded_worker} if workers else {}
        return torch.utils.data.DataLoader(
            self.dataset, batch_size=self.phase.batch_size, sampler=sampler, num_workers=workers, collate_fn=collate,
            pin_memory=self.device.type == "cuda", **extra)

    def _from_rank0(self, value: int) -> int:
        """Rank 0's integer for every rank."""
        if self.world == 1:
            return value
        t = torch.tensor([value], device=self.device, dtype=torch.long)
        dist.broadcast(t, 0)
        return int(t.item())

    def _agree(self, flag: bool) -> bool:
        """Rank 0's decision for every rank (so all processes stop at the same step)."""
        return bool(self._from_rank0(int(flag)))

    def evaluate(self) -> Optional[dict]:
        """TAP-Vid metrics on the synthetic eval set (rank 0; skipped if eval is not configured)."""
        ec = self.conf.get("eval")
        if not self.main or not ec or not ec.get("num_clips"):
            return None
        path = Path(self.eval_pickle) if self.eval_pickle else synthetic_eval_set(
            self.run_dir / "eval_set.pkl", ec["num_clips"], ec["seed"], ec["num_frames"], ec["size"], ec["num_tracks"])
        try:  # a failing evaluation must not end a long run; it is logged and recorded instead
            with torch.random.fork_rng(devices=[]):
                metrics = evaluate_model(self.model, ec, path)
        except Exception as e:
            log.exception("evaluation at step %d failed", self.step)
            self.model.train()
            append_jsonl(self.run_dir / "eval.jsonl", {"step": self.step, "error": repr(e)})
            return None
        self.last_eval = metrics
        append_jsonl(self.run_dir / "eval.jsonl", {"step": self.step, **metrics})
        tqdm.write(f"eval @ {self.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        return metrics

    def export(self, path, half: bool = True) -> None:
        """Final weights as safetensors with the constructor config (what build_model reads)."""
        if self.main:
            save_weights(self.model, path, self.model_args, half=half)
